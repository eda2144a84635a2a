//! CSV and TSV, read record by record into the same row shape as JSON (see [`crate::jsonl`]).
//!
//! An empty cell is a missing value, as pandas reads it. A cell holding a JSON list (a
//! conversation, token ids) is parsed when the column needs a list. A ragged row or invalid UTF-8
//! is an error naming the line.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::jsonl::{JsonRow, RowAt, row_error};

fn delimiter(path: &Path) -> u8 {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("tsv") => b'\t',
        _ => b',',
    }
}

fn csv_error(path: &Path, e: &csv::Error) -> Error {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!(
                "has {len} fields but the header has {expected_len}; quote fields that contain the delimiter"
            )
        }
        csv::ErrorKind::Utf8 { err, .. } => {
            format!(
                "field {} is not valid UTF-8; re-encode the file as UTF-8",
                err.field() + 1
            )
        }
        csv::ErrorKind::Io(io) => {
            return Error::read(path, std::io::Error::new(io.kind(), io.to_string()));
        }
        _ => e.to_string(),
    };
    row_error(path, RowAt::Line(line), message)
}

/// The header of a CSV file.
pub fn header(path: &Path) -> Result<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(path))
        .from_path(path)
        .map_err(|e| match e.kind() {
            csv::ErrorKind::Io(io) => {
                Error::read(path, std::io::Error::new(io.kind(), io.to_string()))
            }
            _ => csv_error(path, &e),
        })?;
    let headers = reader.headers().map_err(|e| csv_error(path, &e))?;
    let names: Vec<String> = headers
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    // Two columns of one name would each claim the row's value; refuse rather than keep one.
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        if let Some(j) = names[i + 1..].iter().position(|n| n == name) {
            return Err(row_error(
                path,
                RowAt::Line(1),
                format!(
                    "the column `{name}` appears twice in the header (columns {} and {}), so \
                     its value is ambiguous; rename one of them",
                    i + 1,
                    i + j + 2
                ),
            ));
        }
    }
    Ok(names)
}

/// Calls `f` with every record of a CSV file as a JSON-like row.
pub fn read_records(path: &Path, mut f: impl FnMut(RowAt, JsonRow) -> Result<()>) -> Result<u64> {
    let names = header(path)?;
    if names.is_empty() || names.iter().all(String::is_empty) {
        return Err(row_error(
            path,
            RowAt::Line(1),
            "has no header row; the first line must name the columns".into(),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(path))
        .from_path(path)
        .map_err(|e| csv_error(path, &e))?;
    let mut record = csv::StringRecord::new();
    let mut rows = 0;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(path, &e)),
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let row: JsonRow = names
            .iter()
            .zip(record.iter())
            .map(|(name, cell)| {
                let value = if cell.is_empty() {
                    Value::Null
                } else {
                    Value::String(cell.to_string())
                };
                (name.clone(), value)
            })
            .collect();
        f(RowAt::Line(line), row)?;
        rows += 1;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ragged_row_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "prompt,reference\na,b\nc\n").unwrap();
        let e = read_records(&p, |_, _| Ok(())).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("1 fields"), "{e}");
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, b"prompt\nok\nbad \xff\xfe\n").unwrap();
        let e = read_records(&p, |_, _| Ok(())).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn quoted_cells_with_commas_and_newlines_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "prompt,reference\n\"a, b\nc\",\n").unwrap();
        let mut rows = Vec::new();
        read_records(&p, |_, r| {
            rows.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(rows[0]["prompt"], "a, b\nc");
        assert!(rows[0]["reference"].is_null());
    }

    /// A CSV with two `prompt` columns took the last one.
    #[test]
    fn a_column_named_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, "prompt,reference,prompt\na,b,c\n").unwrap();
        let e = header(&p).unwrap_err().to_string();
        assert!(
            e.contains("x.csv` line 1")
                && e.contains("`prompt` appears twice")
                && e.contains("columns 1 and 3"),
            "{e}"
        );
        assert!(read_records(&p, |_, _| Ok(())).is_err());
    }
}
