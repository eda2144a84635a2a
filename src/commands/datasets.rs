//! `workbench datasets import | export | inspect`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use datasets::card::CardInfo;
use datasets::decontam::Decontaminator;
use datasets::dedup::{ExactDedup, FilterReport, NearDedup};
use datasets::import::{Filters, Source, parse_mapping};
use datasets::kd::{ChatTokens, KdFormat, KdStats};
use datasets::parquet::WriteOptions;
use datasets::set::SetSummary;
use datasets::text::{count, inert_line};
use datasets::{Kind, Sample, SetOptions, Splits};
use distill::data::tokenizer::Tokenizer;

use crate::BadInput;
use crate::cli::{DatasetsCommand, DedupArg, KdFormatArg, KindArg, SetArgs};
use crate::output::{Output, thousands};

fn kind_of(k: KindArg) -> Result<Kind> {
    Ok(match k {
        KindArg::Samples => Kind::Sample,
        KindArg::Sft => Kind::Sft,
        KindArg::Preference => Kind::Preference,
        KindArg::Kd => {
            return Err(BadInput(
                "`--kind kd` writes teacher logprobs for another trainer and is only exported; \
                 import the samples instead (`--kind samples`)"
                    .into(),
            )
            .into());
        }
    })
}

/// The trainer's tokenization, from the teacher's tokenizer and chat template.
struct TrainerTokens {
    tok: Tokenizer,
    eos: u32,
}

impl ChatTokens for TrainerTokens {
    fn chat_ids(
        &self,
        messages: &[datasets::Message],
        add_generation_prompt: bool,
    ) -> std::result::Result<Vec<u32>, String> {
        let text = self
            .tok
            .apply_chat_template(messages, add_generation_prompt)
            .map_err(|e| e.to_string())?;
        self.tok.encode(&text, false).map_err(|e| e.to_string())
    }

    fn eos_id(&self) -> u32 {
        self.eos
    }
}

/// The tokenizer a KD export lays the teacher's rows against: `--tokenizer`, else the run's
/// local teacher.
fn kd_tokenizer(input: &Path, given: Option<&Path>) -> Result<(PathBuf, TrainerTokens)> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None if datasets::export::is_run_dir(input) => {
            let loaded = datasets::rundir::load_config(input, &[])?;
            match distill::stages::teacher::teacher_dir(&loaded, input) {
                Some(dir) => dir,
                None => {
                    return Err(BadInput(format!(
                        "The run `{}` has an `openai` teacher, so the tokenizer its token ids \
                         come from is not here\n\nhint: pass the teacher's tokenizer with \
                         `--tokenizer PATH` (a folder with tokenizer.json, or a .gguf file)",
                        input.display()
                    ))
                    .into());
                }
            }
        }
        None => {
            return Err(BadInput(format!(
                "A KD export of `{}` needs the teacher's tokenizer: the rows are laid against the \
                 conversation as the trainer tokenizes it\n\nhint: pass `--tokenizer PATH` (a \
                 folder with tokenizer.json, or a .gguf file), or export a run directory",
                input.display()
            ))
            .into());
        }
    };
    if !path.exists() {
        return Err(BadInput(format!(
            "The tokenizer `{}` does not exist\n\nhint: pass the teacher's checkpoint folder \
             (with tokenizer.json) or its .gguf file to `--tokenizer`",
            path.display()
        ))
        .into());
    }
    let tok = Tokenizer::from_dir(&path)?;
    if tok.chat_template().is_none() {
        return Err(BadInput(format!(
            "The tokenizer `{}` has no chat template, and the trainer renders each conversation \
             with it\n\nhint: add `chat_template` to its tokenizer_config.json, or pass a \
             tokenizer that has one",
            path.display()
        ))
        .into());
    }
    let Some(eos) = tok.eos_id() else {
        return Err(BadInput(format!(
            "The tokenizer `{}` has no end-of-sequence token, which ends every answer\n\nhint: \
             set `eos_token` in its tokenizer_config.json",
            path.display()
        ))
        .into());
    };
    Ok((path, TrainerTokens { tok, eos }))
}

