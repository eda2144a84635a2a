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
    )?;
    if let Some(warning) = weak_teacher(run) {
        out.say(format!("WARNING: {warning}"));
    }
    Ok(())
}

/// How many points of exact match the teacher must be above the gold-only student to count as
/// clearly better.
pub const TEACHER_MARGIN: f64 = 0.02;

/// A warning when the run's local teacher is not clearly better than the gold-only student
/// (both as their training stages measured them, on the same set): the distilled student then
/// learns the teacher's mistakes for little or nothing.
pub fn weak_teacher(run: &RunDir) -> Option<String> {
    use distill::train::job::FitSummary;
    let em = |stage: &str| run.marker(stage)?.summary_as::<FitSummary>()?.exact_match;
    let (teacher, baseline) = (em(layout::TEACHER)?, em(layout::BASELINE)?);
    (teacher < baseline + TEACHER_MARGIN).then(|| {
        format!(
            "the teacher ({:.1}% exact match) is not clearly better than the gold-only student \
             ({:.1}%, trained on the gold rows alone), so distilling it teaches the student the \
             teacher's mistakes for little gain; a stronger teacher (more steps or gold rows, a \
             larger `teacher.architecture`, or a pretrained one), or the gold-only student \
             instead, is the better bet",
            100.0 * teacher,
            100.0 * baseline
        )
    })
}
