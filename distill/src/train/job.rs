//! A training job end to end: resume from step checkpoints, run the loop, and leave the model in
//! the Hugging Face layout, `metrics.parquet` (one row per step) and the plots in the stage's
//! directory. Step checkpoints go to `runs/<name>/checkpoints/<stage>/step-N/` with a `HASH`
//! file naming the settings they were made under: a killed stage resumes from the newest complete
//! one, and a checkpoint made under other settings is discarded rather than resumed.

use datasets::rundir::layout;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use datasets::config::{Architecture, EvalConfig, TrainConfig};
use datasets::metrics::{self, MetricRow};
use serde::{Deserialize, Serialize};

use crate::data::tokenizer::Tokenizer;
use crate::model::{Model, ModelConfig, checkpoint};
use crate::recipe::EvalSet;
use crate::recipe::{self};
use crate::train::data::Example;
use crate::train::plots::write_plots;
use crate::train::{self, Objective, StepLog, TrainOptions};
use crate::{Error, Result};

/// What a training stage did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitSummary {
    /// `teacher`, `student` or `gold-only`.
    pub stage: String,
    /// Parameters of the model.
    pub params: u64,
    /// Training rows, and how many were left out (no answer, or longer than the model's
    /// positions).
    pub train_rows: usize,
    /// Rows left out.
    pub skipped_rows: usize,
    /// Steps run (fewer than asked when early stopping ended the run).
    pub steps: usize,
    /// The step the run resumed from, if it did.
    pub resumed_from: Option<usize>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// The step whose weights the stage kept, when they are the best evaluation's rather than
    /// the last step's (`keep_best`, early stopping); the eval figures below are that step's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_step: Option<usize>,
    /// Mean training loss of the last 10 steps.
    pub final_loss: f64,
    /// The last eval loss.
    pub eval_loss: Option<f64>,
    /// Exact match on the eval set, at the end.
    pub exact_match: Option<f64>,
    /// The highest exact match any of its evaluations reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_exact_match: Option<f64>,
    /// Seconds of training in this process.
    pub seconds: f64,
    /// Completion tokens per second of training.
    pub tokens_per_s: f64,
    /// Positions the teacher scored during training (full-distribution KD and on-policy
    /// samples), every step included: the teacher's work beyond the synthetic set.
    #[serde(default)]
    pub teacher_tokens: u64,
    /// What the student learned from: `ce`, or `kd (forward_kl, top-k)` and so on.
    pub objective: String,
    /// The expert fine-tune only: how the fine-tuned student compares with the distilled one it
    /// started from, and which of them the run keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared: Option<Comparison>,
    /// The expert fine-tune only: the decisions it learned from (the store may hold more by
    /// the time the report is written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert: Option<crate::report::ExpertUse>,
}

/// The fine-tuned student against the distilled one, on the eval set, with the same settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The distilled student's exact match.
    pub distilled_exact_match: f64,
    /// The fine-tuned student's exact match.
    pub finetuned_exact_match: f64,
    /// Whether the run keeps the fine-tuned student as its final student.
    pub kept: bool,
    /// The run's final student, relative to the run directory.
    pub final_student: String,
}

/// A training run to do.
pub struct Job<'a> {
    /// `teacher`, `student` or `gold-only`.
    pub stage: &'a str,
    /// The model to train (weights on any device; moved to the training device).
    pub model: Model,
    /// Its tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// Training examples.
    pub train: Vec<Example>,
    /// Rows left out of `train`.
    pub skipped: usize,
    /// The eval set.
    pub eval: &'a EvalSet,
    /// Loop settings.
    pub options: TrainOptions,
    /// A frozen model the loss reads: the local teacher for full-distribution KD, or the
    /// reference for DPO (the distilled student the fine-tune starts from).
    pub frozen: Option<&'a Model>,
    /// What grades the student's own samples in on-policy distillation, when it is not `frozen`
    /// (a local teacher's top-k, or a server's).
    pub grader: Option<&'a mut crate::teacher::grade::Grader>,
    /// The `[eval]` normaliser and decoding settings.
    pub settings: &'a EvalConfig,
    /// Human-readable objective for the summary.
    pub objective: String,
}

/// Where a stage's checkpoints are, and whether it must resume.
pub struct Checkpoints {
    /// `runs/<name>/checkpoints/<stage>`.
    pub dir: PathBuf,
    /// The stage's settings hash; checkpoints under another hash are discarded.
    pub hash: String,
    /// `--resume`: fail when there is nothing to resume.
    pub require_resume: bool,
    /// The resolved config, kept beside the checkpoints.
    pub config_toml: String,
}

/// Whether `name` is one the workbench gives an entry of a checkpoint folder: its `HASH` and
/// `config.toml`, a step (`step-N`, `best-step-N`, and their `.tmp` while written), or the
/// temporary of an atomic write (`.NAME.tmp-PID-N`).
fn is_checkpoint_entry(name: &str) -> bool {
    let step = |rest: &str| {
        let n = rest.strip_suffix(".tmp").unwrap_or(rest);
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    };
    matches!(name, "HASH" | "config.toml")
        || name.strip_prefix("step-").is_some_and(step)
        || name.strip_prefix("best-step-").is_some_and(step)
        || [".HASH.", ".config.toml."]
            .iter()
            .any(|p| name.starts_with(p))
}

