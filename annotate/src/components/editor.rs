//! `e`: the inline editor, prefilled with the output the expert corrects.
//!
//! The editor holds the text itself, byte for byte: a tab is a tab, a carriage return or an
//! escape character stays one character, and what the expert did not touch is stored as it was.
//! Only drawing escapes it (through [`push_shown`], as the item view does), so no escape sequence
//! reaches the terminal live and a character that would draw as nothing is visible. That is why
//! the text is drawn here rather than by `ratatui-textarea`'s widget, which would hand such
//! characters to the terminal; the textarea still does the editing.

use std::cell::Cell;

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};
use ratatui_textarea::TextArea;

use super::KeyOutcome;
use crate::theme::{Theme, push_shown, width};

/// What the editor asks of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditorAction {
    /// Ctrl-S: the expert is done; here is the text.
    Save(String),
    /// Esc: leave without saving.
    Cancel,
}

/// The editor and the text it started from.
pub struct Editor {
    area: TextArea<'static>,
    /// The output being corrected, exactly as stored.
    pub original: String,
    /// The panel's title (which output is being corrected).
    title: String,
    title_style: Style,
    /// The first screen row drawn, kept between draws so the view moves only when the cursor
    /// leaves it.
    top: Cell<usize>,
}

impl Editor {
    /// An editor holding `start` (the original, or an earlier correction of it); `what` names
    /// the output in the title ("the output", "A").
    pub fn new(original: &str, start: &str, what: &str, theme: &Theme) -> Editor {
        let lines: Vec<String> = start.split('\n').map(str::to_string).collect();
        let mut area = TextArea::new(lines);
        // Tab types a tab: the correction holds what was typed.
        area.set_hard_tab_indent(true);
        area.set_tab_length(4);
        Editor {
            area,
            original: original.to_string(),
            title: format!(" Edit {what} "),
            title_style: theme.title,
            top: Cell::new(0),
        }
    }

    /// The text as it stands.
    pub fn text(&self) -> String {
        self.area.lines().join("\n")
    }

    /// Handles one key: every key but Ctrl-S and Esc edits the text.
    pub fn handle_key(&mut self, key: KeyEvent) -> KeyOutcome<EditorAction> {
        match (key.code, key.modifiers) {
            (KeyCode::Esc, _) => KeyOutcome::Act(EditorAction::Cancel),
            (KeyCode::Char('s'), m) if m.contains(KeyModifiers::CONTROL) => {
                KeyOutcome::Act(EditorAction::Save(self.text()))
            }
            _ => {
                self.area.input(key);
                KeyOutcome::Consumed
            }
        }
    }

    /// The text laid out in rows of `width` cells, as (row, styled runs), with the screen row of
    /// the cursor.
    fn layout(&self, row_cells: usize) -> (Vec<Line<'static>>, usize) {
        let cursor = self.area.cursor();
        let (cursor_row, cursor_col) = (cursor.0, cursor.1);
        let selection = self.area.selection_range();
        let in_selection = |row: usize, col: usize| {
            selection.is_some_and(|(start, end)| (row, col) >= start && (row, col) < end)
        };
        let cursor_style = Style::new().add_modifier(Modifier::REVERSED);
        let selected_style = Style::new().add_modifier(Modifier::UNDERLINED);
        let row_cells = row_cells.max(1);
        let mut rows: Vec<Line<'static>> = Vec::new();
        let mut cursor_screen_row = 0;
        for (row, line) in self.area.lines().iter().enumerate() {
            let mut current = Line::default();
            let mut used = 0;
            let mut run = String::new();
            let mut run_style = Style::new();
            let mut after_base = false;
            let chars: Vec<char> = line.chars().collect();
            // One more position past the end, where the cursor may sit.
            for col in 0..=chars.len() {
                let mut piece = String::new();
                match chars.get(col) {
                    Some(&c) => after_base = push_shown(c, after_base, &mut piece),
                    None if (row, col) == (cursor_row, cursor_col) => piece.push(' '),
                    None => break,
                }
                let style = if (row, col) == (cursor_row, cursor_col) {
                    cursor_style
                } else if in_selection(row, col) {
                    selected_style
                } else {
                    Style::new()
                };
                let cells = width(&piece);
                if used > 0 && used + cells > row_cells {
                    flush(&mut current, &mut run, run_style);
                    rows.push(std::mem::take(&mut current));
                    used = 0;
                }
                if style != run_style {
                    flush(&mut current, &mut run, run_style);
                    run_style = style;
                }
                if (row, col) == (cursor_row, cursor_col) {
                    cursor_screen_row = rows.len();
                }
                run.push_str(&piece);
                used += cells;
            }
            flush(&mut current, &mut run, run_style);
            rows.push(current);
        }
        (rows, cursor_screen_row)
    }
}