/// Tokens per packed row of a DistillKit export unless `--sequence-len` says otherwise.
const DISTILLKIT_SEQUENCE_LEN: usize = 2048;
/// The longest packed row a DistillKit export writes: far beyond what trainers take, and short
/// enough that the padding of one row fits in memory.
const MAX_SEQUENCE_LEN: usize = 1 << 20;

/// `datasets export --kind kd`.
fn export_kd(
    out: &Output,
    input: &Path,
    format: KdFormat,
    tokenizer: Option<&Path>,
    set: &SetArgs,
) -> Result<()> {
    if !input.exists() {
        return Err(BadInput(format!(
            "`{}` does not exist; expected a run directory (`runs/NAME`) or a sample set",
            input.display()
        ))
        .into());
    }
    let (tok_path, tok) = kd_tokenizer(input, tokenizer)?;
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let trainer = match format {
        KdFormat::Axolotl => "Axolotl",
        KdFormat::DistillKit { .. } => "DistillKit",
    };
    let vocab = tok.tok.vocab_size();
    let card = |stats: &KdStats| match format {
        KdFormat::Axolotl => axolotl_card(&set.out, &tok_path, stats),
        KdFormat::DistillKit { sequence_len } => {
            distillkit_card(&set.out, &tok_path, vocab, sequence_len, stats)
        }
    };
    let mut options = set_options(
        set,
        run_config(input)?.as_ref(),
        format!("{name} (teacher logprobs for {trainer})"),
        String::new(),
    )?;
    options.card.tags.push("knowledge-distillation".into());
    options
        .card
        .provenance
        .push(("tokenizer".into(), format!("`{}`", tok_path.display())));
    let bar = out.progress("export", "rows", None);
    let report =
        datasets::kd::export_kd(input, format, &set.out, options, &tok, &card, &mut |n| {
            bar.set_position(n)
        })?;
    bar.finish_and_clear();
    if let Some(why) = &report.skipped_reason {
        out.say(format!("Left out {}", inert_line(why)));
    }
    out.say(format!(
        "Exported the teacher logprobs of `{}` for {trainer} into `{}`: {}",
        report.source.display(),
        set.out.display(),
        describe(&report.set)
    ));
    if set.json {
        out.json(&report)?;
    } else {
        out.hint(format!(
            "train from it with {trainer}: the config is in `{}`",
            set.out.join("README.md").display()
        ));
    }
    Ok(())
}

/// The dataset card's description of a DistillKit KD export: what the columns are and the
/// config that trains from them.
fn distillkit_card(
    out: &Path,
    tokenizer: &Path,
    vocab: usize,
    sequence_len: usize,
    stats: &KdStats,
) -> String {
    format!(
        "The teacher's top-k logprobs for offline knowledge distillation with \
         [DistillKit](https://github.com/arcee-ai/DistillKit), written by `workbench datasets \
         export --kind kd --format distillkit`. Conversations (each ending with the teacher's \
         answer, tokenized with the teacher's chat template) are packed into rows of \
         {sequence_len} tokens (`input_ids`, `attention_mask` 0 on the padding); `token_ids` and \
         `top_values` hold, for each position, the teacher's top-k for the next token, \
         uncompressed ({k} per position); `labels` holds the tokens of each assistant turn (the \
         answer and what the template closes it with) and -100 elsewhere, so only the answers \
         are learned. The student must share the teacher's vocabulary (`{tok}`). The \
         `logprob_compressor` below only gives the vocabulary size: the rows are not \
         compressed.\n\n\
         ```yaml\n\
         model: STUDENT  # shares the teacher's tokenizer\n\
         output_path: ./distilled\n\
         sequence_length: {sequence_len}\n\
         dataset:\n\
         \x20 train_dataset:\n\
         \x20   repo_id: {out}\n\
         \x20   split: train\n\
         \x20 prepacked: true\n\
         teacher:\n\
         \x20 kind: dataset\n\
         \x20 logprob_compressor:\n\
         \x20   d: {vocab}\n\
         \x20   k: {k}\n\
         \x20   exact_k: {k}\n\
         \x20   residual_bins: []\n\
         loss_functions:\n\
         \x20 - function: cross_entropy\n\
         \x20   weight: 0.5\n\
         \x20 - function: kl\n\
         \x20   weight: 0.5\n\
         \x20   temperature: 1.0\n\
         \x20   missing_probability_handling: zero\n\
         training_args:\n\
         \x20 remove_unused_columns: false\n\
         ```",
        tok = tokenizer.display(),
        out = out.display(),
        k = stats.k,
    )
}