/// Opens the checkpoint directory: discards checkpoints made under other settings and returns
/// the newest complete step.
pub(crate) fn open_checkpoints(c: &Checkpoints) -> Result<Option<usize>> {
    let hash_file = c.dir.join("HASH");
    let old = std::fs::read_to_string(&hash_file).ok();
    if old.is_none() && c.dir.exists() {
        // Without its HASH (a clear cut short leaves ours so), a folder is cleared only when
        // everything in it has the names the workbench gives checkpoints.
        if let Some(name) = datasets::atomic::foreign_entry(&c.dir, is_checkpoint_entry)? {
            return Err(Error::invalid(format!(
                "`{}` holds `{name}`, which the workbench does not write there, and no `HASH`, \
                 so it will not clear that folder for checkpoints; nothing was changed\n\nhint: \
                 move it away, or set `[run] name` to a run of its own",
                c.dir.display()
            )));
        }
    }
    if old.as_deref().map(str::trim) != Some(c.hash.as_str()) && c.dir.exists() {
        if c.require_resume && old.is_some() {
            return Err(Error::invalid(format!(
                "The checkpoints in `{}` were made under other settings, so they cannot be \
                 resumed\n\nhint: run without --resume to start over",
                c.dir.display()
            )));
        }
        std::fs::remove_dir_all(&c.dir).map_err(|e| Error::Write {
            path: c.dir.clone(),
            source: e,
        })?;
    }
    std::fs::create_dir_all(&c.dir).map_err(|e| Error::Write {
        path: c.dir.clone(),
        source: e,
    })?;
    datasets::atomic::write_file(&hash_file, c.hash.as_bytes())?;
    datasets::atomic::write_file(c.dir.join("config.toml"), c.config_toml.as_bytes())?;
    let latest = train::latest_checkpoint(&c.dir).map(|(n, _)| n);
    if c.require_resume && latest.is_none() {
        return Err(Error::invalid(format!(
            "--resume: there is no complete checkpoint in `{}`\n\nhint: run without --resume",
            c.dir.display()
        )));
    }
    Ok(latest)
}

