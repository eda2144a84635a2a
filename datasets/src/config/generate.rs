//! `[teacher]` and `[generate]`: who writes the synthetic set, and how.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::train::{Architecture, TrainConfig};
use super::{DedupMode, SourceConfig};

/// Where the merges of the run's own tokenizer stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerSplit {
    /// Every digit apart; merges cross spaces and punctuation.
    Digits,
    /// Every digit apart, and words, punctuation and spaces apart as GPT-2 splits them.
    Words,
}

/// Whether a `tokenizer_split` is the default's, so configs that spell it out keep their hash.
fn splits_as_default(split: &Option<TokenizerSplit>) -> bool {
    matches!(split, None | Some(TokenizerSplit::Digits))
}

/// Which kind of teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TeacherKind {
    /// A checkpoint directory on this machine (Hugging Face layout), run by the workbench.
    #[default]
    Local,
    /// Any OpenAI-compatible server: vLLM, llama.cpp, Ollama, a hosted API.
    Openai,
}

/// Which OpenAI endpoint an `openai` teacher is asked through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiKind {
    /// `/v1/chat/completions`: the server applies its chat template.
    #[default]
    Chat,
    /// `/v1/completions`: the rendered prompt text is sent as is.
    Completions,
}

fn is_f32(w: &TeacherWeights) -> bool {
    *w == TeacherWeights::F32
}

/// The weights a local teacher generates with on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum TeacherWeights {
    /// The checkpoint's weights in f32.
    #[default]
    #[serde(rename = "f32")]
    F32,
    /// 8-bit blocks with integer dot products (llama.cpp's Q8_0): about 3.5× fewer bytes a step.
    #[serde(rename = "q8_0")]
    Q8_0,
    /// 4-bit blocks (llama.cpp's Q4_0): about 7× fewer bytes a step, a larger rounding error.
    #[serde(rename = "q4_0")]
    Q4_0,
}

/// One URL or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One base URL.
    One(String),
    /// A fleet: the least busy server first, a failing one taken out until a health check passes.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The URLs, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `[teacher]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// `local` (a checkpoint) or `openai` (an OpenAI-compatible server).
    #[serde(default)]
    pub kind: TeacherKind,
    /// `local`: the checkpoint directory (config.json, model.safetensors, tokenizer.json) or a
    /// GGUF file; relative to the config file. Default: the run's `teacher/`, which `workbench teacher
    /// train` writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Where the run's models compute: the local teacher, and the student's training, the
    /// fine-tune, eval and review candidates, whatever the teacher's kind. `cpu`, `cuda:N` or
    /// `wgpu` (with those features).
    #[serde(default = "default_device")]
    pub device: String,
    /// `local`: prompts generated together in one batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// `local`: the weights generation reads on the CPU: `f32` (default), `q8_0` or `q4_0`
    /// (quantized as llama.cpp does, for speed; the answers and their logprobs then come from
    /// the rounded weights).
    #[serde(default, skip_serializing_if = "is_f32")]
    pub weights: TeacherWeights,
    /// `openai`: the server's base URL (`http://127.0.0.1:8000/v1`), or a fleet of them: each
    /// request goes to the server with the fewest outstanding, and one that fails 3 times in a
    /// row is taken out until a health check (`GET models`) passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<OneOrMany>,
    /// `openai`: the model name the server knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `openai`: `chat` or `completions`.
    #[serde(default)]
    pub api: ApiKind,
    /// `openai`: the name of the environment variable that holds the API key (the key itself
    /// never goes in a config, a file or a log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// `openai`: allow a base URL that is not on this machine. Prompts then leave it; the run
    /// records which hosts received them.
    #[serde(default)]
    pub allow_remote: bool,
    /// `openai`: requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// `openai`: seconds one request may take before it is abandoned and retried.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,
    /// `openai`: retries of one request after a connection error, a timeout, a malformed
    /// answer, 408, 409, 429 or 5xx, with exponential backoff and jitter (`Retry-After`
    /// honoured, up to 600 s).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// `openai`: the first backoff, in milliseconds; it doubles per retry.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// `openai`: the longest backoff, in milliseconds (a server's `Retry-After` may ask for
    /// longer).
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// `openai`: ask for token ids as `token_id:N` (vLLM's `return_tokens_as_token_ids`; the
    /// workbench's own server honours it too). Without ids, returned token strings are mapped
    /// through `tokenizer` and the set records that the mapping is approximate.
    #[serde(default = "default_true")]
    pub token_ids: bool,
    /// `openai`: the served model's tokenizer directory, relative to the config file: it maps
    /// token strings to ids when the server returns no ids, and tells logit KD and on-policy
    /// distillation the teacher's vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    /// Price of a million prompt tokens, in your currency; with it the summary shows the cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_input_per_mtok: Option<f64>,
    /// Price of a million completion tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_output_per_mtok: Option<f64>,
    /// `workbench teacher train`: tokens in the run's tokenizer, a byte-level BPE trained on the
    /// run's texts and shared by the teacher and the student.
    #[serde(default = "super::train::default_vocab_size")]
    pub vocab_size: usize,
    /// `workbench teacher train`: where the merges of the run's tokenizer stop. `digits` (the
    /// default): every digit apart and merges across words, so a constant instruction is a few
    /// tokens, which small task models learn fastest. `words`: digits apart and words apart too,
    /// as SmolLM's tokenizer splits, which llama.cpp runs, so `export.gguf` can write the student.
    #[serde(default, skip_serializing_if = "splits_as_default")]
    pub tokenizer_split: Option<TokenizerSplit>,
    /// `workbench teacher train`: the teacher's shape.
    #[serde(default = "super::train::default_teacher_architecture")]
    pub architecture: Architecture,
    /// `workbench teacher train`: how it is trained on the gold set.
    #[serde(
        default = "super::train::default_teacher_train",
        deserialize_with = "super::train::teacher_train"
    )]
    pub train: TrainConfig,
}

