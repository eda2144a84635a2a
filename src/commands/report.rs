//! The report after each evaluation: gathers the expert decisions (from the annotation
//! database), the stages' plots and markers, and has `distill::report` write `report.md` and
//! `report.html`.

use anyhow::Result;
use datasets::prepare;
use datasets::rundir::RunDir;
use distill::evaluate::{EvalRow, FINETUNED};
use distill::fit;
use distill::report::{ExpertUse, Plot, Report};

use crate::output::Output;

/// The stages in loop order, with the names the report gives them.
const STAGES: &[(&str, &str)] = &[
    (prepare::STAGE, "data"),
    (fit::TEACHER, "teacher"),
    (distill::synth::STAGE, "synthetic set"),
    (fit::STUDENT, "distilled student"),
    (fit::BASELINE, "gold-only student"),
    (distill::candidates::STAGE, "review candidates"),
    (FINETUNED, "distilled+expert student"),
];

fn expert_use(run: &RunDir) -> Result<Option<ExpertUse>> {
    let db = run.path().join(annotate::store::DB_FILE);
    if !db.is_file() {
        return Ok(None);
    }
    let store = annotate::Store::open_existing(&db)?;
    let mut e = ExpertUse::default();
    for d in store.decisions()? {
        let a = d.annotation;
        if a.decision == datasets::Decision::Skip {
            continue;
        }
        e.decisions += 1;
        if a.annotator == annotate::simulated::SIMULATED_EXPERT {
            e.simulated += 1;
        }
        if !e.annotators.contains(&a.annotator) {
            e.annotators.push(a.annotator);
        }
    }
    Ok((e.decisions > 0).then_some(e))
}

/// Writes `runs/<name>/report/report.md` and `report.html`.
pub fn write_report(
    out: &Output,
    loaded: &datasets::config::LoadedConfig,
    run: &RunDir,
    rows: &[EvalRow],
    eval_prompts: usize,
) -> Result<()> {
    let mut plots = Vec::new();
    let mut provenance = vec![
        ("config hash".to_string(), run.config_hash().to_string()),
        (
            "workbench".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (
            "config".to_string(),
            run.path().join("config.toml").display().to_string(),
        ),
    ];
    for (stage, name) in STAGES {
        let dir = run.stage_dir(stage);
        let Ok(text) = std::fs::read_to_string(dir.join("STAGE.json")) else {
            continue;
        };
        let marker: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        provenance.push((
            format!("stage: {name}"),
            format!(
                "finished {} · settings hash {}",
                marker["finished_at"].as_str().unwrap_or("?"),
                marker["stage_hash"].as_str().unwrap_or("?")
            ),
        ));
        let summary = &marker["summary"];
        if *stage == prepare::STAGE {
            for set in summary["sets"].as_array().into_iter().flatten() {
                let mut line = format!("{} rows read, {} kept", set["rows_in"], set["rows"]);
                for f in set["filters"].as_array().into_iter().flatten() {
                    line.push_str(&format!(
                        " · {}: removed {}",
                        f["name"].as_str().unwrap_or("?"),
                        f["removed"]
                    ));
                }
                provenance.push((
                    format!("data: {}", set["name"].as_str().unwrap_or("?")),
                    line,
                ));
            }
        } else if let Some(n) = summary["train_rows"].as_u64() {
            provenance.push((
                format!("{name}: training"),
                format!(
                    "{n} rows, {} steps, {}",
                    summary["steps"],
                    summary["objective"].as_str().unwrap_or("")
                ),
            ));
        } else if let Some(n) = summary["rows"].as_u64() {
            provenance.push((format!("{name}: rows"), n.to_string()));
        }
        for (file, what) in [("loss.svg", "loss"), ("exact_match.svg", "exact match")] {
            let path = dir.join(file);
            if path.is_file() {
                plots.push(Plot {
                    title: format!("{name}: {what}"),
                    path,
                });
            }
        }
    }
    let expert = expert_use(run)?;
    if let Some(e) = &expert {
        provenance.push((
            "expert decisions".into(),
            format!(
                "{} in force by {} ({} by the simulated expert)",
                e.decisions,
                e.annotators
                    .iter()
                    .map(|a| datasets::text::inert_line(a))
                    .collect::<Vec<_>>()
                    .join(", "),
                e.simulated
            ),
        ));
    }
    let report = Report {
        run: &loaded.config.run.name,
        rows,
        eval_prompts,
        normalize: format!("{:?}", loaded.config.eval.normalize),
        expert,
        plots,
        provenance,
    };
    let dir = run.path().join(super::eval::REPORT);
    distill::report::write(&report, &dir)?;
    out.say(format!(
        "report: `{}` and `{}`",
        dir.join("report.md").display(),
        dir.join("report.html").display()
    ));
    Ok(())
}
