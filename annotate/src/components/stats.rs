//! `t`: the statistics panel (the same figures as `workbench annotate stats`).

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use crate::stats::Stats;
use crate::theme::{Theme, shown_line};

/// The statistics overlay.
pub struct StatsPanel<'a> {
    /// The figures.
    pub stats: &'a Stats,
    /// Styles.
    pub theme: &'a Theme,
}

/// The figures as lines of text (shared with the CLI's plain output).
pub fn stats_lines(s: &Stats) -> Vec<String> {
    let pct = |n: u64| {
        if s.items == 0 {
            0.0
        } else {
            100.0 * n as f64 / s.items as f64
        }
    };
    let mut out = vec![
        format!(
            "{} items · {} complete ({:.1}%) at {} annotator(s) per item",
            s.items,
            s.complete,
            pct(s.complete),
            s.overlap
        ),
        String::new(),
        format!(
            "{:<12} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
            "annotator", "decided", "accept", "reject", "edit", "skip", "items/h"
        ),
    ];
    for a in &s.annotators {
        let n = |k: &str| a.by_decision.get(k).copied().unwrap_or(0);
        out.push(format!(
            "{:<12} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
            shown_line(&a.annotator),
            a.decided,
            n("accept"),
            n("reject"),
            n("edit"),
            a.skipped,
            a.items_per_hour
                .map_or("—".to_string(), |r| format!("{r:.0}"))
        ));
    }
    out.push(String::new());
    out.push(format!(
        "items decided by 2+ annotators: {}",
        s.overlapping_items
    ));
    for p in &s.pairs {
        out.push(format!(
            "Cohen's κ {} × {} on {} items: {}",
            shown_line(&p.a),
            shown_line(&p.b),
            p.items,
            p.kappa
                .map_or("undefined".to_string(), |k| format!("{k:.3}"))
        ));
    }
    out.push(format!(
        "Krippendorff's α (nominal, all annotators): {}",
        s.alpha.map_or(
            "undefined (needs items decided by 2+ annotators with different labels)".to_string(),
            |a| format!("{a:.3}")
        )
    ));
    out
}

impl Widget for &StatsPanel<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        Clear.render(area, buf);
        let lines: Vec<Line> = stats_lines(self.stats).into_iter().map(Line::raw).collect();
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(
                Block::bordered()
                    .title(Span::styled(" Statistics ", self.theme.title))
                    .title_bottom(" Esc or t to close "),
            )
            .render(area, buf);
    }
}
