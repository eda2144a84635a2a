//! The report after each evaluation: gathers the expert decisions (from the annotation
//! database), the stages' plots and markers, and has `distill::report` write `report.md` and
//! `report.html`.

use anyhow::Result;
use datasets::config::Normalize;
use datasets::prepare::DataSummary;
use datasets::rundir::RunDir;
use datasets::rundir::layout;
use distill::evaluate::EvalRow;
use distill::report::{Plot, Report};
use distill::train::job::FitSummary;

use crate::output::Output;

/// The stages in loop order.
const STAGES: &[&str] = &[
    layout::DATA,
    layout::TEACHER,
    layout::SYNTHETIC,
    layout::STUDENT,
    layout::BASELINE,
    layout::CANDIDATES,
    layout::FINETUNED,
];

/// The name the report gives a stage (the training stages' are the plots' own).
fn stage_name(stage: &str) -> String {
    match stage {
        s if s == layout::DATA => "data".into(),
        s if s == layout::SYNTHETIC => "synthetic set".into(),
        s if s == layout::CANDIDATES => "review candidates".into(),
        s => distill::train::plots::stage_label(s),
    }
}

/// What the report reads of a stage that writes rows (the synthetic set, the candidates).
#[derive(serde::Deserialize)]
struct RowsWritten {
    rows: u64,
}

/// The distilled students side by side, when the config compares modes: how each learned,
/// its exact match, its training time and the teacher tokens it took.
fn modes_table(
    loaded: &datasets::config::LoadedConfig,
    run: &RunDir,
    rows: &[EvalRow],
) -> distill::report::Table {
    let generated = run
        .marker(layout::SYNTHETIC)
        .and_then(|m| m.summary_as::<distill::synth::Summary>())
        .map_or(0, |s| s.usage.completion_tokens);
    let mut modes = vec![("distilled".to_string(), layout::STUDENT.to_string())];
    for v in &loaded.config.distill.compare {
        modes.push((
            format!("distilled ({})", v.name),
            layout::student_variant(&v.name),
        ));
    }
    let thousands = datasets::text::thousands;
    let table_rows = modes
        .iter()
        .map(|(model, stage)| {
            let fit = run.marker(stage).and_then(|m| m.summary_as::<FitSummary>());
            let exact = rows
                .iter()
                .find(|r| &r.model == model)
                .map_or("—".to_string(), |r| {
                    format!("{:.1}%", 100.0 * r.exact_match)
                });
            match fit {
                Some(f) => vec![
                    model.clone(),
                    f.objective,
                    exact,
                    format!("{:.0} s", f.seconds),
                    format!(
                        "{} ({} generated + {} graded)",
                        thousands(generated + f.teacher_tokens),
                        thousands(generated),
                        thousands(f.teacher_tokens)
                    ),
                ],
                None => vec![
                    model.clone(),
                    "not trained yet".into(),
                    exact,
                    "—".into(),
                    "—".into(),
                ],
            }
        })
        .collect();
    distill::report::Table {
        title: "Distillation modes".into(),
        note: "Every distilled student learns from the same synthetic set and starting weights, \
               with the `[distill]` keys of its mode (`[[distill.compare]]`). Teacher tokens: the \
               synthetic set's completion tokens, which every mode learns from, plus the \
               positions the teacher scored during training (full-distribution KD, and the \
               student's own samples on-policy)."
            .into(),
        header: [
            "model",
            "objective",
            "exact match",
            "training",
            "teacher tokens",
        ]
        .map(String::from)
        .to_vec(),
        rows: table_rows,
    }
}