fn default_device() -> String {
    "cpu".into()
}
fn default_batch_size() -> usize {
    16
}
fn default_concurrency() -> usize {
    8
}
fn default_timeout_secs() -> f64 {
    120.0
}
fn default_max_retries() -> u32 {
    6
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    30_000
}
fn default_true() -> bool {
    true
}

impl Default for TeacherConfig {
    fn default() -> Self {
        TeacherConfig {
            kind: TeacherKind::Local,
            path: None,
            device: default_device(),
            batch_size: default_batch_size(),
            weights: TeacherWeights::F32,
            base_url: None,
            model: None,
            api: ApiKind::Chat,
            api_key_env: None,
            allow_remote: false,
            concurrency: default_concurrency(),
            timeout_secs: default_timeout_secs(),
            max_retries: default_max_retries(),
            backoff_ms: default_backoff_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            token_ids: true,
            tokenizer: None,
            price_input_per_mtok: None,
            price_output_per_mtok: None,
            vocab_size: super::train::default_vocab_size(),
            tokenizer_split: None,
            architecture: super::train::default_teacher_architecture(),
            train: super::train::default_teacher_train(),
        }
    }
}

/// A check on the completion's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Validator {
    /// The completion parses as JSON.
    Json,
    /// The completion is an ISO 8601 calendar date, `YYYY-MM-DD`, that exists.
    IsoDate,
    /// The completion is a number.
    Number,
}

/// How a completion is compared with a row's reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verifier {
    /// Equal after trimming whitespace.
    Exact,
    /// Equal as numbers (the last number in the completion, as GSM8K graders do).
    Numeric,
    /// The reference appears in the completion.
    Contains,
}

