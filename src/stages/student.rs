//! The distilled student (`runs/<name>/student/`) and the gold-only baseline
//! (`runs/<name>/gold-only/`): the same student, the same steps, with and without the teacher.

use anyhow::Result;
use datasets::config::LoadedConfig;
use datasets::rundir::{RunDir, layout};

use crate::output::Output;

/// Distils the student and trains the gold-only baseline, each unless up to date.
pub fn student_stages(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
    resume: bool,
) -> Result<()> {
    let c = &loaded.config;
    let data = distill::stages::inputs::read_data(&run.stage_dir(layout::DATA))?;
    let synthetic_dir = run.stage_dir(layout::SYNTHETIC);
    let run_dir = run.path();
    super::training::training_stage(
        out,
        loaded,
        run,
        layout::STUDENT,
        "distill",
        &distill::stages::hashes::student_hash(c),
        c.distill.train.steps,
        resume,
        Box::new(|ck, dir, hash, report| {
            let synthetic =
                datasets::Set::open(&synthetic_dir)?.read_all::<datasets::Sample>(None)?;
            distill::stages::student::distill_student(
                loaded, run_dir, &data, &synthetic, ck, dir, hash, report,
            )
        }),
    )?;
    if !c.distill.baseline {
        return Ok(());
    }
    super::training::training_stage(
        out,
        loaded,
        run,
        layout::BASELINE,
        "gold-only",
        &distill::stages::hashes::baseline_hash(c),
        c.distill.train.steps,
        false,
        Box::new(|ck, dir, hash, report| {
            distill::stages::student::train_baseline(loaded, run_dir, &data, ck, dir, hash, report)
        }),
    )
}