/// The dataset card's description of an Axolotl KD export: what the columns are and the config
/// that trains from them.
fn axolotl_card(out: &Path, tokenizer: &Path, stats: &KdStats) -> String {
    format!(
        "The teacher's top-k logprobs for knowledge distillation with \
         [Axolotl](https://github.com/axolotl-ai-cloud/axolotl) (`axolotl.integrations.kd`), \
         written by `workbench datasets export --kind kd --format axolotl`. Each row is a \
         conversation ending with the teacher's answer (`messages`); `logprobs` and \
         `target_token_ids` hold, for each position of the conversation as the teacher's chat \
         template tokenizes it (laid against its end), the teacher's top-k for the next token. \
         The student must share the teacher's vocabulary (`{tok}`).\n\n\
         ```yaml\n\
         base_model: STUDENT  # shares the teacher's tokenizer\n\
         chat_template: tokenizer_default\n\
         sequence_len: {sequence_len}  # the longest conversation has {longest} tokens\n\
         plugins:\n  - axolotl.integrations.kd.KDPlugin\n\
         kd_trainer: true\n\
         kd_ce_alpha: 0.1\n\
         kd_alpha: 0.9\n\
         kd_temperature: 1.0\n\
         datasets:\n\
         \x20 - path: {out}\n\
         \x20   split: train\n\
         \x20   type: axolotl.integrations.kd.chat_template\n\
         \x20   field_messages: messages\n\
         \x20   logprobs_field: logprobs\n\
         \x20   temperature: 1.0\n\
         ```",
        tok = tokenizer.display(),
        out = out.display(),
        longest = stats.longest,
        // Axolotl drops conversations longer than `sequence_len` (512 unless set).
        sequence_len = stats.longest.next_multiple_of(64).max(512),
    )
}

/// How a set is written: the flags, else (exporting from a run directory, `run`) the run's
/// `[export]` splits, licence and Parquet layout and its seed, else `train=1`, seed 0, licence
/// `unknown`, 256 MiB shards.
fn set_options(
    args: &SetArgs,
    run: Option<&datasets::config::Config>,
    title: String,
    description: String,
) -> Result<SetOptions> {
    if args.shard_mib == Some(0) {
        return Err(BadInput("`--shard-mib` is 0; a shard needs at least 1 MiB".into()).into());
    }
    let shard_mib = args
        .shard_mib
        .or(run.map(|c| c.export.shard_mib))
        .unwrap_or(256);
    let parquet = match run {
        Some(c) => WriteOptions {
            max_row_group_rows: c.export.row_group_rows,
            zstd_level: c.export.zstd_level,
            ..WriteOptions::default()
        },
        None => WriteOptions::default(),
    };
    let seed = args.split_seed.or(run.map(|c| c.run.seed)).unwrap_or(0);
    let splits = match (&args.split, run) {
        (Some(spec), _) => Splits::parse(spec, seed)?,
        (None, Some(c)) => c.export.splits(seed),
        (None, None) => Splits::parse("train=1", seed)?,
    };
    let license = match (&args.license, run) {
        (Some(l), _) => l.clone(),
        (None, Some(c)) => c.export.license.clone(),
        (None, None) => "unknown".into(),
    };
    Ok(SetOptions {
        splits,
        shard_bytes: shard_mib << 20,
        parquet,
        card: CardInfo {
            title,
            description,
            license,
            ..CardInfo::default()
        },
        replace: args.force,
    })
}

