//! A **set**: a directory in the Hugging Face layout that `datasets.load_dataset("parquet",
//! data_dir=...)`, pandas, polars, DuckDB and Spark all read as is.
//!
//! ```text
//! DIR/data/<split>-00000-of-0000N.parquet   sharded by size
//! DIR/README.md                              dataset card (YAML: configs, features, license, size)
//! ```
//!
//! Rows are routed to splits by a seeded hash of their id, so an item never changes split when
//! more data is added, and the same id always lands in the same split on every machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::{RecordBatch, StringArray, UInt32Array};
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::atomic::{self, AtomicDir};
use crate::card::{self, CardInfo};
use crate::error::{ColumnError, Error, Result};
use crate::parquet::{FileSummary, ParquetFile, ParquetWriter, WriteOptions};
use crate::record::Record;
use crate::schema::{Kind, META_KIND};

/// How rows are divided into named splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Splits {
    /// Split names and their shares of the rows, e.g. `{ train = 0.9, test = 0.1 }`; the shares
    /// add up to 1.
    pub shares: BTreeMap<String, f64>,
    /// Seed of the hash that assigns rows to splits.
    #[serde(default)]
    pub seed: u64,
}

impl Default for Splits {
    fn default() -> Self {
        Splits::single("train")
    }
}

impl Splits {
    /// Everything in one split.
    pub fn single(name: &str) -> Self {
        Splits {
            shares: BTreeMap::from([(name.to_string(), 1.0)]),
            seed: 0,
        }
    }

    /// Parses `train=0.9,test=0.1`: every split named once, with a share, the shares adding up
    /// to 1.
    pub fn parse(spec: &str, seed: u64) -> Result<Self> {
        let mut shares = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, share)) = part.split_once('=') else {
                return Err(Error::invalid(format!(
                    "Split `{part}` has no share; give each split its fraction of the rows, e.g. \
                     `{part}=1`, or `{part}=0.9,test=0.1`"
                )));
            };
            let (name, share) = (name.trim(), share.trim());
            let share: f64 = share.parse().map_err(|_| {
                Error::invalid(format!(
                    "Split `{part}`: `{share}` is not a number; write e.g. `train=0.9,test=0.1`"
                ))
            })?;
            if shares.insert(name.to_string(), share).is_some() {
                return Err(Error::invalid(format!(
                    "Split `{name}` is named twice in `{spec}`; name each split once, e.g. \
                     `train=0.9,test=0.1`"
                )));
            }
        }
        let splits = Splits { shares, seed };
        splits.validate()?;
        Ok(splits)
    }

    /// Checks names and shares: letters, digits and underscores; positive shares that add up to 1.
    pub fn validate(&self) -> Result<()> {
        if self.shares.is_empty() {
            return Err(Error::invalid(
                "No splits given; name at least one, e.g. `train=1`",
            ));
        }
        for (name, share) in &self.shares {
            let valid_name = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with('_');
            if !valid_name {
                return Err(Error::invalid(format!(
                    "Split name `{name}` is not allowed; use letters, digits and underscores (e.g. `train`, `test`)"
                )));
            }
            if !(share.is_finite() && *share > 0.0) {
                return Err(Error::invalid(format!(
                    "Split `{name}` has share {share}; shares must be positive numbers"
                )));
            }
        }
        let total: f64 = self.shares.values().sum();
        if (total - 1.0).abs() > 1e-6 {
            let listed: Vec<String> = self
                .shares
                .iter()
                .map(|(name, share)| format!("{name}={share}"))
                .collect();
            return Err(Error::invalid(format!(
                "Split shares add up to {} ({}); they are fractions of the rows and must add up \
                 to 1, e.g. `train=0.9,test=0.1`",
                (total * 1e6).round() / 1e6,
                listed.join(", ")
            )));
        }
        Ok(())
    }

    /// Split names in a stable order (as the shares map orders them).
    pub fn names(&self) -> Vec<String> {
        self.shares.keys().cloned().collect()
    }

    /// The index (into [`Splits::names`]) of the split that `id` belongs to.
    pub fn assign(&self, id: &str) -> usize {
        if self.shares.len() == 1 {
            return 0;
        }
        let mut h = blake3::Hasher::new();
        h.update(&self.seed.to_le_bytes());
        h.update(id.as_bytes());
        let bytes = h.finalize();
        let x = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"));
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let total: f64 = self.shares.values().sum();
        let mut acc = 0.0;
        for (i, share) in self.shares.values().enumerate() {
            acc += share / total;
            if u < acc {
                return i;
            }
        }
        self.shares.len() - 1
    }
}

