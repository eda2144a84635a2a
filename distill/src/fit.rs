//! The training stages of a run: the local teacher (on the gold set), the distilled student (on
//! the synthetic set, and the gold set with `distill.include_gold`), the gold-only baseline
//! (the same student, same initial weights and steps, on the gold set alone), and the expert
//! fine-tune (the distilled student on the experts' feedback: SFT, DPO, replay).
//!
//! Each stage writes, into the directory the caller gives (the run's stage directory, built
//! under a temporary name and renamed when done): the model in the Hugging Face layout,
//! `metrics.parquet` (one row per step), and `loss.svg` / `exact_match.svg`. Step checkpoints go
//! to `runs/<name>/checkpoints/<stage>/step-N/` with a `HASH` file naming the settings they were
//! made under: a killed stage resumes from the newest complete one, and a checkpoint made under
//! other settings is discarded rather than resumed.

use datasets::rundir::layout;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use datasets::config::{
    Architecture, Config, DistillLoss, DivergenceKind, EvalConfig, KeepStudent, LoadedConfig,
    TeacherKind, TrainConfig,
};
use datasets::metrics::{self, MetricRow};
use datasets::{PreferenceRow, Sample, Set, SftRow};
use serde::{Deserialize, Serialize};

use crate::data::tokenizer::Tokenizer;
use crate::model::{Model, ModelConfig, checkpoint};
use crate::plot::{Chart, Series};
use crate::recipe::{self, seed_of};
use crate::train::data::Example;
use crate::train::loss::Divergence;
use crate::train::{self, Objective, StepLog, TrainOptions};
use crate::{Error, Result};

/// The data stage's sets, as training reads them.
pub struct RunData {
    /// Gold rows (prompt and reference).
    pub gold: Vec<Sample>,
    /// The prompt pool (no answers).
    pub prompts: Vec<Sample>,
    /// Held-out prompts with references.
    pub eval: EvalSet,
}

/// Eval prompts and their references.
#[derive(Debug, Clone, Default)]
pub struct EvalSet {
    /// Prompts.
    pub prompts: Vec<String>,
    /// References, one per prompt.
    pub references: Vec<String>,
}

/// Reads the data stage's `gold`, `prompts` and `eval` sets (any may be missing).
pub fn read_data(data_dir: &Path) -> Result<RunData> {
    let read = |name: &str| -> Result<Vec<Sample>> {
        let dir = data_dir.join(name);
        if !Set::is_set(&dir) {
            return Ok(Vec::new());
        }
        Ok(Set::open(&dir)?.read_all::<Sample>(None)?)
    };
    let mut eval = EvalSet::default();
    for s in read("eval")? {
        if let Some(r) = s.reference {
            eval.prompts.push(s.prompt);
            eval.references.push(r);
        }
    }
    Ok(RunData {
        gold: read("gold")?,
        prompts: read("prompts")?,
        eval,
    })
}

/// Hash of what the teacher depends on: the data, the seed, and the teacher's training keys (not
/// how it is later asked, so changing `teacher.batch_size` keeps it).
pub fn teacher_hash(c: &Config) -> String {
    let t = &c.teacher;
    let keys = serde_json::json!({
        "vocab_size": t.vocab_size,
        "architecture": t.architecture,
        "train": t.train,
    });
    hash_with(c, &["run", "data"], &keys)
}

/// Hash of what the distilled student depends on.
pub fn student_hash(c: &Config) -> String {
    hash_with(
        c,
        &["run", "data", "teacher", "generate", "student", "distill"],
        &serde_json::Value::Null,
    )
}

/// Hash of what the gold-only baseline depends on: not the synthetic set, nor the KD settings.
pub fn baseline_hash(c: &Config) -> String {
    let mut keys = serde_json::json!({ "train": c.distill.train, "teacher": teacher_hash(c) });
    if let Some(n) = c.distill.gold_rows {
        keys["gold_rows"] = n.into();
    }
    hash_with(c, &["run", "data", "student"], &keys)
}

/// The gold rows the students learn from: the first `distill.gold_rows` (all when unset); the
/// local teacher learns from every gold row.
pub fn students_gold<'a>(c: &Config, data: &'a RunData) -> &'a [Sample] {
    let n = c.distill.gold_rows.unwrap_or(usize::MAX);
    &data.gold[..n.min(data.gold.len())]
}