/// The config of the run directory `input`, when it is one: its `[export]` section says how
/// sets exported from it are written.
fn run_config(input: &Path) -> Result<Option<datasets::config::Config>> {
    if !datasets::export::is_run_dir(input) {
        return Ok(None);
    }
    Ok(Some(datasets::rundir::load_config(input, &[])?.config))
}

fn describe(summary: &SetSummary) -> String {
    let splits: Vec<String> = summary
        .splits
        .iter()
        .map(|s| format!("{} {}", s.name, thousands(s.rows)))
        .collect();
    format!(
        "{} of {} ({})",
        count(summary.rows, "row"),
        summary.kind,
        splits.join(", ")
    )
}

fn report_filters(out: &Output, filters: &[FilterReport]) {
    for f in filters {
        out.say(format!(
            "{}: removed {} of {}",
            f.name,
            thousands(f.removed),
            count(f.seen, "row")
        ));
        for (id, why) in &f.examples {
            out.say(format!("  {id}: {}", inert_line(why)));
        }
    }
}

/// Reads the prompts of an eval set (a file or a set) for decontamination.
fn eval_texts(path: &Path) -> Result<Vec<String>> {
    let source = Source::open(path, Default::default())?;
    let mut texts = Vec::new();
    source.for_each::<Sample>(8192, |rows| {
        texts.extend(rows.into_iter().map(|s| s.prompt));
        Ok(())
    })?;
    Ok(texts)
}

