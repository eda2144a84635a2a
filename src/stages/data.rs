//! The data stage (`runs/<name>/data/`): the built-in task or the config's files, cleaned and
//! split into the gold, prompt, eval and review sets every later stage reads.

use anyhow::Result;
use datasets::config::LoadedConfig;
use datasets::prepare;
use datasets::rundir::{RunDir, layout};

use crate::output::{Output, thousands};

/// Runs the data stage unless it is up to date.
pub fn data_stage(out: &Output, loaded: &LoadedConfig, run: &RunDir) -> Result<()> {
    let hash = loaded.config.stage_hash(prepare::SECTIONS);
    if !super::must_run(out, run, layout::DATA, "data", &hash, "redoing it") {
        return Ok(());
    }
    let stage = run.begin(layout::DATA, &hash)?;
    let bar = out.progress("data", "rows", None);
    let summary = prepare::prepare(loaded, stage.path(), run.config_hash(), &mut |name, n| {
        bar.set_prefix(format!("data: {name}"));
        bar.set_position(n);
    })?;
    bar.finish_and_clear();
    for set in &summary.sets {
        if set.name == "validation" {
            out.say(format!(
                "data: validation {} held out of the {} cleaned eval rows \
                 (`data.validation_share`): training is evaluated on them and the fine-tuned \
                 student compared on them, so the eval set chooses nothing",
                datasets::text::count(set.rows, "row"),
                thousands(set.rows_in),
            ));
            continue;
        }
        out.say(format!(
            "data: {} {} (of {} from {})",
            set.name,
            datasets::text::count(set.rows, "row"),
            thousands(set.rows_in),
            summary.source
        ));
        match &set.answers_from {
            Some(column) if set.answers_in_messages => out.say(format!(
                "  answers read from the last assistant turn of its `{column}` conversations (it \
                 has no `reference` or answer column)"
            )),
            Some(column) => out.say(format!(
                "  answers read from its `{column}` column (it has no `reference` column; \
                 `data.{}.map = {{ reference = \"...\" }}` reads another)",
                set.name
            )),
            None => {}
        }
        for f in &set.filters {
            if f.removed > 0 {
                out.say(format!("  {}: removed {}", f.name, thousands(f.removed)));
            }
        }
    }
    stage.finish(serde_json::to_value(&summary)?)?;
    Ok(())
}