/// `[generate]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    /// Where the prompts come from. Default: the `prompts` set of the run's data stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<SourceConfig>,
    /// Gold examples for few-shot prompts and for synthesis seeds. Default: the data stage's
    /// `gold` set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<SourceConfig>,
    /// Only the first N prompts (0: all).
    #[serde(default)]
    pub limit: usize,
    /// A minijinja template of the user turn. It sees `prompt`, `reference` and `examples` (a
    /// list of `{prompt, completion}` gold rows, `shots` of them).
    #[serde(default = "default_template")]
    pub template: String,
    /// A system message before the user turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Gold examples shown in each prompt (few-shot), chosen by a seeded draw per prompt.
    #[serde(default)]
    pub shots: usize,
    /// Tokens the teacher may write per prompt.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[serde(default)]
    pub temperature: f32,
    /// Nucleus sampling (1: off).
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    /// The teacher's top-k logprobs kept per token (at most 20 for OpenAI-compatible servers).
    #[serde(default = "default_top_logprobs")]
    pub top_logprobs: usize,
    /// Texts that end a completion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Self-instruct: up to this many new prompts the teacher writes from gold seed tasks before
    /// answering (it is asked at most five times as often; near-duplicates are rejected).
    #[serde(default)]
    pub synthesize: usize,
    /// Self-instruct: seed tasks shown per synthesis request.
    #[serde(default = "default_synthesize_examples")]
    pub synthesize_examples: usize,
    /// Self-instruct: a new prompt whose ROUGE-L F1 with any earlier prompt is above this is
    /// rejected as a near-duplicate (0.7, as Self-Instruct did).
    #[serde(default = "default_max_similarity")]
    pub synthesize_max_similarity: f64,
    /// Filter: completions shorter than this many characters are dropped.
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    /// Filter: completions longer than this many characters are dropped (0: no bound).
    #[serde(default)]
    pub max_chars: usize,
    /// Filter: a regex the completion must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<String>,
    /// Filter: a regex the completion must not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<String>,
    /// Filter: `json`, `iso_date` or `number`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<Validator>,
    /// Filter, for rows with a reference: `exact`, `numeric` or `contains`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verifier>,
    /// Filter: answers the teacher was unsure of, whose mean token logprob is below this (a
    /// negative number: -0.1 keeps answers whose tokens average over 90% probability). A teacher
    /// no better than the gold-only student is wrong most often where it is unsure; this keeps
    /// its confident answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_logprob_mean: Option<f64>,
    /// Filter: duplicate completions of the same prompt (`exact`, `near` or `none`).
    #[serde(default = "default_dedup")]
    pub dedup: DedupMode,
    /// Filter: drop prompts that overlap the eval set (the rule of `data.decontaminate`, at
    /// `data.decontam_ngram`), before the teacher is asked, so no call is paid for a row that
    /// would be dropped. The data stage has already checked the prompt pool; this checks what
    /// it did not see (synthesized prompts, `generate.prompts`).
    #[serde(default = "default_true")]
    pub decontaminate: bool,
    /// Before a teacher the run did not train itself (`teacher.path`, an `openai` server) is
    /// asked the prompt pool, ask it the validation prompts (else the eval prompts) and measure
    /// its exact match, so a teacher no better than the gold-only student is caught before it is
    /// paid to teach (one call per row, through the response cache).
    #[serde(default = "default_true")]
    pub check_teacher: bool,
    /// A student checkpoint: with it each row gets the teacher–student disagreement score
    /// the review queue sorts on. Default: the run's `student/final/` when it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student: Option<PathBuf>,
}

fn default_template() -> String {
    "{{ prompt }}".into()
}
fn default_max_new_tokens() -> usize {
    64
}
fn default_top_p() -> f32 {
    1.0
}
fn default_top_logprobs() -> usize {
    20
}
fn default_synthesize_examples() -> usize {
    3
}
fn default_max_similarity() -> f64 {
    0.7
}
fn default_min_chars() -> usize {
    1
}
fn default_dedup() -> DedupMode {
    DedupMode::Exact
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            prompts: None,
            examples: None,
            limit: 0,
            template: default_template(),
            system: None,
            shots: 0,
            max_new_tokens: default_max_new_tokens(),
            temperature: 0.0,
            top_p: default_top_p(),
            top_logprobs: default_top_logprobs(),
            stop: Vec::new(),
            synthesize: 0,
            synthesize_examples: default_synthesize_examples(),
            synthesize_max_similarity: default_max_similarity(),
            min_chars: default_min_chars(),
            max_chars: 0,
            require: None,
            reject: None,
            validator: None,
            verify: None,
            min_logprob_mean: None,
            check_teacher: true,
            dedup: default_dedup(),
            decontaminate: true,
            student: None,
        }
    }
}

impl TeacherConfig {
    /// Whether the run trains this teacher itself on the gold set (a local teacher without
    /// `path`), rather than using one it was given.
    pub fn trained_by_run(&self) -> bool {
        self.kind == TeacherKind::Local && self.path.is_none()
    }

