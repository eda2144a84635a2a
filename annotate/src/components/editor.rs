//! `e`: the inline editor (ratatui-textarea), prefilled with the output the expert corrects.

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Widget};
use ratatui_textarea::TextArea;

use crate::theme::{Theme, shown};

/// What a key did in the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditorOutcome {
    /// The key edited the text (or did nothing).
    Editing,
    /// Ctrl-S: the expert is done; here is the text.
    Save(String),
    /// Esc: leave without saving.
    Cancel,
}

/// The editor and the text it started from.
pub struct Editor {
    area: TextArea<'static>,
    /// The output being corrected, as the editor holds it (see [`editable`]).
    pub original: String,
}

/// `text` as the editor holds it: as is, unless it has control characters besides newline and
/// tab, which are then shown escaped.
pub fn editable(text: &str) -> String {
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        shown(text)
    } else {
        text.to_string()
    }
}

impl Editor {
    /// An editor holding `start` (the original, or an earlier correction of it).
    pub fn new(original: &str, start: &str, theme: &Theme) -> Editor {
        // The expert edits the text itself, so a correction is stored byte for byte (tabs and
        // newlines included). Only a text holding other control characters (an escape sequence,
        // a carriage return) is edited as the item view showed it, escaped: what they edit and
        // store is then what they saw, and no escape is ever live.
        let lines: Vec<String> = editable(start).split('\n').map(str::to_string).collect();
        let mut area = TextArea::new(lines);
        area.set_block(
            Block::bordered()
                .title(Span::styled(" Edit the output ", theme.title))
                .title_bottom(" Ctrl-S save · Esc cancel "),
        );
        area.set_cursor_line_style(Style::new());
        area.set_cursor_style(Style::new().add_modifier(Modifier::REVERSED));
        Editor {
            area,
            original: editable(original),
        }
    }

    /// The text as it stands.
    pub fn text(&self) -> String {
        self.area.lines().join("\n")
    }

    /// Handles one key.
    pub fn handle_key(&mut self, key: KeyEvent) -> EditorOutcome {
        match (key.code, key.modifiers) {
            (KeyCode::Esc, _) => EditorOutcome::Cancel,
            (KeyCode::Char('s'), m) if m.contains(KeyModifiers::CONTROL) => {
                EditorOutcome::Save(self.text())
            }
            _ => {
                self.area.input(key);
                EditorOutcome::Editing
            }
        }
    }
}

impl Widget for &Editor {
    fn render(self, area: Rect, buf: &mut Buffer) {
        (&self.area).render(area, buf);
    }
}
