//! The job config: one TOML file describes a whole run, section by section, one section per stage.
//!
//! Every section is read with `deny_unknown_fields`, so a typo is an error that names the file,
//! line, column and key, never a silently ignored setting. `--set section.key=value` overrides go
//! through the same types and checks. The resolved config (every default filled in) is what gets
//! hashed, written into the run directory, and printed by `workbench config check`.
//!
//! Sections for stages that have not landed yet exist but take no keys; they grow as their
//! stages do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::set::Splits;

mod annotate;
pub mod memory;
pub use annotate::{AnnotateConfig, QueueOrder, check_store_url, redact_store_url};
mod generate;
mod train;
pub use generate::{
    ApiKind, GenerateConfig, OneOrMany, TeacherConfig, TeacherKind, TeacherWeights, TokenizerSplit,
    Validator, Verifier,
};
pub use train::{
    Architecture, DistillConfig, DistillLoss, DistillVariant, DivergenceKind, EvalConfig,
    FinetuneConfig, FromTeacher, KeepStudent, Normalize, StudentConfig, TrainConfig, kept_layers,
};

/// A config that could not be read: where, which key, what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The config file, or `--set` for an override.
    pub origin: String,
    /// 1-based line and column in the file, when known.
    pub position: Option<(usize, usize)>,
    /// The dotted key, when known.
    pub key: Option<String>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Invalid config `{}`", self.origin)?;
        if let Some((line, col)) = self.position {
            write!(f, " at line {line}, column {col}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The whole job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the run lives and how it is seeded.
    pub run: RunConfig,
    /// Gold, prompt and eval sets, and how they are cleaned.
    #[serde(default)]
    pub data: DataConfig,
    /// The teacher model.
    #[serde(default)]
    pub teacher: TeacherConfig,
    /// The student model.
    #[serde(default)]
    pub student: StudentConfig,
    /// Synthetic-set generation.
    #[serde(default)]
    pub generate: GenerateConfig,
    /// Distillation.
    #[serde(default)]
    pub distill: DistillConfig,
    /// Expert review.
    #[serde(default)]
    pub annotate: AnnotateConfig,
    /// The expert fine-tune.
    #[serde(default)]
    pub finetune: FinetuneConfig,
    /// Evaluation.
    #[serde(default)]
    pub eval: EvalConfig,
    /// How sets are written: splits, shards, licence.
    #[serde(default)]
    pub export: ExportConfig,
}

/// `[run]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Name of the run: its directory is `<dir>/<name>`. Letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Parent directory of run directories, relative to the current directory.
    #[serde(default = "default_runs_dir")]
    pub dir: PathBuf,
    /// Seed of everything random in the run (data generation, splits, sampling, training).
    #[serde(default)]
    pub seed: u64,
}

fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// Where a set comes from: a file or set directory, with an optional column mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A JSONL, JSON, CSV or Parquet file, or a set directory; relative to the config file.
    pub path: PathBuf,
    /// Our column name → the source's column name, e.g. `{ prompt = "question", reference = "answer" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub map: BTreeMap<String, String>,
}

/// A built-in task generator: the project makes its own data, deterministically from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinTask {
    /// Free-form English dates to ISO 8601 (`3rd of March 2021` → `2021-03-03`).
    Dates,
}

/// How near-duplicates are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DedupMode {
    /// Keep everything.
    None,
    /// Drop rows whose normalised text is identical to an earlier row's.
    Exact,
    /// Exact, then MinHash LSH on word n-grams above `near_threshold` Jaccard similarity.
    Near,
}

