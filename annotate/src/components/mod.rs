//! The pieces of the terminal app. Each draws itself (`impl Widget for &T`, as ratatui's demo2
//! does). One that has the focus (the editor, the diff, the search line, an overlay) handles its
//! own keys and answers with a [`KeyOutcome`], as gitui's components do; the
//! [`App`](crate::app::App) gives the key to the component in focus, handles the review's own
//! keys, acts on what the component asks, and owns the store.

pub mod diff;
pub mod editor;
pub mod guidelines;
pub mod help;
pub mod item;
pub mod search;
pub mod stats;

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Flex, Layout, Rect};

/// What a component did with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome<A> {
    /// The component used the key (its own state changed, or it has the focus and the key does
    /// nothing there): the app does nothing more.
    Consumed,
    /// Not the component's key: the app handles it.
    NotConsumed,
    /// The component is done and asks the app to act.
    Act(A),
}

/// An overlay asks to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close;

/// A scrolling overlay (help, guidelines, statistics): ↑ ↓ PgUp PgDn scroll it; Esc, `q` or the
/// key that opened it close it; other keys do nothing while it is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlay {
    /// Lines scrolled.
    pub scroll: u16,
    toggle: char,
}

impl Overlay {
    /// An overlay opened with `toggle`, at its top.
    pub fn new(toggle: char) -> Overlay {
        Overlay { scroll: 0, toggle }
    }

    /// Handles one key.
    pub fn handle_key(&mut self, key: KeyEvent) -> KeyOutcome<Close> {
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => return KeyOutcome::Act(Close),
            KeyCode::Char(c) if c == self.toggle => return KeyOutcome::Act(Close),
            KeyCode::Down | KeyCode::Char('j') => self.scroll = self.scroll.saturating_add(1),
            KeyCode::Up | KeyCode::Char('k') => self.scroll = self.scroll.saturating_sub(1),
            KeyCode::PageDown | KeyCode::Char(' ') => self.scroll = self.scroll.saturating_add(10),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(10),
            _ => {}
        }
        KeyOutcome::Consumed
    }
}

/// A rectangle of `width` × `height` percent centred in `area` (for overlays).
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Percentage(height)])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Percentage(width)])
        .flex(Flex::Center)
        .areas(v);
    h
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::KeyModifiers;

    use super::search::{SearchAction, SearchBox};
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    /// An overlay keeps the keys while it is open: arrows scroll it, its own key closes it, and
    /// a review key (`a`) does nothing rather than decide behind it.
    #[test]
    fn an_overlay_scrolls_closes_and_keeps_the_review_keys() {
        let mut o = Overlay::new('?');
        assert_eq!(o.handle_key(key(KeyCode::Down)), KeyOutcome::Consumed);
        assert_eq!(o.handle_key(key(KeyCode::PageDown)), KeyOutcome::Consumed);
        assert_eq!(o.scroll, 11);
        assert_eq!(o.handle_key(key(KeyCode::Char('a'))), KeyOutcome::Consumed);
        assert_eq!(
            o.handle_key(key(KeyCode::Char('?'))),
            KeyOutcome::Act(Close)
        );
        assert_eq!(
            Overlay::new('t').handle_key(key(KeyCode::Esc)),
            KeyOutcome::Act(Close)
        );
    }

    #[test]
    fn the_search_line_types_deletes_and_submits() {
        let mut s = SearchBox::default();
        for c in "dates".chars() {
            assert_eq!(s.handle_key(key(KeyCode::Char(c))), KeyOutcome::Consumed);
        }
        s.handle_key(key(KeyCode::Backspace));
        assert_eq!(
            s.handle_key(key(KeyCode::Enter)),
            KeyOutcome::Act(SearchAction::Submit("date".into()))
        );
        assert_eq!(
            s.handle_key(key(KeyCode::Esc)),
            KeyOutcome::Act(SearchAction::Cancel)
        );
    }
}
