//! `workbench teacher train CONFIG`, `workbench distill CONFIG` and `workbench finetune CONFIG`:
//! one training stage each, after checking that the stages it needs are done.

use anyhow::Result;
use datasets::config::TeacherKind;
use datasets::rundir::layout;
use datasets::rundir::{RunDir, StageState};
use distill::synth;

use crate::BadInput;
use crate::cli::TrainArgs;
use crate::output::Output;
use crate::stages;

pub fn teacher_train(out: &Output, args: TrainArgs) -> Result<()> {
    let loaded = super::load_config(&args.run.config)?;
    let run = RunDir::open(&loaded, args.run.force)?;
    stages::data::data_stage(out, &loaded, &run)?;
    let t = &loaded.config.teacher;
    if t.kind == TeacherKind::Openai {
        return Err(BadInput(
            "The config's teacher is an `openai` server, so there is no local teacher to train\n\n\
             hint: set `teacher.kind = \"local\"` (without `teacher.path`) to train one on the \
             gold set"
                .into(),
        )
        .into());
    }
    if let Some(p) = &t.path {
        return Err(BadInput(format!(
            "`teacher.path` names a checkpoint (`{}`), so the teacher is not trained by the \
             workbench\n\nhint: remove `teacher.path` to train the run's own teacher on the gold \
             set",
            loaded.resolve(p).display()
        ))
        .into());
    }
    stages::teacher::teacher_stage(out, &loaded, &run, args.resume)?;
    out.hint(format!(
        "the teacher is in `{}`; `{}` asks it for the synthetic set",
        run.stage_dir(layout::TEACHER).display(),
        super::command_line("generate", &args.run.config)
    ));
    Ok(())
}

pub fn distill(out: &Output, args: TrainArgs) -> Result<()> {
    let loaded = super::load_config(&args.run.config)?;
    let run = RunDir::open(&loaded, args.run.force)?;
    stages::data::data_stage(out, &loaded, &run)?;
    let hash = loaded.config.stage_hash(synth::SECTIONS);
    let generate = super::command_line("generate", &args.run.config);
    let run_all = super::command_line("run", &args.run.config);
    match run.stage_state(layout::SYNTHETIC, &hash) {
        StageState::Done(_) => {}
        StageState::Stale(_) => {
            return Err(BadInput(format!(
                "The synthetic set in `{}` was made under other settings\n\nhint: run \
                 `{generate}` first (or `{run_all}`)",
                run.stage_dir(layout::SYNTHETIC).display()
            ))
            .into());
        }
        StageState::Missing => {
            return Err(BadInput(format!(
                "There is no synthetic set in `{}` yet\n\nhint: run `{generate}` first (or \
                 `{run_all}`, which runs every stage)",
                run.stage_dir(layout::SYNTHETIC).display()
            ))
            .into());
        }
    }
    stages::student::student_stages(out, &loaded, &run, args.resume)?;
    out.hint(format!(
        "compare the models with `{}`",
        super::command_line("eval", &args.run.config)
    ));
    Ok(())
}

pub fn finetune(out: &Output, args: TrainArgs) -> Result<()> {
    let loaded = super::load_config(&args.run.config)?;
    let run = RunDir::open(&loaded, args.run.force)?;
    stages::data::data_stage(out, &loaded, &run)?;
    let distill = super::command_line("distill", &args.run.config);
    let run_all = super::command_line("run", &args.run.config);
    if !matches!(
        run.stage_state(
            layout::STUDENT,
            &distill::stages::hashes::student_hash(&loaded.config)
        ),
        StageState::Done(_)
    ) {
        return Err(BadInput(format!(
            "There is no distilled student for this config in `{}` yet\n\nhint: run `{distill}` \
             first (or `{run_all}`)",
            run.stage_dir(layout::STUDENT).display()
        ))
        .into());
    }
    stages::finetune::finetune_stage(out, &loaded, &run, args.resume)?;
    out.hint(format!(
        "compare the models (the `distilled+expert` row) with `{}`",
        super::command_line("eval", &args.run.config)
    ));
    Ok(())
}
