//! The `data` stage of a run: the gold, prompt, eval and (optional) review sets, made by a built-in task or
//! imported from the files the config names, then cleaned (decontaminated against the eval set,
//! deduplicated) and written as sets under `runs/<name>/data/`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::card::CardInfo;
use crate::config::{BuiltinTask, DedupMode, LoadedConfig, SourceConfig};
use crate::decontam::Decontaminator;
use crate::dedup::{ExactDedup, FilterReport, NearDedup};
use crate::error::{Error, Result};
use crate::import::{Filters, Source};
use crate::parquet::WriteOptions;
use crate::record::Sample;
use crate::set::{SetOptions, SetWriter, Splits};

/// The config sections the stage depends on.
pub const SECTIONS: &[&str] = &["data", "export"];

/// One set the stage wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparedSet {
    /// `gold`, `prompts`, `eval`, `validation` or `review`.
    pub name: String,
    /// Rows read or generated.
    pub rows_in: u64,
    /// Rows written.
    pub rows: u64,
    /// What each filter removed.
    pub filters: Vec<FilterReport>,
    /// The column read as the answers when the file had no `reference` column and the config
    /// mapped none (see [`crate::import::ANSWER_COLUMNS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers_from: Option<String>,
    /// `answers_from` holds conversations, and the answers are their last assistant turns.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answers_in_messages: bool,
}

/// What the stage did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataSummary {
    /// Where the data came from.
    pub source: String,
    /// The sets.
    pub sets: Vec<PreparedSet>,
}

enum Input {
    Rows(Vec<Sample>),
    File {
        source: Source,
        /// How many of its first rows to take (`None`: all).
        limit: Option<u64>,
        /// The answers are the conversations' last assistant turns (TRL's `messages` sets),
        /// moved from the completion to the reference.
        from_messages: bool,
    },
}

fn set_options(
    loaded: &LoadedConfig,
    config_hash: &str,
    name: &str,
    split: &str,
    source: &str,
) -> SetOptions {
    let e = &loaded.config.export;
    SetOptions {
        splits: Splits::single(split),
        shard_bytes: e.shard_mib << 20,
        parquet: WriteOptions {
            max_row_group_rows: e.row_group_rows,
            zstd_level: e.zstd_level,
            config_hash: Some(config_hash.to_string()),
            ..Default::default()
        },
        card: CardInfo {
            title: format!("{} · {name}", loaded.config.run.name),
            description: format!(
                "The `{name}` set of the workbench run `{}`.",
                loaded.config.run.name
            ),
            license: e.license.clone(),
            tags: vec!["workbench".into()],
            provenance: vec![
                ("source".into(), source.to_string()),
                ("config hash".into(), config_hash.to_string()),
            ],
        },
        replace: false,
    }
}

fn write(
    input: Input,
    out: &Path,
    options: SetOptions,
    filters: &mut Filters,
    progress: &mut dyn FnMut(&str, u64),
    name: &str,
    origin: &str,
) -> Result<(u64, u64)> {
    let mut writer = SetWriter::create(out, crate::schema::Kind::Sample, options)?;
    let (mut read, mut kept) = (0u64, 0u64);
    let mut push = |rows: Vec<Sample>, writer: &mut SetWriter| -> Result<()> {
        read += rows.len() as u64;
        let rows = filters.apply(rows);
        kept += rows.len() as u64;
        progress(name, read);
        writer.write(&rows)
    };
    match input {
        Input::Rows(rows) => {
            for chunk in rows.chunks(8192) {
                push(chunk.to_vec(), &mut writer)?;
            }
        }
        Input::File {
            source,
            limit,
            from_messages,
        } => {
            source.check_mapping_as(&|target, column| {
                format!("`data.{name}.map.{target} = \"{column}\"` in `{origin}`")
            })?;
            let mut left = limit.unwrap_or(u64::MAX);
            source.for_each::<Sample>(8192, |mut rows| {
                if left == 0 {
                    return Ok(());
                }
                rows.truncate(left.min(rows.len() as u64) as usize);
                left -= rows.len() as u64;
                if from_messages {
                    for s in rows.iter_mut().filter(|s| s.reference.is_none()) {
                        s.reference = s.completion.take();
                    }
                }
                push(rows, &mut writer)
            })?;
            if let Some(n) = limit
                && read < n
            {
                return Err(short_file(name, n, &source.path, read, origin));
            }
        }
    }
    writer.finish()?;
    Ok((read, kept))
}

