//! The sections of the trained models: the shape of a model the workbench initialises, how it is
//! trained (`[teacher.train]`, `[distill.train]`), the student, distillation and evaluation.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The shape of a Llama-family decoder the workbench initialises from scratch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Attention heads; `hidden_size` must divide by it.
    pub heads: usize,
    /// Key/value heads (grouped-query attention); `heads` must divide by it. Default: `heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<usize>,
    /// Width of the SwiGLU MLP. Default: 8/3 of `hidden_size`, rounded up to a multiple of 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
    /// Longest sequence (prompt and completion), in tokens.
    #[serde(default = "default_max_positions")]
    pub max_positions: usize,
}

fn default_max_positions() -> usize {
    256
}

impl Architecture {
    /// Key/value heads, defaulted.
    pub fn kv_heads(&self) -> usize {
        self.kv_heads.unwrap_or(self.heads)
    }

    /// MLP width, defaulted.
    pub fn intermediate_size(&self) -> usize {
        self.intermediate_size
            .unwrap_or_else(|| self.hidden_size.saturating_mul(8).div_ceil(3).div_ceil(8) * 8)
    }

    fn check(&self, section: &str) -> Result<(), (String, String)> {
        let key = |k: &str| format!("{section}.{k}");
        for (k, v) in [
            ("hidden_size", self.hidden_size),
            ("layers", self.layers),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads()),
            ("intermediate_size", self.intermediate_size()),
            ("max_positions", self.max_positions),
        ] {
            if v == 0 {
                return Err((key(k), "is 0; expected at least 1".into()));
            }
        }
        if !self.hidden_size.is_multiple_of(self.heads) {
            return Err((
                key("heads"),
                format!(
                    "is {}, which does not divide `hidden_size` ({}); pick a divisor",
                    self.heads, self.hidden_size
                ),
            ));
        }
        if !(self.hidden_size / self.heads).is_multiple_of(2) {
            return Err((
                key("heads"),
                format!(
                    "gives heads of {} dimensions; rotary embeddings need an even head size",
                    self.hidden_size / self.heads
                ),
            ));
        }
        if !self.heads.is_multiple_of(self.kv_heads()) {
            return Err((
                key("kv_heads"),
                format!(
                    "is {}, which does not divide `heads` ({})",
                    self.kv_heads(),
                    self.heads
                ),
            ));
        }
        Ok(())
    }
}

/// How a model is trained: the loop's settings, shared by teacher training and distillation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps. Each section has its own default: 600 for `teacher.train`, 400 for
    /// `distill.train` and 200 for `finetune.train` (the schema's 0 is none of them).
    #[serde(default)]
    pub steps: usize,
    /// Sequences per micro-batch.
    #[serde(default = "default_train_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation).
    #[serde(default = "default_one")]
    pub accumulation: usize,
    /// Peak learning rate (AdamW): 3e-3, and 3e-4 for `finetune.train`.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Linear warmup steps: 30, and 10 for `finetune.train`.
    #[serde(default = "default_warmup")]
    pub warmup: usize,
    /// The cosine decays to `lr · min_lr_ratio`.
    #[serde(default = "default_min_lr_ratio")]
    pub min_lr_ratio: f64,
    /// AdamW weight decay.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Gradient clipping: each parameter's gradient scaled down to this L2 norm (0: off).
    #[serde(default = "default_grad_clip")]
    pub grad_clip: f64,
    /// Evaluate (loss and exact match on the validation set when the run holds one out, else on
    /// the eval set) every N steps; always at the end.
    #[serde(default)]
    pub eval_every: usize,
    /// Stop after this many evaluations without a better eval loss (0: never).
    #[serde(default)]
    pub patience: usize,
    /// Keep the weights of the best evaluation (on the validation set when there is one): the
    /// highest exact match, ties going to the lower eval loss. On by default for
    /// `teacher.train`, so a teacher that overfits its gold set teaches from its best step; off
    /// by default elsewhere.
    #[serde(default)]
    pub keep_best: bool,
    /// Write a resumable checkpoint every N steps (0: only at the end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
}