/// Trains `job`, writing the model to `model_dir` and metrics and plots to `stage_dir`.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    job: Job<'_>,
    device: &Device,
    checkpoints: &Checkpoints,
    model_dir: &Path,
    stage_dir: &Path,
    config_hash: &str,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitSummary> {
    let resumed_from = open_checkpoints(checkpoints)?;
    let params = job.model.num_params();
    let pad = job
        .tokenizer
        .pad_id()
        .or(job.tokenizer.eos_id())
        .unwrap_or(0);
    let eval_examples: Vec<Example> = job
        .eval
        .prompts
        .iter()
        .zip(&job.eval.references)
        .filter_map(|(p, r)| recipe::example(job.tokenizer, p, r, None).ok())
        .filter(|e| e.ids.len() <= job.model.config().max_position_embeddings)
        .collect();
    let t0 = Instant::now();
    let mut tokens_here = 0usize;
    let eval = job.eval;
    let (tok, settings) = (job.tokenizer, job.settings);
    let divergence_hint = divergence_hint(job.stage, &job.options);
    let trained = train::train(
        job.model,
        device,
        &job.options,
        &job.train,
        &eval_examples,
        pad,
        job.frozen,
        job.grader,
        Some(&checkpoints.dir),
        true,
        &mut |m| {
            if eval.prompts.is_empty() {
                return Ok(None);
            }
            let answers = recipe::answers(
                m,
                tok,
                &eval.prompts,
                settings.max_new_tokens,
                settings.batch_size,
            )?;
            Ok(Some(recipe::exact_match(
                &answers,
                &eval.references,
                &settings.normalize,
            )))
        },
        &mut |s| {
            if resumed_from.is_none_or(|r| s.step > r) {
                tokens_here += s.tokens;
            }
            on_step(s)
        },
    )
    .map_err(|e| match e {
        Error::Diverged { step, what, .. } => Error::Diverged {
            step,
            what: format!("{what} in the {} stage; nothing of it was saved", job.stage),
            hint: divergence_hint.clone(),
        },
        e => e,
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    checkpoint::save_weights(&trained.model, model_dir)?;
    tok.save_dir(model_dir)?;
    let rows: Vec<MetricRow> = trained.log.iter().map(metric_row).collect();
    metrics::write(
        &stage_dir.join(metrics::METRICS_FILE),
        &rows,
        Some(config_hash),
    )?;
    write_plots(job.stage, &trained.log, stage_dir)?;
    let last = trained.log.iter().rev().take(10).collect::<Vec<_>>();
    let last_eval = match trained.kept_step {
        Some(step) => trained.log.iter().find(|s| s.step == step),
        None => trained.log.iter().rev().find(|s| s.eval_loss.is_some()),
    };
    Ok(FitSummary {
        stage: job.stage.to_string(),
        params,
        train_rows: job.train.len(),
        skipped_rows: job.skipped,
        steps: trained.log.last().map_or(0, |s| s.step),
        resumed_from,
        stopped_early: trained.stopped_early,
        kept_step: trained.kept_step,
        final_loss: last.iter().map(|s| s.loss).sum::<f64>() / last.len().max(1) as f64,
        eval_loss: last_eval.and_then(|s| s.eval_loss),
        exact_match: last_eval.and_then(|s| s.eval_exact),
        best_exact_match: trained
            .log
            .iter()
            .filter_map(|s| s.eval_exact)
            .max_by(f64::total_cmp),
        seconds,
        tokens_per_s: tokens_here as f64 / seconds.max(1e-9),
        teacher_tokens: trained.log.iter().map(|s| s.graded as u64).sum(),
        objective: job.objective,
        compared: None,
        expert: None,
    })
}

/// The settings that make a stage's training diverge, as a `hint:` naming their keys and values.
pub(crate) fn divergence_hint(stage: &str, o: &TrainOptions) -> String {
    let section = match stage {
        layout::TEACHER => "teacher.train",
        layout::FINETUNED => "finetune.train",
        _ => "distill.train",
    };
    let mut hint = format!(
        "\n\nhint: lower `{section}.lr` (it is {}; try a tenth of it), or keep `{section}.grad_clip` \
         at 1",
        o.lr
    );
    if let Objective::Distill { temperature, .. } = o.objective
        && temperature < 0.5
    {
        hint.push_str(&format!(
            "; `distill.temperature` is {temperature}, and so low a temperature overflows the \
             softmax: use 1 or more"
        ));
    }
    hint
}

pub(crate) fn metric_row(s: &StepLog) -> MetricRow {
    MetricRow {
        step: s.step as u64,
        epoch: s.epoch as u64,
        lr: s.lr,
        loss: s.loss,
        ce: s.ce,
        kd: s.kd,
        tokens: s.tokens as u64,
        seconds: s.seconds,
        eval_loss: s.eval_loss,
        eval_exact_match: s.eval_exact,
    }
}

/// The loop settings of a `[*.train]` section.
pub fn train_options(t: &TrainConfig, seed: u64, objective: Objective) -> TrainOptions {
    TrainOptions {
        steps: t.steps,
        batch_size: t.batch_size,
        accumulation: t.accumulation,
        lr: t.lr,
        warmup: t.warmup,
        min_lr_ratio: t.min_lr_ratio,
        weight_decay: t.weight_decay,
        grad_clip: t.grad_clip,
        eval_every: t.eval_every,
        patience: t.patience,
        keep_best: t.keep_best,
        // The last step always writes one, so `0` means "only at the end".
        checkpoint_every: if t.checkpoint_every == 0 {
            t.steps
        } else {
            t.checkpoint_every
        },
        seed,
        pause_after: None,
        objective,
        on_policy: None,
    }
}

/// A fresh Llama-family model config of `arch` over `vocab_size` tokens (tied embeddings).
pub fn model_config(arch: &Architecture, vocab_size: usize) -> ModelConfig {
    ModelConfig::llama(
        vocab_size,
        arch.hidden_size,
        arch.intermediate_size(),
        arch.layers,
        arch.heads,
        arch.kv_heads(),
        arch.max_positions,
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(dir: &std::path::Path, hash: &str) -> Checkpoints {
        Checkpoints {
            dir: dir.to_path_buf(),
            hash: hash.into(),
            require_resume: false,
            config_toml: String::new(),
        }
    }

    /// Checkpoints of other settings are cleared; a folder the workbench did not make (no
    /// `HASH`) is left as it is.
    #[test]
    fn only_the_workbenchs_own_checkpoints_are_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("student");
        assert_eq!(open_checkpoints(&at(&dir, "a")).unwrap(), None);
        std::fs::write(dir.join("step-3.stale"), "old").unwrap();
        open_checkpoints(&at(&dir, "b")).unwrap();
        assert!(
            !dir.join("step-3.stale").exists(),
            "other settings: cleared"
        );
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::write(theirs.join("notes.txt"), "the only copy").unwrap();
        let err = open_checkpoints(&at(&theirs, "a")).unwrap_err().to_string();
        assert!(err.contains("no `HASH`"), "{err}");
        assert_eq!(
            std::fs::read_to_string(theirs.join("notes.txt")).unwrap(),
            "the only copy"
        );
        // An empty folder is as good as none, and so is one a clear cut short left: steps and
        // temporaries, its HASH already gone.
        let empty = tmp.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(open_checkpoints(&at(&empty, "a")).unwrap(), None);
        let cut = tmp.path().join("cut");
        for entry in ["step-3", "step-6.tmp", "best-step-3"] {
            std::fs::create_dir_all(cut.join(entry)).unwrap();
        }
        std::fs::write(cut.join(".HASH.tmp-1-0"), "a").unwrap();
        assert_eq!(open_checkpoints(&at(&cut, "b")).unwrap(), None);
        assert!(!cut.join("step-3").exists());
    }
}
