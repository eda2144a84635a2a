//! `/`: the search line, typed at the bottom of the screen.

use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Clear, Paragraph, Widget};

use super::KeyOutcome;
use crate::theme::{Theme, shown_line};

/// The search being typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchBox {
    /// The text so far.
    pub input: String,
}

/// What the search line asks of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchAction {
    /// Enter: list what matches (an empty search goes back to the queue).
    Submit(String),
    /// Esc: leave without searching.
    Cancel,
}

impl SearchBox {
    /// Handles one key: printable characters type, Backspace deletes.
    pub fn handle_key(&mut self, key: KeyEvent) -> KeyOutcome<SearchAction> {
        match key.code {
            KeyCode::Esc => KeyOutcome::Act(SearchAction::Cancel),
            KeyCode::Enter => KeyOutcome::Act(SearchAction::Submit(self.input.clone())),
            KeyCode::Backspace => {
                self.input.pop();
                KeyOutcome::Consumed
            }
            KeyCode::Char(c) if !c.is_control() => {
                self.input.push(c);
                KeyOutcome::Consumed
            }
            _ => KeyOutcome::Consumed,
        }
    }
}

/// The search line drawn over the bottom of `area`.
pub struct SearchLine<'a> {
    /// What is typed.
    pub search: &'a SearchBox,
    /// Styles.
    pub theme: &'a Theme,
}

impl Widget for &SearchLine<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [_, line] = Layout::vertical([Constraint::Fill(1), Constraint::Length(3)]).areas(area);
        Clear.render(line, buf);
        Paragraph::new(format!("{}▏", shown_line(&self.search.input)))
            .block(Block::bordered().title(Span::styled(
                " Search prompts and outputs ",
                self.theme.title,
            )))
            .render(line, buf);
    }
}