pub fn run(out: &Output, cmd: DatasetsCommand) -> Result<()> {
    match cmd {
        DatasetsCommand::Import {
            input,
            map,
            kind,
            dedup,
            near_threshold,
            shingle_words,
            decontaminate,
            ngram,
            set,
        } => {
            if !(near_threshold > 0.0 && near_threshold <= 1.0) {
                return Err(BadInput(format!(
                    "`--near-threshold {near_threshold}`: expected a number in (0, 1]"
                ))
                .into());
            }
            if shingle_words == 0 || ngram == 0 {
                return Err(
                    BadInput("`--shingle-words` and `--ngram` must be at least 1".into()).into(),
                );
            }
            let map = map
                .as_deref()
                .map(parse_mapping)
                .transpose()?
                .unwrap_or_default();
            let source = Source::open(&input, map)?;
            let filters = Filters {
                exact: (dedup != DedupArg::None).then(ExactDedup::new),
                near: (dedup == DedupArg::Near).then(|| {
                    NearDedup::new(near_threshold, shingle_words, set.split_seed.unwrap_or(0))
                }),
                decontam: match &decontaminate {
                    Some(eval) => {
                        let texts = eval_texts(eval)?;
                        Some(Decontaminator::new(texts.iter().map(String::as_str), ngram))
                    }
                    None => None,
                },
            };
            let name = input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let options = set_options(
                &set,
                None,
                name,
                format!(
                    "Imported from `{}` by `workbench datasets import`.",
                    input.display()
                ),
            )?;
            let bar = out.progress("import", "rows", source.row_count());
            let report = datasets::import::import(
                &source,
                &set.out,
                kind.map(kind_of).transpose()?,
                filters,
                options,
                &mut |n| bar.set_position(n),
            )?;
            bar.finish_and_clear();
            report_filters(out, &report.filters);
            if !report.ignored_columns.is_empty() {
                out.say(format!(
                    "Columns not read: {} (map them with `--map`, e.g. `--map prompt={}`)",
                    report
                        .ignored_columns
                        .iter()
                        .map(|c| inert_line(c))
                        .collect::<Vec<_>>()
                        .join(", "),
                    inert_line(&report.ignored_columns[0])
                ));
            }
            out.say(format!(
                "Imported `{}` ({}) into `{}`: {}",
                input.display(),
                report.format,
                set.out.display(),
                describe(&report.set)
            ));
            if set.json {
                out.json(&report)?;
            } else {
                out.hint(format!(
                    "look inside with `workbench datasets inspect {}`",
                    set.out.display()
                ));
            }
            Ok(())
        }
        DatasetsCommand::Export {
            input,
            annotations,
            kind,
            set,
            store,
            format,
            tokenizer,
            sequence_len,
        } => {
            if kind == KindArg::Kd {
                if annotations || store.is_some() {
                    return Err(BadInput(
                        "`--kind kd` exports the synthetic set's teacher logprobs, not the \
                         experts' decisions; drop `--annotations` / `--store`"
                            .into(),
                    )
                    .into());
                }
                let format = match (format.unwrap_or(KdFormatArg::Axolotl), sequence_len) {
                    (KdFormatArg::Axolotl, None) => KdFormat::Axolotl,
                    (KdFormatArg::Axolotl, Some(_)) => {
                        return Err(BadInput(
                            "`--sequence-len` sets the length of DistillKit's packed rows; \
                             Axolotl packs its own (`sequence_len` in its config)\n\nhint: \
                             drop `--sequence-len`, or add `--format distillkit`"
                                .into(),
                        )
                        .into());
                    }
                    (KdFormatArg::Distillkit, n) => {
                        let sequence_len = n.unwrap_or(DISTILLKIT_SEQUENCE_LEN);
                        if !(1..=MAX_SEQUENCE_LEN).contains(&sequence_len) {
                            return Err(BadInput(format!(
                                "`--sequence-len {sequence_len}`: a packed row holds 1 to \
                                 {MAX_SEQUENCE_LEN} tokens"
                            ))
                            .into());
                        }
                        KdFormat::DistillKit { sequence_len }
                    }
                };
                return export_kd(out, &input, format, tokenizer.as_deref(), &set);
            }
            if format.is_some() || tokenizer.is_some() || sequence_len.is_some() {
                return Err(BadInput(
                    "`--format`, `--tokenizer` and `--sequence-len` go with `--kind kd`".into(),
                )
                .into());
            }
            let kind = kind_of(kind)?;
            let options = set_options(
                &set,
                run_config(&input)?.as_ref(),
                format!(
                    "{} ({kind})",
                    input
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
                format!(
                    "Exported from `{}` by `workbench datasets export` in TRL's column conventions.",
                    input.display()
                ),
            )?;
            let is_run = datasets::export::is_run_dir(&input);
            let db = if annotations || is_run || store.is_some() {
                super::annotate::resolve(&input, false, &[], store.as_deref())?.store
            } else {
                annotate::store::Location::File(input.join(annotate::store::DB_FILE))
            };
            let from_run = is_run && db.exists();
            if annotations || (from_run && matches!(kind, Kind::Sft | Kind::Preference)) {
                let store = annotate::Store::open_at(&db, false)?;
                let report = annotate::feedback::export(&store, kind, &set.out, options)?;
                out.say(format!(
                    "Exported the experts' feedback in `{}` ({} in force) into `{}`: {}",
                    db,
                    count(report.decisions, "decision"),
                    set.out.display(),
                    describe(&report.set)
                ));
                if set.json {
                    out.json(&report.set)?;
                }
                return Ok(());
            }
            let bar = out.progress("export", "rows", None);
            let report = datasets::export::export(&input, kind, &set.out, options, &mut |n| {
                bar.set_position(n)
            })?;
            bar.finish_and_clear();
            if report.skipped > 0 {
                out.say(format!(
                    "Left out {}: {}",
                    count(report.skipped, "row"),
                    report.skipped_reason.as_deref().unwrap_or("")
                ));
            }
            out.say(format!(
                "Exported `{}` into `{}`: {}",
                report.source.display(),
                set.out.display(),
                describe(&report.set)
            ));
            if set.json {
                out.json(&report)?;
            } else {
                out.hint(format!(
                    "load it in Python with `datasets.load_dataset(\"parquet\", data_dir=\"{}\")`",
                    set.out.display()
                ));
            }
            Ok(())
        }
        DatasetsCommand::Inspect { path, json, head } => {
            let inspection = datasets::inspect::inspect(&path, head)?;
            if json {
                out.json(&inspection)?;
            } else {
                out.data(&inspection.render())?;
            }
            Ok(())
        }
    }
}