/// `[data]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Generate the sets with a built-in task instead of reading files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<BuiltinTask>,
    /// Gold examples (prompt + reference) that train the local teacher: with `task`, how many to
    /// make (400 when unset); with a `gold` file, how many of its first rows to take (unset: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_size: Option<usize>,
    /// Prompts without answers that the teacher labels: with `task`, how many to make (2,000
    /// when unset); with a `prompts` file, how many of its first rows to take (unset: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts_size: Option<usize>,
    /// Held-out prompts with references: with `task`, how many to make (200 when unset); with an
    /// `eval` file, how many of its first rows to take (unset: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_size: Option<usize>,
    /// Held-out prompts (with references) the distilled student answers for expert review: the
    /// loop's review candidates, on prompts it has not seen. With `task`, how many to make (0 or
    /// unset: none, and the review reads the synthetic set); with a `review` file, how many of
    /// its first rows to take (unset: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_size: Option<usize>,
    /// With `task`, the share of every set's rows in the task's slice (0 to 1; 0: none). The
    /// built-in dates task's slice is `en-GB` (slashes are day/month/year): its gold set reads
    /// them as a generalist would, wrongly, and its eval and review references read them right,
    /// so the teacher learns a mistake only experts can correct. Eval reports the slice apart.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slice_share: f64,
    /// The share of the eval set held out as a validation set (0 to 0.5; 0: none), by a seeded
    /// draw: training evaluates on it (early stopping, the loss curves) and the fine-tune's
    /// `keep = "better"` compares on it, so the eval set, where the headline table is measured,
    /// chooses nothing. Without one, both happen on the eval set.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validation_share: f64,
    /// Gold set from a file (instead of `task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold: Option<SourceConfig>,
    /// Prompt pool from a file (instead of `task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<SourceConfig>,
    /// Eval set from a file (instead of `task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<SourceConfig>,
    /// Review prompts from a file (instead of `task`); a `reference` column lets the simulated
    /// expert answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<SourceConfig>,
    /// Duplicate removal in the gold, prompt and review sets, one state across them (a review
    /// prompt that is a gold one goes); the eval set gets exact dedup of its own.
    #[serde(default = "default_dedup")]
    pub dedup: DedupMode,
    /// Jaccard similarity above which two prompts are near-duplicates (above 0, at most 1).
    #[serde(default = "default_near_threshold")]
    pub near_threshold: f64,
    /// Words per shingle for near-duplicate detection.
    #[serde(default = "default_shingle_words")]
    pub shingle_words: usize,
    /// Drop gold, prompt and review rows that overlap the eval set (see `datasets/src/decontam.rs`):
    /// a shared n-gram, or, for an eval item of fewer than 8 words, the same text. The synthetic
    /// set's prompts are checked too, before the teacher is asked (`generate.decontaminate`).
    #[serde(default = "default_true")]
    pub decontaminate: bool,
    /// Words per n-gram for decontamination (GPT-3 used 13); shorter eval items match whole.
    #[serde(default = "default_decontam_ngram")]
    pub decontam_ngram: usize,
    /// The largest share of the gold, prompt or review set one filter (dedup, decontamination)
    /// may remove before the run stops to say so, naming the filter and the counts (0 to 1; 1:
    /// never stop). A filter that
    /// removes most of a set is more often a mistake than a cleaning.
    #[serde(default = "default_max_removed_share")]
    pub max_removed_share: f64,
}

fn default_max_removed_share() -> f64 {
    0.2
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}
fn default_dedup() -> DedupMode {
    DedupMode::Exact
}
fn default_near_threshold() -> f64 {
    0.8
}
fn default_shingle_words() -> usize {
    3
}
fn default_true() -> bool {
    true
}
fn default_decontam_ngram() -> usize {
    13
}

impl DataConfig {
    /// The built-in task's set sizes, unset ones at their defaults.
    pub fn task_sizes(&self) -> [usize; 4] {
        [
            self.gold_size.unwrap_or(400),
            self.prompts_size.unwrap_or(2000),
            self.eval_size.unwrap_or(200),
            self.review_size.unwrap_or(0),
        ]
    }