fn default_train_batch() -> usize {
    32
}
fn default_one() -> usize {
    1
}
fn default_lr() -> f64 {
    3e-3
}
fn default_warmup() -> usize {
    30
}
fn default_min_lr_ratio() -> f64 {
    0.1
}
fn default_weight_decay() -> f64 {
    0.1
}
fn default_grad_clip() -> f64 {
    1.0
}
fn default_checkpoint_every() -> usize {
    100
}

impl TrainConfig {
    /// The defaults, for `steps` steps.
    pub fn with_steps(steps: usize) -> TrainConfig {
        TrainConfig {
            steps,
            batch_size: default_train_batch(),
            accumulation: 1,
            lr: default_lr(),
            warmup: default_warmup(),
            min_lr_ratio: default_min_lr_ratio(),
            weight_decay: default_weight_decay(),
            grad_clip: default_grad_clip(),
            eval_every: 0,
            patience: 0,
            keep_best: false,
            checkpoint_every: default_checkpoint_every(),
        }
    }

    fn check(&self, section: &str) -> Result<(), (String, String)> {
        let key = |k: &str| format!("{section}.{k}");
        for (k, v) in [
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("accumulation", self.accumulation),
        ] {
            if v == 0 {
                return Err((key(k), "is 0; expected at least 1".into()));
            }
        }
        // AdamW's step is about `lr` per weight whatever the gradient's scale, so a rate above 1
        // moves every weight by more than its whole typical size each step.
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return Err((
                key("lr"),
                format!(
                    "is {}; expected a positive number up to 1 (AdamW rates are usually 1e-5 to 1e-2)",
                    self.lr
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err((
                key("min_lr_ratio"),
                format!("is {}; expected a number in [0, 1]", self.min_lr_ratio),
            ));
        }
        for (k, v) in [
            ("weight_decay", self.weight_decay),
            ("grad_clip", self.grad_clip),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err((key(k), format!("is {v}; expected 0 or more")));
            }
        }
        Ok(())
    }
}

pub(super) fn default_vocab_size() -> usize {
    512
}
pub(super) fn default_teacher_architecture() -> Architecture {
    Architecture {
        hidden_size: 128,
        layers: 4,
        heads: 4,
        kv_heads: Some(2),
        intermediate_size: None,
        max_positions: default_max_positions(),
    }
}
pub(super) fn default_teacher_train() -> TrainConfig {
    TrainConfig {
        keep_best: true,
        ..TrainConfig::with_steps(600)
    }
}

/// A `[*.train]` table as written: every key optional, and the keys left out take the section's
/// own defaults (a `[finetune.train]` with only `lr`, or `--set finetune.train.lr=…` on a config
/// without that table, keeps the fine-tune's steps and warmup, not the distillation's).
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table of training settings (`steps`, `lr`, ...)"
)]
struct PartialTrain {
    steps: Option<usize>,
    batch_size: Option<usize>,
    accumulation: Option<usize>,
    lr: Option<f64>,
    warmup: Option<usize>,
    min_lr_ratio: Option<f64>,
    weight_decay: Option<f64>,
    grad_clip: Option<f64>,
    eval_every: Option<usize>,
    patience: Option<usize>,
    keep_best: Option<bool>,
    checkpoint_every: Option<usize>,
}

impl PartialTrain {
    fn over(self, d: TrainConfig) -> TrainConfig {
        TrainConfig {
            steps: self.steps.unwrap_or(d.steps),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            accumulation: self.accumulation.unwrap_or(d.accumulation),
            lr: self.lr.unwrap_or(d.lr),
            warmup: self.warmup.unwrap_or(d.warmup),
            min_lr_ratio: self.min_lr_ratio.unwrap_or(d.min_lr_ratio),
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            grad_clip: self.grad_clip.unwrap_or(d.grad_clip),
            eval_every: self.eval_every.unwrap_or(d.eval_every),
            patience: self.patience.unwrap_or(d.patience),
            keep_best: self.keep_best.unwrap_or(d.keep_best),
            checkpoint_every: self.checkpoint_every.unwrap_or(d.checkpoint_every),
        }
    }
}

