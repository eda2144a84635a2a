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
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

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
    /// Threads that encode columns (default: the machine's cores, up to 4).
    pub threads: Option<usize>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            max_row_group_rows: 100_000,
            max_row_group_bytes: 128 << 20,
            zstd_level: 1,
            config_hash: None,
            metadata: Vec::new(),
            threads: None,
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
        let mut builder = WriterProperties::builder();
        // Token ids and logprobs are high-cardinality numbers: a dictionary costs a hash per
        // value (40% of write time when it was on) for little or no size gain under zstd, and
        // BYTE_STREAM_SPLIT groups the bytes of floats so zstd finds their redundancy. Every
        // reader users have (pyarrow, polars, DuckDB, Spark) decodes both.
        for path in [
            &["completion_ids", "list", "element"][..],
            &["teacher_topk", "list", "element", "list", "element", "id"][..],
            &[
                "teacher_topk",
                "list",
                "element",
                "list",
                "element",
                "logprob",
            ][..],
        ] {
            let column = ColumnPath::new(path.iter().map(|p| p.to_string()).collect());
            builder = builder.set_column_dictionary_enabled(column.clone(), false);
            if path.last() == Some(&"logprob") {
                builder = builder.set_column_encoding(column, Encoding::BYTE_STREAM_SPLIT);
            }
        }
        Ok(builder
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
///
/// Columns are encoded and compressed in parallel: each leaf column (the top-k ids, the top-k
/// logprobs, the prompt, ...) has its own encoder, and the encoders of one row group are shared
/// out over the cores, heaviest first. Only the open row group is buffered, so memory is bounded
/// by [`WriteOptions::max_row_group_bytes`] whatever the number of rows.
pub struct ParquetWriter {
    file: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Encoders of the open row group, one per leaf column.
    columns: Option<Vec<ArrowColumnWriter>>,
    group_rows: usize,
    groups_done: usize,
    max_rows: usize,
    max_bytes: usize,
    threads: usize,
    atomic: AtomicFile,
    rows: u64,
}

/// Maps `f` over `items` on up to `threads` threads, giving each thread an even share of the
/// total weight (greedy, heaviest first); outputs come back in input order.
fn par_map<I: Send, O: Send>(
    threads: usize,
    items: Vec<(I, usize)>,
    f: impl Fn(I) -> Result<O, ParquetError> + Sync,
) -> Result<Vec<O>, ParquetError> {
    if threads <= 1 || items.len() <= 1 {
        return items.into_iter().map(|(item, _)| f(item)).collect();
    }
    let n = items.len();
    let mut order: Vec<(usize, I, usize)> = items
        .into_iter()
        .enumerate()
        .map(|(i, (item, w))| (i, item, w))
        .collect();
    order.sort_by_key(|(_, _, w)| std::cmp::Reverse(*w));
    let mut buckets: Vec<(usize, Vec<(usize, I)>)> =
        (0..threads.min(n)).map(|_| (0, Vec::new())).collect();
    for (i, item, w) in order {
        let lightest = buckets
            .iter_mut()
            .min_by_key(|(load, _)| *load)
            .expect("a bucket");
        lightest.0 += w.max(1);
        lightest.1.push((i, item));
    }
    let f = &f;
    let run = move |bucket: Vec<(usize, I)>| -> Result<Vec<(usize, O)>, ParquetError> {
        bucket
            .into_iter()
            .map(|(i, item)| Ok((i, f(item)?)))
            .collect()
    };
    let parts = std::thread::scope(|scope| {
        let mut buckets = buckets.into_iter().map(|(_, b)| b);
        let mine = buckets.next().unwrap_or_default();
        let handles: Vec<_> = buckets.map(|b| scope.spawn(move || run(b))).collect();
        let mut parts = vec![run(mine)];
        for h in handles {
            parts.push(h.join().unwrap_or_else(|_| {
                Err(ParquetError::General("an encoder thread panicked".into()))
            }));
        }
        parts
    });
    let mut out: Vec<Option<O>> = (0..n).map(|_| None).collect();
    for part in parts {
        for (i, o) in part? {
            out[i] = Some(o);
        }
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every item mapped"))
        .collect())
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
        let fail = |source| Error::ParquetWrite {
            path: dest.clone(),
            source,
        };
        // ArrowWriter embeds the Arrow schema in the footer and maps types; then we take over
        // the row groups ourselves.
        let (file, factory) = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(fail)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(ParquetWriter {
            file,
            factory,
            schema,
            columns: None,
            group_rows: 0,
            groups_done: 0,
            max_rows: options.max_row_group_rows.max(1),
            max_bytes: options.max_row_group_bytes.max(1),
            threads: options.threads.unwrap_or(cores.min(4)).max(1),
            atomic,
            rows: 0,
        })
    }

    /// Appends a batch; a row group is closed when it reaches its row or byte bound.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(Error::invalid(format!(
                "A batch written to `{}` has another schema than the file",
                self.atomic.dest().display()
            )));
        }
        let mut offset = 0;
        while offset < batch.num_rows() {
            let n = (batch.num_rows() - offset).min(self.max_rows - self.group_rows);
            self.write_slice(&batch.slice(offset, n))
                .map_err(|e| self.error(e))?;
            offset += n;
            self.rows += n as u64;
            if self.group_rows >= self.max_rows || self.open_bytes() >= self.max_bytes {
                self.close_row_group().map_err(|e| self.error(e))?;
            }
        }
        Ok(())
    }

    fn write_slice(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        if self.columns.is_none() {
            self.columns = Some(self.factory.create_column_writers(self.groups_done)?);
        }
        // Levels of nested columns (the top-k is a list of lists) are real work: compute them
        // in parallel too, then share a column's weight out over its leaves.
        let columns: Vec<_> = self
            .schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, array)| ((field, array), array.get_array_memory_size()))
            .collect();
        let per_column = par_map(self.threads, columns, |(field, array)| {
            let parts = compute_leaves(field, array)?;
            let weight = array.get_array_memory_size() / parts.len().max(1);
            Ok(parts
                .into_iter()
                .map(move |leaf| (leaf, weight))
                .collect::<Vec<_>>())
        })?;
        let leaves = per_column.into_iter().flatten();
        let writers = self.columns.as_mut().expect("created above");
        let work = writers
            .iter_mut()
            .zip(leaves)
            .map(|(w, (leaf, weight))| ((w, leaf), weight))
            .collect();
        par_map(self.threads, work, |(w, leaf)| w.write(&leaf))?;
        self.group_rows += batch.num_rows();
        Ok(())
    }

    fn open_bytes(&self) -> usize {
        self.columns.as_ref().map_or(0, |c| {
            c.iter()
                .map(ArrowColumnWriter::get_estimated_total_bytes)
                .sum()
        })
    }

    fn close_row_group(&mut self) -> Result<(), ParquetError> {
        let Some(writers) = self.columns.take() else {
            return Ok(());
        };
        // Closing compresses each column's last page: share that out too.
        let work = writers
            .into_iter()
            .map(|w| {
                let weight = w.get_estimated_total_bytes();
                (w, weight)
            })
            .collect();
        let chunks = par_map(self.threads, work, ArrowColumnWriter::close)?;
        let mut group = self.file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.groups_done += 1;
        self.group_rows = 0;
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
        (self.file.bytes_written() + self.open_bytes()) as u64
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
    pub fn finish(mut self) -> Result<FileSummary> {
        self.close_row_group().map_err(|e| self.error(e))?;
        let ParquetWriter {
            file,
            atomic,
            rows,
            groups_done,
            ..
        } = self;
        let dest = atomic.dest().to_path_buf();
        let file = file.into_inner().map_err(|source| Error::ParquetWrite {
            path: dest.clone(),
            source,
        })?;
        let bytes = file.metadata().map_err(|e| Error::write(&dest, e))?.len();
        atomic.commit_file(file)?;
        Ok(FileSummary {
            path: dest,
            rows,
            bytes,
            row_groups: groups_done,
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
            groups: (0..self.num_row_groups()).collect(),
            next: 0,
            current: None,
        }
    }

    /// Like [`ParquetFile::batches`], decoding row groups on up to `threads` threads ahead of the
    /// consumer, in order. Memory stays bounded: each thread holds at most two batches.
    pub fn batches_parallel(&self, batch_size: usize, threads: usize) -> ParallelBatches {
        let groups = self.num_row_groups();
        let threads = threads.clamp(1, groups.max(1));
        let mut receivers = Vec::with_capacity(threads);
        for w in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Message>(2);
            let template = self.batches(batch_size);
            let mine: Vec<usize> = (w..groups).step_by(threads).collect();
            std::thread::spawn(move || {
                for g in mine {
                    let mut reader = template.for_groups(vec![g]);
                    for item in &mut reader {
                        let msg = match item {
                            Ok((g, batch)) => Message::Batch(g, batch),
                            Err(e) => Message::Failed(e),
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    if tx.send(Message::EndOfGroup).is_err() {
                        return;
                    }
                }
            });
            receivers.push(rx);
        }
        ParallelBatches {
            receivers,
            worker: 0,
            done: groups == 0,
        }
    }

    /// Every batch with its row group, decoded on the machine's cores (up to 4).
    pub fn batches_auto(&self, batch_size: usize) -> ParallelBatches {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.batches_parallel(batch_size, cores.min(4))
    }

    /// Every row as a typed record, batch by batch; a column error names this file and row group.
    pub fn records<R: Record>(
        &self,
        batch_size: usize,
    ) -> impl Iterator<Item = Result<Vec<R>>> + use<R> {
        let path = self.path.clone();
        self.batches_auto(batch_size).map(move |b| {
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
    /// The row groups to read, in order, and the index of the next one.
    groups: Vec<usize>,
    next: usize,
    current: Option<(
        usize,
        parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    )>,
}

enum Message {
    Batch(usize, RecordBatch),
    EndOfGroup,
    Failed(Error),
}

/// Batches decoded ahead on several threads; see [`ParquetFile::batches_parallel`].
pub struct ParallelBatches {
    receivers: Vec<std::sync::mpsc::Receiver<Message>>,
    worker: usize,
    done: bool,
}

impl Iterator for ParallelBatches {
    type Item = Result<(usize, RecordBatch)>;

    fn next(&mut self) -> Option<Self::Item> {
        // Worker w decodes row groups w, w + n, ...: taking groups from the workers in turn
        // gives them back in file order.
        while !self.done {
            match self.receivers[self.worker].recv() {
                Ok(Message::Batch(g, batch)) => return Some(Ok((g, batch))),
                Ok(Message::EndOfGroup) => self.worker = (self.worker + 1) % self.receivers.len(),
                Ok(Message::Failed(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                // A worker that has finished all its groups: so has everyone after it.
                Err(_) => self.done = true,
            }
        }
        None
    }
}

impl Batches {
    /// The same file, reading only `groups`.
    fn for_groups(&self, groups: Vec<usize>) -> Batches {
        Batches {
            path: self.path.clone(),
            // Its own handle: a cloned one shares the file offset with the other threads.
            file: File::open(&self.path).map_err(|e| Some(Error::read(&self.path, e))),
            metadata: self.metadata.clone(),
            batch_size: self.batch_size,
            groups,
            next: 0,
            current: None,
        }
    }

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

/// Runs one step of the `parquet` decoder, turning a panic into an error message.
///
/// The decoder trusts some of what a corrupt file says and panics (parquet 60.1: a data page
/// that claims a dictionary where none was read, a negative column chunk offset, definition
/// levels shorter than the page; found by `fuzz/`, inputs in `fuzz/regressions/parquet_import/`).
/// A corrupt file must be an error that names it, not a crash; and on the parallel reader a
/// panicking worker thread ends its channel, which reads as the end of the file, so rows would
/// go missing without an error.
///
/// The panic is caught, so the default hook's "thread panicked at …" would only be noise above
/// the error that names the file: while a thread decodes, a hook (installed once, in front of
/// whatever hook was there) keeps quiet. A panic anywhere else is reported as before.
fn decode<T>(step: impl FnOnce() -> T) -> std::result::Result<T, String> {
    thread_local! {
        static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.with(|d| d.get()) {
                previous(info);
            }
        }));
    });
    DECODING.with(|d| d.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step));
    DECODING.with(|d| d.set(false));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        format!("the Parquet decoder failed: {message}")
    })
}

impl Iterator for Batches {
    type Item = Result<(usize, RecordBatch)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((g, reader)) = &mut self.current {
                let g = *g;
                match decode(|| reader.next()) {
                    Ok(Some(Ok(batch))) => return Some(Ok((g, batch))),
                    Ok(Some(Err(e))) => {
                        self.current = None;
                        self.next = usize::MAX;
                        return Some(Err(self.row_group_error(g, e.to_string())));
                    }
                    // The reader is dropped unused: a panic may have left it half-way.
                    Err(panic) => {
                        self.current = None;
                        self.next = usize::MAX;
                        return Some(Err(self.row_group_error(g, panic)));
                    }
                    Ok(None) => self.current = None,
                }
            }
            let &g = self.groups.get(self.next)?;
            self.next += 1;
            let file = match &mut self.file {
                Ok(f) => f.try_clone().map_err(|e| Error::read(&self.path, e)),
                Err(e) => Err(e.take()?),
            };
            let file = match file {
                Ok(f) => f,
                Err(e) => {
                    self.next = usize::MAX;
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
                    self.next = usize::MAX;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sample;

    /// Reads a corrupt file row group by row group (as `workbench datasets import` and
    /// `inspect` do) and on decoding threads (as sets are read), and returns both errors. On
    /// threads a panic used to end the worker's channel, which reads as the end of the file.
    fn read_corrupt(bytes: &[u8]) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corrupt.parquet");
        std::fs::write(&path, bytes).unwrap();
        let file = ParquetFile::open(&path).unwrap();
        let sequential = file
            .batches(1024)
            .find_map(|b| b.err())
            .expect("a corrupt row group is an error")
            .to_string();
        let parallel = read_records::<Sample>(&path)
            .expect_err("a corrupt row group is an error on decoding threads too")
            .to_string();
        (sequential, parallel)
    }

    /// Reads a corrupt file both ways and checks each error names the file, the `parquet`
    /// crate's own words and what to do. Returns the sequential reader's message.
    fn assert_corrupt_named(bytes: &[u8], words: &str) -> String {
        let (e, on_threads) = read_corrupt(bytes);
        assert!(e.contains("corrupt.parquet"), "{e}");
        assert!(e.contains(words), "{e}");
        assert!(e.contains("truncated or corrupt"), "{e}");
        assert!(on_threads.contains(words), "{on_threads}");
        e
    }

    /// Found by `fuzz/` (`parquet_import`): a data page that says it is dictionary-encoded where
    /// no dictionary was read made the `parquet` crate panic ("Decoder for dict should have been
    /// set"), and `workbench datasets import` / `inspect` exit with 101. The input is as
    /// `cargo fuzz tmin` minimised it.
    #[test]
    fn a_data_page_without_its_dictionary_is_an_error_not_a_panic() {
        let e = assert_corrupt_named(
            include_bytes!("../../fuzz/regressions/parquet_import/dict_decoder_not_set.parquet"),
            "Decoder for dict should have been set",
        );
        assert!(e.contains("row group 0 is unreadable"), "{e}");
    }

    /// Found by `fuzz/` (`parquet_import`): a footer whose column chunk has a negative offset or
    /// size made the `parquet` crate panic ("column start and length should not be negative")
    /// when the row group was read.
    #[test]
    fn a_negative_column_chunk_offset_is_an_error_not_a_panic() {
        assert_corrupt_named(
            include_bytes!(
                "../../fuzz/regressions/parquet_import/negative_column_chunk_offset.parquet"
            ),
            "should not be negative",
        );
    }

    /// Found by `fuzz/` (`parquet_import`): a page whose definition levels (the null bitmap)
    /// end before its values do made `arrow-buffer` panic ("offset + len out of bounds") inside
    /// the `parquet` crate's level decoder.
    #[test]
    fn a_page_with_too_few_definition_levels_is_an_error_not_a_panic() {
        assert_corrupt_named(
            include_bytes!("../../fuzz/regressions/parquet_import/short_definition_levels.parquet"),
            "offset + len out of bounds",
        );
    }
}
