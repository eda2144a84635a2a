//! `g`: the annotation guidelines, a Markdown file named in the config, shown as text with
//! headings and bullets picked out.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use crate::theme::{Theme, shown};

/// The guidelines overlay.
pub struct Guidelines<'a> {
    /// The Markdown text.
    pub text: &'a str,
    /// Where it came from (the title).
    pub source: &'a str,
    /// Lines scrolled.
    pub scroll: u16,
    /// Styles.
    pub theme: &'a Theme,
}

/// Markdown to styled lines: `#` headings bold without the hashes, `-`/`*` bullets as `•`.
pub fn markdown_lines<'a>(text: &str, theme: &Theme) -> Vec<Line<'a>> {
    shown(text)
        .lines()
        .map(|l| {
            let trimmed = l.trim_start();
            if let Some(h) = trimmed.strip_prefix('#') {
                Line::from(Span::styled(
                    h.trim_start_matches('#').trim().to_string(),
                    theme.title,
                ))
            } else if let Some(b) = trimmed
                .strip_prefix("- ")
                .or_else(|| trimmed.strip_prefix("* "))
            {
                let indent = l.len() - trimmed.len();
                Line::raw(format!("{}• {b}", " ".repeat(indent)))
            } else {
                Line::raw(l.to_string())
            }
        })
        .collect()
}

impl Widget for &Guidelines<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        Clear.render(area, buf);
        Paragraph::new(markdown_lines(self.text, self.theme))
            .wrap(Wrap { trim: false })
            .scroll((self.scroll, 0))
            .block(
                Block::bordered()
                    .title(Span::styled(
                        format!(" Guidelines · {} ", crate::theme::shown_line(self.source)),
                        self.theme.title,
                    ))
                    .title_bottom(" ↑ ↓ scroll · Esc or g to close "),
            )
            .render(area, buf);
    }
}
