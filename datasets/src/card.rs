//! The dataset card: `README.md` with the YAML header the Hugging Face Hub and `datasets` read
//! (`configs`/`data_files`, `dataset_info.features`, `license`, `size_categories`), and a body a
//! person reads: what the set is, where it came from, its columns, and how to load it.

use std::fmt::Write as _;

use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};

use crate::error::{Error, Result};
use crate::schema::{Kind, SCHEMA_VERSION, WORKBENCH_VERSION};
use crate::set::SetSummary;

/// The words every card the workbench writes carries: how a set directory is known as its own
/// (see [`crate::atomic::check_replaceable`]).
pub const CARD_MARKER: &str = "Written by the workbench";

/// What a dataset card says beyond what the data itself tells.
#[derive(Debug, Clone)]
pub struct CardInfo {
    /// A human title.
    pub title: String,
    /// One paragraph on what the set is.
    pub description: String,
    /// A Hub licence identifier (`apache-2.0`, `cc-by-4.0`, `other`, `unknown`, ...).
    pub license: String,
    /// Hub tags.
    pub tags: Vec<String>,
    /// Provenance lines, `(what, value)`: source files, config hash, filters applied.
    pub provenance: Vec<(String, String)>,
}

impl Default for CardInfo {
    fn default() -> Self {
        CardInfo {
            title: "Workbench set".into(),
            description: "A set written by the workbench.".into(),
            license: "unknown".into(),
            tags: vec!["workbench".into()],
            provenance: Vec::new(),
        }
    }
}

/// The Hub's size buckets.
pub fn size_category(rows: u64) -> &'static str {
    match rows {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        1_000_000..10_000_000 => "1M<n<10M",
        10_000_000..100_000_000 => "10M<n<100M",
        100_000_000..1_000_000_000 => "100M<n<1B",
        _ => "n>1B",
    }
}

/// A YAML scalar, quoted when plain style would change its meaning.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./<>*".contains(c))
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("strings serialise")
    }
}

/// The `datasets` dtype name of a primitive Arrow type.
fn dtype(dt: &DataType) -> Result<String> {
    Ok(match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float16 => "float16".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            match tz {
                Some(tz) => format!("timestamp[{unit}, tz={tz}]"),
                None => format!("timestamp[{unit}]"),
            }
        }
        other => {
            return Err(Error::invalid(format!(
                "Arrow type {other} has no Hugging Face feature type"
            )));
        }
    })
}

/// Writes one feature (the value under `name:`) at `indent`, in the layout `datasets` writes.
fn feature(out: &mut String, dt: &DataType, indent: usize) -> Result<()> {
    let pad = " ".repeat(indent);
    match dt {
        DataType::List(f) | DataType::LargeList(f) => match f.data_type() {
            // `datasets` writes a struct's fields level with `list:`, a nested list one deeper.
            DataType::Struct(_) => {
                writeln!(out, "{pad}list:").ok();
                feature(out, f.data_type(), indent)?;
            }
            DataType::List(_) | DataType::LargeList(_) => {
                writeln!(out, "{pad}list:").ok();
                feature(out, f.data_type(), indent + 2)?;
            }
            inner => {
                writeln!(out, "{pad}list: {}", scalar(&dtype(inner)?)).ok();
            }
        },
        DataType::Struct(fields) => {
            // A struct directly under `list:` is written as its field list.
            for f in fields {
                field(out, f, indent)?;
            }
        }
        other => {
            writeln!(out, "{pad}dtype: {}", scalar(&dtype(other)?)).ok();
        }
    }
    Ok(())
}

fn field(out: &mut String, f: &Field, indent: usize) -> Result<()> {
    let pad = " ".repeat(indent);
    writeln!(out, "{pad}- name: {}", scalar(f.name())).ok();
    match f.data_type() {
        DataType::Struct(fields) => {
            writeln!(out, "{pad}  struct:").ok();
            for c in fields {
                field(out, c, indent + 2)?;
            }
        }
        other => feature(out, other, indent + 2)?,
    }
    Ok(())
}

