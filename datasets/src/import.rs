//! `workbench datasets import`: any JSONL, JSON, CSV or Parquet file (or a set directory) in,
//! a set in the Hugging Face layout out, cleaned on the way.
//!
//! Columns are matched by our names (see [`MAPPABLE`]) after an optional mapping, so Alpaca-style
//! JSON, TRL conversational sets, HH-RLHF pairs and our own Parquet all import without a script.
//! Rows stream through in batches; the output directory appears only when everything succeeded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema};
use serde::Serialize;

use crate::decontam::Decontaminator;
use crate::dedup::{ExactDedup, FilterReport, NearDedup};
use crate::error::{ColumnError, Error, Result};
use crate::jsonl::{self, JsonRow, Mapping, RowAt};
use crate::parquet::ParquetFile;
use crate::record::{BatchFields, PreferenceRow, Record, RowFields, Sample, SftRow, now_micros};
use crate::schema::Kind;
use crate::set::{Set, SetOptions, SetSummary, SetWriter};

/// The columns the workbench reads (the targets of `--map`).
pub const MAPPABLE: &[&str] = &[
    "id",
    "prompt",
    "messages",
    "completion",
    "completion_ids",
    "teacher_topk",
    "teacher",
    "logprob_mean",
    "entropy_mean",
    "disagreement",
    "reference",
    "template",
    "slice",
    "seed",
    "created_at",
    "chosen",
    "rejected",
    "source",
];

/// Columns read as a set's answers (its `reference`) when it has no `reference` column and the
/// config maps none, in this order: the names TRL, Alpaca-style sets and chat exports use.
pub const ANSWER_COLUMNS: &[&str] = &["completion", "answer", "output", "response"];

/// Parses `prompt=question,reference=answer`.
pub fn parse_mapping(spec: &str) -> Result<Mapping> {
    let mut map = Mapping::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((target, source)) = part.split_once('=') else {
            return Err(Error::invalid(format!(
                "`--map {part}`: expected `OURS=THEIRS`, e.g. `--map prompt=question,reference=answer`"
            )));
        };
        let (target, source) = (target.trim(), source.trim());
        if !MAPPABLE.contains(&target) {
            return Err(Error::invalid(format!(
                "`--map {part}`: `{target}` is not a column the workbench reads; expected one of {}",
                MAPPABLE.join(", ")
            )));
        }
        if source.is_empty() {
            return Err(Error::invalid(format!(
                "`--map {part}`: the source column name is empty"
            )));
        }
        map.insert(target.to_string(), source.to_string());
    }
    Ok(map)
}

/// File formats the importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// One JSON array of objects.
    Json,
    /// Comma- or tab-separated, with a header.
    Csv,
    /// One Parquet file.
    Parquet,
    /// A directory of Parquet files (a set, ours or a Hugging Face download).
    Set,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Jsonl => "JSON Lines",
            Format::Json => "JSON",
            Format::Csv => "CSV",
            Format::Parquet => "Parquet",
            Format::Set => "a set of Parquet files",
        })
    }
}

/// A file or set to import from, with its column mapping.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where it is.
    pub path: PathBuf,
    /// What it is.
    pub format: Format,
    /// Our column → its column.
    pub map: Mapping,
}

/// A record the importer can build from a row's fields.
pub trait Importable: Record {
    /// Builds the record.
    fn from_fields(fields: RowFields, now: i64) -> Result<Self, ColumnError>;
    /// The text duplicates and contamination are judged on.
    fn text(&self) -> String;
}

impl Importable for Sample {
    fn from_fields(fields: RowFields, now: i64) -> Result<Self, ColumnError> {
        fields.into_sample(now)
    }
    fn text(&self) -> String {
        self.prompt.clone()
    }
}

impl Importable for SftRow {
    fn from_fields(fields: RowFields, _: i64) -> Result<Self, ColumnError> {
        fields.into_sft()
    }
    fn text(&self) -> String {
        format!("{}\n{}", self.prompt, self.completion)
    }
}

impl Importable for PreferenceRow {
    fn from_fields(fields: RowFields, _: i64) -> Result<Self, ColumnError> {
        fields.into_preference()
    }
    fn text(&self) -> String {
        if self.prompt.is_empty() {
            self.chosen.clone()
        } else {
            self.prompt.clone()
        }
    }
}

