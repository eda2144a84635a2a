//! After the editor's save: the correction against the original, word by word, before it is
//! stored (Enter stores it). Removed words read `[-old-]`, added ones `{+new+}`, in colour or
//! not.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::KeyOutcome;
use super::editor::Editor;
use crate::diff::{Change, word_counts, word_diff};
use crate::theme::{Theme, shown};

/// A saved correction waiting to be stored: the editor (to go back to), the text and its word
/// diff against the original.
pub struct DiffReview {
    /// The editor, kept to go back to.
    pub editor: Editor,
    /// The corrected text.
    pub text: String,
    /// Its word diff against the original.
    pub changes: Vec<Change>,
}

/// What the diff asks of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffAction {
    /// Enter: store the correction.
    Store,
    /// `e`: back to the editor.
    EditAgain,
    /// Esc: leave without storing.
    Cancel,
}

impl DiffReview {
    /// The diff of what `editor` saved, `text`, against its original.
    pub fn new(editor: Editor, text: String) -> DiffReview {
        let changes = word_diff(&editor.original, &text);
        DiffReview {
            editor,
            text,
            changes,
        }
    }

    /// Handles one key; others do nothing while the diff is shown.
    pub fn handle_key(&mut self, key: KeyEvent) -> KeyOutcome<DiffAction> {
        match key.code {
            KeyCode::Enter => KeyOutcome::Act(DiffAction::Store),
            KeyCode::Char('e') => KeyOutcome::Act(DiffAction::EditAgain),
            KeyCode::Esc => KeyOutcome::Act(DiffAction::Cancel),
            _ => KeyOutcome::Consumed,
        }
    }
}

/// The diff panel.
pub struct DiffView<'a> {
    /// The word-level changes.
    pub changes: &'a [Change],
    /// Styles.
    pub theme: &'a Theme,
}

impl Widget for &DiffView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.theme;
        let mut lines: Vec<Line> = vec![Line::default()];
        for change in self.changes {
            let (text, style, open, close) = match change {
                Change::Same(s) => (s, ratatui::style::Style::new(), "", ""),
                Change::Removed(s) => (s, t.removed, "[-", "-]"),
                Change::Added(s) => (s, t.added, "{+", "+}"),
            };
            // Marked as `git diff --word-diff=plain` does, colour or not: the diff reads the
            // same on a terminal without colour, to a colour-blind reader, and in a capture.
            let text = format!("{open}{}{close}", shown(text));
            // Split on newlines so the runs lay out as the text does.
            for (i, part) in text.split('\n').enumerate() {
                if i > 0 {
                    lines.push(Line::default());
                }
                if !part.is_empty() {
                    let line = lines.last_mut().expect("at least one line");
                    line.spans.push(Span::styled(part.to_string(), style));
                }
            }
        }
        let (removed, added) = word_counts(self.changes);
        let title = if removed + added == 0 {
            " Correction: no change to the words ".to_string()
        } else {
            format!(" Correction: {removed} word(s) removed, {added} added ")
        };
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(
                Block::bordered()
                    .title(Span::styled(title, t.title))
                    .title_bottom(" Enter store it · e edit again · Esc cancel "),
            )
            .render(area, buf);
    }
}
