//! What the fuzz targets share: a fuzz input becomes a file under a given name, and goes through
//! what `workbench datasets import` does with a file of that name.
//!
//! The importers read paths, not bytes (they stream multi-gigabyte files), so each run writes its
//! input into a fresh temporary directory; the directory goes when the run does. Errors are the
//! expected outcome for almost every input; only a panic (or a sanitizer report) is a finding.

use std::path::Path;

use datasets::decontam::Decontaminator;
use datasets::dedup::{ExactDedup, NearDedup};
use datasets::import::{self, Filters, Source};
use datasets::{PreferenceRow, Sample, SetOptions, SftRow, Splits};

/// Writes `data` to a file called `file_name` and imports it as `workbench datasets import` does.
pub fn import_bytes(data: &[u8], file_name: &str) {
    // libfuzzer-sys installs a panic hook that aborts before unwinding, so even a panic the
    // importer catches (the Parquet decoder's, see `datasets::parquet`) would count as a crash.
    // Put the default hook back: a caught panic is an error like any other, and one that escapes
    // still aborts, from libfuzzer-sys's own `catch_unwind` around this function.
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    let dir = scratch_dir();
    let path = dir.path().join(file_name);
    std::fs::write(&path, data).expect("the fuzz input written to the temporary directory");
    import_file(&path, &dir.path().join("out"));
}

/// A fresh temporary directory, in memory where the machine has `/dev/shm`: an import fsyncs
/// every file it writes, which on a disk costs milliseconds a run, in memory nothing.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    dir.expect("a temporary directory for the fuzz input")
}

/// The import of `path` into a set at `out`, with every filter on.
fn import_file(path: &Path, out: &Path) {
    // `Source::open` detects the format from the extension (and, for `.json`, the first byte).
    let Ok(source) = Source::open(path, Default::default()) else {
        return;
    };
    // The CLI asks for these before importing: the progress bar's length and the ignored columns.
    let _ = source.row_count();
    let _ = source.check_mapping();
    // Detection only ever picks samples or preferences; SFT rows are built when asked for with
    // `--kind sft`, so read the file as each kind directly too.
    let samples = source.for_each::<Sample>(7, |_| Ok(()));
    let _ = source.for_each::<SftRow>(7, |_| Ok(()));
    let preferences = source.for_each::<PreferenceRow>(7, |_| Ok(()));
    // Building the MinHash filter costs more than most runs (it picks its bands by numerical
    // integration), so only inputs with rows to filter get one.
    let readable = samples.is_ok() || preferences.is_ok();
    let filters = Filters {
        exact: Some(ExactDedup::new()),
        near: readable.then(|| NearDedup::new(0.8, 3, 0)),
        decontam: Some(Decontaminator::new(
            ["What is the date three days after the 3rd of March 2021?"],
            3,
        )),
    };
    let options = SetOptions {
        splits: Splits::parse("train=0.8,test=0.2", 0).expect("valid splits"),
        replace: true,
        ..SetOptions::default()
    };
    let _ = import::import(&source, out, None, filters, options, &mut |_| {});
}
