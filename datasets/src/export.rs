//! `workbench datasets export`: a set (or a run's set) out in TRL's column conventions, so
//! `datasets.load_dataset("parquet", data_dir=DIR)` feeds `SFTTrainer` or `DPOTrainer` as is.
//!
//! - `samples`: the sample schema, unchanged.
//! - `sft`: `messages` (the conversation ending with the answer) beside `prompt` / `completion`.
//!   From a sample set the answer is the completion, else the reference; rows with neither are
//!   skipped and counted.
//! - `preference`: `prompt` / `chosen` / `rejected`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::import::{Format, Source};
use crate::jsonl::Mapping;
use crate::parquet::ParquetFile;
use crate::record::{PreferenceRow, Sample, SftRow};
use crate::schema::{Kind, META_KIND};
use crate::set::{SetOptions, SetSummary, SetWriter};

/// What an export did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The set read.
    pub source: PathBuf,
    /// The kind written.
    pub kind: Kind,
    /// Rows read.
    pub rows_read: u64,
    /// Rows left out, and why.
    pub skipped: u64,
    /// Why rows were left out.
    pub skipped_reason: Option<String>,
    /// The set written.
    pub set: SetSummary,
}

/// Whether `dir` is a run directory (it has the `config.toml` that `workbench run` writes).
pub fn is_run_dir(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(crate::rundir::layout::CONFIG))
        .map(|t| t.starts_with(crate::rundir::HASH_PREFIX))
        .unwrap_or(false)
}

/// The set inside a run directory that an export of `kind` reads.
pub fn run_set(run: &Path, kind: Kind) -> Result<PathBuf> {
    let (rel, made_by) = match kind {
        Kind::Sample | Kind::KdAxolotl | Kind::KdDistillKit => {
            ("synthetic", "`workbench generate`")
        }
        Kind::Sft => ("feedback/sft", "expert review (`workbench annotate`)"),
        Kind::Preference => (
            "feedback/preference",
            "expert review (`workbench annotate`)",
        ),
        Kind::Annotation => (
            "feedback/annotations",
            "expert review (`workbench annotate`)",
        ),
    };
    let path = run.join(rel);
    if !path.join("data").is_dir() {
        return Err(Error::invalid(format!(
            "The run `{}` has no `{rel}` set yet: it is made by {made_by}\n\nhint: export a set directory directly, e.g. `workbench datasets export {}/data/gold --kind {} --out DIR`",
            run.display(),
            run.display(),
            match kind {
                Kind::Preference => "preference",
                Kind::Sft => "sft",
                _ => "samples",
            }
        )));
    }
    Ok(path)
}

/// The kind the workbench recorded in the source's files, if it wrote them.
pub(crate) fn stored_kind(source: &Source) -> Option<Kind> {
    let first = match source.format {
        Format::Parquet => source.path.clone(),
        Format::Set => crate::set::Set::open(&source.path)
            .ok()?
            .shards()
            .first()?
            .path
            .clone(),
        _ => return None,
    };
    ParquetFile::open(first)
        .ok()?
        .key_value_metadata()
        .get(META_KIND)
        .and_then(|k| Kind::parse(k))
}

/// Exports `input` (a set, a data file, or a run directory) as a set of `kind` at `out`.
pub fn export(
    input: &Path,
    kind: Kind,
    out: &Path,
    options: SetOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<ExportReport> {
    let path = if is_run_dir(input) {
        run_set(input, kind)?
    } else {
        input.to_path_buf()
    };
    let source = Source::open(&path, Mapping::new())?;
    let stored = stored_kind(&source);
    let detected = source.detect_kind()?;
    let mut options = options;
    options
        .card
        .provenance
        .insert(0, ("exported from".into(), format!("`{}`", path.display())));
    let mut writer = SetWriter::create(out, kind, options)?;
    let mut read = 0u64;
    let mut skipped = 0u64;
    let mut skipped_reason = None;
    match kind {
        Kind::Sample => {
            if detected == Kind::Preference {
                return Err(Error::invalid(format!(
                    "`{}` holds preference pairs, not samples; export it with `--kind preference`",
                    path.display()
                )));
            }
            source.for_each::<Sample>(8192, |rows| {
                read += rows.len() as u64;
                progress(read);
                writer.write(&rows)
            })?;
        }
        Kind::Sft if stored == Some(Kind::Sft) => {
            source.for_each::<SftRow>(8192, |rows| {
                read += rows.len() as u64;
                progress(read);
                writer.write(&rows)
            })?;
        }
        Kind::Sft => {
            if detected == Kind::Preference {
                return Err(Error::invalid(format!(
                    "`{}` holds preference pairs; an SFT export needs samples with completions or references",
                    path.display()
                )));
            }
            source.for_each::<Sample>(8192, |rows| {
                read += rows.len() as u64;
                progress(read);
                let sft: Vec<SftRow> = rows
                    .into_iter()
                    .filter_map(|s| {
                        let (answer, origin) = match (s.completion, s.reference) {
                            (Some(c), _) => (
                                c,
                                s.teacher
                                    .map(|t| format!("teacher:{t}"))
                                    .unwrap_or("completion".into()),
                            ),
                            (None, Some(r)) => (r, "reference".to_string()),
                            (None, None) => {
                                skipped += 1;
                                return None;
                            }
                        };
                        Some(SftRow::new(s.messages, s.prompt, answer, Some(origin)))
                    })
                    .collect();
                writer.write(&sft)
            })?;
            if skipped > 0 {
                skipped_reason = Some("no completion and no reference".into());
            }
        }
        Kind::Preference => {
            if detected != Kind::Preference {
                return Err(Error::invalid(format!(
                    "`{}` has no `chosen` / `rejected` columns, so it holds no preference pairs\n\nhint: preference pairs come from expert decisions (`workbench annotate`) or a set with `chosen` and `rejected`",
                    path.display()
                )));
            }
            source.for_each::<PreferenceRow>(8192, |rows| {
                read += rows.len() as u64;
                progress(read);
                writer.write(&rows)
            })?;
        }
        Kind::Annotation => {
            return Err(Error::invalid(
                "Annotations are not exported as a set; export `--kind sft` or `--kind preference`",
            ));
        }
        Kind::KdAxolotl | Kind::KdDistillKit => {
            return Err(Error::invalid(
                "A KD export needs the trainer's tokenizer; use `crate::kd::export_kd`",
            ));
        }
    }
    if skipped > 0 {
        writer.card_mut().provenance.push((
            "rows left out".into(),
            format!("{skipped} ({})", skipped_reason.clone().unwrap_or_default()),
        ));
    }
    let set = writer.finish()?;
    Ok(ExportReport {
        source: path,
        kind,
        rows_read: read,
        skipped,
        skipped_reason,
        set,
    })
}