    /// Checks what types alone cannot; `Err((key, message))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.tokenizer_split.is_some() && (self.path.is_some() || self.tokenizer.is_some()) {
            return Err((
                "teacher.tokenizer_split",
                "is set, but the run trains no tokenizer of its own: it uses the one of \
                 `teacher.path` (or `teacher.tokenizer`); remove `tokenizer_split`"
                    .into(),
            ));
        }
        match self.kind {
            TeacherKind::Local => {
                if self.batch_size == 0 {
                    return Err(("teacher.batch_size", "is 0; expected at least 1".into()));
                }
                if self.weights != TeacherWeights::F32 && self.device != "cpu" {
                    return Err((
                        "teacher.weights",
                        format!(
                            "`{}` runs on the CPU decoder; `teacher.device` is `{}` (set it to \
                             `cpu`, or the weights to `f32`)",
                            match self.weights {
                                TeacherWeights::Q4_0 => "q4_0",
                                _ => "q8_0",
                            },
                            self.device
                        ),
                    ));
                }
                for (key, set) in [
                    ("teacher.base_url", self.base_url.is_some()),
                    ("teacher.model", self.model.is_some()),
                    ("teacher.api_key_env", self.api_key_env.is_some()),
                ] {
                    if set {
                        return Err((
                            key,
                            "is for `kind = \"openai\"` teachers; this teacher is `local` (set \
                             `teacher.kind = \"openai\"`, or remove the key)"
                                .into(),
                        ));
                    }
                }
            }
            TeacherKind::Openai => {
                if self.weights != TeacherWeights::F32 {
                    return Err((
                        "teacher.weights",
                        "is for `local` teachers, which this workbench runs; an `openai` \
                         teacher's server decides its own weights (remove the key)"
                            .into(),
                    ));
                }
                let urls = self.base_url.as_ref().map(OneOrMany::to_vec);
                match urls {
                    None => {
                        return Err((
                            "teacher.base_url",
                            "is missing; an `openai` teacher needs the server's base URL, e.g. \
                             `http://127.0.0.1:8000/v1`"
                                .into(),
                        ));
                    }
                    Some(v) if v.is_empty() => {
                        return Err(("teacher.base_url", "is an empty list".into()));
                    }
                    Some(v) => {
                        if let Some(bad) = v
                            .iter()
                            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
                        {
                            return Err((
                                "teacher.base_url",
                                format!("`{bad}` is not an http:// or https:// URL"),
                            ));
                        }
                    }
                }
                if self.model.as_deref().is_none_or(str::is_empty) {
                    return Err((
                        "teacher.model",
                        "is missing; an `openai` teacher needs the model name the server serves"
                            .into(),
                    ));
                }
                if self.path.is_some() {
                    return Err((
                        "teacher.path",
                        "is for `local` teachers; an `openai` teacher is reached at `base_url`"
                            .into(),
                    ));
                }
                if self.concurrency == 0 {
                    return Err(("teacher.concurrency", "is 0; expected at least 1".into()));
                }
                if !(self.timeout_secs > 0.0 && self.timeout_secs.is_finite()) {
                    return Err((
                        "teacher.timeout_secs",
                        format!("is {}; expected a positive number", self.timeout_secs),
                    ));
                }
                if let Some(env) = &self.api_key_env
                    && (env.is_empty() || env.contains('='))
                {
                    return Err((
                        "teacher.api_key_env",
                        "must name an environment variable (e.g. `OPENAI_API_KEY`), not hold \
                         the key"
                            .into(),
                    ));
                }
            }
        }
        for (key, p) in [
            ("teacher.price_input_per_mtok", self.price_input_per_mtok),
            ("teacher.price_output_per_mtok", self.price_output_per_mtok),
        ] {
            if let Some(p) = p
                && !(p >= 0.0 && p.is_finite())
            {
                return Err((key, format!("is {p}; expected a price of 0 or more")));
            }
        }
        Ok(())
    }
}

impl GenerateConfig {
    /// Checks what types alone cannot; `Err((key, message))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.max_new_tokens == 0 {
            return Err((
                "generate.max_new_tokens",
                "is 0; expected at least 1".into(),
            ));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err((
                "generate.temperature",
                format!("is {}; expected 0 (greedy) or more", self.temperature),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err((
                "generate.top_p",
                format!("is {}; expected a number in (0, 1]", self.top_p),
            ));
        }
        if !(self.synthesize_max_similarity > 0.0 && self.synthesize_max_similarity <= 1.0) {
            return Err((
                "generate.synthesize_max_similarity",
                format!(
                    "is {}; expected a number in (0, 1]",
                    self.synthesize_max_similarity
                ),
            ));
        }
        if self.synthesize > 0 && self.synthesize_examples == 0 {
            return Err((
                "generate.synthesize_examples",
                "is 0; synthesis shows the teacher at least one seed task".into(),
            ));
        }
        if let Some(m) = self.min_logprob_mean
            && !(m.is_finite() && m < 0.0)
        {
            return Err((
                "generate.min_logprob_mean",
                format!(
                    "is {m}; expected a negative mean token logprob, e.g. -0.1 (answers whose \
                     tokens average about 90% probability or more are kept)"
                ),
            ));
        }
        if self.max_chars > 0 && self.max_chars < self.min_chars {
            return Err((
                "generate.max_chars",
                format!(
                    "is {}, below `min_chars` ({}); no completion could pass",
                    self.max_chars, self.min_chars
                ),
            ));
        }
        for (key, re) in [
            ("generate.require", &self.require),
            ("generate.reject", &self.reject),
        ] {
            if let Some(re) = re
                && let Err(e) = regex::Regex::new(re)
            {
                let detail = e.to_string();
                let last = detail.lines().last().unwrap_or("").trim().to_string();
                return Err((key, format!("is not a valid regex: {last}")));
            }
        }
        let mut env = minijinja::Environment::new();
        if let Err(e) = env.add_template("generate.template", &self.template) {
            return Err(("generate.template", format!("does not parse: {e}")));
        }
        Ok(())
    }
}
