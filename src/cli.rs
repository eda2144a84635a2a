//! The command line: clap definitions only. Names follow `DESIGN.md`; tests and users rely on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use datasets::config::QueueOrder;

/// Turn a large teacher model into a small student, then make the student better with expert
/// feedback. Logs go to stderr (`RUST_LOG` sets the level); data goes to stdout.
#[derive(Debug, Parser)]
#[command(name = "workbench", version, about, max_term_width = 100)]
pub struct Cli {
    /// No progress bars or logs, only errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole loop on a config; re-entrant (finished stages are skipped).
    Run(RunArgs),
    /// Teacher → synthetic set: answer the prompts (through a response cache, so a rerun never
    /// asks twice), filter, and write the set into the run directory.
    Generate(RunArgs),
    /// The local teacher: train it on the gold set.
    #[command(subcommand)]
    Teacher(TeacherCommand),
    /// Synthetic set → student (logit KD on the teacher's top-k, or CE on its text), and the
    /// gold-only baseline beside it.
    Distill(TrainArgs),
    /// Expert feedback → the final student: SFT on accepted and corrected answers, DPO on
    /// preference pairs (against the distilled student, frozen), replay of the synthetic set.
    Finetune(TrainArgs),
    /// Every model of the run on the eval set: exact match, loss, agreement with the teacher.
    Eval(EvalArgs),
    /// Expert review in the terminal: accept, reject, edit, rate, prefer A/B; every decision is on
    /// disk before the next item shows. `annotate stats` reports progress and agreement.
    Annotate(AnnotateArgs),
    /// Validate a config, or print its JSON Schema.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Import, export and inspect sets (Parquet in the Hugging Face layout).
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Look inside a checkpoint.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Serve a checkpoint with an OpenAI-compatible API (`/v1/completions`, `/v1/chat/completions`).
    Serve(ServeArgs),
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Logits of every input position (for parity checks against transformers).
    Logits {
        /// A checkpoint directory in the Hugging Face layout (config.json, model.safetensors),
        /// or a GGUF file.
        #[arg(long, value_name = "DIR|FILE.gguf")]
        model: PathBuf,
        /// Text to encode with the checkpoint's tokenizer (special tokens added as transformers
        /// adds them).
        #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
        text: Option<String>,
        /// Token ids, comma-separated: `1,2,3`.
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        ids: Option<Vec<u32>>,
        /// Print `{"logits": [[...], ...]}` (one vocabulary-size row per position) on stdout.
        #[arg(long)]
        json: bool,
        /// Where to run: `cpu` (default), `cuda:N`, `wgpu` (with those features).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Load a checkpoint (f32, f16 or bf16; single or sharded; or a GGUF file of a llama,
    /// mistral or qwen2 model in F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K or Q6_K, its
    /// tokenizer rebuilt from the file) and write it in the workbench's Hugging Face layout (f32
    /// safetensors, config, generation config, tokenizer).
    Convert {
        /// The checkpoint to read: a directory, or a `.gguf` file.
        #[arg(long, value_name = "DIR|FILE.gguf")]
        model: PathBuf,
        /// The directory to write, or a `.gguf` file (for llama.cpp, Ollama, LM Studio).
        #[arg(long, value_name = "DIR|FILE.gguf")]
        out: PathBuf,
        /// How a `.gguf` output stores matrices: `f32` (exact, the default), `f16`, `q8_0` or
        /// `q4_0` (llama.cpp's quantizations); norms and biases stay f32.
        #[arg(long, value_name = "f32|f16|q8_0|q4_0")]
        quantize: Option<String>,
        /// Give the written tokenizer this chat template (what `/v1/chat/completions` of
        /// `workbench serve` renders messages with): `plain` (the prompt as the workbench trains
        /// on it: BOS, then each message's text, an assistant turn closed by EOS), or a Jinja
        /// file. The weights and token ids do not change.
        #[arg(long, value_name = "plain|FILE")]
        chat_template: Option<String>,
        /// Replace `--out` if it exists and is the workbench's own (a checkpoint or set it
        /// wrote, or an empty directory) or a GGUF file; anything else is left alone.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A checkpoint directory in the Hugging Face layout, with its tokenizer, or a GGUF file.
    #[arg(long, value_name = "DIR|FILE.gguf")]
    pub model: PathBuf,
    /// Address to listen on; loopback by default (the data stays on this machine).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Model id clients use (default: the directory or file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Most tokens one request may generate.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,
    /// Largest request body, in KiB.
    #[arg(long, default_value_t = 1024)]
    pub max_body_kib: usize,
    /// Longest a request may take, waiting and generating, in seconds; past it the client gets
    /// a 503 `timeout` error and generation stops (default: no limit).
    #[arg(long, value_name = "SECONDS")]
    pub timeout_secs: Option<f64>,
    /// Where to run: `cpu` (default), `cuda:N`, `wgpu` (with those features).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weights generation reads on the CPU: `f32`, or `q8_0` / `q4_0` (8- and 4-bit blocks with
    /// integer dot products, as llama.cpp computes them); `auto` (the default) is the GGUF
    /// file's own type when it is Q8_0 or Q4_0, else f32 (always f32 off the CPU). Scoring prompts
    /// stays f32.
    #[arg(long, default_value = "auto", value_name = "auto|f32|q8_0|q4_0")]
    pub quantize: String,
}

/// A config file and `--set` overrides.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The TOML job config, e.g. `configs/demo.toml`.
    pub config: PathBuf,
    /// Override a config key, typed and checked like the file: `--set run.seed=3`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Use the run directory even if a different config made it; stages whose settings changed
    /// are redone.
    #[arg(long)]
    pub force: bool,
}

/// A training stage's arguments.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Continue from the newest complete step checkpoint, and fail if there is none. (A stage
    /// killed midway resumes on its own; this makes it an error not to.)
    #[arg(long)]
    pub resume: bool,
}