/// `[teacher.train]` over its section's defaults.
pub(super) fn teacher_train<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<TrainConfig, D::Error> {
    Ok(PartialTrain::deserialize(d)?.over(default_teacher_train()))
}

/// `[distill.train]` over its section's defaults.
fn distill_train<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TrainConfig, D::Error> {
    Ok(PartialTrain::deserialize(d)?.over(default_distill_train()))
}

/// `[finetune.train]` over its section's defaults.
fn finetune_train<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TrainConfig, D::Error> {
    Ok(PartialTrain::deserialize(d)?.over(default_finetune_train()))
}

/// Checks `teacher.vocab_size`, `[teacher.architecture]` and `[teacher.train]`.
pub(super) fn check_teacher_training(
    vocab_size: usize,
    architecture: &Architecture,
    train: &TrainConfig,
) -> Result<(), (String, String)> {
    if vocab_size < 260 {
        return Err((
            "teacher.vocab_size".into(),
            format!(
                "is {vocab_size}; a byte-level tokenizer needs the 256 bytes and its special \
                 token, so at least 260"
            ),
        ));
    }
    architecture.check("teacher.architecture")?;
    train.check("teacher.train")
}

/// `[student]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StudentConfig {
    /// Start from this checkpoint (Hugging Face layout: config.json, model.safetensors,
    /// tokenizer.json; or a GGUF file) instead of fresh weights; relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The shape of a fresh student (without `path`). It uses the teacher's tokenizer.
    #[serde(default = "default_student_architecture")]
    pub architecture: Architecture,
    /// Start from the local teacher cut down instead (`{ layers = N }`, optionally
    /// `intermediate_size = M`): its embeddings, final norm and head, and N of its layers, evenly
    /// spaced from the first to the last (depth pruning before distillation, as in NVIDIA's
    /// Minitron), each MLP narrowed to its M strongest channels when asked. The student then
    /// shares the teacher's vocabulary, width and tokenizer; `architecture` is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_teacher: Option<FromTeacher>,
}

/// `student.from_teacher`: which of the teacher's layers the student keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FromTeacher {
    /// How many layers to keep (at least 1, at most the teacher's).
    pub layers: usize,
    /// Narrow each kept MLP to this many channels (at least 1, at most the teacher's): those
    /// with the largest `‖gate‖ · ‖up‖ · ‖down‖` weights (width pruning). Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intermediate_size: Option<usize>,
}

/// The `n` of `total` layers a cut student keeps: evenly spaced from the first to the last
/// (the first alone when `n` is 1).
pub fn kept_layers(total: usize, n: usize) -> Vec<usize> {
    match n {
        0 => Vec::new(),
        1 => vec![0],
        _ => (0..n)
            .map(|i| ((i * (total - 1)) as f64 / (n - 1) as f64).round() as usize)
            .collect(),
    }
}

fn default_student_architecture() -> Architecture {
    Architecture {
        hidden_size: 64,
        layers: 2,
        heads: 2,
        kv_heads: Some(1),
        intermediate_size: None,
        max_positions: default_max_positions(),
    }
}

impl Default for StudentConfig {
    fn default() -> Self {
        StudentConfig {
            path: None,
            architecture: default_student_architecture(),
            from_teacher: None,
        }
    }
}

impl StudentConfig {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if let Some(cut) = &self.from_teacher {
            if self.path.is_some() {
                return Err((
                    "student.from_teacher".into(),
                    "is set beside `student.path`; the student starts from one of them: remove \
                     one"
                    .into(),
                ));
            }
            if cut.layers == 0 {
                return Err((
                    "student.from_teacher.layers".into(),
                    "is 0; keep at least 1 of the teacher's layers".into(),
                ));
            }
            if cut.intermediate_size == Some(0) {
                return Err((
                    "student.from_teacher.intermediate_size".into(),
                    "is 0; keep at least 1 channel of each MLP (or remove the key to keep all)"
                        .into(),
                ));
            }
        }
        self.architecture.check("student.architecture")
    }
}

