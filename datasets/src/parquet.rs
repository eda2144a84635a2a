//! Streaming Parquet: a writer that bounds memory by row-group bytes and appears atomically, and a
//! reader that goes row group by row group so no file is ever loaded whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::schema::{
    META_CONFIG_HASH, META_SCHEMA_VERSION, META_WORKBENCH_VERSION, SCHEMA_VERSION,
    WORKBENCH_VERSION,
};

/// How Parquet files are written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// A row group is closed at this many rows...
    pub max_row_group_rows: usize,
    /// ...or at this many (estimated, encoded) bytes, whichever comes first. This bounds the
    /// writer's memory: only the open row group is buffered.
    pub max_row_group_bytes: usize,
    /// zstd level (1 to 22). Level 1 is a little larger and much faster than 3.
    pub zstd_level: i32,
    /// Hash of the config that produced the file, if any.
    pub config_hash: Option<String>,
    /// More key-value metadata.
    pub metadata: Vec<(String, String)>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            max_row_group_rows: 100_000,
            max_row_group_bytes: 128 << 20,
            zstd_level: 1,
            config_hash: None,
            metadata: Vec::new(),
        }
    }
}

impl WriteOptions {
    fn properties(&self, schema: &SchemaRef) -> Result<WriterProperties> {
        let level = ZstdLevel::try_new(self.zstd_level).map_err(|e| {
            Error::invalid(format!(
                "zstd level {} is out of range: {e}",
                self.zstd_level
            ))
        })?;
        let mut kv: BTreeMap<String, String> = schema
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        kv.insert(META_SCHEMA_VERSION.into(), SCHEMA_VERSION.into());
        kv.insert(META_WORKBENCH_VERSION.into(), WORKBENCH_VERSION.into());
        if let Some(hash) = &self.config_hash {
            kv.insert(META_CONFIG_HASH.into(), hash.clone());
        }
        for (k, v) in &self.metadata {
            kv.insert(k.clone(), v.clone());
        }
        Ok(WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.max_row_group_rows.max(1)))
            .set_max_row_group_bytes(Some(self.max_row_group_bytes.max(1)))
            // Chunk-level min/max are what query engines prune with; page-level statistics on
            // long text columns only cost time.
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_coerce_types(true)
            .set_created_by(format!("workbench {WORKBENCH_VERSION} (parquet-rs)"))
            .set_key_value_metadata(Some(
                kv.into_iter().map(|(k, v)| KeyValue::new(k, v)).collect(),
            ))
            .build())
    }
}

/// What a finished file holds.
#[derive(Debug, Clone)]
pub struct FileSummary {
    /// Where it is.
    pub path: PathBuf,
    /// Rows written.
    pub rows: u64,
    /// Size on disk.
    pub bytes: u64,
    /// Number of row groups.
    pub row_groups: usize,
}

/// Writes record batches to one Parquet file under a temporary name; the file appears at its
/// destination, whole, on [`ParquetWriter::finish`]. Dropped unfinished, it leaves nothing.
pub struct ParquetWriter {
    writer: ArrowWriter<File>,
    atomic: AtomicFile,
    rows: u64,
}