/// The hash of `sections` of the config and `extra` keys: what a stage depends on.
pub(crate) fn hash_with(c: &Config, sections: &[&str], extra: &serde_json::Value) -> String {
    let mut h = blake3::Hasher::new();
    h.update(c.stage_hash(sections).as_bytes());
    h.update(extra.to_string().as_bytes());
    h.finalize().to_hex()[..16].to_string()
}

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
    /// Mean training loss of the last 10 steps.
    pub final_loss: f64,
    /// The last eval loss.
    pub eval_loss: Option<f64>,
    /// Exact match on the eval set, at the end.
    pub exact_match: Option<f64>,
    /// Seconds of training in this process.
    pub seconds: f64,
    /// Completion tokens per second of training.
    pub tokens_per_s: f64,
    /// What the student learned from: `ce`, or `kd (forward_kl, top-k)` and so on.
    pub objective: String,
    /// The expert fine-tune only: how the fine-tuned student compares with the distilled one it
    /// started from, and which of them the run keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared: Option<Comparison>,
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
    /// A local teacher for full-distribution KD.
    pub teacher: Option<&'a Model>,
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

/// Opens the checkpoint directory: discards checkpoints made under other settings and returns
/// the newest complete step.
fn open_checkpoints(c: &Checkpoints) -> Result<Option<usize>> {
    let hash_file = c.dir.join("HASH");
    let old = std::fs::read_to_string(&hash_file).ok();
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
        job.teacher,
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
    let last_eval = trained.log.iter().rev().find(|s| s.eval_loss.is_some());
    Ok(FitSummary {
        stage: job.stage.to_string(),
        params,
        train_rows: job.train.len(),
        skipped_rows: job.skipped,
        steps: trained.log.last().map_or(0, |s| s.step),
        resumed_from,
        stopped_early: trained.stopped_early,
        final_loss: last.iter().map(|s| s.loss).sum::<f64>() / last.len().max(1) as f64,
        eval_loss: last_eval.and_then(|s| s.eval_loss),
        exact_match: last_eval.and_then(|s| s.eval_exact),
        seconds,
        tokens_per_s: tokens_here as f64 / seconds.max(1e-9),
        objective: job.objective,
        compared: None,
    })
}

