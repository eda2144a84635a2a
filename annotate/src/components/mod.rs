//! The pieces of the terminal app. Each draws itself (`impl Widget for &T`, as ratatui's demo2
//! does) and, where it owns keys, handles them and says what happened, as gitui's components do;
//! the [`App`](crate::app::App) routes keys by mode and owns the store.

pub mod diff;
pub mod editor;
pub mod guidelines;
pub mod help;
pub mod item;
pub mod stats;

use ratatui::layout::{Constraint, Flex, Layout, Rect};

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
