//! `workbench run CONFIG`: the whole loop, stage by stage, re-entrant.
//!
//! Stages built so far: `data` and `synthetic` (generation). Generation runs when the config's
//! teacher is at hand (an `openai` server, or a local checkpoint that exists); the teacher
//! training, distillation, annotation, fine-tune and evaluation stages land next (see the
//! README's status table); until they do, `run` stops after the last stage it can run and says so.

use anyhow::Result;
use datasets::config::{LoadedConfig, TeacherKind};
use datasets::prepare;
use datasets::rundir::{RunDir, StageState};

use crate::cli::RunArgs;
use crate::output::{Output, thousands};

/// Runs the data stage unless it is up to date.
pub fn data_stage(out: &Output, loaded: &LoadedConfig, run: &RunDir) -> Result<()> {
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
                prepare::prepare(loaded, stage.path(), run.config_hash(), &mut |name, n| {
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
    Ok(())
}

pub fn run(out: &Output, args: RunArgs) -> Result<()> {
    let loaded = super::load_config(&args.config)?;
    let run = RunDir::open(&loaded, args.force)?;
    tracing::info!(
        "run `{}` in `{}` (config hash {})",
        loaded.config.run.name,
        run.path().display(),
        run.config_hash()
    );
    data_stage(out, &loaded, &run)?;

    let teacher = &loaded.config.teacher;
    let teacher_dir = match &teacher.path {
        Some(p) => loaded.resolve(p),
        None => distill::synth::default_teacher_dir(run.path()),
    };
    if teacher.kind == TeacherKind::Openai || teacher_dir.is_dir() {
        super::generate::synthetic_stage(out, &loaded, &run)?;
        out.say(
            "\nThe generation stage is done. The next stages (distillation, expert review, \
             fine-tune, evaluation) are not built yet; `run` stops here.",
        );
        out.hint(format!(
            "look at the synthetic set with `workbench datasets inspect {}`",
            run.stage_dir(distill::synth::STAGE).display()
        ));
        return Ok(());
    }
    let data_dir = run.stage_dir(prepare::STAGE);
    out.say(format!(
        "\nThe data stage is done: sets in `{}` (gold, prompts, eval).",
        data_dir.display()
    ));
    out.say(format!(
        "The local teacher `{}` does not exist yet, and teacher training (`workbench teacher \
         train`) is not built yet; `run` stops here.",
        teacher_dir.display()
    ));
    out.hint(
        "point `teacher.path` at a checkpoint, or `teacher.kind = \"openai\"` at a server, and \
         `workbench generate` writes the synthetic set",
    );
    Ok(())
}