    /// Each set's name, the key of its size and the size: `gold`, `prompts`, `eval`, `review`.
    pub fn sizes(&self) -> [(&'static str, &'static str, Option<usize>); 4] {
        [
            ("gold", "data.gold_size", self.gold_size),
            ("prompts", "data.prompts_size", self.prompts_size),
            ("eval", "data.eval_size", self.eval_size),
            ("review", "data.review_size", self.review_size),
        ]
    }

    /// The file of set `name` (`gold`, `prompts`, `eval`, `review`).
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        match name {
            "gold" => self.gold.as_ref(),
            "prompts" => self.prompts.as_ref(),
            "eval" => self.eval.as_ref(),
            "review" => self.review.as_ref(),
            _ => None,
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            task: None,
            gold_size: None,
            prompts_size: None,
            eval_size: None,
            review_size: None,
            slice_share: 0.0,
            validation_share: 0.0,
            gold: None,
            prompts: None,
            eval: None,
            review: None,
            dedup: default_dedup(),
            near_threshold: default_near_threshold(),
            shingle_words: default_shingle_words(),
            decontaminate: true,
            max_removed_share: default_max_removed_share(),
            decontam_ngram: default_decontam_ngram(),
        }
    }
}

/// `[export]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Split names and shares of the sets `workbench datasets export RUN` writes unless
    /// `--split` says otherwise, e.g. `{ train = 0.9, test = 0.1 }`: fractions of the rows (by a
    /// hash of their id, seeded by `run.seed`) that add up to 1. The sets inside the run keep
    /// one `train` split.
    #[serde(default = "default_splits")]
    pub splits: BTreeMap<String, f64>,
    /// Target size of one Parquet shard, in MiB.
    #[serde(default = "default_shard_mib")]
    pub shard_mib: u64,
    /// Rows per Parquet row group, at most.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// zstd level of every Parquet file (1 fastest, 22 smallest).
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
    /// Licence identifier written into dataset cards (`apache-2.0`, `cc-by-4.0`, `other`, ...):
    /// the run's sets, and those `workbench datasets export RUN` writes unless `--license` says
    /// otherwise.
    #[serde(default = "default_license")]
    pub license: String,
    /// Also write the final student as a GGUF file for llama.cpp, Ollama or LM Studio, its
    /// matrices stored as `f32`, `f16`, `q8_0` or `q4_0`: `runs/NAME/NAME.TYPE.gguf`. Needs a
    /// student whose tokenizer llama.cpp can run: a pretrained one (`student.path`, or
    /// `student.from_teacher` with a pretrained teacher), or the run's own with
    /// `teacher.tokenizer_split = "words"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<String>,
}

/// The GGUF types `export.gguf` takes.
pub const GGUF_TYPES: [&str; 4] = ["f32", "f16", "q8_0", "q4_0"];

fn default_splits() -> BTreeMap<String, f64> {
    BTreeMap::from([("train".to_string(), 1.0)])
}
fn default_shard_mib() -> u64 {
    256
}
fn default_row_group_rows() -> usize {
    100_000
}
fn default_zstd_level() -> i32 {
    1
}
fn default_license() -> String {
    "unknown".into()
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            splits: default_splits(),
            shard_mib: default_shard_mib(),
            row_group_rows: default_row_group_rows(),
            zstd_level: default_zstd_level(),
            license: default_license(),
            gguf: None,
        }
    }
}

impl ExportConfig {
    /// The split assignment, seeded by the run's seed.
    pub fn splits(&self, seed: u64) -> Splits {
        Splits {
            shares: self.splits.clone(),
            seed,
        }
    }
}

/// A loaded config and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The resolved config.
    pub config: Config,
    /// The file it was read from.
    pub path: PathBuf,
}

