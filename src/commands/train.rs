//! `workbench teacher train CONFIG` and `workbench distill CONFIG`: the training stages.

use anyhow::Result;
use datasets::config::{LoadedConfig, TeacherKind};
use datasets::rundir::layout;
use datasets::rundir::{RunDir, StageState};
use distill::fit::{self, Checkpoints, FitSummary};
use distill::synth;
use distill::train::StepLog;

use crate::BadInput;
use crate::cli::TrainArgs;
use crate::output::{Output, thousands};

pub fn teacher_train(out: &Output, args: TrainArgs) -> Result<()> {
    let loaded = super::load_config(&args.run.config)?;
    let run = RunDir::open(&loaded, args.run.force)?;
    super::run::data_stage(out, &loaded, &run)?;
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
    teacher_stage(out, &loaded, &run, args.resume)?;
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
    super::run::data_stage(out, &loaded, &run)?;
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
    student_stages(out, &loaded, &run, args.resume)?;
    out.hint(format!(
        "compare the models with `{}`",
        super::command_line("eval", &args.run.config)
    ));
    Ok(())
}

pub fn finetune(out: &Output, args: TrainArgs) -> Result<()> {
    let loaded = super::load_config(&args.run.config)?;
    let run = RunDir::open(&loaded, args.run.force)?;
    super::run::data_stage(out, &loaded, &run)?;
    let distill = super::command_line("distill", &args.run.config);
    let run_all = super::command_line("run", &args.run.config);
    if !matches!(
        run.stage_state(layout::STUDENT, &fit::student_hash(&loaded.config)),
        StageState::Done(_)
    ) {
        return Err(BadInput(format!(
            "There is no distilled student for this config in `{}` yet\n\nhint: run `{distill}` \
             first (or `{run_all}`)",
            run.stage_dir(layout::STUDENT).display()
        ))
        .into());
    }
    finetune_stage(out, &loaded, &run, args.resume)?;
    out.hint(format!(
        "compare the models (the `distilled+expert` row) with `{}`",
        super::command_line("eval", &args.run.config)
    ));
    Ok(())
}