#[derive(Debug, Subcommand)]
pub enum TeacherCommand {
    /// Train the local teacher on the gold set (the run's tokenizer too); it lands in
    /// `runs/<name>/teacher/`.
    Train(TrainArgs),
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Print `{"rows": [{"model", "exact_match", "params", ...}]}` on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `workbench annotate TARGET` or `workbench annotate stats TARGET`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AnnotateArgs {
    #[command(subcommand)]
    pub command: Option<AnnotateCommand>,
    /// What to review: a run directory (`runs/NAME`), its config file, a set directory, or a data
    /// file (JSONL, CSV, Parquet). The decisions go to `annotations.db` in the run or set.
    #[arg(required = true, value_name = "RUN|SET")]
    pub target: Option<PathBuf>,
    #[command(flatten)]
    pub review: ReviewArgs,
}

/// How a review is set up; flags win over the config's `[annotate]`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Who is deciding (default: `$USER`). Several annotators can share one database.
    #[arg(long, value_name = "NAME")]
    pub annotator: Option<String>,
    /// Queue order.
    #[arg(long, value_parser = order_parser())]
    pub order: Option<QueueOrder>,
    /// Annotators wanted per item.
    #[arg(long, value_name = "K")]
    pub overlap: Option<u32>,
    /// A Markdown file of guidelines (`g` shows it).
    #[arg(long, value_name = "FILE")]
    pub guidelines: Option<PathBuf>,
    /// Override a key of the config (of a config file or a run directory), as `workbench run`
    /// takes it: `--set run.name=human`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Keep the decisions in a PostgreSQL store that a team shares, `postgres://USER@HOST:PORT/DB`
    /// (the password in PGPASSWORD), instead of `annotations.db` (default: `annotate.store`).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

/// `--order`: the names of [`QueueOrder`], listed in `--help` and suggested on a typo.
fn order_parser() -> impl clap::builder::TypedValueParser<Value = QueueOrder> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(QueueOrder::NAMES.iter().copied())
        .map(|s| QueueOrder::parse(&s).expect("a listed order parses"))
}

#[derive(Debug, Subcommand)]
pub enum AnnotateCommand {
    /// Progress, items/hour per annotator, agreement (Cohen's κ per pair, Krippendorff's α).
    Stats {
        /// A run directory, its config file, a set directory, a data file, or the database.
        #[arg(value_name = "RUN|SET")]
        target: PathBuf,
        /// Annotators wanted per item (default: the config's, else 1).
        #[arg(long, value_name = "K")]
        overlap: Option<u32>,
        /// Print as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Read a PostgreSQL store, `postgres://USER@HOST:PORT/DB` (default: `annotate.store`).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// Copy a store's items and decisions into another: SQLite to PostgreSQL or back. Each event
    /// is added once, however often the import runs.
    ImportStore {
        /// The store to read: a database file, a run or set directory, or a postgres:// URL.
        #[arg(value_name = "FROM")]
        from: String,
        /// The store to add to (made when missing): the same kinds as FROM.
        #[arg(value_name = "TO")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config and print it resolved (every default filled in) as TOML.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print the resolved config as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of config files, for editors.
    Schema,
}

/// What kind of set to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Prompts, completions and teacher logprobs (the sample schema).
    Samples,
    /// Supervised fine-tuning rows (TRL: `messages`, `prompt`/`completion`).
    Sft,
    /// Preference pairs (TRL: `prompt`/`chosen`/`rejected`).
    Preference,
    /// The teacher's top-k logprobs for a distributed trainer's knowledge distillation, in the
    /// layout `--format` names (export only).
    Kd,
}

/// The trainer whose precomputed-teacher-logits layout a KD export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KdFormatArg {
    /// Axolotl: `type: axolotl.integrations.kd.chat_template` (`messages`, `logprobs`,
    /// `target_token_ids`).
    Axolotl,
    /// DistillKit, offline and `prepacked`: conversations packed into rows of `--sequence-len`
    /// tokens (`input_ids`, `attention_mask`, `labels`, `token_ids`, `top_values`).
    Distillkit,
}