impl Source {
    /// Opens `path`, detecting the format from its extension (and, for `.json`, its first byte).
    pub fn open(path: impl Into<PathBuf>, map: Mapping) -> Result<Source> {
        let path = path.into();
        let meta = std::fs::metadata(&path).map_err(|e| Error::read(&path, e))?;
        let format = if meta.is_dir() {
            if !Set::is_set(&path) && !has_parquet(&path) {
                return Err(Error::invalid(format!(
                    "`{}` is a directory without Parquet files; expected a data file (JSONL, JSON, CSV, Parquet) or a set directory",
                    path.display()
                )));
            }
            Format::Set
        } else {
            if meta.len() == 0 {
                return Err(no_rows(&path, " (the file is empty)"));
            }
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            match ext.as_str() {
                "jsonl" | "ndjson" => Format::Jsonl,
                "json" => {
                    if jsonl::is_array(&path)? {
                        Format::Json
                    } else {
                        Format::Jsonl
                    }
                }
                "csv" | "tsv" => Format::Csv,
                "parquet" | "pq" => Format::Parquet,
                _ => {
                    return Err(Error::invalid(format!(
                        "`{}`: unknown file type `.{ext}`; expected .jsonl, .json, .csv, .tsv or .parquet",
                        path.display()
                    )));
                }
            }
        };
        Ok(Source { path, format, map })
    }