/// The experts' decisions out of `runs/<name>/annotations.db` into `runs/<name>/feedback/`
/// (`sft/` and `preference/`), read back as rows.
pub fn export_feedback(
    out: &Output,
    run: &RunDir,
) -> Result<(Vec<datasets::SftRow>, Vec<datasets::PreferenceRow>)> {
    let db = run.path().join(annotate::store::DB_FILE);
    if !db.is_file() {
        return Err(BadInput(format!(
            "There are no expert decisions for this run yet (no `{}`)\n\nhint: review with \
             `workbench annotate {}`",
            db.display(),
            run.path().display()
        ))
        .into());
    }
    let store = annotate::Store::open_existing(&db)?;
    let dir = run.path().join(layout::FEEDBACK);
    let options = |kind: &str| datasets::SetOptions {
        replace: true,
        card: datasets::card::CardInfo {
            title: format!("Expert feedback ({kind})"),
            description: format!(
                "The experts' decisions in `{}` as {kind} rows, in TRL's columns.",
                db.display()
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    let sft = annotate::feedback::export(
        &store,
        datasets::Kind::Sft,
        &dir.join("sft"),
        options("sft"),
    )?;
    let pref = annotate::feedback::export(
        &store,
        datasets::Kind::Preference,
        &dir.join("preference"),
        options("preference"),
    )?;
    out.say(format!(
        "feedback: {} in force → {}, {} in `{}`",
        datasets::text::count(sft.decisions, "decision"),
        datasets::text::count(sft.set.rows, "SFT row"),
        datasets::text::count(pref.set.rows, "preference pair"),
        dir.display()
    ));
    let sft_rows = datasets::Set::open(dir.join("sft"))?.read_all(None)?;
    let pref_rows = datasets::Set::open(dir.join("preference"))?.read_all(None)?;
    Ok((sft_rows, pref_rows))
}

/// Fine-tunes the distilled student on the experts' feedback unless it is up to date.
pub fn finetune_stage(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
    resume: bool,
) -> Result<()> {
    let c = &loaded.config;
    let (sft, preference) = export_feedback(out, run)?;
    let decisions = sft.len() + preference.len();
    if decisions < c.finetune.min_decisions {
        out.say(format!(
            "finetune: warning: only {} expert {} to learn from (`finetune.min_decisions` is {}); \
             a fine-tune on so few rarely lifts a student and can lower it. {}",
            thousands(decisions as u64),
            if decisions == 1 { "answer" } else { "answers" },
            c.finetune.min_decisions,
            match c.finetune.keep {
                datasets::config::KeepStudent::Better => {
                    "The run keeps the fine-tuned student only if it scores at least as well as \
                     the distilled one (`finetune.keep = \"better\"`)."
                }
                datasets::config::KeepStudent::Finetuned => {
                    "`finetune.keep = \"finetuned\"` keeps it whatever it scores."
                }
            }
        ));
    }
    let data = fit::read_data(&run.stage_dir(layout::DATA))?;
    let synthetic_dir = run.stage_dir(layout::SYNTHETIC);
    let run_dir = run.path();
    let hash = fit::finetune_hash(c, &fit::feedback_digest(&sft, &preference));
    training_stage(
        out,
        loaded,
        run,
        layout::FINETUNED,
        "finetune",
        &hash,
        c.finetune.train.steps,
        resume,
        Box::new(|ck, dir, hash, report| {
            let synthetic = if synthetic_dir.join("data").is_dir() {
                datasets::Set::open(&synthetic_dir)?.read_all::<datasets::Sample>(None)?
            } else {
                Vec::new()
            };
            fit::finetune_student(
                loaded,
                run_dir,
                &data,
                &sft,
                &preference,
                &synthetic,
                ck,
                dir,
                hash,
                report,
            )
        }),
    )
}

/// A progress bar over steps, and a plain line per evaluation when stderr is not a terminal.
fn step_reporter<'a>(
    out: &'a Output,
    stage: &'a str,
    steps: usize,
) -> (indicatif::ProgressBar, impl FnMut(&StepLog) + 'a) {
    let bar = out.progress(stage, "steps", Some(steps as u64));
    let b = bar.clone();
    let t0 = std::time::Instant::now();
    let mut tokens = 0usize;
    let mut last_eval = String::new();
    let report = move |s: &StepLog| {
        tokens += s.tokens;
        let rate = tokens as f64 / t0.elapsed().as_secs_f64().max(1e-3);
        if let Some(el) = s.eval_loss {
            last_eval = format!(" · eval loss {el:.3}");
            if let Some(em) = s.eval_exact {
                last_eval.push_str(&format!(" · exact match {:.1}%", 100.0 * em));
            }
            if b.is_hidden() {
                out.say(format!(
                    "{stage}: step {}/{steps} · loss {:.3}{last_eval}",
                    s.step, s.loss
                ));
            }
        }
        b.set_position(s.step as u64);
        b.set_message(format!(
            "· loss {:.3}{last_eval} · {rate:.0} tokens/s",
            s.loss
        ));
    };
    (bar, report)
}

fn say_summary(out: &Output, s: &FitSummary, dir: &std::path::Path) {
    let mut line = format!(
        "{}: {} on {}",
        s.stage,
        datasets::text::count(s.steps as u64, "step"),
        datasets::text::count(s.train_rows as u64, "row")
    );
    if s.skipped_rows > 0 {
        line.push_str(&format!(" ({} left out)", thousands(s.skipped_rows as u64)));
    }
    line.push_str(&format!(
        ", {} params, {} · loss {:.3}",
        distill::evaluate::params(s.params),
        s.objective,
        s.final_loss
    ));
    if let Some(el) = s.eval_loss {
        line.push_str(&format!(" · eval loss {el:.3}"));
    }
    if let Some(em) = s.exact_match {
        line.push_str(&format!(" · exact match {:.1}%", 100.0 * em));
    }
    line.push_str(&format!(
        " · {:.0}s, {:.0} tokens/s",
        s.seconds, s.tokens_per_s
    ));
    if let Some(r) = s.resumed_from {
        line.push_str(&format!(" (resumed from step {r})"));
    }
    if s.stopped_early {
        line.push_str(" (stopped early)");
    }
    out.say(line);
    out.say(format!(
        "  model, metrics.parquet, loss.svg, exact_match.svg in `{}`",
        dir.display()
    ));
    if let Some(c) = &s.compared {
        let (d, f) = (
            100.0 * c.distilled_exact_match,
            100.0 * c.finetuned_exact_match,
        );
        if c.kept && f >= d {
            out.say(format!(
                "  the fine-tune moved exact match from {d:.1}% to {f:.1}%: the fine-tuned \
                 student is the run's final student"
            ));
        } else if c.kept {
            out.say(format!(
                "  WARNING: the fine-tune LOWERED exact match from {d:.1}% to {f:.1}%, and \
                 `finetune.keep = \"finetuned\"` keeps it as the run's final student anyway"
            ));
        } else {
            out.say(format!(
                "  WARNING: the fine-tune LOWERED exact match from {d:.1}% to {f:.1}%, so it is \
                 NOT the run's final student: the distilled student (`{}`) stays final. The \
                 fine-tuned one is kept for inspection in `{}`.",
                dir.parent().unwrap_or(dir).join(&c.final_student).display(),
                dir.display()
            ));
            out.hint(
                "more expert decisions (`annotate.budget`), a gentler fine-tune \
                 (`finetune.train.lr`, `finetune.train.steps`) or more replay (`finetune.replay`) \
                 help; `finetune.keep = \"finetuned\"` keeps the fine-tuned student whatever it \
                 scores",
            );
        }
    }
}

/// The run's final student: the fine-tuned one unless the fine-tune left it worse than the
/// distilled student (and `finetune.keep = "better"`), else the distilled one.
pub fn final_student(run: &RunDir) -> std::path::PathBuf {
    let finetuned = layout::FINETUNED;
    let kept = run
        .marker(finetuned)
        .and_then(|m| serde_json::from_value::<FitSummary>(m.summary).ok())
        .and_then(|s| s.compared)
        .map(|c| c.final_student);
    match kept {
        Some(rel) => run.path().join(rel),
        None => run.stage_dir(finetuned),
    }
}

fn checkpoints(
    loaded: &LoadedConfig,
    run: &RunDir,
    stage: &str,
    hash: &str,
    resume: bool,
) -> Checkpoints {
    Checkpoints {
        dir: run.path().join(layout::CHECKPOINTS).join(stage),
        hash: hash.to_string(),
        require_resume: resume,
        config_toml: loaded.config.to_toml(),
    }
}

/// Says where a stage stands; `true` when it must run.
fn must_run(out: &Output, run: &RunDir, stage: &str, hash: &str) -> bool {
    match run.stage_state(stage, hash) {
        StageState::Done(_) => {
            out.say(format!(
                "{stage}: up to date in `{}` (skipped)",
                run.stage_dir(stage).display()
            ));
            false
        }
        StageState::Stale(_) => {
            out.say(format!(
                "{stage}: settings changed since the last run; training it again"
            ));
            true
        }
        StageState::Missing => true,
    }
}

/// What a stage's training call gets: its checkpoints, its (temporary) directory, the run's config
/// hash and the step reporter.
type Train<'a> = dyn FnOnce(
        &Checkpoints,
        &std::path::Path,
        &str,
        &mut dyn FnMut(&StepLog),
    ) -> distill::Result<FitSummary>
    + 'a;

/// Runs one training stage unless it is up to date: the stage directory appears whole when it is
/// done, and the step checkpoints are removed then (kept, and named, when it fails).
#[allow(clippy::too_many_arguments)]
fn training_stage(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
    stage_name: &str,
    label: &str,
    hash: &str,
    steps: usize,
    resume: bool,
    train: Box<Train<'_>>,
) -> Result<()> {
    if !must_run(out, run, stage_name, hash) {
        return Ok(());
    }
    let stage = run.begin(stage_name, hash)?;
    let ck = checkpoints(loaded, run, stage_name, hash, resume);
    let (bar, mut report) = step_reporter(out, label, steps);
    let summary = train(&ck, stage.path(), run.config_hash(), &mut report);
    bar.finish_and_clear();
    let summary = summary.map_err(|e| stopped(e, &ck))?;
    stage.finish(serde_json::to_value(&summary)?)?;
    let _ = std::fs::remove_dir_all(&ck.dir);
    say_summary(out, &summary, &run.stage_dir(stage_name));
    Ok(())
}

/// Trains the local teacher unless it is up to date.
pub fn teacher_stage(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
    resume: bool,
) -> Result<()> {
    let c = &loaded.config;
    let data = fit::read_data(&run.stage_dir(layout::DATA))?;
    training_stage(
        out,
        loaded,
        run,
        layout::TEACHER,
        "teacher",
        &fit::teacher_hash(c),
        c.teacher.train.steps,
        resume,
        Box::new(|ck, dir, hash, report| fit::train_teacher(loaded, &data, ck, dir, hash, report)),
    )
}

fn stopped(e: distill::Error, ck: &Checkpoints) -> anyhow::Error {
    let kept = distill::train::latest_checkpoint(&ck.dir);
    match kept {
        Some((step, _)) => anyhow::Error::from(e).context(format!(
            "training stopped; the checkpoint of step {step} in `{}` is kept and a rerun resumes \
             from it",
            ck.dir.display()
        )),
        None => e.into(),
    }
}

/// Distils the student and trains the gold-only baseline, each unless up to date.
pub fn student_stages(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
    resume: bool,
) -> Result<()> {
    let c = &loaded.config;
    let data = fit::read_data(&run.stage_dir(layout::DATA))?;
    let synthetic_dir = run.stage_dir(layout::SYNTHETIC);
    let run_dir = run.path();
    training_stage(
        out,
        loaded,
        run,
        layout::STUDENT,
        "distill",
        &fit::student_hash(c),
        c.distill.train.steps,
        resume,
        Box::new(|ck, dir, hash, report| {
            let synthetic =
                datasets::Set::open(&synthetic_dir)?.read_all::<datasets::Sample>(None)?;
            fit::distill_student(loaded, run_dir, &data, &synthetic, ck, dir, hash, report)
        }),
    )?;
    if !c.distill.baseline {
        return Ok(());
    }
    training_stage(
        out,
        loaded,
        run,
        layout::BASELINE,
        "gold-only",
        &fit::baseline_hash(c),
        c.distill.train.steps,
        false,
        Box::new(|ck, dir, hash, report| {
            fit::train_baseline(loaded, run_dir, &data, ck, dir, hash, report)
        }),
    )
}
