//! `?`: every key the app knows, by mode.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use crate::theme::Theme;

/// Keys while reviewing an item: (keys, what they do).
pub const REVIEW_KEYS: &[(&str, &str)] = &[
    (
        "a",
        "accept the output; on A/B, the one chosen first with ← → =",
    ),
    ("x", "reject the output"),
    ("s", "skip: decide later (back of the queue)"),
    (
        "e",
        "edit: correct the output (on A/B, the chosen one, else A)",
    ),
    ("1-5", "rate the output; saved with the decision"),
    ("← → =", "prefer A / B / tie; saved with the decision"),
    ("u", "undo your last decision (in the store too)"),
    ("n p", "next / previous item in the list"),
    ("↑ ↓ PgUp PgDn", "scroll long text"),
    ("/", "search prompts and outputs"),
    (
        "f",
        "filter: queue, accepted, rejected, edited, skipped, all, conflicts",
    ),
    ("Esc", "back to the queue"),
    ("g", "guidelines"),
    ("t", "statistics"),
    ("?", "this help"),
    ("q Ctrl-C", "quit (every decision is already saved)"),
];

/// Keys in the editor and the diff.
pub const EDITOR_KEYS: &[(&str, &str)] = &[
    (
        "Ctrl-S",
        "editor: save and show the diff against the original",
    ),
    ("Tab", "editor: a tab; the correction is stored as typed"),
    ("Esc", "editor: cancel, nothing is saved"),
    ("Enter", "diff: store the correction and go on"),
    ("e", "diff: back to the editor"),
    ("Esc", "diff: cancel, nothing is saved"),
];

/// The help overlay.
pub struct Help<'a> {
    /// Lines scrolled.
    pub scroll: u16,
    /// Styles.
    pub theme: &'a Theme,
}

impl Widget for &Help<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.theme;
        let mut lines = vec![Line::from(Span::styled("Reviewing", t.title))];
        let row = |(k, v): &(&str, &str)| {
            Line::from(vec![
                Span::styled(format!("  {k:<14}"), t.key),
                Span::raw(v.to_string()),
            ])
        };
        lines.extend(REVIEW_KEYS.iter().map(row));
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled("Editing", t.title)));
        lines.extend(EDITOR_KEYS.iter().map(row));
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled(
            "Each decision is written to the database before the next item is shown.",
            t.dim,
        )));
        Clear.render(area, buf);
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((self.scroll, 0))
            .block(
                Block::bordered()
                    .title(Span::styled(" Keys ", t.title))
                    .title_bottom(" ↑ ↓ scroll · Esc or ? to close "),
            )
            .render(area, buf);
    }
}
