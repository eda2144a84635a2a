//! The distilled student (`runs/<name>/student/`) and the gold-only baseline
//! (`runs/<name>/gold-only/`): the same student, the same steps, with and without the teacher.

use anyhow::Result;
use datasets::config::LoadedConfig;
use datasets::rundir::{RunDir, layout};

use crate::output::Output;

/// Distils the student and trains the gold-only baseline, each unless up to date, then says
/// whether the teacher was clearly better than the baseline.
pub fn student_stages(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
    resume: bool,
) -> Result<()> {
    distilled_stage(out, loaded, run, resume)?;
    baseline_stage(out, loaded, run, resume)?;
    if let Some(warning) = weak_teacher(run) {
        out.say(format!("WARNING: {warning}"));
    }
    Ok(())
}

/// Distils the student unless up to date, then each `[[distill.compare]]` student beside it.
pub fn distilled_stage(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
    resume: bool,
) -> Result<()> {
    let c = &loaded.config;
    let data = distill::stages::inputs::read_data(&run.stage_dir(layout::DATA))?;
    let synthetic_dir = run.stage_dir(layout::SYNTHETIC);
    let run_dir = run.path();
    let mut modes = vec![(
        layout::STUDENT.to_string(),
        "distill".to_string(),
        loaded.clone(),
    )];
    for v in &c.distill.compare {
        modes.push((
            layout::student_variant(&v.name),
            format!("distill ({})", v.name),
            LoadedConfig {
                config: c.distill_variant(v),
                path: loaded.path.clone(),
            },
        ));
    }
    for (stage, label, mode) in &modes {
        super::training::training_stage(
            out,
            mode,
            run,
            stage,
            label,
            &distill::stages::hashes::student_hash(&mode.config),
            mode.config.distill.train.steps,
            resume,
            Box::new(|ck, dir, hash, report| {
                let synthetic =
                    datasets::Set::open(&synthetic_dir)?.read_all::<datasets::Sample>(None)?;
                distill::stages::student::distill_student(
                    stage, mode, run_dir, &data, &synthetic, ck, dir, hash, report,
                )
            }),
        )?;
    }
    Ok(())
}

/// Trains the gold-only baseline (when `distill.baseline` asks for it) unless up to date: the
/// same student on the gold rows alone, the bar the teacher must clear. It needs no synthetic
/// set, so `run` trains it before the teacher is asked.
pub fn baseline_stage(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
    resume: bool,
) -> Result<()> {
    let c = &loaded.config;
    if !c.distill.baseline {
        return Ok(());
    }
    let data = distill::stages::inputs::read_data(&run.stage_dir(layout::DATA))?;
    let run_dir = run.path();
    super::training::training_stage(
        out,
        loaded,
        run,
        layout::BASELINE,
        "gold-only",
        &distill::stages::hashes::baseline_hash(c),
        c.distill.train.steps,
        resume,
        Box::new(|ck, dir, hash, report| {
            distill::stages::student::train_baseline(loaded, run_dir, &data, ck, dir, hash, report)
        }),
    )
}

/// The fewest points of exact match the teacher must be above the gold-only student to count as
/// clearly better, however many rows they were measured on.
pub const TEACHER_MARGIN: f64 = 0.02;

/// A warning when the run's teacher is not clearly better than the gold-only student: the
/// distilled student then learns the teacher's mistakes for little or nothing. A teacher the run
/// trained is taken at its best evaluation, any other as the generation stage measured it before
/// asking it the pool; see [`weak_against_baseline`].
pub fn weak_teacher(run: &RunDir) -> Option<String> {
    use distill::train::job::FitSummary;
    if let Some(s) = run
        .marker(layout::TEACHER)
        .and_then(|m| m.summary_as::<FitSummary>())
    {
        let em = s.best_exact_match.or(s.exact_match)?;
        return weak_against_baseline(run, em, "at its best evaluation");
    }
    let check = run
        .marker(layout::SYNTHETIC)?
        .summary_as::<distill::synth::Summary>()?
        .teacher_check?;
    weak_against_baseline(
        run,
        check.exact_match,
        &format!("on the {} prompts, asked before the pool", check.set),
    )
}

/// The warning for a teacher of exact match `teacher` (measured `how`) against the gold-only
/// student at its best evaluation, both on the set training is evaluated on (validation, else
/// eval). "Clearly better" means by more than [`TEACHER_MARGIN`] and by more than chance on that
/// many rows would give (a one-sided 95% bound on the difference of two proportions), as a
/// validation set of a hundred rows moves a figure by several points. `None` without a
/// gold-only student.
pub fn weak_against_baseline(run: &RunDir, teacher: f64, how: &str) -> Option<String> {
    use distill::train::job::FitSummary;
    let b = run.marker(layout::BASELINE)?.summary_as::<FitSummary>()?;
    let baseline = b.best_exact_match.or(b.exact_match)?;
    let sets = run
        .marker(layout::DATA)?
        .summary_as::<datasets::prepare::DataSummary>()?
        .sets;
    let rows = ["validation", "eval"]
        .iter()
        .find_map(|name| sets.iter().find(|s| s.name == *name && s.rows > 0))?
        .rows as f64;
    let spread = (teacher * (1.0 - teacher) + baseline * (1.0 - baseline)) / rows;
    let margin = TEACHER_MARGIN.max(1.645 * spread.sqrt());
    (teacher < baseline + margin).then(|| {
        format!(
            "the teacher ({:.1}% exact match {how}) is not clearly better than the gold-only \
             student ({:.1}% at its best, trained on the gold rows alone; on {} rows a lead \
             under {:.1} points can be chance), so distilling it teaches the student the \
             teacher's mistakes for little gain; a stronger teacher (more steps or gold rows, a \
             larger `teacher.architecture`, or a pretrained one), `generate.min_logprob_mean` \
             to keep only its confident answers, or the gold-only student instead, is the \
             better bet",
            100.0 * teacher,
            100.0 * baseline,
            rows as u64,
            100.0 * margin
        )
    })
}