/// What `config check` found in one data file the config names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileCheck {
    /// The config key: `data.gold`, `data.prompts`, `data.eval`, `data.review`.
    pub key: String,
    /// The file, resolved against the config's folder.
    pub path: String,
    /// `jsonl`, `json`, `csv`, `parquet` or `set`.
    pub format: String,
    /// Rows in it (every row read and parsed, so a malformed one is found here).
    pub rows: u64,
    /// Rows the run takes from it: its first `data.<set>_size`, or all of them.
    pub take: u64,
    /// Its columns.
    pub columns: Vec<String>,
    /// The column its answers come from (`reference`, a mapped one, or an answer-like one);
    /// `None` for the prompt pool or a file without answers.
    pub answers_from: Option<String>,
    /// `answers_from` holds conversations, and the answers are their last assistant turns.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answers_in_messages: bool,
    /// Columns the run will not read.
    pub ignored: Vec<String>,
}

/// Where a gold, eval or review file's answers come from, when it has no `reference` column.
struct Answers {
    /// The column, to say so.
    column: String,
    /// The answers are the last assistant turns of the column's conversations (TRL's
    /// `messages` sets), moved from the completion to the reference as rows are read.
    in_messages: bool,
}

/// Opens the data file of set `name` as the data stage reads it: a gold, eval or review file
/// without a `reference` column reads its answers from the first answer-like column it has, or
/// else from the last assistant turn of its `messages` conversations.
fn open_source(
    loaded: &LoadedConfig,
    name: &str,
    cfg: &SourceConfig,
) -> Result<(Source, Option<Answers>)> {
    let mut source = Source::open(loaded.resolve(&cfg.path), cfg.map.clone())?;
    if name == "prompts" {
        return Ok((source, None));
    }
    if let Some(column) = source.adopt_answer_column()? {
        let answers = Answers {
            column,
            in_messages: false,
        };
        return Ok((source, Some(answers)));
    }
    let of = |t: &str| source.map.get(t).cloned().unwrap_or_else(|| t.to_string());
    let columns = source.columns()?;
    let has = |t: &str| columns.contains(&of(t));
    let answers = (has("messages") && !has("reference") && !has("completion")).then(|| Answers {
        column: of("messages"),
        in_messages: true,
    });
    Ok((source, answers))
}

/// Opens every data file `[data]` names, as the data stage will (existence, format, the mapped
/// columns, every row parsed), without running anything. Empty for a built-in task.
pub fn check_files(loaded: &LoadedConfig) -> Result<Vec<FileCheck>> {
    let d = &loaded.config.data;
    let origin = loaded.path.display().to_string();
    let mut out = Vec::new();
    for (name, source) in [
        ("gold", &d.gold),
        ("prompts", &d.prompts),
        ("eval", &d.eval),
        ("review", &d.review),
    ] {
        let Some(cfg) = source else { continue };
        let key = format!("data.{name}");
        let path = loaded.resolve(&cfg.path);
        let (source, adopted) = open_source(loaded, name, cfg).map_err(|e| {
            Error::invalid(format!(
                "`{key}` in `{origin}`: {}\n\nhint: fix `{key}.path` (relative to the config file)",
                first_line(&e.to_string())
            ))
        })?;
        let ignored = source.check_mapping_as(&|target, column| {
            format!("`{key}.map.{target} = \"{column}\"` in `{origin}`")
        })?;
        let columns = source.columns()?;
        let answers_in_messages = adopted.as_ref().is_some_and(|a| a.in_messages);
        let answers_from = match adopted {
            Some(a) => Some(a.column),
            None if name == "prompts" => None,
            None => {
                let r = source
                    .map
                    .get("reference")
                    .cloned()
                    .unwrap_or_else(|| "reference".into());
                columns.contains(&r).then_some(r)
            }
        };
        let ignored = ignored
            .into_iter()
            .filter(|c| Some(c) != answers_from.as_ref())
            .collect();
        let rows = source.for_each::<Sample>(8192, |_| Ok(()))?;
        let take = match d.sizes().iter().find(|s| s.0 == name).and_then(|s| s.2) {
            Some(n) if (n as u64) > rows => {
                return Err(short_file(name, n as u64, &path, rows, &origin));
            }
            Some(n) => n as u64,
            None => rows,
        };
        out.push(FileCheck {
            key,
            path: path.display().to_string(),
            format: source.format.to_string(),
            rows,
            take,
            columns,
            answers_from,
            answers_in_messages,
            ignored,
        });
    }
    Ok(out)
}

