//! `workbench run CONFIG`: the whole loop, stage by stage, re-entrant.
//!
//! Stages built so far: `data`, `teacher` (trained on the gold set when the teacher is local and
//! `teacher.path` is not set), `synthetic` (generation), `student` and `gold-only` (distillation
//! and its baseline), evaluation, and, once the run has expert decisions (`workbench annotate`
//! writes them to `runs/<name>/annotations.db`), the expert fine-tune and evaluation again. Without
//! decisions, `run` stops after the first evaluation and prints the `workbench annotate` command;
//! run it again afterwards and it continues. The loop's own candidates (on prompts the student has
//! not seen), the simulated expert and the report land next (see the README's status table).

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

/// Expert decisions in force (skips aside) in the run's annotation database; 0 without one.
fn expert_decisions(run: &RunDir) -> Result<u64> {
    let db = run.path().join(annotate::store::DB_FILE);
    if !db.is_file() {
        return Ok(0);
    }
    let store = annotate::Store::open_existing(&db)?;
    Ok(store
        .decisions()?
        .iter()
        .filter(|d| d.annotation.decision != datasets::Decision::Skip)
        .count() as u64)
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
    let decisions = expert_decisions(&run)?;
    if decisions == 0 {
        let rows = super::eval::eval_stage(out, &loaded, &run)?;
        out.data(&distill::evaluate::markdown(&rows))?;
        out.say(format!(
            "Expert review next: there are no expert decisions for this run yet, so `run` stops \
             here. Review in the terminal with `workbench annotate {}`, then run `workbench run \
             {}` again: it fine-tunes the student on the decisions and evaluates again.",
            run.path().display(),
            args.config.config.display()
        ));
        out.hint(format!(
            "the synthetic set is in `{}`; export it with `workbench datasets export {} --kind \
             samples --out DIR`",
            run.stage_dir(distill::synth::STAGE).display(),
            run.stage_dir(distill::synth::STAGE).display()
        ));
        return Ok(());
    }
    out.say(format!(
        "expert review: {} decisions in force in `{}`",
        thousands(decisions),
        run.path().join(annotate::store::DB_FILE).display()
    ));
    super::train::finetune_stage(out, &loaded, &run, false)?;
    let rows = super::eval::eval_stage(out, &loaded, &run)?;
    out.data(&distill::evaluate::markdown(&rows))?;
    out.say("The report stage is not built yet; the table above is in `report/eval.md`.");
    out.hint(format!(
        "the feedback sets are in `{}`; the final student is in `{}`",
        run.path().join(super::train::FEEDBACK).display(),
        run.stage_dir(distill::evaluate::FINETUNED).display()
    ));
    Ok(())
}
