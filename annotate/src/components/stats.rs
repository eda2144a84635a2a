//! `t`: the statistics panel (the same figures as `workbench annotate stats`).

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use crate::simulated::SIMULATED_EXPERT;
use crate::stats::{IDLE_GAP, MIN_ACTIVE, Stats};
use crate::theme::{Theme, shown_line, width};

/// The statistics overlay.
pub struct StatsPanel<'a> {
    /// The figures.
    pub stats: &'a Stats,
    /// Lines scrolled.
    pub scroll: u16,
    /// Styles.
    pub theme: &'a Theme,
}

/// The widest an annotator's name is shown in the table (longer names are cut with `…`).
const NAME_CELLS: usize = 24;

/// The figures as lines of text (shared with the CLI's plain output).
///
/// Each annotator's row adds up: accept + reject + edit + skip + undecided is the number of items
/// on the first line.
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
    ];
    let headers = ["accept", "reject", "edit", "skip", "undecided", "items/h"];
    let rows: Vec<(String, Vec<String>)> = s
        .annotators
        .iter()
        .map(|a| {
            let n = |k: &str| a.by_decision.get(k).copied().unwrap_or(0).to_string();
            let rate = a
                .items_per_hour
                .map_or("—".to_string(), |r| format!("{r:.0}"));
            (
                cut(&shown_line(&a.annotator), NAME_CELLS),
                vec![
                    n("accept"),
                    n("reject"),
                    n("edit"),
                    a.skipped.to_string(),
                    a.undecided.to_string(),
                    rate,
                ],
            )
        })
        .collect();
    let name_cells = rows
        .iter()
        .map(|(name, _)| width(name))
        .chain([width("annotator")])
        .max()
        .unwrap_or(0);
    let cells: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|(_, r)| width(&r[i]))
                .chain([width(headers[i])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let row = |name: &str, values: &[&str]| {
        let mut line = format!("{name}{}", " ".repeat(name_cells - width(name)));
        for (v, w) in values.iter().zip(&cells) {
            line.push_str(&format!("  {}{v}", " ".repeat(w - width(v))));
        }
        line
    };
    out.push(row("annotator", &headers[..]));
    for (name, values) in &rows {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        out.push(row(name, &values));
    }
    if !rows.is_empty() {
        out.push(format!(
            "Each row adds up to the {} items (undecided: no decision of theirs in force).",
            s.items
        ));
        let (gap, least) = (IDLE_GAP.as_secs() / 60, MIN_ACTIVE.as_secs() / 60);
        out.push(format!(
            "items/h: decisions per hour of active time (skips aside, gaps over {gap} min count \
             as {gap}); none under {least} min."
        ));
    }
    if s.annotators.iter().any(|a| a.simulated) {
        out.push(format!(
            "{SIMULATED_EXPERT} is the simulated expert: a script that answers from the \
             references, not a person."
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

/// `text` in at most `cells` cells, cut with `…` when longer.
fn cut(text: &str, cells: usize) -> String {
    if width(text) <= cells {
        return text.to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        if width(&out) + unicode_width::UnicodeWidthChar::width(c).unwrap_or(0) + 1 > cells {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

impl Widget for &StatsPanel<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        Clear.render(area, buf);
        let lines: Vec<Line> = stats_lines(self.stats).into_iter().map(Line::raw).collect();
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((self.scroll, 0))
            .block(
                Block::bordered()
                    .title(Span::styled(" Statistics ", self.theme.title))
                    .title_bottom(" ↑ ↓ scroll · Esc or t to close "),
            )
            .render(area, buf);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stats::AnnotatorStats;

    fn annotator(name: &str, accept: u64, rate: Option<f64>) -> AnnotatorStats {
        AnnotatorStats {
            annotator: name.into(),
            decided: accept,
            skipped: 0,
            undecided: 296 - accept,
            simulated: name == SIMULATED_EXPERT,
            by_decision: BTreeMap::from([("accept".to_string(), accept)]),
            events: accept,
            active_minutes: 0.0,
            items_per_hour: rate,
        }
    }

    /// Columns line up whatever the names (long, wide), measured in terminal cells.
    #[test]
    fn the_table_lines_up_in_cells() {
        let s = Stats {
            items: 296,
            overlap: 1,
            complete: 61,
            overlapping_items: 0,
            annotators: vec![
                annotator("ana", 12, Some(93.4)),
                annotator("日本語の名前", 9, None),
                annotator(SIMULATED_EXPERT, 40, None),
                annotator("someone.with.a.very.long@email.address", 0, None),
            ],
            pairs: vec![],
            alpha: None,
        };
        let lines = stats_lines(&s);
        let table: Vec<&String> = lines
            .iter()
            .skip_while(|l| !l.starts_with("annotator"))
            .take(5)
            .collect();
        let cells = width(table[0]);
        for row in &table {
            assert_eq!(width(row), cells, "{lines:#?}");
        }
        assert!(table[1].ends_with("     93"), "{lines:#?}");
        assert!(
            table[4].starts_with("someone.with.a.very.lon…"),
            "{lines:#?}"
        );
        assert!(lines.iter().any(|l| l.contains("is the simulated expert")));
    }
}