/// How a set is written.
#[derive(Debug, Clone)]
pub struct SetOptions {
    /// Split assignment.
    pub splits: Splits,
    /// A shard is closed once it reaches this many bytes on disk (Hugging Face's own conversion
    /// targets a few hundred MB per file).
    pub shard_bytes: u64,
    /// Parquet options for every shard.
    pub parquet: WriteOptions,
    /// What the dataset card says.
    pub card: CardInfo,
    /// Replace an existing directory.
    pub replace: bool,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            splits: Splits::default(),
            shard_bytes: 256 << 20,
            parquet: WriteOptions::default(),
            card: CardInfo::default(),
            replace: false,
        }
    }
}

/// What was written into one split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    /// The split's name.
    pub name: String,
    /// Rows in it.
    pub rows: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Bytes of its rows as Arrow arrays in memory (the Hub's `num_bytes`).
    pub memory_bytes: u64,
    /// Its shard files, relative to the set directory.
    pub files: Vec<PathBuf>,
}

/// What a finished set holds.
#[derive(Debug, Clone, Serialize)]
pub struct SetSummary {
    /// The set's directory.
    pub dir: PathBuf,
    /// Which schema its files follow.
    pub kind: Kind,
    /// Rows in all splits.
    pub rows: u64,
    /// The splits that have rows.
    pub splits: Vec<SplitSummary>,
}

struct SplitWriter {
    name: String,
    memory_bytes: u64,
    current: Option<ParquetWriter>,
    shards: Vec<FileSummary>,
}

/// Streams batches into a new set; the directory appears on [`SetWriter::finish`].
pub struct SetWriter {
    kind: Kind,
    schema: SchemaRef,
    dir: AtomicDir,
    options: SetOptions,
    splits: Vec<SplitWriter>,
}