impl Config {
    /// The checks of one distillation mode (`[distill]`, or a `[[distill.compare]]` student's
    /// keys in its place) against the teacher and the generation settings; `prefix` names where
    /// its keys are.
    fn check_distill_mode(&self, prefix: &str, d: &DistillConfig) -> Result<(), (String, String)> {
        if d.full_vocab && self.teacher.kind != TeacherKind::Local {
            return Err((
                format!("{prefix}full_vocab"),
                "is true, which needs the teacher's whole distribution during training; only a \
                 local teacher gives it (a server answers with its top-k); set it to false \
                 (on-policy distillation then grades the student's tokens with the server's top \
                 `generate.top_logprobs`), or use `teacher.kind = \"local\"`"
                    .into(),
            ));
        }
        if d.loss == DistillLoss::Kd && !d.full_vocab && self.generate.top_logprobs == 0 {
            return Err((
                "generate.top_logprobs".into(),
                format!(
                    "is 0, but `{prefix}loss = \"kd\"` learns from the teacher's top-k logprobs, \
                     so the KD term would have nothing to match; keep at least 1 (20 is usual), \
                     or use `{prefix}loss = \"ce\"` (the teacher's text only)"
                ),
            ));
        }
        Ok(())
    }

    /// This config with the `[[distill.compare]]` student `v`'s keys in `[distill]`.
    pub fn distill_variant(&self, v: &DistillVariant) -> Config {
        let mut c = self.clone();
        c.distill = self.distill.variant(v);
        c
    }
}

impl LoadedConfig {
    /// Resolves a path written in the config: relative paths are relative to the config file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    /// The run directory: `<run.dir>/<run.name>`.
    pub fn run_dir(&self) -> PathBuf {
        self.config.run.dir.join(&self.config.run.name)
    }
}

/// Refuses a config whose run would need more memory than this machine has (see [`memory`]),
/// blaming the override that set the key, or else the file.
pub fn check_memory(loaded: &LoadedConfig, overrides: &[Override]) -> Result<(), ConfigError> {
    let Some(limit) = memory::available() else {
        return Ok(());
    };
    memory::check(&loaded.config, limit).map_err(|(key, message)| ConfigError {
        origin: blamed_override(overrides, Some(&key))
            .map_or_else(|| loaded.path.display().to_string(), Override::origin),
        position: None,
        key: Some(key),
        message,
    })
}

/// One `--set a.b=c` override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The dotted key, `a.b`.
    pub key: String,
    /// The value as typed, parsed as TOML when it can be (`3`, `true`, `[1, 2]`), else a string.
    pub value: String,
}