fn flush(line: &mut Line<'static>, run: &mut String, style: Style) {
    if !run.is_empty() {
        line.spans.push(Span::styled(std::mem::take(run), style));
    }
}

impl Widget for &Editor {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let block = Block::bordered()
            .title(Span::styled(self.title.as_str(), self.title_style))
            .title_bottom(" Ctrl-S save · Esc cancel ");
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.width == 0 || inner.height == 0 {
            return;
        }
        let (rows, cursor_row) = self.layout(inner.width as usize);
        let height = inner.height as usize;
        let mut top = self.top.get().min(rows.len().saturating_sub(1));
        if cursor_row < top {
            top = cursor_row;
        } else if cursor_row >= top + height {
            top = cursor_row + 1 - height;
        }
        self.top.set(top);
        let shown: Vec<Line> = rows.into_iter().skip(top).take(height).collect();
        Paragraph::new(shown).render(inner, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_keys(editor: &mut Editor, keys: &[KeyCode]) {
        for &k in keys {
            editor.handle_key(KeyEvent::new(k, KeyModifiers::NONE));
        }
    }

    fn drawn(editor: &Editor, w: u16, h: u16) -> String {
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        editor.render(buf.area, &mut buf);
        let mut out = String::new();
        for y in 0..h {
            for x in 0..w {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    /// The editor is loaded with the text itself, so only the keys typed change it; drawing
    /// shows the control characters as escapes and hands none to the terminal.
    #[test]
    fn an_edit_changes_only_what_was_typed() {
        let original = "go \u{7}\u{1b}[H\thome\r\nnext";
        let mut e = Editor::new(original, original, "the output", &Theme::plain());
        assert_eq!(e.text(), original);
        // Move past "go ", BEL, ESC, "[H" and the tab (8 characters); replace "home" by "HOME".
        type_keys(&mut e, &[KeyCode::Right; 8]);
        type_keys(&mut e, &[KeyCode::Delete; 4]);
        for c in "HOME".chars() {
            type_keys(&mut e, &[KeyCode::Char(c)]);
        }
        assert_eq!(e.text(), "go \u{7}\u{1b}[H\tHOME\r\nnext");
        // Tab types a tab.
        type_keys(&mut e, &[KeyCode::Tab]);
        assert_eq!(e.text(), "go \u{7}\u{1b}[H\tHOME\t\r\nnext");
        let screen = drawn(&e, 60, 5);
        assert!(screen.contains(r"go \u{7}\u{1b}[H    HOME"), "{screen}");
        assert!(screen.contains(r"\r"), "{screen}");
        assert!(
            !screen.chars().any(|c| c.is_control() && c != '\n'),
            "{screen:?}"
        );
    }

    /// A long line wraps, and the view follows the cursor down.
    #[test]
    fn long_lines_wrap_and_the_cursor_stays_in_view() {
        let text = "word ".repeat(40);
        let mut e = Editor::new(&text, &text, "the output", &Theme::plain());
        type_keys(&mut e, &[KeyCode::End]);
        let screen = drawn(&e, 22, 5);
        // 200 characters in rows of 20, three rows shown: the last ones, with the cursor.
        assert!(screen.contains("│word word word word │"), "{screen}");
        assert_eq!(e.top.get(), 8, "{screen}");
    }
}