/// Writes `runs/<name>/report/report.md` and `report.html`.
pub fn write_report(
    out: &Output,
    loaded: &datasets::config::LoadedConfig,
    run: &RunDir,
    rows: &[EvalRow],
    eval_prompts: usize,
    finetune: &str,
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
            run.path().join(layout::CONFIG).display().to_string(),
        ),
    ];
    let variants: Vec<String> = loaded
        .config
        .distill
        .compare
        .iter()
        .map(|v| layout::student_variant(&v.name))
        .collect();
    let mut stages: Vec<&str> = STAGES.to_vec();
    let at = stages
        .iter()
        .position(|s| *s == layout::STUDENT)
        .map_or(0, |i| i + 1);
    for (i, v) in variants.iter().enumerate() {
        stages.insert(at + i, v);
    }
    for stage in stages {
        let name = stage_name(stage);
        let dir = run.stage_dir(stage);
        let Some(marker) = run.marker(stage) else {
            continue;
        };
        provenance.push((
            format!("stage: {name}"),
            format!(
                "finished {} · settings hash {}",
                marker.finished_at, marker.stage_hash
            ),
        ));
        if let Some(data) = marker.summary_as::<DataSummary>() {
            for set in data.sets {
                let mut line = format!(
                    "{} read, {} kept",
                    datasets::text::count(set.rows_in, "row"),
                    datasets::text::thousands(set.rows)
                );
                for f in set.filters {
                    line.push_str(&format!(
                        " · {}: removed {}",
                        f.name,
                        datasets::text::thousands(f.removed)
                    ));
                }
                provenance.push((format!("data: {}", set.name), line));
            }
        } else if let Some(fit) = marker.summary_as::<FitSummary>() {
            provenance.push((
                format!("{name}: training"),
                format!(
                    "{}, {}, {}",
                    datasets::text::count(fit.train_rows as u64, "row"),
                    datasets::text::count(fit.steps as u64, "step"),
                    fit.objective
                ),
            ));
        } else if let Some(RowsWritten { rows }) = marker.summary_as() {
            provenance.push((format!("{name}: rows"), datasets::text::thousands(rows)));
        }
        for (file, what) in distill::train::plots::PLOTS {
            let path = dir.join(file);
            if path.is_file() {
                plots.push(Plot {
                    title: distill::train::plots::plot_title(stage, what),
                    path,
                });
            }
        }
    }
    let stored = super::review::store_decisions(loaded, run)?;
    let in_force = stored
        .as_ref()
        .and_then(|(_, decisions)| super::review::expert_use_of(decisions));
    if let Some(e) = &in_force {
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
    let mut tables = Vec::new();
    if !loaded.config.distill.compare.is_empty() {
        tables.push(modes_table(loaded, run, rows));
    }
    if let Some(curve) = super::curve::read_curve(run) {
        tables.push(super::curve::table(&curve));
        let svg = run.stage_dir(layout::CURVE).join("curve.svg");
        if svg.is_file() {
            plots.push(Plot {
                title: "learning curve: exact match against expert decisions".into(),
                path: svg,
            });
        }
    }
    // The fine-tuned student's row counts the decisions it learned from; a fine-tune now would
    // train on other feedback when the store's has changed since.
    let finetuned = run.marker(layout::FINETUNED);
    let learned = finetuned
        .as_ref()
        .and_then(|m| m.summary_as::<FitSummary>())
        .and_then(|s| s.expert);
    let outdated = match (&finetuned, &stored) {
        (Some(m), Some((store, decisions))) => {
            super::review::finetune_hash_of(loaded, store, decisions)? != m.stage_hash
        }
        _ => false,
    };
    let mut warnings: Vec<String> = super::student::weak_teacher(run).into_iter().collect();
    warnings.extend(
        rows.iter()
            .filter(|r| r.too_long > 0)
            .map(super::eval::too_long_warning),
    );
    if let (true, Some(used), Some(now)) = (outdated, &learned, &in_force) {
        warnings.push(format!(
            "The fine-tuned student learned from {}, and the feedback in the store has changed \
             since ({} in force now). `{finetune}` trains it on the feedback as it is",
            datasets::text::count(used.decisions, "expert decision"),
            datasets::text::thousands(now.decisions),
        ));
    }
    let report = Report {
        run: &loaded.config.run.name,
        rows,
        eval_prompts,
        normalize: Normalize::describe(&loaded.config.eval.normalize),
        expert: learned.or(in_force),
        plots,
        provenance,
        tables,
        warnings,
    };
    let dir = run.path().join(layout::REPORT);
    distill::report::write(&report, &dir)?;
    out.say(format!(
        "report: `{}` and `{}`",
        dir.join("report.md").display(),
        dir.join("report.html").display()
    ));
    Ok(())
}