    fn parquet_files(&self) -> Result<Vec<PathBuf>> {
        match self.format {
            Format::Parquet => Ok(vec![self.path.clone()]),
            Format::Set => {
                if Set::is_set(&self.path) {
                    Ok(Set::open(&self.path)?
                        .shards()
                        .iter()
                        .map(|s| s.path.clone())
                        .collect())
                } else {
                    let mut files: Vec<PathBuf> = std::fs::read_dir(&self.path)
                        .map_err(|e| Error::read(&self.path, e))?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                        .collect();
                    files.sort();
                    Ok(files)
                }
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Rows in the source when its footers say so (Parquet), for progress bars with an ETA.
    pub fn row_count(&self) -> Option<u64> {
        let files = self.parquet_files().ok()?;
        if files.is_empty() {
            return None;
        }
        files
            .iter()
            .map(|f| ParquetFile::open(f).ok().map(|f| f.num_rows()))
            .sum()
    }

    /// The source's column names (for JSON, the keys of the first row).
    pub fn columns(&self) -> Result<Vec<String>> {
        match self.format {
            Format::Parquet | Format::Set => {
                let files = self.parquet_files()?;
                let first = files.first().ok_or_else(|| {
                    Error::invalid(format!("`{}` has no Parquet files", self.path.display()))
                })?;
                let file = ParquetFile::open(first)?;
                unique_columns(first, &file.schema())?;
                Ok(file
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect())
            }
            Format::Csv => crate::csv::header(&self.path),
            Format::Jsonl | Format::Json => {
                let mut keys = None;
                let grab = |_: RowAt, row: JsonRow| {
                    keys = Some(row.keys().cloned().collect::<Vec<_>>());
                    Err(Error::invalid("stop"))
                };
                let r = if self.format == Format::Jsonl {
                    jsonl::read_lines(&self.path, grab)
                } else {
                    jsonl::read_array(&self.path, grab)
                };
                match (keys, r) {
                    (Some(k), _) => Ok(k),
                    (None, Err(e)) => Err(e),
                    (None, Ok(_)) => Err(no_rows(&self.path, "")),
                }
            }
        }
    }

    /// When the config maps no `reference` and the source has no `reference` column, reads the
    /// first of [`ANSWER_COLUMNS`] it has as the reference, and says which; `None` when the
    /// reference is mapped, present, or nowhere to be found.
    pub fn adopt_answer_column(&mut self) -> Result<Option<String>> {
        if self.map.contains_key("reference") {
            return Ok(None);
        }
        let columns = self.columns()?;
        if columns.iter().any(|c| c == "reference") {
            return Ok(None);
        }
        let mapped: BTreeSet<&str> = self.map.values().map(String::as_str).collect();
        let Some(found) = ANSWER_COLUMNS
            .iter()
            .find(|c| columns.iter().any(|x| x == *c) && !mapped.contains(*c))
        else {
            return Ok(None);
        };
        self.map.insert("reference".into(), found.to_string());
        Ok(Some(found.to_string()))
    }

    /// Checks that every mapped column exists; returns the columns that will be ignored.
    pub fn check_mapping(&self) -> Result<Vec<String>> {
        self.check_mapping_as(&|target, source| format!("`--map {target}={source}`"))
    }

    /// [`Source::check_mapping`], naming a mapping entry with `entry(target, source)` in the
    /// message (a config key rather than a flag).
    pub fn check_mapping_as(&self, entry: &dyn Fn(&str, &str) -> String) -> Result<Vec<String>> {
        let columns = self.columns()?;
        for (target, source) in &self.map {
            if !columns.contains(source) {
                return Err(Error::invalid(format!(
                    "{}: `{}` has no column `{source}`; its columns are: {}",
                    entry(target, source),
                    self.path.display(),
                    columns.join(", ")
                )));
            }
        }
        // Every row needs a prompt (or a conversation): say so once, with the columns there
        // are, rather than at the first row.
        let source_of = |t: &str| self.map.get(t).cloned().unwrap_or_else(|| t.to_string());
        if !columns.contains(&source_of("prompt")) && !columns.contains(&source_of("messages")) {
            let suggestion = columns.first().map(String::as_str).unwrap_or("COLUMN");
            return Err(Error::invalid(format!(
                "`{}` has no `{}` column and no `{}`, so its rows have no prompt; its columns \
                 are: {}\n\nhint: name the column that holds the prompt with {}",
                self.path.display(),
                source_of("prompt"),
                source_of("messages"),
                columns.join(", "),
                entry("prompt", suggestion)
            )));
        }
        let used: BTreeSet<&str> = MAPPABLE
            .iter()
            .map(|t| self.map.get(*t).map(String::as_str).unwrap_or(t))
            .collect();
        Ok(columns
            .into_iter()
            .filter(|c| !used.contains(c.as_str()))
            .collect())
    }

    /// The kind of set this source makes: preference when it has `chosen` and `rejected`.
    pub fn detect_kind(&self) -> Result<Kind> {
        let columns = self.columns()?;
        let has = |t: &str| {
            columns
                .iter()
                .any(|c| c == self.map.get(t).map(String::as_str).unwrap_or(t))
        };
        Ok(if has("chosen") && has("rejected") {
            Kind::Preference
        } else {
            Kind::Sample
        })
    }

    /// Streams the source as records in batches of about `batch_rows`.
    pub fn for_each<R: Importable>(
        &self,
        batch_rows: usize,
        mut f: impl FnMut(Vec<R>) -> Result<()>,
    ) -> Result<u64> {
        let now = now_micros();
        let batch_rows = batch_rows.max(1);
        let mut rows = 0u64;
        match self.format {
            Format::Parquet | Format::Set => {
                for path in self.parquet_files()? {
                    let file = ParquetFile::open(&path)?;
                    unique_columns(&path, &file.schema())?;
                    for b in file.batches(batch_rows) {
                        let (group, batch) = b?;
                        let batch = rename(&batch, &self.map);
                        let fields =
                            BatchFields::read(&batch).map_err(|e| e.at(&path, Some(group)))?;
                        let records = (0..fields.len())
                            .map(|i| {
                                R::from_fields(fields.row(i), now).map_err(|mut e| {
                                    e.message =
                                        format!("row {i} of the row group's batch: {}", e.message);
                                    e.at(&path, Some(group))
                                })
                            })
                            .collect::<Result<Vec<R>>>()?;
                        rows += records.len() as u64;
                        f(records)?;
                    }
                }
                // As for an empty JSONL file: a Parquet file (or set) of no rows is refused,
                // not turned into an empty set.
                if rows == 0 {
                    return Err(no_rows(&self.path, ""));
                }
            }
            Format::Jsonl | Format::Json | Format::Csv => {
                let mut pending = Vec::with_capacity(batch_rows);
                let path = self.path.clone();
                let mut each = |at: RowAt, row: JsonRow| -> Result<()> {
                    let record = jsonl::row_fields(&row, &self.map)
                        .and_then(|fields| R::from_fields(fields, now))
                        .map_err(|e| {
                            jsonl::row_error(
                                &path,
                                at,
                                format!("column `{}` {}", e.column, e.message),
                            )
                        })?;
                    pending.push(record);
                    rows += 1;
                    if pending.len() >= batch_rows {
                        f(std::mem::take(&mut pending))?;
                    }
                    Ok(())
                };
                let n = match self.format {
                    Format::Jsonl => jsonl::read_lines(&self.path, &mut each)?,
                    Format::Json => jsonl::read_array(&self.path, &mut each)?,
                    _ => crate::csv::read_records(&self.path, &mut each)?,
                };
                if !pending.is_empty() {
                    f(pending)?;
                }
                if n == 0 {
                    return Err(no_rows(&self.path, ""));
                }
            }
        }
        Ok(rows)
    }
}

/// The error for a source without rows, whatever its format.
fn no_rows(path: &Path, why: &str) -> Error {
    Error::invalid(format!(
        "`{}` has no rows{why}; nothing to import",
        path.display()
    ))
}

/// Refuses a Parquet schema that names a column twice: which of the two is `prompt` would be a
/// guess.
fn unique_columns(path: &Path, schema: &arrow_schema::Schema) -> Result<()> {
    let mut seen = BTreeSet::new();
    for field in schema.fields() {
        if !seen.insert(field.name().as_str()) {
            return Err(ColumnError::new(
                field.name(),
                "appears twice in the file's schema, so its value is ambiguous; rename one of \
                 the two columns",
            )
            .at(path, None));
        }
    }
    Ok(())
}

fn has_parquet(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        })
        .unwrap_or(false)
}

/// Renames mapped columns to our names (dropping a same-named column the mapping replaces).
fn rename(batch: &RecordBatch, map: &Mapping) -> RecordBatch {
    if map.is_empty() {
        return batch.clone();
    }
    let schema = batch.schema();
    let mapped_sources: BTreeSet<&str> = map.values().map(String::as_str).collect();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name().as_str();
        // One source column may feed several targets (`completion` and `reference` from the same
        // `answer`): each gets the column.
        let targets: Vec<&String> = map
            .iter()
            .filter(|(_, s)| s.as_str() == name)
            .map(|(t, _)| t)
            .collect();
        if targets.is_empty() {
            // A column named like a target that is fed from elsewhere is shadowed.
            if map.contains_key(name) && !mapped_sources.contains(name) {
                continue;
            }
            fields.push(Field::new(name, field.data_type().clone(), true));
            columns.push(column.clone());
        }
        for t in targets {
            fields.push(Field::new(t.as_str(), field.data_type().clone(), true));
            columns.push(column.clone());
        }
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
        .expect("same columns, renamed")
}

/// How an import cleans its rows.
#[derive(Debug, Default)]
pub struct Filters {
    /// Exact-duplicate removal.
    pub exact: Option<ExactDedup>,
    /// Near-duplicate removal.
    pub near: Option<NearDedup>,
    /// Eval-overlap removal.
    pub decontam: Option<Decontaminator>,
}

impl Filters {
    /// Keeps the rows every filter keeps, in order.
    pub fn apply<R: Importable>(&mut self, rows: Vec<R>) -> Vec<R> {
        rows.into_iter()
            .filter(|r| {
                let text = r.text();
                let id = r.id().to_string();
                self.decontam.as_mut().is_none_or(|d| d.keep(&id, &text))
                    && self.exact.as_mut().is_none_or(|d| d.keep(&id, &text))
                    && self.near.as_mut().is_none_or(|d| d.keep(&id, &text))
            })
            .collect()
    }