/// Which divergence the KD term uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceKind {
    /// KL(teacher ‖ student): mass-covering (Hinton 2015).
    #[default]
    ForwardKl,
    /// KL(student ‖ teacher): mode-seeking (MiniLLM).
    ReverseKl,
    /// Generalised Jensen–Shannon with weight `beta` (GKD); β = 0 and 1 are the KL limits.
    Jsd,
}

/// What the distilled student learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DistillLoss {
    /// Cross-entropy on the teacher's completions only (sequence-level KD). Works with any
    /// teacher, whatever its vocabulary.
    Ce,
    /// `alpha · KD + (1 − alpha) · CE`, KD on the teacher's stored top-k logprobs (the mass
    /// outside them in one tail bucket), or on its full distribution with `full_vocab`.
    #[default]
    Kd,
}

/// `[distill]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// `ce` (sequence-level KD) or `kd` (logit KD mixed with CE).
    #[serde(default)]
    pub loss: DistillLoss,
    /// `forward_kl`, `reverse_kl` or `jsd`.
    #[serde(default)]
    pub divergence: DivergenceKind,
    /// JSD weight β in [0, 1] (only with `divergence = "jsd"`).
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// Softmax temperature of teacher and student in the KD term (scaled by T²).
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Weight of the KD term; CE gets `1 − alpha`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// KD on the local teacher's full distribution, computed during training, instead of the
    /// stored top-k (teacher and student must share the vocabulary).
    #[serde(default)]
    pub full_vocab: bool,
    /// Train on the gold set too, next to the synthetic set (CE on the gold answers).
    #[serde(default = "default_true")]
    pub include_gold: bool,
    /// How many gold rows the students learn from (the distilled one with `include_gold`, and
    /// the gold-only baseline): the first `gold_rows` of the gold set. The local teacher learns
    /// from all of them. Unset, or more than the gold set holds: every gold row. With fewer rows
    /// for the students than for the teacher, the teacher knows more than the students' labels
    /// hold, as a pretrained teacher does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_rows: Option<usize>,
    /// Also train the gold-only baseline: the same student on the gold set alone, same steps, so
    /// the table shows what the teacher bought.
    #[serde(default = "default_true")]
    pub baseline: bool,
    /// On-policy distillation (GKD's λ, 0 to 1): the share of batches whose completions the
    /// student samples itself, at each step, for the teacher to grade token by token (its top
    /// `generate.top_logprobs` there, or its full distribution with `full_vocab`; a local
    /// teacher on this machine, an `openai` one over HTTP), the loss there being the
    /// `divergence` alone. 0 (the default) is off-policy: the stored teacher completions only.
    /// Needs `loss = "kd"` and a teacher that shares the student's vocabulary.
    #[serde(default)]
    pub on_policy: f64,
    /// The temperature the student samples at on-policy (0: greedy).
    #[serde(default = "default_sample_temperature")]
    pub sample_temperature: f64,
    /// Tokens the student samples per prompt on-policy. Unset: `generate.max_new_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    /// Steps of off-policy distillation before the student writes any batch (0: from the
    /// first step). A student trained from scratch writes noise at first, and the teacher's
    /// grades on noise teach little; one that already answers roughly is what on-policy corrects.
    #[serde(default, skip_serializing_if = "is_zero_steps")]
    pub on_policy_after: usize,
    /// Speculative on-policy sampling (0, the default: off): a token the student samples that
    /// the teacher gives less than this probability (or leaves out of its top-k) is replaced by
    /// the teacher's most likely token, and the student writes on from there. A weak student's
    /// samples then stay on paths the teacher can grade, instead of running on past its first
    /// mistake (SKD). A local teacher checks each token once, as the student writes it; a
    /// server checks whole samples, each again after a replacement, so it grades more tokens.
    #[serde(default, skip_serializing_if = "is_zero_share")]
    pub replace_below: f64,
    /// How the students are trained.
    #[serde(default = "default_distill_train", deserialize_with = "distill_train")]
    pub train: TrainConfig,
    /// More distilled students to train beside this one, each with some of these keys changed
    /// (`[[distill.compare]]`), so the report shows the modes side by side with the teacher
    /// tokens each spent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compare: Vec<DistillVariant>,
}

