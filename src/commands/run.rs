//! `workbench run CONFIG`: the whole loop, stage by stage, re-entrant.
//!
//! Stages built so far: `data`. The teacher, generation, distillation, annotation, fine-tune and
//! evaluation stages land next (see the README's status table); until they do, `run` stops after
//! the last built stage and says so.

use anyhow::Result;
use datasets::prepare;
use datasets::rundir::{RunDir, StageState};

use crate::cli::RunArgs;
use crate::output::{Output, thousands};

pub fn run(out: &Output, args: RunArgs) -> Result<()> {
    let loaded = super::load_config(&args.config)?;
    let run = RunDir::open(&loaded, args.force)?;
    tracing::info!(
        "run `{}` in `{}` (config hash {})",
        loaded.config.run.name,
        run.path().display(),
        run.config_hash()
    );

    // Stage: data.
    let hash = loaded.config.stage_hash(prepare::SECTIONS);
    match run.stage_state(prepare::STAGE, &hash) {
        StageState::Done(_) => out.say(format!(
            "data: up to date in `{}` (skipped)",
            run.stage_dir(prepare::STAGE).display()
        )),
        state => {
            if let StageState::Stale(_) = state {
                out.say("data: settings changed since the last run; redoing it");
            }
            let stage = run.begin(prepare::STAGE, &hash)?;
            let bar = out.progress("data", "rows", None);
            let summary =
                prepare::prepare(&loaded, stage.path(), run.config_hash(), &mut |name, n| {
                    bar.set_prefix(format!("data: {name}"));
                    bar.set_position(n);
                })?;
            bar.finish_and_clear();
            for set in &summary.sets {
                out.say(format!(
                    "data: {} {} rows (of {} from {})",
                    set.name,
                    thousands(set.rows),
                    thousands(set.rows_in),
                    summary.source
                ));
                for f in &set.filters {
                    if f.removed > 0 {
                        out.say(format!("  {}: removed {}", f.name, thousands(f.removed)));
                    }
                }
            }
            stage.finish(serde_json::to_value(&summary)?)?;
        }
    }
    let data_dir = run.stage_dir(prepare::STAGE);
    out.say(format!(
        "\nThe data stage is done: sets in `{}` (gold, prompts, eval).",
        data_dir.display()
    ));
    out.say(
        "The next stages (teacher training, generation, distillation, expert review, fine-tune, \
         evaluation) are not built yet; `run` stops here.",
    );
    out.hint(format!(
        "look at a set with `workbench datasets inspect {}`",
        data_dir.join("gold").display()
    ));
    Ok(())
}
