//! What every training stage shares: checkpoints to resume from, a progress bar over steps, the
//! summary line, and the stage folder that appears whole when training is done.

use anyhow::Result;
use datasets::config::LoadedConfig;
use datasets::rundir::{RunDir, layout};
use distill::train::StepLog;
use distill::train::job::{Checkpoints, FitSummary};

use crate::output::{Output, thousands};

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
    if let Some(step) = s.kept_step {
        line.push_str(&format!(
            " (kept the weights of step {step}, its best evaluation; the figures are that \
             step's)"
        ));
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

/// What a stage's training call gets: its checkpoints, its (temporary) directory, the run's config
/// hash and the step reporter.
pub type Train<'a> = dyn FnOnce(
        &Checkpoints,
        &std::path::Path,
        &str,
        &mut dyn FnMut(&StepLog),
    ) -> distill::Result<FitSummary>
    + 'a;

/// Runs one training stage unless it is up to date: the stage directory appears whole when it is
/// done, and the step checkpoints are removed then (kept, and named, when it fails).
#[allow(clippy::too_many_arguments)]
pub fn training_stage(
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
    if !super::must_run(out, run, stage_name, stage_name, hash, "training it again") {
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