/// `[[distill.compare]]`: another distilled student, trained like the main one from the same
/// synthetic set and starting weights, with the keys given here in place of `[distill]`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistillVariant {
    /// Its row in the report, `distilled (NAME)`, and its stage folder, `student-NAME/`:
    /// lowercase letters, digits and `-`.
    pub name: String,
    /// `loss` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<DistillLoss>,
    /// `divergence` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence: Option<DivergenceKind>,
    /// `beta` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// `temperature` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// `alpha` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// `full_vocab` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_vocab: Option<bool>,
    /// `on_policy` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_policy: Option<f64>,
    /// `sample_temperature` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_temperature: Option<f64>,
    /// `max_new_tokens` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
    /// `on_policy_after` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_policy_after: Option<usize>,
    /// `replace_below` for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_below: Option<f64>,
}

fn default_sample_temperature() -> f64 {
    1.0
}

fn is_zero_steps(n: &usize) -> bool {
    *n == 0
}

fn is_zero_share(x: &f64) -> bool {
    *x == 0.0
}

/// The smallest `distill.temperature` accepted.
pub const MIN_TEMPERATURE: f64 = 0.05;
/// The largest `distill.temperature` accepted.
pub const MAX_TEMPERATURE: f64 = 100.0;

fn default_beta() -> f64 {
    0.5
}
fn default_temperature() -> f64 {
    1.0
}
fn default_alpha() -> f64 {
    0.5
}
fn default_true() -> bool {
    true
}
fn default_distill_train() -> TrainConfig {
    TrainConfig::with_steps(400)
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            loss: DistillLoss::Kd,
            divergence: DivergenceKind::ForwardKl,
            beta: default_beta(),
            temperature: default_temperature(),
            alpha: default_alpha(),
            full_vocab: false,
            include_gold: true,
            gold_rows: None,
            baseline: true,
            on_policy: 0.0,
            sample_temperature: default_sample_temperature(),
            max_new_tokens: None,
            on_policy_after: 0,
            replace_below: 0.0,
            train: default_distill_train(),
            compare: Vec::new(),
        }
    }
}

impl DistillConfig {
    /// These settings with `v`'s keys in place, and no comparisons of their own.
    pub fn variant(&self, v: &DistillVariant) -> DistillConfig {
        DistillConfig {
            loss: v.loss.unwrap_or(self.loss),
            divergence: v.divergence.unwrap_or(self.divergence),
            beta: v.beta.unwrap_or(self.beta),
            temperature: v.temperature.unwrap_or(self.temperature),
            alpha: v.alpha.unwrap_or(self.alpha),
            full_vocab: v.full_vocab.unwrap_or(self.full_vocab),
            on_policy: v.on_policy.unwrap_or(self.on_policy),
            sample_temperature: v.sample_temperature.unwrap_or(self.sample_temperature),
            max_new_tokens: v.max_new_tokens.or(self.max_new_tokens),
            on_policy_after: v.on_policy_after.unwrap_or(self.on_policy_after),
            replace_below: v.replace_below.unwrap_or(self.replace_below),
            compare: Vec::new(),
            ..self.clone()
        }
    }