/// The settings that make a stage's training diverge, as a `hint:` naming their keys and values.
fn divergence_hint(stage: &str, o: &TrainOptions) -> String {
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

fn metric_row(s: &StepLog) -> MetricRow {
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

/// What the plots and the report call a training stage.
pub fn stage_label(stage: &str) -> &str {
    match stage {
        layout::TEACHER => "teacher",
        layout::STUDENT => "distilled student",
        layout::BASELINE => "gold-only student",
        layout::FINETUNED => "distilled+expert student",
        other => other,
    }
}

/// The plots every training stage writes: the file, and what it shows.
pub const PLOTS: [(&str, &str); 2] = [
    ("loss.svg", "loss"),
    ("exact_match.svg", "exact match on the eval set"),
];

/// The title of a stage's plot; the report captions the plot with the same words.
pub fn plot_title(stage: &str, what: &str) -> String {
    format!("{}: {what}", stage_label(stage))
}

/// How much of the running average each training-loss point keeps (TensorBoard's default
/// smoothing): per-batch loss is noisy, and the trend is what a reader looks for.
const LOSS_SMOOTHING: f64 = 0.9;

/// `loss.svg` (train and eval loss, log scale, train smoothed with its raw points faint behind)
/// and `exact_match.svg` (eval exact match) in `dir`.
pub fn write_plots(stage: &str, log: &[StepLog], dir: &Path) -> Result<()> {
    let points = |f: &dyn Fn(&StepLog) -> Option<f64>| -> Vec<(f64, f64)> {
        log.iter()
            .filter_map(|s| f(s).map(|v| (s.step as f64, v)))
            .collect()
    };
    let [(loss_file, loss_what), (em_file, em_what)] = PLOTS;
    let loss = Chart {
        title: plot_title(stage, loss_what),
        x_label: "step".into(),
        y_label: "loss (log scale)".into(),
        series: vec![
            Series::smoothed(
                format!("train (EMA {LOSS_SMOOTHING}, raw faint)"),
                points(&|s| Some(s.loss)),
                LOSS_SMOOTHING,
            ),
            Series::new("eval (CE)", points(&|s| s.eval_loss)),
        ],
        y_range: None,
        log_y: true,
    };
    let em = Chart {
        title: plot_title(stage, em_what),
        x_label: "step".into(),
        y_label: "exact match".into(),
        series: vec![Series::new("eval", points(&|s| s.eval_exact))],
        y_range: Some((0.0, 1.0)),
        log_y: false,
    };
    datasets::atomic::write_file(dir.join(loss_file), loss.to_svg().as_bytes())?;
    datasets::atomic::write_file(dir.join(em_file), em.to_svg().as_bytes())?;
    Ok(())
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
        // The last step always writes one, so `0` means "only at the end".
        checkpoint_every: if t.checkpoint_every == 0 {
            t.steps
        } else {
            t.checkpoint_every
        },
        seed,
        pause_after: None,
        objective,
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

/// The texts the run's tokenizer learns from: gold prompts and references, and the prompt pool
/// (never the eval set).
fn tokenizer_texts(data: &RunData) -> Vec<String> {
    data.gold
        .iter()
        .chain(&data.prompts)
        .map(|s| s.prompt.clone())
        .chain(data.gold.iter().filter_map(|s| s.reference.clone()))
        .collect()
}

/// The run's own tokenizer (what `workbench teacher train` makes).
pub fn run_tokenizer(c: &Config, data: &RunData) -> Result<Tokenizer> {
    let texts = tokenizer_texts(data);
    if texts.is_empty() {
        return Err(Error::invalid(
            "There is no text to train the run's tokenizer on: the gold and prompt sets are empty",
        ));
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    recipe::train_tokenizer(&refs, c.teacher.vocab_size)
}

/// Training examples from gold rows, and the rows left out and why.
struct GoldExamples {
    examples: Vec<Example>,
    /// Rows without a reference.
    no_reference: usize,
    /// Rows longer than the model's positions.
    too_long: usize,
    /// The longest row, in tokens.
    longest: usize,
}

impl GoldExamples {
    fn skipped(&self) -> usize {
        self.no_reference + self.too_long
    }

    /// Why there is nothing to learn from, naming the real culprit: the missing answers or the
    /// model's positions (`positions_key` is the config key that sets them, when one does).
    fn nothing_to_learn(
        &self,
        rows: usize,
        who: &str,
        positions_key: Option<&str>,
        limit: usize,
    ) -> Error {
        if rows == 0 {
            return Error::invalid(format!(
                "The gold set is empty, so {who} has nothing to learn from\n\nhint: check the \
                 data stage's summary: its filters may have removed every row"
            ));
        }
        if self.too_long > 0 {
            let hint = match positions_key {
                Some(key) => format!("raise `{key}` to at least {}", self.longest),
                None => "use shorter prompts and answers, or a model with more positions".into(),
            };
            return Error::invalid(format!(
                "None of the {rows} gold rows fits {who}: {} are longer than its {limit} positions \
                 (the longest is {} tokens, prompt and answer together){}\n\nhint: {hint}",
                self.too_long,
                self.longest,
                if self.no_reference > 0 {
                    format!(", and {} have no reference", self.no_reference)
                } else {
                    String::new()
                },
            ));
        }
        Error::invalid(format!(
            "The gold set has no rows with a reference, so {who} has nothing to learn from\n\n\
             hint: map the answer column with `data.gold.map = {{ reference = \"COLUMN\" }}`, or \
             use `data.task = \"dates\"`"
        ))
    }
}

/// Examples from (prompt, answer) pairs; pairs without an answer or longer than `max_positions`
/// are counted, not kept.
fn gold_examples(tok: &Tokenizer, gold: &[Sample], max_positions: usize) -> Result<GoldExamples> {
    let mut out = GoldExamples {
        examples: Vec::with_capacity(gold.len()),
        no_reference: 0,
        too_long: 0,
        longest: 0,
    };
    for s in gold {
        match &s.reference {
            Some(r) => {
                let e = recipe::example(tok, &s.prompt, r, None)?;
                out.longest = out.longest.max(e.ids.len());
                if e.ids.len() <= max_positions {
                    out.examples.push(e);
                } else {
                    out.too_long += 1;
                }
            }
            None => out.no_reference += 1,
        }
    }
    Ok(out)
}

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
            eval: &data.eval,
            options,
            teacher: None,
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

/// The student's starting point: its model and tokenizer, and the tokenizer of the teacher's
/// ids (when known), to check that their vocabularies agree.
pub struct StudentStart {
    /// Initial weights (fresh or from `student.path`).
    pub model: Model,
    /// The student's tokenizer.
    pub tokenizer: Tokenizer,
    /// Whether the teacher's token ids are the student's.
    pub same_vocabulary: bool,
    /// Why not, when they are not.
    pub vocabulary_note: String,
}

/// Loads or makes the student: `student.path`, or fresh weights over the local teacher's
/// tokenizer (or, with an `openai` teacher, `teacher.tokenizer` or the run's own tokenizer).
/// Fresh weights come from a seed of their own, so the student and the gold-only baseline start
/// from the same weights.
pub fn student_start(
    loaded: &LoadedConfig,
    run_dir: &Path,
    data: &RunData,
    device: &Device,
) -> Result<StudentStart> {
    let c = &loaded.config;
    let teacher_tok = match teacher_dir(loaded, run_dir) {
        Some(dir) => Some(Tokenizer::from_dir(&dir)?),
        None => c
            .teacher
            .tokenizer
            .as_ref()
            .map(|p| Tokenizer::from_dir(&loaded.resolve(p)))
            .transpose()?,
    };
    let (model, tokenizer) = match &c.student.path {
        Some(p) => {
            let dir = loaded.resolve(p);
            checkpoint::load_with_tokenizer(&dir, device)?
        }
        None => {
            let tok = match &teacher_tok {
                Some(t) => t.clone(),
                None => run_tokenizer(c, data)?,
            };
            device.seed(seed_of(c.run.seed, "student init"));
            let model = model_config(&c.student.architecture, tok.vocab_size()).init(device);
            (model, tok)
        }
    };
    let (same_vocabulary, vocabulary_note) = match &teacher_tok {
        Some(t) if t.same_vocabulary(&tokenizer) => (true, String::new()),
        Some(_) => (
            false,
            "the teacher's tokenizer and the student's have different vocabularies".into(),
        ),
        None => (
            false,
            "the `openai` teacher's vocabulary is unknown (set `teacher.tokenizer` to its \
             tokenizer directory to compare)"
                .into(),
        ),
    };
    Ok(StudentStart {
        model,
        tokenizer,
        same_vocabulary,
        vocabulary_note,
    })
}

fn divergence(c: &Config) -> Divergence {
    match c.distill.divergence {
        DivergenceKind::ForwardKl => Divergence::ForwardKl,
        DivergenceKind::ReverseKl => Divergence::ReverseKl,
        DivergenceKind::Jsd => Divergence::Jsd(c.distill.beta),
    }
}

/// Distils the student from the synthetic set (and the gold set with `include_gold`); the model
/// lands in `stage_dir/final/`.
#[allow(clippy::too_many_arguments)]
pub fn distill_student(
    loaded: &LoadedConfig,
    run_dir: &Path,
    data: &RunData,
    synthetic: &[Sample],
    checkpoints: &Checkpoints,
    stage_dir: &Path,
    config_hash: &str,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitSummary> {
    let c = &loaded.config;
    let d = &c.distill;
    let device = crate::backend::device(&c.teacher.device)?.autodiff();
    let start = student_start(loaded, run_dir, data, &device)?;
    let kd = d.loss == DistillLoss::Kd;
    if kd && !start.same_vocabulary {
        return Err(Error::invalid(format!(
            "Logit distillation (`distill.loss = \"kd\"`) needs the teacher and the student to \
             share a vocabulary, but {}\n\nhint: use sequence-level KD, `distill.loss = \"ce\"`: \
             the student then learns from the teacher's text, whatever its tokenizer",
            start.vocabulary_note
        )));
    }
    let tok = &start.tokenizer;
    let max_positions = start.model.config().max_position_embeddings;
    let vocab = start.model.config().vocab_size as u32;
    let gold = students_gold(c, data);
    let mut train = Vec::with_capacity(synthetic.len() + gold.len());
    let (mut skipped, mut too_long) = (0, 0);
    for s in synthetic {
        let Some(completion) = &s.completion else {
            skipped += 1;
            continue;
        };
        let teacher = (kd && !s.completion_ids.is_empty())
            .then_some((s.completion_ids.as_slice(), s.teacher_topk.as_slice()));
        if teacher.is_some_and(|(ids, _)| ids.iter().any(|&i| i >= vocab)) {
            return Err(Error::invalid(format!(
                "A synthetic row ({}) has token ids outside the student's vocabulary of {vocab}\
                 \n\nhint: use `distill.loss = \"ce\"` (sequence-level KD)",
                s.id
            )));
        }
        let e = recipe::example(tok, &s.prompt, completion, teacher)?;
        if e.ids.len() <= max_positions {
            train.push(e);
        } else {
            too_long += 1;
        }
    }
    let synthetic_rows = train.len();
    skipped += too_long;
    if d.include_gold {
        let gold = gold_examples(tok, gold, max_positions)?;
        skipped += gold.skipped();
        train.extend(gold.examples);
    }
    if synthetic_rows == 0 {
        return Err(Error::invalid(if too_long > 0 {
            format!(
                "None of the {} synthetic rows fits the student: {too_long} are longer than its \
                 {max_positions} positions\n\nhint: use a student with more positions \
                 (`student.architecture.max_positions`), or shorter prompts",
                synthetic.len()
            )
        } else {
            "The synthetic set has no usable rows, so there is nothing to distil\n\nhint: look \
             at the generation summary (filters may have removed every row)"
                .to_string()
        }));
    }
    let full_teacher = if d.full_vocab {
        let Some(dir) = teacher_dir(loaded, run_dir) else {
            return Err(Error::invalid(
                "`distill.full_vocab = true` needs a local teacher (its full distribution is \
                 computed during training); an `openai` teacher gives only its top-k",
            ));
        };
        Some(burn::module::Module::no_grad(checkpoint::load(
            &dir, &device,
        )?))
    } else {
        None
    };
    let objective = match d.loss {
        DistillLoss::Ce => Objective::CrossEntropy,
        DistillLoss::Kd => Objective::Distill {
            alpha: d.alpha,
            divergence: divergence(c),
            temperature: d.temperature,
        },
    };
    let label = match d.loss {
        DistillLoss::Ce => "ce (sequence-level KD)".to_string(),
        DistillLoss::Kd => format!(
            "kd ({}, {}, T={}, alpha={})",
            match d.divergence {
                DivergenceKind::ForwardKl => "forward KL".to_string(),
                DivergenceKind::ReverseKl => "reverse KL".to_string(),
                DivergenceKind::Jsd => format!("JSD beta={}", d.beta),
            },
            if d.full_vocab {
                "full vocabulary"
            } else {
                "top-k"
            },
            d.temperature,
            d.alpha
        ),
    };
    let options = train_options(&d.train, seed_of(c.run.seed, "student data"), objective);
    let model_dir = stage_dir.join(layout::FINAL);
    fit(
        Job {
            stage: layout::STUDENT,
            model: start.model,
            tokenizer: tok,
            train,
            skipped,
            eval: &data.eval,
            options,
            teacher: full_teacher.as_ref(),
            settings: &c.eval,
            objective: label,
        },
        &device,
        checkpoints,
        &model_dir,
        stage_dir,
        config_hash,
        on_step,
    )
}

/// Trains the gold-only baseline: the student's starting weights, the same steps, the gold set
/// alone (CE).
pub fn train_baseline(
    loaded: &LoadedConfig,
    run_dir: &Path,
    data: &RunData,
    checkpoints: &Checkpoints,
    stage_dir: &Path,
    config_hash: &str,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitSummary> {
    let c = &loaded.config;
    let device = crate::backend::device(&c.teacher.device)?.autodiff();
    let start = student_start(loaded, run_dir, data, &device)?;
    let max_positions = start.model.config().max_position_embeddings;
    let gold = students_gold(c, data);
    let examples = gold_examples(&start.tokenizer, gold, max_positions)?;
    if examples.examples.is_empty() {
        let positions_key = c
            .student
            .path
            .is_none()
            .then_some("student.architecture.max_positions");
        return Err(examples.nothing_to_learn(
            gold.len(),
            "the gold-only baseline",
            positions_key,
            max_positions,
        ));
    }
    let skipped = examples.skipped();
    let train = examples.examples;
    let options = train_options(
        &c.distill.train,
        seed_of(c.run.seed, "student data"),
        Objective::CrossEntropy,
    );
    let model_dir = stage_dir.join(layout::FINAL);
    fit(
        Job {
            stage: layout::BASELINE,
            model: start.model,
            tokenizer: &start.tokenizer,
            train,
            skipped,
            eval: &data.eval,
            options,
            teacher: None,
            settings: &c.eval,
            objective: "ce (gold only)".into(),
        },
        &device,
        checkpoints,
        &model_dir,
        stage_dir,
        config_hash,
        on_step,
    )
}

/// Hash of what the fine-tuned student depends on: the distilled student, `[finetune]`, and the
/// feedback itself (`feedback` is a digest of the rows' ids, so a new expert decision retrains).
pub fn finetune_hash(c: &Config, feedback: &str) -> String {
    let keys = serde_json::json!({
        "student": student_hash(c),
        "finetune": c.finetune,
        "feedback": feedback,
    });
    hash_with(c, &["run", "data"], &keys)
}

/// A digest of the feedback rows (their content ids), for [`finetune_hash`].
pub fn feedback_digest(sft: &[SftRow], preference: &[PreferenceRow]) -> String {
    let mut h = blake3::Hasher::new();
    for id in sft
        .iter()
        .map(|r| &r.id)
        .chain(preference.iter().map(|r| &r.id))
    {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The expert fine-tune: starts from the distilled student (`runs/<name>/student/final/`), learns
/// the experts' accepted and corrected answers (SFT) and their preference pairs (DPO against the
/// distilled student, frozen), with a share of the synthetic set replayed against forgetting;
/// the model lands in `stage_dir` (`runs/<name>/finetuned/`, HF layout).
#[allow(clippy::too_many_arguments)]
pub fn finetune_student(
    loaded: &LoadedConfig,
    run_dir: &Path,
    data: &RunData,
    sft: &[SftRow],
    preference: &[PreferenceRow],
    synthetic: &[Sample],
    checkpoints: &Checkpoints,
    stage_dir: &Path,
    config_hash: &str,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitSummary> {
    let c = &loaded.config;
    let f = &c.finetune;
    let device = crate::backend::device(&c.teacher.device)?.autodiff();
    let start_dir = run_dir.join(layout::STUDENT).join(layout::FINAL);
    if !start_dir.join("config.json").is_file() {
        return Err(Error::invalid(format!(
            "There is no distilled student in `{}` to fine-tune\n\nhint: run `workbench distill` \
             (or `workbench run`) on this config first",
            start_dir.display()
        )));
    }
    let model = checkpoint::load(&start_dir, &device)?;
    let reference = burn::module::Module::no_grad(checkpoint::load(&start_dir, &device)?);
    let tok = Tokenizer::from_dir(&start_dir)?;
    let max_positions = model.config().max_position_embeddings;
    let mut train = Vec::new();
    let mut skipped = 0;
    let mut keep = |e: Example, train: &mut Vec<Example>| {
        let longest = e
            .ids
            .len()
            .max(e.prompt_len + e.rejected.as_ref().map_or(0, Vec::len));
        if longest <= max_positions {
            train.push(e);
        } else {
            skipped += 1;
        }
    };
    for r in sft {
        keep(
            recipe::example(&tok, &r.prompt, &r.completion, None)?,
            &mut train,
        );
    }
    for r in preference {
        keep(
            recipe::pair_example(&tok, &r.prompt, &r.chosen, &r.rejected)?,
            &mut train,
        );
    }
    let feedback_rows = train.len();
    if feedback_rows == 0 {
        return Err(Error::invalid(
            "There is no expert feedback to fine-tune on (no accepted or corrected answer, no \
             preference pair)\n\nhint: review candidates with `workbench annotate`, or let the \
             simulated expert answer (`annotate.simulated_expert = true`)",
        ));
    }
    // Replay: `replay` of the rows come from the synthetic set, picked by a seeded order.
    let wanted = (feedback_rows as f64 * f.replay / (1.0 - f.replay)).round() as usize;
    let mut pool: Vec<&Sample> = synthetic
        .iter()
        .filter(|s| s.completion.is_some())
        .collect();
    let seed = seed_of(c.run.seed, "finetune replay");
    pool.sort_by_key(|s| {
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(s.id.as_bytes());
        *h.finalize().as_bytes()
    });
    let mut replayed = 0;
    for s in pool {
        if replayed >= wanted {
            break;
        }
        let completion = s.completion.as_deref().unwrap_or_default();
        let before = train.len();
        keep(
            recipe::example(&tok, &s.prompt, completion, None)?,
            &mut train,
        );
        replayed += train.len() - before;
    }
    let pairs = preference.len();
    let objective = Objective::Preference {
        beta: f.beta,
        weight: f.dpo_weight,
    };
    let label = format!(
        "sft on {} expert answers + dpo (beta={}, weight={}) on {pairs} pairs + {replayed} replayed synthetic rows",
        sft.len(),
        f.beta,
        f.dpo_weight
    );
    let options = train_options(&f.train, seed_of(c.run.seed, "finetune data"), objective);
    let mut summary = fit(
        Job {
            stage: layout::FINETUNED,
            model,
            tokenizer: &tok,
            train,
            skipped,
            eval: &data.eval,
            options,
            teacher: Some(&reference),
            settings: &c.eval,
            objective: label,
        },
        &device,
        checkpoints,
        stage_dir,
        stage_dir,
        config_hash,
        on_step,
    )?;
    // Both students as saved, scored with the same prompts, decoding and normaliser (what
    // `workbench eval` measures), so the two numbers compare.
    if !data.eval.prompts.is_empty() {
        let plain = crate::backend::device(&c.teacher.device)?;
        let score = |dir: &Path| -> Result<f64> {
            let model = checkpoint::load(dir, &plain)?;
            let answers = recipe::answers(
                &model,
                &tok,
                &data.eval.prompts,
                c.eval.max_new_tokens,
                c.eval.batch_size,
            )?;
            Ok(recipe::exact_match(
                &answers,
                &data.eval.references,
                &c.eval.normalize,
            ))
        };
        let distilled = score(&start_dir)?;
        let finetuned = score(stage_dir)?;
        let kept = keeps_finetuned(f.keep, distilled, finetuned);
        summary.compared = Some(Comparison {
            distilled_exact_match: distilled,
            finetuned_exact_match: finetuned,
            kept,
            final_student: if kept {
                layout::FINETUNED.to_string()
            } else {
                format!("{}/{}", layout::STUDENT, layout::FINAL)
            },
        });
    }
    Ok(summary)
}

/// Whether the fine-tuned student becomes the run's final one: with `keep = "better"` only when it
/// scores at least as well as the distilled student it started from (a tie keeps the expert's
/// corrections, which the eval set may not cover).
fn keeps_finetuned(keep: KeepStudent, distilled: f64, finetuned: f64) -> bool {
    keep == KeepStudent::Finetuned || finetuned >= distilled
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::config::BuiltinTask;

    #[test]
    fn a_worse_fine_tune_is_kept_only_when_asked() {
        assert!(!keeps_finetuned(KeepStudent::Better, 0.759, 0.618));
        assert!(keeps_finetuned(KeepStudent::Finetuned, 0.759, 0.618));
        assert!(keeps_finetuned(KeepStudent::Better, 0.5, 0.5));
        assert!(keeps_finetuned(KeepStudent::Better, 0.5, 0.6));
    }

    use datasets::tasks::{Sizes, generate};

    fn config(overrides: &[&str]) -> Config {
        let overrides: Vec<_> = overrides
            .iter()
            .map(|o| datasets::config::Override::parse(o).unwrap())
            .collect();
        Config::from_str_with(
            "[run]\nname = \"t\"\n[data]\ntask = \"dates\"\n",
            "t.toml",
            &overrides,
        )
        .unwrap()
    }

    fn data(gold: usize) -> RunData {
        let sets = generate(
            BuiltinTask::Dates,
            5,
            Sizes {
                gold,
                prompts: 0,
                eval: 0,
                review: 0,
            },
        );
        RunData {
            gold: sets.gold,
            prompts: Vec::new(),
            eval: EvalSet {
                prompts: Vec::new(),
                references: Vec::new(),
            },
        }
    }

    #[test]
    fn the_students_learn_from_the_first_gold_rows_and_the_teacher_from_all() {
        let d = data(10);
        let all = config(&[]);
        assert_eq!(students_gold(&all, &d).len(), 10);
        let some = config(&["distill.gold_rows=4"]);
        let gold = students_gold(&some, &d);
        assert_eq!(gold.len(), 4);
        assert_eq!(gold[3].id, d.gold[3].id);
        // More rows asked for than there are: every row.
        assert_eq!(
            students_gold(&config(&["distill.gold_rows=99"]), &d).len(),
            10
        );
        // The baseline (which reads no other `[distill]` key but its training) is redone when
        // its rows change; the teacher is not.
        assert_ne!(baseline_hash(&all), baseline_hash(&some));
        assert_eq!(teacher_hash(&all), teacher_hash(&some));
        assert_ne!(student_hash(&all), student_hash(&some));
    }
}
