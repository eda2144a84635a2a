//! The run's report: `report/report.md` and a self-contained `report/report.html` (the plots
//! inline, no external files or scripts), written after every evaluation.
//!
//! What it says: the headline table (teacher · gold-only · distilled · distilled+expert: exact
//! match, parameters, tokens/s, and the expert decisions the last row used, saying how many were
//! the simulated expert's), the loss and accuracy plots of every trained stage, and provenance
//! (the config hash, the workbench version, each stage's settings hash and time, and the rows of
//! each data set after each filter).

use std::path::{Path, PathBuf};

use datasets::text::count;

use crate::evaluate::{EvalRow, params, slice_names};
use crate::{Error, Result};

/// The expert decisions the fine-tuned student learned from.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExpertUse {
    /// Decisions in force, skips aside.
    pub decisions: u64,
    /// How many of them the simulated expert made.
    pub simulated: u64,
    /// The annotators, by name.
    pub annotators: Vec<String>,
}

/// A plot of one stage.
#[derive(Debug, Clone)]
pub struct Plot {
    /// What it shows, e.g. `student: loss`.
    pub title: String,
    /// The SVG file.
    pub path: PathBuf,
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// The run's name.
    pub run: &'a str,
    /// The evaluation rows.
    pub rows: &'a [EvalRow],
    /// Eval prompts the rows were measured on.
    pub eval_prompts: usize,
    /// How answers were compared, as words: `after trimming surrounding spaces` (see
    /// `datasets::config::Normalize::describe`).
    pub normalize: String,
    /// Expert decisions, when the run has any.
    pub expert: Option<ExpertUse>,
    /// Plots, in stage order.
    pub plots: Vec<Plot>,
    /// `(what, value)` lines: config hash, version, stages, row counts.
    pub provenance: Vec<(String, String)>,
    /// More tables after the models' (the learning curve), each under its title.
    pub tables: Vec<Table>,
    /// Warnings shown above the table (a teacher no better than the gold-only student).
    pub warnings: Vec<String>,
}