    pub(super) fn check(&self) -> Result<(), (String, String)> {
        let mut seen = Vec::new();
        for (i, v) in self.compare.iter().enumerate() {
            let slug = !v.name.is_empty()
                && v.name.len() <= 40
                && v.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !slug {
                return Err((
                    format!("distill.compare[{i}].name"),
                    format!(
                        "is `{}`; a comparison's name names its report row and its folder: use 1 \
                         to 40 lowercase letters, digits and `-` (e.g. `on-policy`)",
                        crate::text::inert_line(&v.name)
                    ),
                ));
            }
            if seen.contains(&&v.name) {
                return Err((
                    format!("distill.compare[{i}].name"),
                    format!("`{}` names two comparisons; give each its own name", v.name),
                ));
            }
            seen.push(&v.name);
            self.variant(v).check().map_err(|(k, m)| {
                (
                    k.replacen("distill.", &format!("distill.compare[{i}]."), 1),
                    m,
                )
            })?;
        }
        for (k, v) in [("distill.beta", self.beta), ("distill.alpha", self.alpha)] {
            if !(0.0..=1.0).contains(&v) {
                return Err((k.into(), format!("is {v}; expected a number in [0, 1]")));
            }
        }
        // Logits divided by a temperature far below 0.05 overflow f32 (the softmax becomes NaN),
        // and one far above 100 flattens both distributions until KD carries no signal; KD
        // recipes use 0.5 to 10.
        if !(MIN_TEMPERATURE..=MAX_TEMPERATURE).contains(&self.temperature) {
            return Err((
                "distill.temperature".into(),
                format!(
                    "is {}; expected a number from {MIN_TEMPERATURE} to {MAX_TEMPERATURE} (KD \
                     usually uses 1 to 4)",
                    self.temperature
                ),
            ));
        }
        if self.gold_rows == Some(0) {
            return Err((
                "distill.gold_rows".into(),
                "is 0; expected at least 1, or leave it out for every gold row (to train the \
                 students on no gold rows, set `include_gold = false` and `baseline = false`)"
                    .into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.on_policy) {
            return Err((
                "distill.on_policy".into(),
                format!(
                    "is {}; expected a share from 0 (off-policy: the stored teacher answers) to 1 \
                     (every batch sampled by the student)",
                    self.on_policy
                ),
            ));
        }
        if !(self.sample_temperature >= 0.0 && self.sample_temperature <= 10.0) {
            return Err((
                "distill.sample_temperature".into(),
                format!(
                    "is {}; expected 0 (greedy) to 10 (1 samples the student as it is)",
                    self.sample_temperature
                ),
            ));
        }
        if self.max_new_tokens == Some(0) {
            return Err((
                "distill.max_new_tokens".into(),
                "is 0; the student must sample at least 1 token (leave it out for \
                 `generate.max_new_tokens`)"
                    .into(),
            ));
        }
        if self.on_policy_after > 0 && self.on_policy_after >= self.train.steps {
            return Err((
                "distill.on_policy_after".into(),
                format!(
                    "is {}, not below `distill.train.steps` ({}), so the student would never \
                     write a batch; lower it, or set `distill.on_policy = 0`",
                    self.on_policy_after, self.train.steps
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.replace_below) {
            return Err((
                "distill.replace_below".into(),
                format!(
                    "is {}; expected a probability from 0 (off: the student's samples as they \
                     are) to below 1 (0.1 replaces the tokens the teacher gives under 10%)",
                    self.replace_below
                ),
            ));
        }
        if self.replace_below > 0.0 && self.on_policy == 0.0 {
            return Err((
                "distill.replace_below".into(),
                format!(
                    "is {}, but `distill.on_policy` is 0, so the student samples nothing for the \
                     teacher to replace; set `distill.on_policy` above 0, or leave \
                     `replace_below` out",
                    self.replace_below
                ),
            ));
        }
        if self.on_policy > 0.0 && self.loss == DistillLoss::Ce {
            return Err((
                "distill.on_policy".into(),
                "needs `loss = \"kd\"`: on-policy distillation learns from the teacher's \
                 distribution at the student's own tokens"
                    .into(),
            ));
        }
        if self.full_vocab && self.loss == DistillLoss::Ce {
            return Err((
                "distill.full_vocab".into(),
                "needs `loss = \"kd\"`; with `ce` the student learns from the teacher's text only"
                    .into(),
            ));
        }
        self.train.check("distill.train")
    }
}

/// One step of the normaliser applied to answers and references before exact match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    /// Strip leading and trailing whitespace.
    Trim,
    /// Lowercase.
    Lowercase,
    /// Collapse runs of whitespace into one space.
    Whitespace,
    /// Drop punctuation.
    Punctuation,
    /// Keep the last number alone, as GSM8K graders read answers (`so the sum is 1,234.` →
    /// `1234`), so an answer is graded on its result whatever way it took there. A text with no
    /// number is left as it is.
    LastNumber,
}

impl Normalize {
    /// What the step does, in words.
    pub fn words(self) -> &'static str {
        match self {
            Normalize::Trim => "trimming surrounding spaces",
            Normalize::Lowercase => "lowercasing",
            Normalize::Whitespace => "collapsing whitespace",
            Normalize::Punctuation => "dropping punctuation",
            Normalize::LastNumber => "keeping the last number",
        }
    }

    /// How answers are compared after `steps`, for reports: `after trimming surrounding spaces
    /// and lowercasing`, or `on the answers as written`.
    pub fn describe(steps: &[Normalize]) -> String {
        let words: Vec<&str> = steps.iter().map(|s| s.words()).collect();
        match words.as_slice() {
            [] => "on the answers as written".into(),
            [one] => format!("after {one}"),
            [rest @ .., last] => format!("after {} and {last}", rest.join(", ")),
        }
    }

    /// Applies `steps` in order.
    pub fn apply(steps: &[Normalize], text: &str) -> String {
        let mut s = text.to_string();
        for step in steps {
            s = match step {
                Normalize::Trim => s.trim().to_string(),
                Normalize::Lowercase => s.to_lowercase(),
                Normalize::Whitespace => s.split_whitespace().collect::<Vec<_>>().join(" "),
                Normalize::Punctuation => s.chars().filter(|c| !c.is_ascii_punctuation()).collect(),
                Normalize::LastNumber => last_number(&s).unwrap_or(s),
            };
        }
        s
    }
}

/// The last number in `text`, written one way: thousands commas dropped, no leading zeros, no
/// trailing zeros after the point (`-0,012.50` → `-12.5`). A comma counts as a thousands
/// separator only before three digits (`7,2,8` ends in `8`), and a minus as a sign only where no
/// letter or digit comes right before it (`2021-03-03` ends in `3`). `None` without a digit.
fn last_number(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let end = b.iter().rposition(u8::is_ascii_digit)? + 1;
    let mut start = end;
    // Digits since the last separator, reading leftwards.
    let (mut group, mut point, mut comma) = (0, false, false);
    while start > 0 {
        let c = b[start - 1];
        let digit_before = start >= 2 && b[start - 2].is_ascii_digit();
        if c.is_ascii_digit() {
            group += 1;
        } else if c == b',' && digit_before && group == 3 {
            comma = true;
            group = 0;
        } else if c == b'.' && digit_before && !point && !comma {
            point = true;
            group = 0;
        } else {
            break;
        }
        start -= 1;
    }
    let negative =
        start > 0 && b[start - 1] == b'-' && !(start >= 2 && b[start - 2].is_ascii_alphanumeric());
    let number: String = text[start..end].chars().filter(|&c| c != ',').collect();
    let (whole, fraction) = number.split_once('.').unwrap_or((&number, ""));
    let whole = match whole.trim_start_matches('0') {
        "" => "0",
        w => w,
    };
    let fraction = fraction.trim_end_matches('0');
    let mut out = String::new();
    if negative && (whole != "0" || !fraction.is_empty()) {
        out.push('-');
    }
    out.push_str(whole);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    Some(out)
}

/// `[eval]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Steps applied to answers and references before they are compared: `trim`, `lowercase`,
    /// `whitespace`, `punctuation`, `last_number` (answers graded on their result alone).
    #[serde(default = "default_normalize")]
    pub normalize: Vec<Normalize>,
    /// Tokens a model may write per eval prompt (greedy).
    #[serde(default = "default_eval_tokens")]
    pub max_new_tokens: usize,
    /// Prompts answered together.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// Slices the eval set must have rows in (its `slice` column, or the built-in task's
    /// `en-GB`): evaluation stops with a message naming a slice no row is in, rather than
    /// report a table without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<String>,
}

fn default_normalize() -> Vec<Normalize> {
    vec![Normalize::Trim]
}
fn default_eval_tokens() -> usize {
    32
}
fn default_eval_batch() -> usize {
    64
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            normalize: default_normalize(),
            max_new_tokens: default_eval_tokens(),
            batch_size: default_eval_batch(),
            slices: Vec::new(),
        }
    }
}

