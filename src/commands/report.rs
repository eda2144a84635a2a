//! The report after each evaluation: gathers the expert decisions (from the annotation
//! database), the stages' plots and markers, and has `distill::report` write `report.md` and
//! `report.html`.

use anyhow::Result;
use datasets::config::Normalize;
use datasets::prepare;
use datasets::rundir::RunDir;
use distill::evaluate::{EvalRow, FINETUNED};
use distill::fit;
use distill::report::{ExpertUse, Plot, Report};

use crate::output::Output;

/// The stages in loop order.
const STAGES: &[&str] = &[
    prepare::STAGE,
    fit::TEACHER,
    distill::synth::STAGE,
    fit::STUDENT,
    fit::BASELINE,
    distill::candidates::STAGE,
    FINETUNED,
];

/// The name the report gives a stage (the training stages' are the plots' own).
fn stage_name(stage: &str) -> &str {
    match stage {
        s if s == prepare::STAGE => "data",
        s if s == distill::synth::STAGE => "synthetic set",
        s if s == distill::candidates::STAGE => "review candidates",
        s => fit::stage_label(s),
    }
}

/// A count read from a stage marker's JSON, as `12 rows` (or `?` when it is not there).
fn counted(v: &serde_json::Value, noun: &str) -> String {
    v.as_u64()
        .map_or_else(|| format!("? {noun}s"), |n| datasets::text::count(n, noun))
}

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
    for stage in STAGES {
        let name = stage_name(stage);
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
                let mut line = format!(
                    "{} read, {} kept",
                    counted(&set["rows_in"], "row"),
                    set["rows"]
                        .as_u64()
                        .map_or("?".into(), datasets::text::thousands)
                );
                for f in set["filters"].as_array().into_iter().flatten() {
                    line.push_str(&format!(
                        " · {}: removed {}",
                        f["name"].as_str().unwrap_or("?"),
                        f["removed"]
                            .as_u64()
                            .map_or("?".into(), datasets::text::thousands)
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
                    "{}, {}, {}",
                    datasets::text::count(n, "row"),
                    counted(&summary["steps"], "step"),
                    summary["objective"].as_str().unwrap_or("")
                ),
            ));
        } else if let Some(n) = summary["rows"].as_u64() {
            provenance.push((format!("{name}: rows"), datasets::text::thousands(n)));
        }
        for (file, what) in fit::PLOTS {
            let path = dir.join(file);
            if path.is_file() {
                plots.push(Plot {
                    title: fit::plot_title(stage, what),
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
                datasets::text::count(e.decisions, "decision"),
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
        normalize: Normalize::describe(&loaded.config.eval.normalize),
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