impl SetWriter {
    /// Starts a set of `kind` at `dest`.
    pub fn create(dest: impl Into<PathBuf>, kind: Kind, options: SetOptions) -> Result<Self> {
        options.splits.validate()?;
        let dir = AtomicDir::create(dest, options.replace)?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| Error::write(&data, e))?;
        let splits = options
            .splits
            .names()
            .into_iter()
            .map(|name| SplitWriter {
                name,
                memory_bytes: 0,
                current: None,
                shards: Vec::new(),
            })
            .collect();
        Ok(SetWriter {
            kind,
            schema: kind.schema(),
            dir,
            options,
            splits,
        })
    }

    /// Where the set will appear.
    pub fn dest(&self) -> &Path {
        self.dir.dest()
    }

    /// The dataset card's contents, to add provenance before [`SetWriter::finish`].
    pub fn card_mut(&mut self) -> &mut CardInfo {
        &mut self.options.card
    }

    /// Writes typed rows.
    pub fn write<R: Record>(&mut self, rows: &[R]) -> Result<()> {
        if R::KIND != self.kind {
            return Err(Error::invalid(format!(
                "Cannot write {} rows into a {} set",
                R::KIND,
                self.kind
            )));
        }
        if rows.is_empty() {
            return Ok(());
        }
        let batch = R::to_batch(rows)?;
        self.route(&batch, |i| rows[i].id())
    }

    /// Writes a batch of this set's schema, routing each row to its split by its `id`.
    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.splits.len() == 1 {
            return self.write_to(0, batch);
        }
        let id_column = if self.kind == Kind::Annotation {
            "item_id"
        } else {
            "id"
        };
        let ids = batch
            .column_by_name(id_column)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| {
                ColumnError::new(
                    id_column,
                    "is missing or not text; rows cannot be assigned to splits",
                )
                .at(self.dir.dest(), None)
            })?;
        self.route(batch, |i| {
            if arrow_array::Array::is_null(ids, i) {
                ""
            } else {
                ids.value(i)
            }
        })
    }

    /// Writes `batch`, each row to the split its id (`id(row)`) goes to.
    fn route<'a>(&mut self, batch: &RecordBatch, id: impl Fn(usize) -> &'a str) -> Result<()> {
        if self.splits.len() == 1 {
            return self.write_to(0, batch);
        }
        let mut routes: Vec<Vec<u32>> = vec![Vec::new(); self.splits.len()];
        for i in 0..batch.num_rows() {
            routes[self.options.splits.assign(id(i))].push(i as u32);
        }
        for (split, rows) in routes.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let indices = UInt32Array::from(rows);
            let part = arrow_select::take::take_record_batch(batch, &indices)
                .map_err(|e| Error::arrow("Failed to route rows to splits", e))?;
            self.write_to(split, &part)?;
        }
        Ok(())
    }

    fn write_to(&mut self, split: usize, batch: &RecordBatch) -> Result<()> {
        let data = self.dir.path().join("data");
        let s = &mut self.splits[split];
        if s.current.is_none() {
            let path = data.join(format!("{}-{:05}.parquet", s.name, s.shards.len()));
            s.current = Some(ParquetWriter::create(
                path,
                self.schema.clone(),
                &self.options.parquet,
            )?);
        }
        let writer = s.current.as_mut().expect("created above");
        writer.write(batch)?;
        // The bytes the rows take, not the buffers' capacity (slices share theirs).
        s.memory_bytes += batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
            .sum::<u64>();
        if writer.estimated_size() >= self.options.shard_bytes {
            let done = s.current.take().expect("open");
            s.shards.push(done.finish()?);
        }
        Ok(())
    }

    /// Closes every shard, names them `<split>-0000i-of-0000n.parquet`, writes the dataset card
    /// and moves the directory into place.
    pub fn finish(mut self) -> Result<SetSummary> {
        for s in &mut self.splits {
            if let Some(w) = s.current.take() {
                s.shards.push(w.finish()?);
            }
        }
        // A set with no rows still gets one (empty) file, so readers see its schema.
        if self.splits.iter().all(|s| s.shards.is_empty()) {
            let data = self.dir.path().join("data");
            let s = &mut self.splits[0];
            let path = data.join(format!("{}-00000.parquet", s.name));
            let w = ParquetWriter::create(path, self.schema.clone(), &self.options.parquet)?;
            s.shards.push(w.finish()?);
        }
        let root = self.dir.path().to_path_buf();
        let mut summary = SetSummary {
            dir: self.dir.dest().to_path_buf(),
            kind: self.kind,
            rows: 0,
            splits: Vec::new(),
        };
        for s in &self.splits {
            if s.shards.is_empty() {
                continue;
            }
            let n = s.shards.len();
            let mut files = Vec::with_capacity(n);
            let (mut rows, mut bytes) = (0, 0);
            for (i, shard) in s.shards.iter().enumerate() {
                let rel =
                    PathBuf::from("data").join(format!("{}-{i:05}-of-{n:05}.parquet", s.name));
                std::fs::rename(&shard.path, root.join(&rel))
                    .map_err(|e| Error::write(&shard.path, e))?;
                rows += shard.rows;
                bytes += shard.bytes;
                files.push(rel);
            }
            summary.rows += rows;
            summary.splits.push(SplitSummary {
                name: s.name.clone(),
                rows,
                bytes,
                memory_bytes: s.memory_bytes,
                files,
            });
        }
        atomic::sync_dir(&root.join("data"))?;
        let readme = card::render(&self.options.card, self.kind, &self.schema, &summary)?;
        atomic::write_file(root.join("README.md"), readme.as_bytes())?;
        self.dir.commit()?;
        Ok(summary)
    }
}

/// Writes `rows` as a new set in one go.
pub fn write_set<R: Record>(
    dest: impl Into<PathBuf>,
    rows: &[R],
    options: SetOptions,
) -> Result<SetSummary> {
    let mut w = SetWriter::create(dest, R::KIND, options)?;
    for chunk in rows.chunks(4096) {
        w.write(chunk)?;
    }
    w.finish()
}