impl EvalConfig {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        for (k, v) in [
            ("eval.max_new_tokens", self.max_new_tokens),
            ("eval.batch_size", self.batch_size),
        ] {
            if v == 0 {
                return Err((k.into(), "is 0; expected at least 1".into()));
            }
        }
        Ok(())
    }
}

/// `[finetune]`: the expert fine-tune, from the distilled student.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// DPO's β: how far the preferences may pull the student from the distilled one (the frozen
    /// reference). TRL's default is 0.1.
    #[serde(default = "default_dpo_beta")]
    pub beta: f64,
    /// Weight of the DPO term beside the SFT cross-entropy (0: SFT only). Small by default: on the
    /// demo, weight 1 pulled exact match below the distilled student's (pairs of dates that
    /// differ in a digit or two), weight 0.1 keeps the SFT gain.
    #[serde(default = "default_dpo_weight")]
    pub dpo_weight: f64,
    /// Share of the training rows drawn from the synthetic set (replay against forgetting what
    /// distillation taught), in [0, 1): every synthetic row the experts did not overrule (a
    /// prompt they answered, or of a shape they mostly corrected) is replayed, and the feedback
    /// rows are repeated until they are the rest.
    #[serde(default = "default_replay")]
    pub replay: f64,
    /// How much a token the expert changed counts in the loss, against 1 for every other token:
    /// in a correction, the tokens that differ from the output it corrected (the rest of the
    /// answer the student wrote already). 1 weighs all tokens alike.
    #[serde(default = "default_corrected_weight")]
    pub corrected_weight: f64,
    /// Fewer feedback rows than this (SFT rows and preference pairs together; a correction gives
    /// one of each) rarely lift a student and can lower it: the fine-tune still runs, but says
    /// so before it starts.
    #[serde(default = "default_min_decisions")]
    pub min_decisions: usize,
    /// Which student the run ends with: `better` keeps the fine-tuned student only when its exact
    /// match (on the validation set when the run holds one out, else on the eval set) is at
    /// least the distilled student's; otherwise the distilled one stays the run's final student,
    /// and the run says so. `finetuned` always keeps it.
    #[serde(default)]
    pub keep: KeepStudent,
    /// How the student is fine-tuned.
    #[serde(
        default = "default_finetune_train",
        deserialize_with = "finetune_train"
    )]
    pub train: TrainConfig,
}