impl Override {
    /// Parses `a.b=c`.
    pub fn parse(s: &str) -> Result<Override, ConfigError> {
        let Some((key, value)) = s.split_once('=') else {
            return Err(ConfigError {
                origin: format!("--set {s}"),
                position: None,
                key: None,
                message: "expected `section.key=value`, e.g. `--set run.seed=3`".into(),
            });
        };
        let key = key.trim();
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(ConfigError {
                origin: format!("--set {s}"),
                position: None,
                key: None,
                message: "the key is empty; expected `section.key=value`".into(),
            });
        }
        Ok(Override {
            key: key.to_string(),
            value: value.trim().to_string(),
        })
    }

    fn origin(&self) -> String {
        format!("--set {}={}", self.key, self.value)
    }

    fn toml_value(&self) -> toml::Value {
        let doc = format!("v = {}", self.value);
        match toml::from_str::<toml::Table>(&doc) {
            Ok(mut t) => t
                .remove("v")
                .unwrap_or(toml::Value::String(self.value.clone())),
            Err(_) => toml::Value::String(self.value.clone()),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
        + 1;
    (line, col)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn tidy(message: &str) -> String {
    let m = message.trim().trim_end_matches('.');
    // serde's "unknown field `x`, expected one of `a`, `b`" reads better as a key.
    let mut m = m
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
        .replace("unknown variant", "unknown value")
        .replace("expected a sequence", "expected a list")
        .replace("expected a map", "expected a table");
    // serde names the Rust type a table deserialises into ("expected struct TeacherConfig"); a
    // user wrote TOML, where that is a table.
    while let Some(i) = m.find("expected struct ") {
        let rest = &m[i + "expected struct ".len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        m = format!("{}expected a table{}", &m[..i], &rest[end..]);
    }
    // The same for enums: "expected enum QueueOrder" is one of the names the key lists.
    while let Some(i) = m.find("expected enum ") {
        let rest = &m[i + "expected enum ".len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(rest.len());
        m = format!("{}expected one of its names{}", &m[..i], &rest[end..]);
    }
    // And it names Rust's number types ("expected u64"); a TOML value is an integer or a number.
    for (rust, toml) in [
        ("usize", "a non-negative integer"),
        ("u64", "a non-negative integer"),
        ("u32", "a non-negative integer"),
        ("u16", "a non-negative integer"),
        ("u8", "a non-negative integer"),
        ("i64", "an integer"),
        ("i32", "an integer"),
        ("f64", "a number"),
        ("f32", "a number"),
    ] {
        let from = format!("expected {rust}");
        let mut at = 0;
        while let Some(i) = m[at..].find(&from).map(|i| i + at) {
            let end = i + from.len();
            if m[end..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                at = end;
                continue;
            }
            m = format!("{}expected {toml}{}", &m[..i], &m[end..]);
            at = i + "expected ".len() + toml.len();
        }
    }
    if let Some(rest) = m.strip_prefix("unknown key `") {
        let unknown = rest.split('`').next().unwrap_or("");
        let best = m
            .split('`')
            .skip(3)
            .step_by(2)
            .map(|k| (edit_distance(unknown, k), k))
            .filter(|(d, _)| *d <= 2)
            .min();
        if let Some((_, k)) = best {
            m = format!("{m}; did you mean `{k}`?");
        }
    }
    m
}

fn path_string(path: &serde_path_to_error::Path) -> Option<String> {
    let s = path.to_string();
    (s != "." && !s.is_empty()).then_some(s)
}

/// Deserialises `T` from TOML text, reporting line, column and key.
fn from_text<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError {
        origin: origin.to_string(),
        position: e.span().map(|s| line_col(text, s.start)),
        key: None,
        message: tidy(e.message()),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = path_string(e.path());
        let inner = e.into_inner();
        ConfigError {
            origin: origin.to_string(),
            position: inner.span().map(|s| line_col(text, s.start)),
            key,
            message: tidy(inner.message()),
        }
    })
}

fn from_table<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    origin: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(table).map_err(|e| ConfigError {
        origin: origin.to_string(),
        position: None,
        key: path_string(e.path()),
        message: tidy(e.inner().message()),
    })
}

fn set_path(table: &mut toml::Table, o: &Override) -> Result<(), ConfigError> {
    let parts: Vec<&str> = o.key.split('.').collect();
    let mut t = table;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = t
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError {
                    origin: o.origin(),
                    position: None,
                    key: Some(parts[..=i].join(".")),
                    message: "is a value, not a section; it has no keys to set".into(),
                });
            }
        };
    }
    t.insert(parts[parts.len() - 1].to_string(), o.toml_value());
    Ok(())
}

/// The last override that set `key`, a section above it, or a key inside it.
fn blamed_override<'a>(overrides: &'a [Override], key: Option<&str>) -> Option<&'a Override> {
    let key = key?;
    overrides.iter().rev().find(|o| {
        key == o.key
            || key.starts_with(&format!("{}.", o.key))
            || o.key.starts_with(&format!("{key}."))
    })
}

impl Config {
    /// Reads a config file and applies overrides; every error names the file or the override.
    pub fn load(path: impl AsRef<Path>, overrides: &[Override]) -> crate::Result<LoadedConfig> {
        let path = path.as_ref();
        if path.is_dir() {
            return Err(crate::Error::invalid(format!(
                "`{}` is a directory; expected a TOML config file such as `configs/demo.toml`",
                path.display()
            )));
        }
        let text = std::fs::read(path).map_err(|e| crate::Error::read(path, e))?;
        let text = String::from_utf8(text).map_err(|e| ConfigError {
            origin: path.display().to_string(),
            position: None,
            key: None,
            message: format!(
                "the file is not valid UTF-8 (byte {})",
                e.utf8_error().valid_up_to()
            ),
        })?;
        let config = Config::from_str_with(&text, &path.display().to_string(), overrides)?;
        Ok(LoadedConfig {
            config,
            path: path.to_path_buf(),
        })
    }

