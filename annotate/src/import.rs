//! Items for review from a set: any set or data file `datasets` reads (a run's synthetic set, a
//! `datasets import`, a JSONL file), streamed into the store in batches so memory stays flat.
//!
//! A sample row is a prompt with one output; rows that share a prompt become one item whose first
//! two different outputs are candidates A and B (a teacher's and a student's answer, say). A set
//! already imported (same files, same sizes and times) is not read again, so opening a review of a
//! million items costs a glance at the files, not a re-import.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use datasets::Sample;
use datasets::import::Source;
use datasets::jsonl::Mapping;

use crate::error::{Error, Result};
use crate::store::{Candidate, Item, Store};

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Rows read from the source (0 when it was already imported).
    pub rows: u64,
    /// Items that were new to the store.
    pub added: u64,
}

/// Stores `seed` as the seed of the `random` queue order (unless it is stored already).
pub fn set_queue_seed(store: &mut Store, seed: u64) -> Result<()> {
    let value = seed.to_string();
    if store.meta(crate::store::QUEUE_SEED)?.as_deref() != Some(value.as_str()) {
        store.set_meta(crate::store::QUEUE_SEED, &value)?;
    }
    Ok(())
}

/// The set a run's review reads: `candidates/` (outputs on prompts the student has not seen,
/// written by `workbench run`), else the synthetic set.
pub fn run_items(run: &Path) -> Result<PathBuf> {
    for rel in ["candidates", "synthetic"] {
        let path = run.join(rel);
        if path.join("data").is_dir() {
            return Ok(path);
        }
    }
    Err(Error::invalid(format!(
        "The run `{}` has nothing to review yet: no `candidates/` or `synthetic/` set\n\nhint: run `workbench generate` (or `workbench run`) on its config first",
        run.display()
    )))
}

/// Reads `source` into `store` unless the same files were imported before.
pub fn import(store: &mut Store, source: &Path, progress: &mut dyn FnMut(u64)) -> Result<Imported> {
    let canonical = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let key = format!("source:{}", canonical.display());
    let fingerprint = fingerprint(source)?;
    if store.meta(&key)?.as_deref() == Some(fingerprint.as_str()) {
        return Ok(Imported { rows: 0, added: 0 });
    }
    let src = Source::open(source, Mapping::new())?;
    let mut rows = 0u64;
    let mut added = 0u64;
    let mut failed: Option<Error> = None;
    src.for_each::<Sample>(8192, |batch| {
        rows += batch.len() as u64;
        match store.add_items(batch.into_iter().map(item_of)) {
            Ok(n) => added += n,
            Err(e) => {
                // Keep the store's own error (locked, disk full) rather than a data error.
                failed = Some(e);
                return Err(datasets::Error::invalid(
                    "stopped: the store refused a batch",
                ));
            }
        }
        progress(rows);
        Ok(())
    })
    .map_err(|e| failed.take().unwrap_or(Error::Data(e)))?;
    if rows == 0 {
        return Err(Error::invalid(format!(
            "`{}` has no rows to review\n\nhint: point `workbench annotate` at a set or file with \
             prompts (and outputs to judge)",
            source.display()
        )));
    }
    store.set_meta(&key, &fingerprint)?;
    Ok(Imported { rows, added })
}

/// A sample as an item with one candidate.
pub fn item_of(s: Sample) -> Item {
    let mut item = Item::new(s.prompt, s.messages);
    item.a = s.completion.map(|text| Candidate {
        text,
        model: s.teacher,
    });
    item.reference = s.reference;
    item.logprob = s.logprob_mean.map(f64::from);
    item.entropy = s.entropy_mean.map(f64::from);
    item.disagreement = s.disagreement.map(f64::from);
    item
}

/// Names, sizes and modification times of the files under `path`: equal when nothing changed.
fn fingerprint(path: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect(path, &mut files)?;
    files.sort();
    let mut h = datasets::record::IdHasher::new("source");
    for (name, len, mtime) in files {
        h.part(&format!("{name}\t{len}\t{mtime}"));
    }
    Ok(h.finish())
}

fn collect(path: &Path, out: &mut Vec<(String, u64, u128)>) -> Result<()> {
    let read = |e| Error::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(read)? {
            let entry = entry.map_err(read)?;
            collect(&entry.path(), out)?;
        }
    } else {
        // The store itself may live inside the set (`SET/annotations.db`): its files change on
        // every decision and are not the set.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if name.contains(".db") {
            return Ok(());
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        out.push((path.display().to_string(), meta.len(), mtime));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DB_FILE;
    use datasets::config::QueueOrder;

    #[test]
    fn a_jsonl_file_imports_once_and_pairs_outputs_by_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("c.jsonl");
        std::fs::write(
            &data,
            concat!(
                "{\"prompt\": \"p1\", \"completion\": \"x\", \"teacher\": \"big\", \"reference\": \"x\"}\n",
                "{\"prompt\": \"p2\", \"completion\": \"y\"}\n",
                "{\"prompt\": \"p1\", \"completion\": \"z\", \"teacher\": \"small\"}\n",
            ),
        )
        .unwrap();
        let mut store = Store::open(dir.path().join(DB_FILE)).unwrap();
        let done = import(&mut store, &data, &mut |_| {}).unwrap();
        assert_eq!(done, Imported { rows: 3, added: 2 });
        assert_eq!(import(&mut store, &data, &mut |_| {}).unwrap().rows, 0);
        let items = store.queue("ana", QueueOrder::File, 1, 10).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].a.as_ref().unwrap().text, "x");
        assert_eq!(items[0].b.as_ref().unwrap().model.as_deref(), Some("small"));
        assert_eq!(items[0].reference.as_deref(), Some("x"));
    }

    /// Regression: with the store inside the set directory, its own writes changed the set's
    /// fingerprint, so every open read the whole set again.
    #[test]
    fn a_store_inside_the_set_does_not_make_it_look_changed() {
        let dir = tempfile::tempdir().unwrap();
        let set = dir.path().join("set");
        std::fs::create_dir(&set).unwrap();
        std::fs::write(
            set.join("c.jsonl"),
            "{\"prompt\": \"p\", \"completion\": \"x\"}\n",
        )
        .unwrap();
        let mut store = Store::open(set.join(DB_FILE)).unwrap();
        assert_eq!(
            import(&mut store, &set.join("c.jsonl"), &mut |_| {})
                .unwrap()
                .rows,
            1
        );
        let f1 = fingerprint(&set).unwrap();
        let id = store.list("a", &crate::store::Filter::All, 0, 1).unwrap()[0]
            .id
            .clone();
        store
            .decide(
                &id,
                "a",
                &crate::store::Verdict::of(datasets::Decision::Accept),
            )
            .unwrap();
        assert_eq!(fingerprint(&set).unwrap(), f1);
    }

    #[test]
    fn a_bad_line_is_named_and_nothing_is_marked_imported() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("c.jsonl");
        std::fs::write(&data, "{\"prompt\": \"p1\"}\n{not json\n").unwrap();
        let mut store = Store::open(dir.path().join(DB_FILE)).unwrap();
        let e = import(&mut store, &data, &mut |_| {}).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(format!("{e}").contains("line 2"), "{e}");
        assert!(
            store
                .meta(&format!("source:{}", data.display()))
                .unwrap()
                .is_none()
        );
    }
}