/// One shard of a set on disk.
#[derive(Debug, Clone, Serialize)]
pub struct Shard {
    /// The split it belongs to.
    pub split: String,
    /// Its path.
    pub path: PathBuf,
}

/// A set opened for reading.
#[derive(Debug, Clone)]
pub struct Set {
    dir: PathBuf,
    shards: Vec<Shard>,
    kind: Option<Kind>,
}

impl Set {
    /// Whether `dir` looks like a set (a `data/` directory with Parquet files).
    pub fn is_set(dir: &Path) -> bool {
        dir.join("data").is_dir()
    }

    /// Opens a set directory: every `data/**/*.parquet`, split taken from the file name's prefix
    /// (`train-00000-of-00002.parquet` is in `train`).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Set> {
        let dir = dir.into();
        let data = dir.join("data");
        if !data.is_dir() {
            return Err(Error::invalid(format!(
                "`{}` is not a set: it has no `data/` directory\n\nhint: make one with `workbench datasets import FILE --out {}`",
                dir.display(),
                dir.display()
            )));
        }
        let mut paths = Vec::new();
        collect_parquet(&data, &mut paths)?;
        paths.sort();
        if paths.is_empty() {
            return Err(Error::invalid(format!(
                "The set `{}` has no Parquet files under `data/`",
                dir.display()
            )));
        }
        let shards: Vec<Shard> = paths
            .into_iter()
            .map(|path| {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let split = split_of_file_name(&stem);
                Shard { split, path }
            })
            .collect();
        let kind = ParquetFile::open(&shards[0].path)?
            .key_value_metadata()
            .get(META_KIND)
            .and_then(|k| Kind::parse(k));
        Ok(Set { dir, shards, kind })
    }

    /// The set's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its shards, in split then shard order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The kind recorded by the workbench, if a workbench wrote it.
    pub fn kind(&self) -> Option<Kind> {
        self.kind
    }

    /// Split names, in file order.
    pub fn splits(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for s in &self.shards {
            if !names.contains(&s.split) {
                names.push(s.split.clone());
            }
        }
        names
    }

    /// Total rows, from the footers.
    pub fn num_rows(&self) -> Result<u64> {
        let mut n = 0;
        for s in &self.shards {
            n += ParquetFile::open(&s.path)?.num_rows();
        }
        Ok(n)
    }

    /// Every record of one split (or all, with `None`), streamed batch by batch.
    pub fn records<'a, R: Record + 'a>(
        &'a self,
        split: Option<&'a str>,
        batch_size: usize,
    ) -> impl Iterator<Item = Result<Vec<R>>> + 'a {
        self.shards
            .iter()
            .filter(move |s| split.is_none_or(|name| s.split == name))
            .flat_map(move |s| {
                let it: Box<dyn Iterator<Item = Result<Vec<R>>>> = match ParquetFile::open(&s.path)
                {
                    Ok(file) => Box::new(file.records::<R>(batch_size)),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
                it
            })
    }

    /// Reads every record (small sets; stream with [`Set::records`] otherwise).
    pub fn read_all<R: Record>(&self, split: Option<&str>) -> Result<Vec<R>> {
        let mut out = Vec::new();
        for rows in self.records::<R>(split, 8192) {
            out.extend(rows?);
        }
        Ok(out)
    }
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::read(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::read(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // temporaries of an interrupted writer
        }
        if path.is_dir() {
            collect_parquet(&path, out)?;
        } else if name.ends_with(".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// `train-00000-of-00002` → `train`; `my_split-00001` → `my_split`; `whatever` → `train`.
fn split_of_file_name(stem: &str) -> String {
    let prefix = stem.split('-').next().unwrap_or(stem);
    if stem.contains('-') && !prefix.is_empty() {
        prefix.to_string()
    } else {
        "train".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Sample;

    #[test]
    fn split_assignment_is_stable_and_roughly_proportional() {
        let splits = Splits::parse("train=0.8,test=0.2", 7).unwrap();
        let names = splits.names();
        let mut counts = [0usize; 2];
        for i in 0..10_000 {
            let id = format!("item-{i}");
            let a = splits.assign(&id);
            assert_eq!(a, splits.assign(&id));
            counts[a] += 1;
        }
        let test = names.iter().position(|n| n == "test").unwrap();
        assert!((1_700..2_300).contains(&counts[test]), "{counts:?}");
    }

    #[test]
    fn an_item_never_moves_split_when_shares_stay_and_data_grows() {
        let splits = Splits::parse("train=0.9,test=0.1", 0).unwrap();
        let before: Vec<usize> = (0..100).map(|i| splits.assign(&i.to_string())).collect();
        let after: Vec<usize> = (0..100).map(|i| splits.assign(&i.to_string())).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn bad_split_specs_are_refused_with_the_reason() {
        assert!(
            Splits::parse("train=x", 0)
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        assert!(
            Splits::parse("train=-1", 0)
                .unwrap_err()
                .to_string()
                .contains("positive")
        );
        assert!(
            Splits::parse("../x=1", 0)
                .unwrap_err()
                .to_string()
                .contains("not allowed")
        );
        assert!(Splits::parse("", 0).is_err());
    }

    /// `--split train=0.9,test=0.3`, `--split train` and `--split train=0.5,train=0.5` were taken
    /// silently (shares normalised, a missing share read as 1, the last duplicate kept).
    #[test]
    fn shares_must_be_given_once_each_and_add_up_to_one() {
        let e = |spec: &str| Splits::parse(spec, 0).unwrap_err().to_string();
        let m = e("train=0.9,test=0.3");
        assert!(m.contains("add up to 1.2") && m.contains("test=0.3"), "{m}");
        let m = e("train");
        assert!(
            m.contains("Split `train` has no share") && m.contains("`train=1`"),
            "{m}"
        );
        let m = e("train=0.5,train=0.5");
        assert!(m.contains("`train` is named twice"), "{m}");
        assert!(e("train=2").contains("add up to 2"));
        assert!(Splits::parse("a=0.7,b=0.2,c=0.1", 0).is_ok());
        assert!(Splits::parse("train=1", 0).is_ok());
    }

    #[test]
    fn file_names_give_splits() {
        assert_eq!(split_of_file_name("train-00000-of-00002"), "train");
        assert_eq!(split_of_file_name("validation-00001"), "validation");
        assert_eq!(split_of_file_name("part0"), "train");
    }

    #[test]
    fn a_set_shards_by_size_and_reads_back_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Sample> = (0..3000)
            .map(|i| {
                let mut s =
                    Sample::from_prompt(format!("prompt number {i} {}", "x".repeat(i % 50)));
                s.completion = Some(format!("answer {i}"));
                s.id = s.content_id();
                s
            })
            .collect();
        let options = SetOptions {
            splits: Splits::parse("train=0.9,test=0.1", 1).unwrap(),
            shard_bytes: 16 << 10,
            parquet: WriteOptions {
                max_row_group_rows: 500,
                ..Default::default()
            },
            ..Default::default()
        };
        let dest = dir.path().join("set");
        let mut w = SetWriter::create(&dest, Kind::Sample, options).unwrap();
        for chunk in rows.chunks(100) {
            w.write(chunk).unwrap();
        }
        let summary = w.finish().unwrap();
        assert_eq!(summary.rows, 3000);
        let train = summary.splits.iter().find(|s| s.name == "train").unwrap();
        assert!(train.files.len() > 1, "sharded: {:?}", train.files);
        let n = train.files.len();
        assert!(train.files[0].ends_with(format!("train-00000-of-{n:05}.parquet")));

        let set = Set::open(&dest).unwrap();
        assert_eq!(set.kind(), Some(Kind::Sample));
        assert_eq!(set.num_rows().unwrap(), 3000);
        let mut back: Vec<Sample> = set.read_all(None).unwrap();
        back.sort_by(|a, b| a.id.cmp(&b.id));
        let mut expected = rows.clone();
        expected.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(back, expected);
        assert!(dest.join("README.md").exists());
        // Nothing but the set itself is left in the parent directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
