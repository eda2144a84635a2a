//! `workbench datasets inspect`: what is in a Parquet file or a set, without loading it: schema,
//! rows, row groups, key-value metadata, and the first rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::parquet::ParquetFile;
use crate::set::Set;
use crate::text::{count, inert_line, thousands};

/// One file's facts.
#[derive(Debug, Clone, Serialize)]
pub struct FileFacts {
    /// Its path.
    pub path: PathBuf,
    /// The split (sets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Rows.
    pub rows: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Rows per row group.
    pub row_groups: Vec<u64>,
    /// The writer.
    pub created_by: Option<String>,
    /// Key-value metadata (the embedded Arrow schema left out).
    pub metadata: BTreeMap<String, String>,
}

/// One column.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnFacts {
    /// Its name.
    pub name: String,
    /// Its Arrow type.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether it may hold nulls.
    pub nullable: bool,
}

/// What `inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// What was inspected.
    pub path: PathBuf,
    /// `file` or `set`.
    pub what: &'static str,
    /// Total rows.
    pub rows: u64,
    /// The schema (of the first file).
    pub schema: Vec<ColumnFacts>,
    /// Every file.
    pub files: Vec<FileFacts>,
    /// The first rows, as JSON objects.
    pub first_rows: Vec<Value>,
}

fn facts(path: &Path, split: Option<String>) -> Result<(FileFacts, ParquetFile)> {
    let file = ParquetFile::open(path)?;
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::read(path, e))?
        .len();
    Ok((
        FileFacts {
            path: path.to_path_buf(),
            split,
            rows: file.num_rows(),
            bytes,
            row_groups: file.row_group_rows(),
            created_by: file.created_by(),
            metadata: file.key_value_metadata(),
        },
        file,
    ))
}

fn batch_to_json(batch: &RecordBatch) -> Result<Vec<Value>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::JsonArray>(&mut buf);
        w.write(batch)
            .map_err(|e| Error::arrow("Failed to render rows as JSON", e))?;
        w.finish()
            .map_err(|e| Error::arrow("Failed to render rows as JSON", e))?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_slice(&buf) {
        Ok(Value::Array(rows)) => Ok(rows),
        _ => Ok(Vec::new()),
    }
}

/// Inspects a Parquet file or a set directory; reads footers and at most `head` rows.
pub fn inspect(path: &Path, head: usize) -> Result<Inspection> {
    let meta = std::fs::metadata(path).map_err(|e| Error::read(path, e))?;
    let (what, files) = if meta.is_dir() {
        let set = Set::open(path)?;
        let files = set
            .shards()
            .iter()
            .map(|s| (s.path.clone(), Some(s.split.clone())))
            .collect::<Vec<_>>();
        ("set", files)
    } else {
        ("file", vec![(path.to_path_buf(), None)])
    };
    let mut all = Vec::with_capacity(files.len());
    let mut first_rows = Vec::new();
    let mut schema = Vec::new();
    for (i, (p, split)) in files.into_iter().enumerate() {
        let (f, file) = facts(&p, split)?;
        if i == 0 {
            schema = file
                .schema()
                .fields()
                .iter()
                .map(|f| ColumnFacts {
                    name: f.name().clone(),
                    data_type: crate::columns::type_name(f.data_type()),
                    nullable: f.is_nullable(),
                })
                .collect();
        }
        if first_rows.len() < head {
            for b in file.batches(head - first_rows.len()) {
                let (_, batch) = b?;
                first_rows.extend(batch_to_json(&batch)?);
                if first_rows.len() >= head {
                    break;
                }
            }
        }
        all.push(f);
    }
    first_rows.truncate(head);
    Ok(Inspection {
        path: path.to_path_buf(),
        what,
        rows: all.iter().map(|f| f.rows).sum(),
        schema,
        files: all,
        first_rows,
    })
}

/// Shortens a JSON value for people: long strings cut, long lists summarised.
pub fn abbreviate(v: &Value, depth: usize) -> String {
    match v {
        Value::String(s) => {
            let n = s.chars().count();
            if n <= 90 {
                serde_json::to_string(s).unwrap_or_default()
            } else {
                // Head and tail: templated prompts differ at their end.
                let head: String = s.chars().take(45).collect();
                let tail: String = s.chars().skip(n - 35).collect();
                let (h, t) = (
                    serde_json::to_string(&head).unwrap_or_default(),
                    serde_json::to_string(&tail).unwrap_or_default(),
                );
                format!("{} … {} ({n} chars)", &h[..h.len() - 1], &t[1..])
            }
        }
        Value::Array(items) if items.len() > 4 || depth > 2 => {
            let inner = items
                .first()
                .map(|x| abbreviate(x, depth + 1))
                .unwrap_or_default();
            format!("[{inner}, … {} items]", items.len())
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|x| abbreviate(x, depth + 1))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, x)| format!("{k}: {}", abbreviate(x, depth + 1)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

impl Inspection {
    /// The human-readable report (every piece of data in it made inert for the terminal).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let bytes: u64 = self.files.iter().map(|f| f.bytes).sum();
        let groups: usize = self.files.iter().map(|f| f.row_groups.len()).sum();
        writeln!(
            out,
            "{} `{}`: {}, {}, {}, {}",
            self.what,
            self.path.display(),
            count(self.rows, "row"),
            count(self.files.len() as u64, "file"),
            count(groups as u64, "row group"),
            count(bytes, "byte")
        )
        .ok();
        out.push_str("\nschema:\n");
        let width = self.schema.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.schema {
            writeln!(
                out,
                "  {:width$}  {}{}",
                inert_line(&c.name),
                c.data_type,
                if c.nullable { "" } else { " (not null)" }
            )
            .ok();
        }
        out.push_str("\nfiles:\n");
        for f in &self.files {
            let sizes: Vec<String> = f.row_groups.iter().map(|&n| thousands(n)).collect();
            writeln!(
                out,
                "  {}{}: {}, {}, {} of {}",
                f.path.display(),
                f.split
                    .as_ref()
                    .map(|s| format!(" [{s}]"))
                    .unwrap_or_default(),
                count(f.rows, "row"),
                count(f.bytes, "byte"),
                count(f.row_groups.len() as u64, "row group"),
                match f.row_groups.as_slice() {
                    [] => "no rows".to_string(),
                    [one] => count(*one, "row"),
                    _ => format!("{} rows", sizes.join(" + ")),
                }
            )
            .ok();
        }
        if let Some(first) = self.files.first() {
            out.push_str("\nmetadata (first file):\n");
            if let Some(by) = &first.created_by {
                writeln!(out, "  created_by: {}", inert_line(by)).ok();
            }
            for (k, v) in &first.metadata {
                writeln!(out, "  {}: {}", inert_line(k), inert_line(v)).ok();
            }
        }
        if !self.first_rows.is_empty() {
            writeln!(
                out,
                "\nfirst {}:",
                count(self.first_rows.len() as u64, "row")
            )
            .ok();
            for (i, row) in self.first_rows.iter().enumerate() {
                writeln!(out, "  [{i}]").ok();
                if let Value::Object(map) = row {
                    for (k, v) in map {
                        writeln!(
                            out,
                            "    {}: {}",
                            inert_line(k),
                            inert_line(&abbreviate(v, 0))
                        )
                        .ok();
                    }
                }
            }
        }
        out
    }
}
