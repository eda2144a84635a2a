//! The teacher stage: a local teacher trained on every gold row.

use datasets::rundir::layout;
use std::path::{Path, PathBuf};

use datasets::config::{LoadedConfig, TeacherKind};

use crate::Result;
use crate::recipe::seed_of;
use crate::stages::inputs::{RunData, gold_examples, run_tokenizer};
use crate::train::job::{Checkpoints, FitSummary, Job, fit, model_config, train_options};
use crate::train::{Objective, StepLog};

/// Trains the local teacher on the gold set; the checkpoint lands in `stage_dir`.
pub fn train_teacher(
    loaded: &LoadedConfig,
    data: &RunData,
    checkpoints: &Checkpoints,
    stage_dir: &Path,
    config_hash: &str,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitSummary> {
    let c = &loaded.config;
    let t = &c.teacher;
    let device = crate::backend::device(&t.device)?.autodiff();
    let tok = run_tokenizer(c, data)?;
    let gold = gold_examples(&tok, &data.gold, t.architecture.max_positions)?;
    if gold.examples.is_empty() {
        return Err(gold.nothing_to_learn(
            data.gold.len(),
            "the teacher",
            Some("teacher.architecture.max_positions"),
            t.architecture.max_positions,
        ));
    }
    let skipped = gold.skipped();
    let train = gold.examples;
    device.seed(seed_of(c.run.seed, "teacher init"));
    let model = model_config(&t.architecture, tok.vocab_size()).init(&device);
    let options = train_options(
        &t.train,
        seed_of(c.run.seed, "teacher data"),
        Objective::CrossEntropy,
    );
    fit(
        Job {
            stage: layout::TEACHER,
            model,
            tokenizer: &tok,
            train,
            skipped,
            eval: data.selection(),
            options,
            frozen: None,
            grader: None,
            settings: &c.eval,
            objective: "ce".into(),
        },
        &device,
        checkpoints,
        stage_dir,
        stage_dir,
        config_hash,
        on_step,
    )
}

/// The local teacher's checkpoint directory, or `None` for an `openai` teacher.
pub fn teacher_dir(loaded: &LoadedConfig, run_dir: &Path) -> Option<PathBuf> {
    let t = &loaded.config.teacher;
    match t.kind {
        TeacherKind::Openai => None,
        TeacherKind::Local => Some(match &t.path {
            Some(p) => loaded.resolve(p),
            None => run_dir.join(layout::TEACHER),
        }),
    }
}