    /// Parses config text (named `origin` in errors) and applies overrides.
    pub fn from_str_with(
        text: &str,
        origin: &str,
        overrides: &[Override],
    ) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError {
                origin: origin.to_string(),
                position: None,
                key: None,
                message: "the file is empty; a config needs at least `[run]` with a `name` and a \
                          `[data]` source\n\nhint: start from `configs/demo.toml`"
                    .into(),
            });
        }
        let config: Config = if overrides.is_empty() {
            from_text(text, origin)?
        } else {
            let mut table: toml::Table = from_text(text, origin)?;
            for o in overrides {
                set_path(&mut table, o)?;
            }
            match from_table::<Config>(table, origin) {
                Ok(c) => c,
                Err(mut e) => {
                    // Blame the file when the file alone has the same problem; else the override.
                    if let Err(file_error) = from_text::<Config>(text, origin)
                        && file_error.key == e.key
                    {
                        return Err(file_error);
                    }
                    if let Some(o) = blamed_override(overrides, e.key.as_deref()) {
                        e.origin = o.origin();
                    }
                    return Err(e);
                }
            }
        };
        if let Err(mut e) = config.validate(origin) {
            // A value out of range that an override set is the override's fault, not the file's.
            if let Some(o) = blamed_override(overrides, e.key.as_deref()) {
                e.origin = o.origin();
            }
            return Err(e);
        }
        Ok(config)
    }

    /// Checks what `run` needs beyond [`Config::validate`], before it starts: a prompt pool for the
    /// teacher to answer (found here, not after the teacher has trained).
    pub fn check_run(&self, origin: &str) -> Result<(), ConfigError> {
        let d = &self.data;
        if d.task.is_none() && d.prompts.is_none() && self.generate.prompts.is_none() {
            return Err(ConfigError {
                origin: origin.to_string(),
                position: None,
                key: Some("data.prompts".into()),
                message: "is not set, and neither is `generate.prompts` nor `data.task`, so the \
                          teacher would have no prompts to answer and the run would stop after \
                          training it; add `data.prompts = { path = \"...\" }`"
                    .into(),
            });
        }
        Ok(())
    }

    /// Checks what types alone cannot: names, ranges, sizes.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            origin: origin.to_string(),
            position: None,
            key: Some(key.to_string()),
            message,
        };
        let name = &self.run.name;
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(
                "run.name",
                format!(
                    "`{name}` is not a usable directory name; use letters, digits, `-`, `_` and `.`"
                ),
            ));
        }
        let d = &self.data;
        if !(d.near_threshold > 0.0 && d.near_threshold <= 1.0) {
            return Err(err(
                "data.near_threshold",
                format!("is {}; expected a number in (0, 1]", d.near_threshold),
            ));
        }
        for (key, v) in [
            ("data.shingle_words", d.shingle_words),
            ("data.decontam_ngram", d.decontam_ngram),
        ] {
            if v == 0 {
                return Err(err(key, "is 0; expected at least 1".into()));
            }
        }
        if !(0.0..=1.0).contains(&d.slice_share) {
            return Err(err(
                "data.slice_share",
                format!("is {}; expected a share from 0 to 1", d.slice_share),
            ));
        }
        if !(0.0..=1.0).contains(&d.max_removed_share) {
            return Err(err(
                "data.max_removed_share",
                format!("is {}; expected a share from 0 to 1", d.max_removed_share),
            ));
        }
        if !(0.0..=0.5).contains(&d.validation_share) {
            return Err(err(
                "data.validation_share",
                format!(
                    "is {}; expected a share from 0 to 0.5 (the rest of the eval set is where \
                     the results are measured)",
                    d.validation_share
                ),
            ));
        }
        if d.slice_share > 0.0 && d.task.is_none() {
            return Err(err(
                "data.slice_share",
                "is set without `data.task`: a slice is made by the built-in task; data from \
                 files carries its own in a `slice` column"
                    .into(),
            ));
        }
        if d.task.is_some() {
            for (name, key, v) in d.sizes() {
                if v == Some(0) && name != "review" {
                    return Err(err(
                        key,
                        "is 0; the built-in task needs at least one row".into(),
                    ));
                }
            }
            for (key, src) in [
                ("data.gold", &d.gold),
                ("data.prompts", &d.prompts),
                ("data.eval", &d.eval),
                ("data.review", &d.review),
            ] {
                if src.is_some() {
                    return Err(err(
                        key,
                        "is set together with `data.task`; use one or the other".into(),
                    ));
                }
            }
        } else if d.gold.is_none() && d.prompts.is_none() {
            return Err(err(
                "data",
                "names no data: set `task = \"dates\"`, or a `gold` or `prompts` source (with \
                 `eval` beside it)"
                    .into(),
            ));
        } else {
            for (name, key, v) in d.sizes() {
                let Some(v) = v else { continue };
                if d.source(name).is_none() {
                    return Err(err(
                        key,
                        format!(
                            "is set, but there is no `data.{name}` file for it to apply to (and \
                             no `data.task` to make one); remove it, or add `data.{name} = {{ \
                             path = \"...\" }}`"
                        ),
                    ));
                }
                if v == 0 {
                    return Err(err(
                        key,
                        format!(
                            "is 0, which would take no rows of the `data.{name}` file; remove it \
                             to read the whole file, or give the number of its first rows to take"
                        ),
                    ));
                }
            }
        }
        for (key, src) in [
            ("data.gold", &d.gold),
            ("data.prompts", &d.prompts),
            ("data.eval", &d.eval),
            ("data.review", &d.review),
        ] {
            if let Some(src) = src {
                for target in src.map.keys() {
                    if !crate::import::MAPPABLE.contains(&target.as_str()) {
                        return Err(err(
                            &format!("{key}.map.{target}"),
                            format!(
                                "`{target}` is not a column the workbench reads; expected one of {}",
                                crate::import::MAPPABLE.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        self.teacher.check().map_err(|(k, m)| err(k, m))?;
        train::check_teacher_training(
            self.teacher.vocab_size,
            &self.teacher.architecture,
            &self.teacher.train,
        )
        .map_err(|(k, m)| err(&k, m))?;
        self.student.check().map_err(|(k, m)| err(&k, m))?;
        if let Some(cut) = &self.student.from_teacher {
            if self.teacher.kind != TeacherKind::Local {
                return Err(err(
                    "student.from_teacher",
                    "needs a local teacher, whose weights the student is cut from; an `openai` \
                     teacher's are on its server: set `student.path` to a checkpoint of the same \
                     family instead, or remove `student.from_teacher`"
                        .into(),
                ));
            }
            let layers = self.teacher.architecture.layers;
            if self.teacher.trained_by_run() && cut.layers > layers {
                return Err(err(
                    "student.from_teacher.layers",
                    format!(
                        "is {}, but the teacher has {} (`teacher.architecture.layers`); keep at \
                         most {layers}",
                        cut.layers,
                        crate::text::count(layers as u64, "layer")
                    ),
                ));
            }
        }
        self.distill.check().map_err(|(k, m)| err(&k, m))?;
        let variants = self
            .distill
            .compare
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("distill.compare[{i}]."), self.distill.variant(v)));
        for (prefix, d) in
            std::iter::once(("distill.".to_string(), self.distill.clone())).chain(variants)
        {
            self.check_distill_mode(&prefix, &d)
                .map_err(|(k, m)| err(&k, m))?;
        }
        self.eval.check().map_err(|(k, m)| err(&k, m))?;
        self.annotate.check().map_err(|(k, m)| err(&k, m))?;
        let a = &self.annotate;
        if a.simulated_expert && a.budget == 0 {
            return Err(err(
                "annotate.budget",
                "is 0, so the simulated expert would decide nothing and the fine-tune would have \
                 nothing to learn from; give it at least 1 decision, or set \
                 `annotate.simulated_expert = false` to review in the terminal"
                    .into(),
            ));
        }
        if a.curve && !a.simulated_expert {
            return Err(err(
                "annotate.curve",
                "asks for a learning curve, which spends the simulated expert's decisions again \
                 in other orders, but `annotate.simulated_expert` is false; set it to true, or \
                 remove `annotate.curve`"
                    .into(),
            ));
        }
        let review = self.data.task_sizes()[3] as u64;
        if a.simulated_expert && self.data.task.is_some() && review > 0 && a.budget > review {
            return Err(err(
                "annotate.budget",
                format!(
                    "is {}, more than the {review} review prompts (`data.review_size`) there \
                     are to decide; expected at most {review} (a budget smaller than the \
                     candidates is what makes the queue's order matter)",
                    a.budget
                ),
            ));
        }
        self.finetune.check().map_err(|(k, m)| err(&k, m))?;
        self.generate.check().map_err(|(k, m)| err(k, m))?;
        if let Some(src) = &self.generate.prompts {
            for target in src.map.keys() {
                if !crate::import::MAPPABLE.contains(&target.as_str()) {
                    return Err(err(
                        &format!("generate.prompts.map.{target}"),
                        format!(
                            "`{target}` is not a column the workbench reads; expected one of {}",
                            crate::import::MAPPABLE.join(", ")
                        ),
                    ));
                }
            }
        }
        let e = &self.export;
        self.export
            .splits(self.run.seed)
            .validate()
            .map_err(|x| err("export.splits", x.to_string()))?;
        if e.shard_mib == 0 {
            return Err(err("export.shard_mib", "is 0; expected at least 1".into()));
        }
        if e.row_group_rows == 0 {
            return Err(err(
                "export.row_group_rows",
                "is 0; expected at least 1".into(),
            ));
        }
        if !(1..=22).contains(&e.zstd_level) {
            return Err(err(
                "export.zstd_level",
                format!("is {}; expected 1 to 22", e.zstd_level),
            ));
        }
        if let Some(kind) = &e.gguf
            && !GGUF_TYPES.contains(&kind.as_str())
        {
            return Err(err(
                "export.gguf",
                format!(
                    "is \"{kind}\"; expected one of {}",
                    GGUF_TYPES.map(|t| format!("\"{t}\"")).join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The resolved config as TOML (every default filled in).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config serialises")
    }

    /// Hash of the resolved config: what stage outputs record and run directories compare.
    pub fn hash(&self) -> String {
        let h = blake3::hash(self.to_toml().as_bytes());
        h.to_hex()[..16].to_string()
    }

    /// Hash of the settings one stage depends on (`sections` of the resolved config, plus the
    /// seed), so changing `[eval]` does not redo the teacher.
    pub fn stage_hash(&self, sections: &[&str]) -> String {
        let mut value = toml::Value::try_from(self).expect("the config serialises");
        // The GGUF file is written from the final student after every stage: no stage depends
        // on whether or how it is asked for.
        if let Some(export) = value.get_mut("export").and_then(toml::Value::as_table_mut) {
            export.remove("gguf");
        }
        let mut h = blake3::Hasher::new();
        h.update(&self.run.seed.to_le_bytes());
        for s in sections {
            h.update(s.as_bytes());
            if let Some(v) = value.get(s) {
                h.update(toml::to_string(v).unwrap_or_default().as_bytes());
            }
        }
        h.finalize().to_hex()[..16].to_string()
    }

    /// JSON Schema of the config file, for editors.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Config)).expect("schemas serialise")
    }
}

#[cfg(test)]
mod tests;