impl ParquetWriter {
    /// Starts a file at `dest` with `schema`.
    pub fn create(
        dest: impl Into<PathBuf>,
        schema: SchemaRef,
        options: &WriteOptions,
    ) -> Result<Self> {
        let dest = dest.into();
        let props = options.properties(&schema)?;
        let mut atomic = AtomicFile::create(&dest)?;
        let file = atomic.take_file();
        let writer =
            ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| Error::ParquetWrite {
                path: dest,
                source: e,
            })?;
        Ok(ParquetWriter {
            writer,
            atomic,
            rows: 0,
        })
    }

    /// Appends a batch; a row group is flushed when it reaches its row or byte bound.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| self.error(e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Appends typed rows.
    pub fn write_records<R: Record>(&mut self, rows: &[R]) -> Result<()> {
        self.write(&R::to_batch(rows)?)
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes on disk so far plus the estimated encoded size of the open row group.
    pub fn estimated_size(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    /// Where the file will appear.
    pub fn dest(&self) -> &Path {
        self.atomic.dest()
    }

    fn error(&self, source: ParquetError) -> Error {
        Error::ParquetWrite {
            path: self.atomic.dest().to_path_buf(),
            source,
        }
    }

    /// Writes the footer, fsyncs, and renames the file into place.
    pub fn finish(self) -> Result<FileSummary> {
        let ParquetWriter {
            mut writer,
            atomic,
            rows,
        } = self;
        let dest = atomic.dest().to_path_buf();
        let fail = |source| Error::ParquetWrite {
            path: dest.clone(),
            source,
        };
        writer.flush().map_err(fail)?;
        let row_groups = writer.flushed_row_groups().len();
        let file = writer.into_inner().map_err(fail)?;
        let bytes = file.metadata().map_err(|e| Error::write(&dest, e))?.len();
        atomic.commit_file(file)?;
        Ok(FileSummary {
            path: dest,
            rows,
            bytes,
            row_groups,
        })
    }
}

/// One Parquet file open for reading: its footer is parsed once, row groups are read on demand.
pub struct ParquetFile {
    path: PathBuf,
    file: File,
    metadata: ArrowReaderMetadata,
}

impl ParquetFile {
    /// Opens a file and reads its footer; a file that is not Parquet, or is truncated, is a
    /// clear error naming it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.is_dir() {
            return Err(Error::invalid(format!(
                "`{}` is a directory; expected a Parquet file",
                path.display()
            )));
        }
        let file = File::open(&path).map_err(|e| Error::read(&path, e))?;
        let len = file.metadata().map_err(|e| Error::read(&path, e))?.len();
        if len == 0 {
            return Err(Error::ParquetRead {
                path,
                message: "the file is empty".into(),
                source: None,
            });
        }
        let metadata =
            ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
                let message = if len < 12 {
                    "the file is too short to be Parquet".to_string()
                } else {
                    match &e {
                        ParquetError::General(m) if m.contains("magic") || m.contains("footer") => {
                            "not a Parquet file, or truncated (no valid footer at its end)"
                                .to_string()
                        }
                        ParquetError::EOF(_) => "the file is truncated".to_string(),
                        other => format!("the footer is unreadable: {other}"),
                    }
                };
                Error::ParquetRead {
                    path: path.clone(),
                    message,
                    source: Some(e),
                }
            })?;
        Ok(ParquetFile {
            path,
            file,
            metadata,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Arrow schema (from the embedded Arrow schema when the writer stored one).
    pub fn schema(&self) -> SchemaRef {
        self.metadata.schema().clone()
    }

    /// Total rows.
    pub fn num_rows(&self) -> u64 {
        self.metadata.metadata().file_metadata().num_rows() as u64
    }

    /// Number of row groups.
    pub fn num_row_groups(&self) -> usize {
        self.metadata.metadata().num_row_groups()
    }

    /// Rows in each row group.
    pub fn row_group_rows(&self) -> Vec<u64> {
        self.metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows() as u64)
            .collect()
    }

    /// Compressed bytes of each row group.
    pub fn row_group_bytes(&self) -> Vec<u64> {
        self.metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.compressed_size() as u64)
            .collect()
    }

    /// The file's `created_by`.
    pub fn created_by(&self) -> Option<String> {
        self.metadata
            .metadata()
            .file_metadata()
            .created_by()
            .map(str::to_string)
    }

    /// Key-value metadata, sorted by key (the embedded Arrow schema left out).
    pub fn key_value_metadata(&self) -> BTreeMap<String, String> {
        self.metadata
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kvs| {
                kvs.iter()
                    .filter(|kv| kv.key != "ARROW:schema")
                    .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every batch of every row group, in order, each tagged with its row group. The iterator
    /// owns its own file handle, so it can outlive `self`.
    pub fn batches(&self, batch_size: usize) -> Batches {
        Batches {
            path: self.path.clone(),
            file: self
                .file
                .try_clone()
                .map_err(|e| Error::read(&self.path, e))
                .map_err(Some),
            metadata: self.metadata.clone(),
            batch_size: batch_size.max(1),
            next_group: 0,
            current: None,
        }
    }

    /// Every row as a typed record, batch by batch; a column error names this file and row group.
    pub fn records<R: Record>(
        &self,
        batch_size: usize,
    ) -> impl Iterator<Item = Result<Vec<R>>> + use<R> {
        let path = self.path.clone();
        self.batches(batch_size).map(move |b| {
            let (g, batch) = b?;
            R::from_batch(&batch).map_err(|e| e.at(&path, Some(g)))
        })
    }
}

/// The batches of a file, row group by row group; see [`ParquetFile::batches`].
pub struct Batches {
    path: PathBuf,
    /// The open file, or the error that opening a second handle gave (reported once).
    file: Result<File, Option<Error>>,
    metadata: ArrowReaderMetadata,
    batch_size: usize,
    next_group: usize,
    current: Option<(
        usize,
        parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    )>,
}

impl Batches {
    fn row_group_error(&self, index: usize, message: String) -> Error {
        Error::ParquetRead {
            path: self.path.clone(),
            message: format!(
                "row group {index} is unreadable ({message}); the file may be truncated or corrupt"
            ),
            source: None,
        }
    }
}

impl Iterator for Batches {
    type Item = Result<(usize, RecordBatch)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((g, reader)) = &mut self.current {
                let g = *g;
                match reader.next() {
                    Some(Ok(batch)) => return Some(Ok((g, batch))),
                    Some(Err(e)) => {
                        self.current = None;
                        self.next_group = usize::MAX;
                        return Some(Err(self.row_group_error(g, e.to_string())));
                    }
                    None => self.current = None,
                }
            }
            if self.next_group >= self.metadata.metadata().num_row_groups() {
                return None;
            }
            let g = self.next_group;
            self.next_group += 1;
            let file = match &mut self.file {
                Ok(f) => f.try_clone().map_err(|e| Error::read(&self.path, e)),
                Err(e) => Err(e.take()?),
            };
            let file = match file {
                Ok(f) => f,
                Err(e) => {
                    self.next_group = usize::MAX;
                    return Some(Err(e));
                }
            };
            match ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
                .with_row_groups(vec![g])
                .with_batch_size(self.batch_size)
                .build()
            {
                Ok(reader) => self.current = Some((g, reader)),
                Err(e) => {
                    self.next_group = usize::MAX;
                    return Some(Err(self.row_group_error(g, e.to_string())));
                }
            }
        }
    }
}

/// Writes `rows` to a new Parquet file at `dest` in one go (small files: metrics, fixtures).
pub fn write_records<R: Record>(
    dest: impl Into<PathBuf>,
    rows: &[R],
    options: &WriteOptions,
) -> Result<FileSummary> {
    let mut w = ParquetWriter::create(dest, R::schema(), options)?;
    for chunk in rows.chunks(4096) {
        w.write_records(chunk)?;
    }
    w.finish()
}

/// Reads every row of a Parquet file (small files only; stream with [`ParquetFile::records`]).
pub fn read_records<R: Record>(path: impl AsRef<Path>) -> Result<Vec<R>> {
    let file = ParquetFile::open(path)?;
    let mut out = Vec::new();
    for rows in file.records::<R>(8192) {
        out.extend(rows?);
    }
    Ok(out)
}
