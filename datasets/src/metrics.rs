//! Training metrics: one row per optimizer step, written as `metrics.parquet` next to the model
//! each training stage makes, so pandas, polars or DuckDB plot a run as easily as we do.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, Float64Array, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::parquet::{ParquetFile, ParquetWriter, WriteOptions};

/// The file name.
pub const METRICS_FILE: &str = "metrics.parquet";

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricRow {
    /// 1-based step.
    pub step: u64,
    /// Epoch of the step's last batch.
    pub epoch: u64,
    /// Learning rate used.
    pub lr: f64,
    /// Training loss.
    pub loss: f64,
    /// Its cross-entropy part.
    pub ce: f64,
    /// Its KD part (0 without KD).
    pub kd: f64,
    /// Completion tokens in the step.
    pub tokens: u64,
    /// Seconds the step took.
    pub seconds: f64,
    /// Eval loss, on evaluation steps.
    pub eval_loss: Option<f64>,
    /// Eval exact match, on evaluation steps.
    pub eval_exact_match: Option<f64>,
}

/// The schema of `metrics.parquet`.
pub fn schema() -> SchemaRef {
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    Arc::new(Schema::new(vec![
        f("step", DataType::UInt64, false),
        f("epoch", DataType::UInt64, false),
        f("lr", DataType::Float64, false),
        f("loss", DataType::Float64, false),
        f("ce", DataType::Float64, false),
        f("kd", DataType::Float64, false),
        f("tokens", DataType::UInt64, false),
        f("seconds", DataType::Float64, false),
        f("eval_loss", DataType::Float64, true),
        f("eval_exact_match", DataType::Float64, true),
    ]))
}

/// Writes `rows` to `path` atomically.
pub fn write(path: &Path, rows: &[MetricRow], config_hash: Option<&str>) -> Result<()> {
    let u = |f: fn(&MetricRow) -> u64| Arc::new(UInt64Array::from_iter_values(rows.iter().map(f)));
    let x = |f: fn(&MetricRow) -> f64| Arc::new(Float64Array::from_iter_values(rows.iter().map(f)));
    let o =
        |f: fn(&MetricRow) -> Option<f64>| Arc::new(rows.iter().map(f).collect::<Float64Array>());
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            u(|r| r.step),
            u(|r| r.epoch),
            x(|r| r.lr),
            x(|r| r.loss),
            x(|r| r.ce),
            x(|r| r.kd),
            u(|r| r.tokens),
            x(|r| r.seconds),
            o(|r| r.eval_loss),
            o(|r| r.eval_exact_match),
        ],
    )
    .map_err(|e| Error::invalid(format!("metrics do not fit their schema: {e}")))?;
    let options = WriteOptions {
        config_hash: config_hash.map(str::to_string),
        metadata: vec![("workbench.kind".into(), "metrics".into())],
        ..WriteOptions::default()
    };
    let mut w = ParquetWriter::create(path, schema(), &options)?;
    w.write(&batch)?;
    w.finish()?;
    Ok(())
}

/// Reads a `metrics.parquet` back.
pub fn read(path: &Path) -> Result<Vec<MetricRow>> {
    let file = ParquetFile::open(path)?;
    let mut rows = Vec::new();
    for item in file.batches(8192) {
        let (_, batch) = item?;
        let col = |name: &str| {
            batch.column_by_name(name).ok_or_else(|| {
                Error::invalid(format!(
                    "`{}` has no `{name}` column; it is not a metrics file",
                    path.display()
                ))
            })
        };
        let ints = |name: &str| -> Result<UInt64Array> {
            col(name)?
                .as_any()
                .downcast_ref::<UInt64Array>()
                .cloned()
                .ok_or_else(|| {
                    Error::invalid(format!("`{name}` in `{}` is not u64", path.display()))
                })
        };
        let floats = |name: &str| -> Result<Float64Array> {
            col(name)?
                .as_any()
                .downcast_ref::<Float64Array>()
                .cloned()
                .ok_or_else(|| {
                    Error::invalid(format!("`{name}` in `{}` is not f64", path.display()))
                })
        };
        let (step, epoch, tokens) = (ints("step")?, ints("epoch")?, ints("tokens")?);
        let (lr, loss, ce, kd, seconds) = (
            floats("lr")?,
            floats("loss")?,
            floats("ce")?,
            floats("kd")?,
            floats("seconds")?,
        );
        let (el, em) = (floats("eval_loss")?, floats("eval_exact_match")?);
        let opt = |a: &Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
        for i in 0..batch.num_rows() {
            rows.push(MetricRow {
                step: step.value(i),
                epoch: epoch.value(i),
                lr: lr.value(i),
                loss: loss.value(i),
                ce: ce.value(i),
                kd: kd.value(i),
                tokens: tokens.value(i),
                seconds: seconds.value(i),
                eval_loss: opt(&el, i),
                eval_exact_match: opt(&em, i),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_round_trip_with_nulls() {
        let rows: Vec<MetricRow> = (1..=5)
            .map(|s| MetricRow {
                step: s,
                epoch: s / 3,
                lr: 1e-3 * s as f64,
                loss: 2.0 / s as f64,
                ce: 1.0 / s as f64,
                kd: 1.0 / s as f64,
                tokens: 100 + s,
                seconds: 0.25,
                eval_loss: (s % 2 == 0).then_some(1.5),
                eval_exact_match: (s % 2 == 0).then_some(0.5),
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        write(&path, &rows, Some("abc")).unwrap();
        assert_eq!(read(&path).unwrap(), rows);
    }
}