    /// What each filter removed.
    pub fn reports(&self) -> Vec<FilterReport> {
        let mut out = Vec::new();
        if let Some(d) = &self.decontam {
            out.push(d.report.clone());
        }
        if let Some(d) = &self.exact {
            out.push(d.report.clone());
        }
        if let Some(d) = &self.near {
            out.push(d.report.clone());
        }
        out
    }
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The input.
    pub source: PathBuf,
    /// Its format.
    pub format: Format,
    /// The kind of set written.
    pub kind: Kind,
    /// Rows read.
    pub rows_read: u64,
    /// Columns of the input the workbench does not read.
    pub ignored_columns: Vec<String>,
    /// What each filter removed.
    pub filters: Vec<FilterReport>,
    /// The set written.
    pub set: SetSummary,
}

/// Imports `source` into a new set at `out`; `progress` is called with the rows read so far.
pub fn import(
    source: &Source,
    out: &Path,
    kind: Option<Kind>,
    mut filters: Filters,
    mut options: SetOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportReport> {
    let ignored_columns = source.check_mapping()?;
    let kind = match kind {
        Some(k) => k,
        None => source.detect_kind()?,
    };
    options.card.provenance.insert(
        0,
        (
            "imported from".into(),
            format!("`{}`", source.path.display()),
        ),
    );
    if !source.map.is_empty() {
        let map: Vec<String> = source.map.iter().map(|(t, s)| format!("{t}={s}")).collect();
        options
            .card
            .provenance
            .push(("column mapping".into(), format!("`{}`", map.join(","))));
    }
    let mut writer = SetWriter::create(out, kind, options)?;
    let (rows_read, kept) = match kind {
        Kind::Sample => run::<Sample>(source, &mut writer, &mut filters, progress)?,
        Kind::Sft => run::<SftRow>(source, &mut writer, &mut filters, progress)?,
        Kind::Preference => run::<PreferenceRow>(source, &mut writer, &mut filters, progress)?,
        Kind::Annotation => {
            return Err(Error::invalid(
                "Annotations are not imported from files; they come from the annotation database",
            ));
        }
        Kind::KdAxolotl | Kind::KdDistillKit => {
            return Err(Error::invalid(
                "A KD set is written for other trainers (`datasets export --kind kd`), not imported; import the samples it was made from",
            ));
        }
    };
    let reports = filters.reports();
    if kept == 0 && rows_read > 0 {
        // The writer is dropped unfinished: nothing appears at `out`.
        return Err(everything_filtered(source, &reports));
    }
    writer.card_mut().provenance.extend(reports.iter().map(|r| {
        (
            r.name.clone(),
            format!(
                "removed {} of {}",
                crate::text::thousands(r.removed),
                crate::text::count(r.seen, "row")
            ),
        )
    }));
    let set = writer.finish()?;
    Ok(ImportReport {
        source: source.path.clone(),
        format: source.format,
        kind,
        rows_read,
        ignored_columns,
        filters: reports,
        set,
    })
}

/// Streams `source` through `filters` into `writer`; returns the rows read and the rows kept.
fn run<R: Importable>(
    source: &Source,
    writer: &mut SetWriter,
    filters: &mut Filters,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, u64)> {
    let mut read = 0;
    let mut kept = 0;
    source.for_each::<R>(8192, |rows| {
        read += rows.len() as u64;
        let rows = filters.apply(rows);
        kept += rows.len() as u64;
        writer.write(&rows)?;
        progress(read);
        Ok(())
    })?;
    Ok((read, kept))
}

/// The error for an import whose filters removed every row, naming the filters that did.
fn everything_filtered(source: &Source, reports: &[FilterReport]) -> Error {
    let culprits: Vec<String> = reports
        .iter()
        .filter(|r| r.removed > 0)
        .map(|r| {
            format!(
                "{} removed {} of {}",
                r.name,
                crate::text::thousands(r.removed),
                crate::text::count(r.seen, "row")
            )
        })
        .collect();
    let decontam = reports
        .iter()
        .any(|r| r.removed > 0 && r.name.starts_with("decontamination"));
    let hint = if decontam {
        "check that `--decontaminate` names the eval set and not this file, or raise `--ngram`"
    } else {
        "drop `--dedup`, or raise `--near-threshold` so fewer rows count as near-duplicates"
    };
    Error::invalid(format!(
        "The filters removed every row of `{}` ({}), so the set would be empty; nothing was \
         written\n\nhint: {hint}",
        source.path.display(),
        culprits.join("; ")
    ))
}

#[cfg(test)]
mod rename_tests {
    use super::*;
    use crate::record::SftRow;
    use crate::{Message, Sample};

    /// Regression: on Parquet (and set) sources a column mapped to two targets fed only the
    /// first; JSONL and CSV fed both.
    #[test]
    fn a_parquet_column_mapped_to_two_targets_feeds_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval.parquet");
        let row = SftRow::new(
            vec![Message::new("user", "q")],
            "q".into(),
            "a".into(),
            None,
        );
        crate::parquet::write_records(&path, &[row], &Default::default()).unwrap();
        let map = parse_mapping("completion=completion,reference=completion").unwrap();
        let source = Source::open(&path, map).unwrap();
        let mut got = Vec::new();
        source
            .for_each::<Sample>(16, |rows| {
                got.extend(rows);
                Ok(())
            })
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].completion.as_deref(), Some("a"));
        assert_eq!(got[0].reference.as_deref(), Some("a"));
    }

    #[test]
    fn an_answer_like_column_is_the_reference_when_none_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, line: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("{line}\n")).unwrap();
            path
        };
        let read = |source: &Source| {
            let mut got = Vec::new();
            source
                .for_each::<Sample>(16, |rows| {
                    got.extend(rows);
                    Ok(())
                })
                .unwrap();
            got.remove(0)
        };
        // `completion` before `answer`, as ANSWER_COLUMNS orders them.
        let both = file(
            "a.jsonl",
            r#"{"prompt": "q", "answer": "x", "completion": "y"}"#,
        );
        let mut source = Source::open(&both, Mapping::new()).unwrap();
        assert_eq!(
            source.adopt_answer_column().unwrap().as_deref(),
            Some("completion")
        );
        assert_eq!(read(&source).reference.as_deref(), Some("y"));
        let response = file("r.jsonl", r#"{"prompt": "q", "response": "z"}"#);
        let mut source = Source::open(&response, Mapping::new()).unwrap();
        assert_eq!(
            source.adopt_answer_column().unwrap().as_deref(),
            Some("response")
        );
        assert_eq!(read(&source).reference.as_deref(), Some("z"));
        // A `reference` column, or a mapped one, wins; nothing answer-like, nothing adopted.
        let named = file(
            "n.jsonl",
            r#"{"prompt": "q", "reference": "r", "output": "o"}"#,
        );
        let mut source = Source::open(&named, Mapping::new()).unwrap();
        assert_eq!(source.adopt_answer_column().unwrap(), None);
        let mut source = Source::open(&both, parse_mapping("reference=answer").unwrap()).unwrap();
        assert_eq!(source.adopt_answer_column().unwrap(), None);
        assert_eq!(read(&source).reference.as_deref(), Some("x"));
        let bare = file("b.jsonl", r#"{"prompt": "q"}"#);
        let mut source = Source::open(&bare, Mapping::new()).unwrap();
        assert_eq!(source.adopt_answer_column().unwrap(), None);
    }
}