/// A table of the report: a title, a sentence on what it shows, a header and rows of cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// The heading above it.
    pub title: String,
    /// What it shows, in a sentence or two.
    pub note: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows of cells, as many as the header has.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The table in Markdown (`|` in cells escaped).
    pub fn markdown(&self) -> String {
        let cell = |c: &String| c.replace('|', "\\|");
        let mut s = format!(
            "| {} |\n|{}\n",
            self.header.iter().map(cell).collect::<Vec<_>>().join(" | "),
            "---|".repeat(self.header.len())
        );
        for row in &self.rows {
            s.push_str(&format!(
                "| {} |\n",
                row.iter().map(cell).collect::<Vec<_>>().join(" | ")
            ));
        }
        s
    }

    fn html(&self) -> String {
        let mut s = format!(
            "<h2>{}</h2>\n<p>{}</p>\n<table><tr>",
            esc(&self.title),
            esc(&self.note)
        );
        for h in &self.header {
            s.push_str(&format!("<th>{}</th>", esc(h)));
        }
        s.push_str("</tr>\n");
        for row in &self.rows {
            s.push_str("<tr>");
            for c in row {
                s.push_str(&format!("<td class=\"n\">{}</td>", esc(c)));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
        s
    }
}

fn expert_cell(r: &Report<'_>, row: &EvalRow) -> String {
    match (&r.expert, row.model.as_str()) {
        (Some(e), "distilled+expert") if e.simulated == e.decisions => {
            format!("{} (simulated expert)", e.decisions)
        }
        (Some(e), "distilled+expert") if e.simulated > 0 => {
            format!("{} ({} by the simulated expert)", e.decisions, e.simulated)
        }
        (Some(e), "distilled+expert") => e.decisions.to_string(),
        _ => "—".into(),
    }
}

/// The Markdown report; plots are linked relative to `report_dir`.
pub fn markdown(r: &Report<'_>, report_dir: &Path) -> String {
    let mut s = format!(
        "# Report of the run `{}`\n\n{}; exact match {}.\n\n\
         | model | exact match | params | tokens/s | expert decisions |\n|---|---:|---:|---:|---:|\n",
        r.run,
        count(r.eval_prompts as u64, "eval prompt"),
        r.normalize
    );
    if !r.warnings.is_empty() {
        let mut w = String::new();
        for warning in &r.warnings {
            w.push_str(&format!("**Warning:** {warning}.\n\n"));
        }
        let at = s.find("| model |").unwrap_or(s.len());
        s.insert_str(at, &w);
    }
    for row in r.rows {
        s.push_str(&format!(
            "| {} | {:.1}% | {} | {:.0} | {} |\n",
            row.model,
            100.0 * row.exact_match,
            params(row.params),
            row.tokens_per_s,
            expert_cell(r, row)
        ));
    }
    let slices = slice_names(r.rows);
    if !slices.is_empty() {
        s.push_str("\nExact match by slice of the eval set:\n\n| model |");
        for name in &slices {
            s.push_str(&format!(" {} |", name.replace('|', "\\|")));
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(slices.len()));
        s.push('\n');
        for row in r.rows {
            s.push_str(&format!("| {} |", row.model));
            for name in &slices {
                s.push_str(&format!(" {} |", slice_cell(row, name)));
            }
            s.push('\n');
        }
    }
    if let Some(e) = &r.expert
        && e.simulated > 0
    {
        s.push_str(&format!(
            "\n{} of the {} were made by the **simulated expert**, which answers from the \
             references (not a person).\n",
            e.simulated,
            count(e.decisions, "expert decision")
        ));
    }
    for t in &r.tables {
        s.push_str(&format!(
            "\n## {}\n\n{}\n\n{}",
            t.title,
            t.note,
            t.markdown()
        ));
    }
    if !r.plots.is_empty() {
        s.push_str("\n## Plots\n\n");
        for p in &r.plots {
            let rel = relative(&p.path, report_dir);
            s.push_str(&format!("![{}]({})\n\n", p.title, rel.display()));
        }
    }
    s.push_str("## Provenance\n\n| | |\n|---|---|\n");
    for (k, v) in &r.provenance {
        s.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
    }
    s
}

/// `path` relative to `dir` when both are under the run directory (`../student/loss.svg`).
fn relative(path: &Path, dir: &Path) -> PathBuf {
    match (path.parent(), dir.parent()) {
        (Some(p), Some(run)) if p.parent() == Some(run) => Path::new("..")
            .join(p.file_name().unwrap_or_default())
            .join(path.file_name().unwrap_or_default()),
        _ => path.to_path_buf(),
    }
}

/// Text made safe inside HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The self-contained HTML report (plots inline).
pub fn html(r: &Report<'_>) -> Result<String> {
    let mut s = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Report of {run}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.3rem .6rem}}\
         td.n{{text-align:right}}figure{{display:inline-block;margin:.5rem}}figcaption{{font-size:.9rem;color:#555}}\
         </style></head><body>\n<h1>Report of the run <code>{run}</code></h1>\n\
         <p>{n}; exact match {norm}.</p>\n\
         <table><tr><th>model</th><th>exact match</th><th>params</th><th>tokens/s</th><th>expert decisions</th></tr>\n",
        run = esc(r.run),
        n = count(r.eval_prompts as u64, "eval prompt"),
        norm = esc(&r.normalize)
    );
    if !r.warnings.is_empty() {
        let mut w = String::new();
        for warning in &r.warnings {
            w.push_str(&format!(
                "<p><strong>Warning:</strong> {}.</p>\n",
                esc(warning)
            ));
        }
        let at = s.find("<table>").unwrap_or(s.len());
        s.insert_str(at, &w);
    }
    for row in r.rows {
        s.push_str(&format!(
            "<tr><td>{}</td><td class=\"n\">{:.1}%</td><td class=\"n\">{}</td><td class=\"n\">{:.0}</td><td class=\"n\">{}</td></tr>\n",
            esc(&row.model),
            100.0 * row.exact_match,
            params(row.params),
            row.tokens_per_s,
            esc(&expert_cell(r, row))
        ));
    }
    s.push_str("</table>\n");
    let slices = slice_names(r.rows);
    if !slices.is_empty() {
        s.push_str("<p>Exact match by slice of the eval set:</p>\n<table><tr><th>model</th>");
        for name in &slices {
            s.push_str(&format!("<th>{}</th>", esc(name)));
        }
        s.push_str("</tr>\n");
        for row in r.rows {
            s.push_str(&format!("<tr><td>{}</td>", esc(&row.model)));
            for name in &slices {
                s.push_str(&format!("<td class=\"n\">{}</td>", slice_cell(row, name)));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
    }
    if let Some(e) = &r.expert
        && e.simulated > 0
    {
        s.push_str(&format!(
            "<p>{} of the {} were made by the <strong>simulated expert</strong>, which answers \
             from the references (not a person).</p>\n",
            e.simulated,
            count(e.decisions, "expert decision")
        ));
    }
    for t in &r.tables {
        s.push_str(&t.html());
    }
    if !r.plots.is_empty() {
        s.push_str("<h2>Plots</h2>\n");
        for p in &r.plots {
            let svg = std::fs::read_to_string(&p.path).map_err(|e| Error::Read {
                path: p.path.clone(),
                source: e,
            })?;
            // Our own SVG (crate::plot), inlined so the file stands alone.
            s.push_str(&format!(
                "<figure>{}<figcaption>{}</figcaption></figure>\n",
                svg.trim_start_matches(|c| c != '<')
                    .trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
                esc(&p.title)
            ));
        }
    }
    s.push_str("<h2>Provenance</h2>\n<table>\n");
    for (k, v) in &r.provenance {
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            esc(k),
            esc(v)
        ));
    }
    s.push_str("</table>\n</body></html>\n");
    Ok(s)
}

