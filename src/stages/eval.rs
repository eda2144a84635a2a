//! Evaluation (`runs/<name>/report/eval.md` and `eval.json`): every model the run has, on the
//! eval set, in one table; then the report.

use anyhow::Result;
use datasets::rundir::{RunDir, layout};
use distill::evaluate::{self, EvalRow};

use crate::BadInput;
use crate::output::Output;

/// Every slice `eval.slices` names has eval rows; else one message naming the slice and the
/// slices there are.
pub fn check_slices(wanted: &[String], eval: &distill::recipe::EvalSet) -> Result<()> {
    let present: std::collections::BTreeSet<&str> =
        eval.slices.iter().flatten().map(String::as_str).collect();
    for name in wanted {
        if !present.contains(name.as_str()) {
            let there = if present.is_empty() {
                "none: no eval row has a `slice`".to_string()
            } else {
                present
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(BadInput(format!(
                "`eval.slices` names the slice `{name}`, but no eval row is in it (the eval \
                 set's slices: {there})\n\nhint: fix the name in `eval.slices`, or give the \
                 eval rows a `slice` column"
            ))
            .into());
        }
    }
    Ok(())
}

/// Evaluates every model the run has and writes `report/eval.md` and `report/eval.json`.
/// `config` is how the run was asked for, for the commands the report prints.
pub fn eval_stage(
    out: &Output,
    loaded: &datasets::config::LoadedConfig,
    run: &RunDir,
    config: &crate::cli::ConfigArgs,
) -> Result<Vec<EvalRow>> {
    let data = distill::stages::inputs::read_data(&run.stage_dir(layout::DATA))?;
    check_slices(&loaded.config.eval.slices, &data.eval)?;
    let bar = out.progress("eval", "models", None);
    let rows = evaluate::evaluate(loaded, run.path(), &data.eval, &mut |name| {
        bar.set_message(name.to_string());
        bar.inc(1);
    });
    bar.finish_and_clear();
    let rows = rows?;
    let dir = run.path().join(layout::REPORT);
    std::fs::create_dir_all(&dir)?;
    let table = evaluate::markdown(&rows);
    let md = format!(
        "# Evaluation of `{}`\n\n{}; exact match {}.\n\n{table}",
        loaded.config.run.name,
        datasets::text::count(data.eval.prompts.len() as u64, "eval prompt"),
        datasets::config::Normalize::describe(&loaded.config.eval.normalize)
    );
    datasets::atomic::write_file(dir.join("eval.md"), md.as_bytes())?;
    let json = serde_json::to_string_pretty(&serde_json::json!({ "rows": rows }))?;
    datasets::atomic::write_file(dir.join("eval.json"), json.as_bytes())?;
    for r in rows.iter().filter(|r| r.too_long > 0) {
        out.say(format!("WARNING: {}.", too_long_warning(r)));
    }
    out.say(format!(
        "eval: {} on {}; table in `{}`",
        datasets::text::count(rows.len() as u64, "model"),
        datasets::text::count(data.eval.prompts.len() as u64, "prompt"),
        dir.join("eval.md").display()
    ));
    let finetune = crate::commands::command_line("finetune", config);
    super::report::write_report(out, loaded, run, &rows, data.eval.prompts.len(), &finetune)?;
    Ok(rows)
}

/// What the table does not show of a model that cannot read some eval prompts whole (a
/// phrase: the report ends it).
pub fn too_long_warning(r: &EvalRow) -> String {
    format!(
        "`{}` gave no answer to {} of the {} eval prompts: they fill every position the model \
         has, so they count as wrong. A model with more positions, or shorter eval prompts, is \
         measured on them all",
        r.model,
        datasets::text::thousands(r.too_long as u64),
        datasets::text::thousands(r.rows as u64),
    )
}
