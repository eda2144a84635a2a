//! `workbench run CONFIG`: the whole loop, stage by stage, re-entrant.
//!
//! Stages built so far: `data`, `teacher` (trained on the gold set when the teacher is local and
//! `teacher.path` is not set), `synthetic` (generation), `student` and `gold-only` (distillation
//! and its baseline) and evaluation. Expert review runs alone (`workbench annotate`); the loop's
//! candidates, the simulated expert, the fine-tune and the report land next (see the README's
//! status table); until they do, `run` stops after evaluation and says so.

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
    if teacher.kind == TeacherKind::Local && teacher.path.is_none() {
        super::train::teacher_stage(out, &loaded, &run, false)?;
    }
    super::generate::synthetic_stage(out, &loaded, &run)?;
    super::train::student_stages(out, &loaded, &run, false)?;
    let rows = super::eval::eval_stage(out, &loaded, &run)?;
    out.data(&distill::evaluate::markdown(&rows))?;
    out.say("The fine-tune and report stages are not built yet; `run` stops after evaluation.");
    out.hint(format!(
        "review the synthetic set in the terminal with `workbench annotate {}`; export it with \
         `workbench datasets export {} --kind samples --out DIR`",
        run.path().display(),
        run.stage_dir(distill::synth::STAGE).display()
    ));
    Ok(())
}
