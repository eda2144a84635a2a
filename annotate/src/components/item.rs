//! The item view: the prompt, the candidate output(s) side by side, and what the generator knew
//! (teacher logprob, entropy, disagreement, the reference) plus the expert's own decision.

use datasets::{Annotation, Decision, Preference};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};

use crate::store::{Candidate, Item};
use crate::theme::{Theme, shown, shown_line};

/// The rating and preference keyed on an item, saved with the next decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Draft {
    /// `1`–`5`.
    pub rating: Option<u8>,
    /// `←` / `→` / `=`.
    pub preference: Option<Preference>,
}

/// The item view.
pub struct ItemView<'a> {
    /// The item.
    pub item: &'a Item,
    /// This annotator's decision in force on it.
    pub current: Option<&'a Annotation>,
    /// Other annotators' decisions on it.
    pub others: &'a [crate::store::Stored],
    /// Keys pressed on it not yet saved.
    pub draft: Draft,
    /// Lines scrolled in the text panes.
    pub scroll: u16,
    /// Styles.
    pub theme: &'a Theme,
}

impl ItemView<'_> {
    /// The prompt pane's share of the height: enough for a short prompt, at most 40%.
    fn prompt_height(&self, area: Rect) -> u16 {
        let width = area.width.saturating_sub(2).max(1) as usize;
        let lines: usize = shown(&self.item.prompt)
            .lines()
            .map(|l| {
                unicode_width::UnicodeWidthStr::width(l)
                    .div_ceil(width)
                    .max(1)
            })
            .sum();
        u16::try_from(lines)
            .unwrap_or(u16::MAX)
            .saturating_add(2)
            .clamp(3, (area.height * 2 / 5).max(3))
    }

    /// The expert's correction in force, and the label of the output it replaces ("A", "B", or
    /// "Output" on a single output).
    fn correction(&self) -> Option<(&str, &str)> {
        let a = self.current?;
        if a.decision != Decision::Edit {
            return None;
        }
        let text = a.corrected.as_deref()?;
        let label = match (&self.item.b, a.preference) {
            (None, _) => "Output",
            (Some(_), Some(Preference::B)) => "B",
            (Some(_), _) => "A",
        };
        Some((label, text))
    }

    fn candidate(&self, label: &str, c: Option<&Candidate>, preferred: bool) -> Paragraph<'_> {
        let t = self.theme;
        let model = c
            .and_then(|c| c.model.as_deref())
            .map(|m| format!(" · {}", shown_line(m)))
            .unwrap_or_default();
        // A corrected output shows the correction, as stored: that is what goes into training.
        let corrected = self
            .correction()
            .filter(|(l, _)| *l == label)
            .map(|(_, text)| text);
        let mut mark = String::new();
        if corrected.is_some() {
            mark.push_str(" · corrected by you");
        }
        if preferred {
            mark.push_str(" ◀ preferred");
        }
        let title = Span::styled(
            format!(" {label}{model}{mark} "),
            if preferred || corrected.is_some() {
                t.selected
            } else {
                t.title
            },
        );
        let body = match (corrected, c) {
            (Some(text), _) => shown(text),
            (None, Some(c)) if !c.text.is_empty() => shown(&c.text),
            (None, Some(_)) => "(empty output)".to_string(),
            (None, None) => "(no output: press e to write the answer)".to_string(),
        };
        Paragraph::new(body)
            .wrap(Wrap { trim: false })
            .scroll((self.scroll, 0))
            .block(Block::bordered().title(title))
    }

    fn meta_line(&self) -> Line<'_> {
        let t = self.theme;
        let mut spans = Vec::new();
        let mut field = |name: &str, value: String| {
            if !spans.is_empty() {
                spans.push(Span::styled(" · ", t.dim));
            }
            spans.push(Span::styled(format!("{name} "), t.dim));
            spans.push(Span::raw(value));
        };
        if let Some(v) = self.item.disagreement {
            field("disagreement", format!("{v:.3}"));
        }
        if let Some(v) = self.item.entropy {
            field("entropy", format!("{v:.3}"));
        }
        if let Some(v) = self.item.logprob {
            field("logprob", format!("{v:.3}"));
        }
        if let Some(r) = &self.item.reference {
            field("reference", shown_line(r));
        }
        field("item", format!("#{}", self.item.seq));
        Line::from(spans)
    }

    fn decision_line(&self) -> Line<'_> {
        let t = self.theme;
        let mut spans = vec![Span::styled("yours: ", t.dim)];
        match self.current {
            Some(a) => {
                spans.push(Span::styled(a.decision.as_str().to_string(), t.ok));
                if self.correction().is_some() {
                    spans.push(Span::raw(" · your correction is shown (e changes it)"));
                }
                if let Some(r) = a.rating {
                    spans.push(Span::raw(format!(" · rated {r}")));
                }
                if let Some(p) = a.preference {
                    spans.push(Span::raw(format!(" · prefer {}", p.as_str())));
                }
            }
            None => spans.push(Span::raw("undecided")),
        }
        if !self.others.is_empty() {
            spans.push(Span::styled(" · others: ", t.dim));
            let list: Vec<String> = self
                .others
                .iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        shown_line(&s.annotation.annotator),
                        s.annotation.decision.as_str()
                    )
                })
                .collect();
            spans.push(Span::raw(list.join(", ")));
        }
        if self.draft != Draft::default() {
            spans.push(Span::styled("   pending: ", t.dim));
            if let Some(r) = self.draft.rating {
                spans.push(Span::styled(format!("rating {r} "), t.key));
            }
            if let Some(p) = self.draft.preference {
                spans.push(Span::styled(format!("prefer {} ", p.as_str()), t.key));
            }
            spans.push(Span::styled("(saved with a / x / e / s)", t.dim));
        }
        Line::from(spans)
    }
}

impl Widget for &ItemView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [prompt, outputs, meta] = Layout::vertical([
            Constraint::Length(self.prompt_height(area)),
            Constraint::Fill(1),
            Constraint::Length(2),
        ])
        .areas(area);
        Paragraph::new(shown(&self.item.prompt))
            .wrap(Wrap { trim: false })
            .scroll((self.scroll, 0))
            .block(Block::bordered().title(Span::styled(" Prompt ", self.theme.title)))
            .render(prompt, buf);
        let pref = self
            .draft
            .preference
            .or(self.current.and_then(|a| a.preference));
        match &self.item.b {
            Some(b) => {
                let [left, right] =
                    Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(outputs);
                self.candidate("A", self.item.a.as_ref(), pref == Some(Preference::A))
                    .render(left, buf);
                self.candidate("B", Some(b), pref == Some(Preference::B))
                    .render(right, buf);
            }
            None => self
                .candidate("Output", self.item.a.as_ref(), false)
                .render(outputs, buf),
        }
        Paragraph::new(vec![self.meta_line(), self.decision_line()]).render(meta, buf);
    }
}