/// The whole `README.md`.
pub fn render(
    info: &CardInfo,
    kind: Kind,
    schema: &SchemaRef,
    summary: &SetSummary,
) -> Result<String> {
    let mut y = String::new();
    y.push_str("---\n");
    writeln!(y, "license: {}", scalar(&info.license)).ok();
    y.push_str("size_categories:\n");
    writeln!(y, "- {}", scalar(size_category(summary.rows))).ok();
    if !info.tags.is_empty() {
        y.push_str("tags:\n");
        for t in &info.tags {
            writeln!(y, "- {}", scalar(t)).ok();
        }
    }
    writeln!(y, "pretty_name: {}", scalar(&info.title)).ok();
    y.push_str("configs:\n- config_name: default\n  data_files:\n");
    for s in &summary.splits {
        writeln!(
            y,
            "  - split: {}\n    path: {}",
            scalar(&s.name),
            scalar(&format!("data/{}-*", s.name))
        )
        .ok();
    }
    y.push_str("dataset_info:\n  features:\n");
    for f in schema.fields() {
        field(&mut y, f, 2)?;
    }
    y.push_str("  splits:\n");
    for s in &summary.splits {
        writeln!(
            y,
            "  - name: {}\n    num_bytes: {}\n    num_examples: {}",
            scalar(&s.name),
            s.memory_bytes,
            s.rows
        )
        .ok();
    }
    let download: u64 = summary.splits.iter().map(|s| s.bytes).sum();
    let memory: u64 = summary.splits.iter().map(|s| s.memory_bytes).sum();
    writeln!(y, "  download_size: {download}\n  dataset_size: {memory}").ok();
    y.push_str("---\n\n");

    writeln!(y, "# {}\n", info.title).ok();
    writeln!(y, "{}\n", info.description).ok();
    writeln!(
        y,
        "{CARD_MARKER} {WORKBENCH_VERSION}: schema `{}` version {SCHEMA_VERSION}, {}.\n",
        kind,
        crate::text::count(summary.rows, "row")
    )
    .ok();
    y.push_str("| split | rows | files | bytes |\n|---|---:|---:|---:|\n");
    for s in &summary.splits {
        writeln!(
            y,
            "| {} | {} | {} | {} |",
            s.name,
            s.rows,
            s.files.len(),
            s.bytes
        )
        .ok();
    }
    y.push_str("\n## Columns\n\n| column | type |\n|---|---|\n");
    for f in schema.fields() {
        writeln!(y, "| `{}` | `{}` |", f.name(), f.data_type()).ok();
    }
    if !info.provenance.is_empty() {
        y.push_str("\n## Provenance\n\n");
        for (k, v) in &info.provenance {
            writeln!(y, "- {k}: {v}").ok();
        }
    }
    y.push_str(
        "\n## Loading\n\n```python\nfrom datasets import load_dataset\nds = load_dataset(\"parquet\", data_dir=\"path/to/this/directory\")\n```\n\n\
         Every Parquet file carries key-value metadata `workbench.schema_version`, `workbench.version`\n\
         and, when a config produced it, `workbench.config_hash`.\n",
    );
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_that_yaml_would_misread_are_quoted() {
        assert_eq!(scalar("train"), "train");
        assert_eq!(scalar("data/train-*"), "data/train-*");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("1.5"), "\"1.5\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(scalar(""), "\"\"");
    }

    #[test]
    fn size_buckets_follow_the_hub() {
        assert_eq!(size_category(0), "n<1K");
        assert_eq!(size_category(1_000), "1K<n<10K");
        assert_eq!(size_category(250_000), "100K<n<1M");
    }

    #[test]
    fn sample_features_are_written_as_datasets_writes_them() {
        let mut out = String::new();
        for f in crate::schema::sample_schema().fields() {
            field(&mut out, f, 0).unwrap();
        }
        assert!(
            out.contains("- name: completion_ids\n  list: uint32\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "- name: teacher_topk\n  list:\n    list:\n    - name: id\n      dtype: uint32\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("- name: messages\n  list:\n  - name: role\n    dtype: string\n"),
            "{out}"
        );
        assert!(out.contains("dtype: \"timestamp[us, tz=UTC]\""), "{out}");
    }
}