#[cfg(test)]
mod refusal_tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, StringArray};
    use arrow_schema::DataType;

    use super::*;

    fn write_parquet(path: &Path, names: &[&str], rows: usize) {
        let fields: Vec<Field> = names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect();
        let columns: Vec<ArrayRef> = names
            .iter()
            .map(|n| {
                Arc::new(StringArray::from(
                    (0..rows).map(|i| format!("{n} {i}")).collect::<Vec<_>>(),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let file = std::fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn import_to(source: &Path, out: &Path, filters: Filters) -> Result<ImportReport> {
        let source = Source::open(source, Mapping::new())?;
        import(
            &source,
            out,
            None,
            filters,
            SetOptions::default(),
            &mut |_| {},
        )
    }

    /// A Parquet file of no rows made an empty set, where an empty JSONL file was refused.
    #[test]
    fn an_empty_parquet_file_is_refused_like_an_empty_jsonl_file() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("empty.parquet");
        write_parquet(&parquet, &["prompt"], 0);
        let jsonl = dir.path().join("empty.jsonl");
        std::fs::write(&jsonl, "\n\n").unwrap();
        let out = dir.path().join("out");
        for path in [&parquet, &jsonl] {
            let e = import_to(path, &out, Filters::default()).unwrap_err();
            assert!(e.is_bad_input());
            let e = e.to_string();
            assert!(e.contains("has no rows; nothing to import"), "{e}");
            assert!(!out.exists());
        }
    }

    /// A Parquet file whose schema names `prompt` twice was read as one of them.
    #[test]
    fn a_parquet_column_named_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("twice.parquet");
        write_parquet(&parquet, &["prompt", "reference", "prompt"], 2);
        let out = dir.path().join("out");
        let e = import_to(&parquet, &out, Filters::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("twice.parquet`, column `prompt`") && e.contains("appears twice"),
            "{e}"
        );
        assert!(!out.exists());
    }

    /// Decontamination that removed every row wrote an empty set and succeeded.
    #[test]
    fn filters_that_remove_every_row_are_refused_naming_the_filter() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("rows.jsonl");
        let rows: String = (0..3)
            .map(|i| format!("{{\"prompt\": \"what is the date of the {i}th of May in the year two thousand and one\"}}\n"))
            .collect();
        std::fs::write(&jsonl, &rows).unwrap();
        let eval: Vec<String> = (0..3)
            .map(|i| {
                format!("what is the date of the {i}th of May in the year two thousand and one")
            })
            .collect();
        let filters = Filters {
            decontam: Some(Decontaminator::new(eval.iter().map(String::as_str), 5)),
            ..Filters::default()
        };
        let out = dir.path().join("out");
        let e = import_to(&jsonl, &out, filters).unwrap_err();
        assert!(e.is_bad_input());
        let e = e.to_string();
        assert!(
            e.contains("removed every row")
                && e.contains("decontamination")
                && e.contains("3 of 3 rows"),
            "{e}"
        );
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
