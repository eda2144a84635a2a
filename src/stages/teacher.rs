//! The teacher stage (`runs/<name>/teacher/`): a local teacher trained on the gold set, when the
//! config names no checkpoint and no server.

use anyhow::Result;
use datasets::config::LoadedConfig;
use datasets::rundir::{RunDir, layout};

use crate::output::Output;

/// Trains the local teacher unless it is up to date.
pub fn teacher_stage(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
    resume: bool,
) -> Result<()> {
    let c = &loaded.config;
    let data = distill::stages::inputs::read_data(&run.stage_dir(layout::DATA))?;
    super::training::training_stage(
        out,
        loaded,
        run,
        layout::TEACHER,
        "teacher",
        &distill::stages::hashes::teacher_hash(c),
        c.teacher.train.steps,
        resume,
        Box::new(|ck, dir, hash, report| {
            distill::stages::teacher::train_teacher(loaded, &data, ck, dir, hash, report)
        }),
    )
}