/// Duplicate removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DedupArg {
    /// Keep everything.
    None,
    /// Identical normalised text.
    Exact,
    /// Exact, then MinHash LSH near-duplicates.
    Near,
}

/// How a set is laid out.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The set directory to write.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Split names and shares that add up to 1, e.g. `train=0.9,test=0.1` (rows go by a seeded
    /// hash of their id). Default: `train=1`; exported from a run directory, the run's
    /// `export.splits`.
    #[arg(long, value_name = "SPLITS")]
    pub split: Option<String>,
    /// Seed of the split assignment. Default: 0; exported from a run directory, the run's
    /// `run.seed`.
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// Target size of one Parquet shard, in MiB. Default: 256; exported from a run directory,
    /// the run's `export.shard_mib` (and its row groups and zstd level, `export.*`).
    #[arg(long)]
    pub shard_mib: Option<u64>,
    /// Licence written into the dataset card (`apache-2.0`, `cc-by-4.0`, `other`, ...).
    /// Default: `unknown`; exported from a run directory, the run's `export.license`.
    #[arg(long)]
    pub license: Option<String>,
    /// Replace `--out` if it exists and is the workbench's own (a set or checkpoint it wrote, or
    /// an empty directory); anything else is left alone.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Read JSONL, JSON, CSV or Parquet (ours, pyarrow's, HF `datasets`') and write a set.
    Import {
        /// The input file, or a directory of Parquet files.
        input: PathBuf,
        /// Map our columns to the input's: `prompt=question,reference=answer`.
        #[arg(long, value_name = "OURS=THEIRS,...")]
        map: Option<String>,
        /// The kind of set to write (default: `preference` when the input has `chosen` and
        /// `rejected`, else `samples`).
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Remove duplicates.
        #[arg(long, value_enum, default_value_t = DedupArg::None)]
        dedup: DedupArg,
        /// Jaccard similarity above which rows are near-duplicates (with `--dedup near`).
        #[arg(long, default_value_t = 0.8)]
        near_threshold: f64,
        /// Words per shingle for near-duplicates.
        #[arg(long, default_value_t = 3)]
        shingle_words: usize,
        /// Drop rows that share an n-gram with this eval set (file or set).
        #[arg(long, value_name = "EVAL")]
        decontaminate: Option<PathBuf>,
        /// Words per n-gram for decontamination.
        #[arg(long, default_value_t = 13)]
        ngram: usize,
        #[command(flatten)]
        set: SetArgs,
    },
    /// Write a set, or a run's set, with TRL's column conventions.
    Export {
        /// A set directory, a data file, or a run directory (`runs/NAME`). From a run, `sft` and
        /// `preference` are the experts' decisions in its `annotations.db`.
        input: PathBuf,
        /// Export the experts' decisions in `INPUT/annotations.db` (or INPUT itself, a database
        /// file) rather than the set's rows.
        #[arg(long)]
        annotations: bool,
        /// What to export.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Read the decisions from a PostgreSQL store, `postgres://USER@HOST:PORT/DB` (default:
        /// the run's `annotate.store`, else its `annotations.db`).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// With `--kind kd`: the trainer whose layout to write.
        #[arg(long, value_enum, value_name = "TRAINER")]
        format: Option<KdFormatArg>,
        /// With `--kind kd`: the teacher's tokenizer and chat template, as the trainer will load
        /// them (a folder with `tokenizer.json`, or a `.gguf` file; default: the run's local
        /// teacher).
        #[arg(long, value_name = "PATH")]
        tokenizer: Option<PathBuf>,
        /// With `--format distillkit`: tokens per packed row (DistillKit's `sequence_length`).
        #[arg(long, value_name = "N")]
        sequence_len: Option<usize>,
        #[command(flatten)]
        set: SetArgs,
    },
    /// Show schema, rows, row groups, metadata and the first rows of a Parquet file or a set.
    Inspect {
        /// A Parquet file or a set directory.
        path: PathBuf,
        /// Print as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// How many rows to show.
        #[arg(long, default_value_t = 3)]
        head: usize,
    },
}