/// The error for a size larger than its file.
fn short_file(name: &str, size: u64, path: &Path, rows: u64, origin: &str) -> Error {
    Error::invalid(format!(
        "`data.{name}_size` is {size} in `{origin}`, but `{}` has {} rows, so the size cannot \
         take its first {size}\n\nhint: lower `data.{name}_size` to at most {rows}, or remove it \
         to read the whole file",
        path.display(),
        crate::text::thousands(rows),
    ))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Stops the data stage when one filter removed more than `max_share` of a set's rows.
fn check_removed(
    set: &str,
    rows_in: u64,
    reports: &[FilterReport],
    max_share: f64,
    origin: &str,
) -> Result<()> {
    for r in reports {
        if rows_in == 0 || (r.removed as f64) <= max_share * rows_in as f64 {
            continue;
        }
        let setting = if r.name.starts_with("decontamination") {
            "`data.decontaminate = false` turns it off"
        } else {
            "`data.dedup = \"none\"` turns it off"
        };
        let example = r
            .examples
            .first()
            .map(|(_, why)| format!(" (for one: {why})"))
            .unwrap_or_default();
        return Err(Error::invalid(format!(
            "The {} removed {} of the {} {set} rows ({:.0}%){example}, more than \
             `data.max_removed_share` ({:.0}%) in `{origin}`; the run stops before any teacher \
             is asked, as a filter that removes most of a set is more often a mistake than a \
             cleaning\n\nhint: if that many rows are expected to go, raise \
             `data.max_removed_share` (1 never stops); {setting}",
            r.name,
            crate::text::thousands(r.removed),
            crate::text::thousands(rows_in),
            100.0 * r.removed as f64 / rows_in as f64,
            100.0 * max_share,
        )));
    }
    Ok(())
}

/// Whether the eval row `id` is held out for validation: a seeded draw, the same on every
/// machine, independent of the row's position.
pub fn in_validation(seed: u64, id: &str, share: f64) -> bool {
    let mut h = blake3::Hasher::new();
    h.update(b"workbench validation split");
    h.update(&seed.to_le_bytes());
    h.update(id.as_bytes());
    let bytes = h.finalize();
    let draw = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"));
    (draw as f64 / u64::MAX as f64) < share
}

/// Builds the gold, prompt and eval sets into `out` (a stage directory).
pub fn prepare(
    loaded: &LoadedConfig,
    out: &Path,
    config_hash: &str,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<DataSummary> {
    let c = &loaded.config;
    let d = &c.data;
    // Gold, eval and review answers: `reference`, else the first answer-like column.
    let mut adopted: std::collections::BTreeMap<&str, Answers> = Default::default();
    let mut open = |name: &'static str, s: &SourceConfig, size: Option<usize>| -> Result<Input> {
        let (source, answers) = open_source(loaded, name, s)?;
        let from_messages = answers.as_ref().is_some_and(|a| a.in_messages);
        if let Some(a) = answers {
            adopted.insert(name, a);
        }
        Ok(Input::File {
            source,
            limit: size.map(|n| n as u64),
            from_messages,
        })
    };
    let (source, gold, prompts, eval, review) = match d.task {
        Some(task) => {
            let [gold, prompts, eval, review] = d.task_sizes();
            let sizes = crate::tasks::Sizes {
                gold,
                prompts,
                eval,
                review,
                slice_share: d.slice_share,
            };
            let sets = crate::tasks::generate(task, c.run.seed, sizes);
            let name = match task {
                BuiltinTask::Dates => "built-in task `dates`",
            };
            (
                name.to_string(),
                Some(Input::Rows(sets.gold)),
                Some(Input::Rows(sets.prompts)),
                Some(Input::Rows(sets.eval)),
                (!sets.review.is_empty()).then_some(Input::Rows(sets.review)),
            )
        }
        None => (
            format!("files named in `{}`", loaded.path.display()),
            d.gold
                .as_ref()
                .map(|s| open("gold", s, d.gold_size))
                .transpose()?,
            d.prompts
                .as_ref()
                .map(|s| open("prompts", s, d.prompts_size))
                .transpose()?,
            d.eval
                .as_ref()
                .map(|s| open("eval", s, d.eval_size))
                .transpose()?,
            d.review
                .as_ref()
                .map(|s| open("review", s, d.review_size))
                .transpose()?,
        ),
    };

    let mut sets = Vec::new();
    // Eval first: the other sets are decontaminated against it.
    let origin = loaded.path.display().to_string();
    let mut eval_texts: Vec<String> = Vec::new();
    if let Some(eval) = eval {
        let share = d.validation_share;
        // With a validation share, the eval rows are split once cleaned.
        let dest = out.join(if share > 0.0 { ".eval-all" } else { "eval" });
        let mut filters = Filters {
            exact: (d.dedup != DedupMode::None).then(ExactDedup::new),
            ..Default::default()
        };
        let (rows_in, rows) = write(
            eval,
            &dest,
            set_options(loaded, config_hash, "eval", "test", &source),
            &mut filters,
            progress,
            "eval",
            &origin,
        )?;
        let mut with_reference = 0u64;
        for rows in crate::set::Set::open(&dest)?.records::<Sample>(None, 8192) {
            for s in rows? {
                with_reference += u64::from(s.reference.is_some());
                eval_texts.push(s.prompt);
            }
        }
        // Caught here, not after training: evaluation compares answers with references.
        if rows > 0 && with_reference == 0 {
            return Err(Error::invalid(format!(
                "The eval set (`data.eval` in `{origin}`) has {rows} rows but no references, so \
                 nothing could be evaluated\n\nhint: map the column holding the answers, e.g. \
                 `data.eval.map = {{ reference = \"answer\" }}`"
            )));
        }
        if share > 0.0 {
            let all: Vec<Sample> = crate::set::Set::open(&dest)?.read_all(None)?;
            let (validation, eval): (Vec<Sample>, Vec<Sample>) = all
                .into_iter()
                .partition(|s| in_validation(c.run.seed, &s.id, share));
            let (n_eval, n_validation) = (eval.len() as u64, validation.len() as u64);
            for (name, rows, split) in [
                ("eval", eval, "test"),
                ("validation", validation, "validation"),
            ] {
                write(
                    Input::Rows(rows),
                    &out.join(name),
                    set_options(loaded, config_hash, name, split, &source),
                    &mut Filters::default(),
                    progress,
                    name,
                    &origin,
                )?;
            }
            std::fs::remove_dir_all(&dest).map_err(|e| crate::error::Error::Write {
                path: dest.clone(),
                source: e,
            })?;
            sets.push(PreparedSet {
                name: "eval".into(),
                rows_in,
                rows: n_eval,
                filters: filters.reports(),
                answers_from: adopted.get("eval").map(|a| a.column.clone()),
                answers_in_messages: adopted.get("eval").is_some_and(|a| a.in_messages),
            });
            sets.push(PreparedSet {
                name: "validation".into(),
                rows_in: rows,
                rows: n_validation,
                filters: Vec::new(),
                answers_from: None,
                answers_in_messages: false,
            });
        } else {
            sets.push(PreparedSet {
                name: "eval".into(),
                rows_in,
                rows,
                filters: filters.reports(),
                answers_from: adopted.get("eval").map(|a| a.column.clone()),
                answers_in_messages: adopted.get("eval").is_some_and(|a| a.in_messages),
            });
        }
    }

    // One dedup state across gold, prompts and review: a prompt that repeats a gold item is
    // dropped, and so is a review prompt the student could have seen.
    let mut exact = (d.dedup != DedupMode::None).then(ExactDedup::new);
    let mut near = (d.dedup == DedupMode::Near)
        .then(|| NearDedup::new(d.near_threshold, d.shingle_words, c.run.seed));
    for (name, input) in [("gold", gold), ("prompts", prompts), ("review", review)] {
        let Some(input) = input else { continue };
        let mut filters = Filters {
            exact: exact.take(),
            near: near.take(),
            decontam: (d.decontaminate && !eval_texts.is_empty()).then(|| {
                Decontaminator::new(eval_texts.iter().map(String::as_str), d.decontam_ngram)
            }),
        };
        // Reports count per set: reset them, keep the state.
        for r in [
            filters.exact.as_mut().map(|f| &mut f.report),
            filters.near.as_mut().map(|f| &mut f.report),
        ]
        .into_iter()
        .flatten()
        {
            *r = FilterReport::new(r.name.clone());
        }
        let (rows_in, rows) = write(
            input,
            &out.join(name),
            set_options(loaded, config_hash, name, "train", &source),
            &mut filters,
            progress,
            name,
            &origin,
        )?;
        let reports = filters.reports();
        check_removed(name, rows_in, &reports, d.max_removed_share, &origin)?;
        sets.push(PreparedSet {
            name: name.into(),
            rows_in,
            rows,
            filters: reports,
            answers_from: adopted.get(name).map(|a| a.column.clone()),
            answers_in_messages: adopted.get(name).is_some_and(|a| a.in_messages),
        });
        exact = filters.exact;
        near = filters.near;
    }
    Ok(DataSummary { source, sets })
}