/// Writes `report.md` and `report.html` into `dir` (each to a temporary name, then renamed).
pub fn write(r: &Report<'_>, dir: &Path) -> Result<()> {
    datasets::atomic::write_file(dir.join("report.md"), markdown(r, dir).as_bytes())?;
    datasets::atomic::write_file(dir.join("report.html"), html(r)?.as_bytes())?;
    Ok(())
}

fn slice_cell(row: &EvalRow, slice: &str) -> String {
    row.exact_match_by_slice
        .get(slice)
        .map_or("—".to_string(), |em| format!("{:.1}%", 100.0 * em))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, em: f64) -> EvalRow {
        EvalRow {
            model: model.into(),
            path: PathBuf::from("x"),
            exact_match: em,
            exact_match_by_slice: Default::default(),
            loss: 0.1,
            perplexity: 1.1,
            agreement: None,
            params: 125_000,
            tokens_per_s: 1000.0,
            rows: 10,
            too_long: 0,
        }
    }

    #[test]
    fn the_report_names_the_simulated_expert_and_escapes_text() {
        let dir = tempfile::tempdir().unwrap();
        let rows = [row("distilled", 0.5), row("distilled+expert", 0.6)];
        let report = Report {
            run: "demo",
            rows: &rows,
            eval_prompts: 10,
            normalize: "after trimming surrounding spaces".into(),
            expert: Some(ExpertUse {
                decisions: 12,
                simulated: 12,
                annotators: vec!["simulated-expert".into()],
            }),
            plots: vec![],
            provenance: vec![("source".into(), "<script>a|b</script>".into())],
            tables: vec![Table {
                title: "Learning curve".into(),
                note: "Exact match against decisions.".into(),
                header: vec!["decisions".into(), "ranked: all".into()],
                rows: vec![vec!["0".into(), "<i>|".into()]],
            }],
            warnings: vec!["the teacher is <weak>".into()],
        };
        write(&report, dir.path()).unwrap();
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(
            md.contains("| distilled+expert | 60.0% | 125k | 1000 | 12 (simulated expert) |"),
            "{md}"
        );
        assert!(md.contains("simulated expert"), "{md}");
        assert!(md.contains("a\\|b"), "{md}");
        assert!(
            md.contains("10 eval prompts; exact match after trimming surrounding spaces."),
            "{md}"
        );
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("<strong>simulated expert</strong>"), "{html}");
        assert!(
            md.contains("## Learning curve\n\nExact match against decisions.\n\n| decisions | ranked: all |\n|---|---|\n| 0 | <i>\\| |"),
            "{md}"
        );
        assert!(html.contains("<h2>Learning curve</h2>"), "{html}");
        assert!(
            md.contains("**Warning:** the teacher is <weak>.\n\n| model |"),
            "{md}"
        );
        assert!(
            html.contains("<p><strong>Warning:</strong> the teacher is &lt;weak&gt;.</p>"),
            "{html}"
        );
        assert!(html.contains("<td class=\"n\">&lt;i&gt;|</td>"), "{html}");
    }

    /// A plot's title said `student: loss` where its caption said `distilled student: loss`.
    #[test]
    fn every_plot_caption_is_its_title() {
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path().join(datasets::rundir::layout::STUDENT);
        std::fs::create_dir(&stage).unwrap();
        let log: Vec<crate::train::StepLog> = (1..=300)
            .map(|step| crate::train::StepLog {
                step,
                epoch: 0,
                lr: 1e-3,
                loss: 5.0 / step as f64,
                ce: 0.0,
                kd: 0.0,
                tokens: 1,
                graded: 0,
                seconds: 0.0,
                eval_loss: (step % 100 == 0).then(|| 6.0 / step as f64),
                eval_exact: (step % 100 == 0).then_some(0.5),
            })
            .collect();
        crate::train::plots::write_plots(datasets::rundir::layout::STUDENT, &log, &stage).unwrap();
        let plots: Vec<Plot> = crate::train::plots::PLOTS
            .iter()
            .map(|(file, what)| Plot {
                title: crate::train::plots::plot_title(datasets::rundir::layout::STUDENT, what),
                path: stage.join(file),
            })
            .collect();
        let rows = [row("distilled", 0.5)];
        let report = Report {
            run: "demo",
            rows: &rows,
            eval_prompts: 1,
            normalize: "on the answers as written".into(),
            expert: None,
            plots,
            provenance: vec![],
            tables: vec![],
            warnings: vec![],
        };
        let html = html(&report).unwrap();
        for (title, caption) in [
            ("distilled student: loss", "distilled student: loss"),
            (
                "distilled student: exact match on the eval set",
                "distilled student: exact match on the eval set",
            ),
        ] {
            assert!(html.contains(&format!(">{title}</text>")), "{title}");
            assert!(
                html.contains(&format!("<figcaption>{caption}</figcaption>")),
                "{caption}"
            );
        }
        assert!(html.contains("loss (log scale)"), "{html}");
        assert!(html.contains("1 eval prompt;"), "{html}");
        assert!(!html.contains("1 eval prompts"), "{html}");
    }
}