/// Which student a run ends with after the expert fine-tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeepStudent {
    /// The fine-tuned student when it scores at least as well as the distilled one, else the
    /// distilled one.
    #[default]
    Better,
    /// The fine-tuned student, whatever it scores.
    Finetuned,
}

fn default_min_decisions() -> usize {
    50
}

fn default_dpo_beta() -> f64 {
    0.1
}
fn default_dpo_weight() -> f64 {
    0.1
}
fn default_replay() -> f64 {
    0.5
}
fn default_corrected_weight() -> f64 {
    1.0
}
fn default_finetune_train() -> TrainConfig {
    TrainConfig {
        // Gentler than distillation: the student is already trained, and the feedback is small.
        lr: 3e-4,
        warmup: 10,
        ..TrainConfig::with_steps(200)
    }
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            beta: default_dpo_beta(),
            dpo_weight: default_dpo_weight(),
            replay: default_replay(),
            corrected_weight: default_corrected_weight(),
            min_decisions: default_min_decisions(),
            keep: KeepStudent::Better,
            train: default_finetune_train(),
        }
    }
}

impl FinetuneConfig {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err((
                "finetune.beta".into(),
                format!("is {}; expected a positive number", self.beta),
            ));
        }
        if !(self.dpo_weight >= 0.0 && self.dpo_weight.is_finite()) {
            return Err((
                "finetune.dpo_weight".into(),
                format!("is {}; expected a number ≥ 0", self.dpo_weight),
            ));
        }
        if !(0.0..1.0).contains(&self.replay) {
            return Err((
                "finetune.replay".into(),
                format!("is {}; expected a share in [0, 1)", self.replay),
            ));
        }
        if !(self.corrected_weight >= 1.0 && self.corrected_weight.is_finite()) {
            return Err((
                "finetune.corrected_weight".into(),
                format!(
                    "is {}; expected a number ≥ 1 (1 weighs corrected tokens like the others)",
                    self.corrected_weight
                ),
            ));
        }
        self.train.check("finetune.train")
    }
}
