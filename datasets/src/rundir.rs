//! The run directory: `runs/<name>/`, where `workbench run` keeps everything.
//!
//! It is re-entrant. The resolved config is written first (`config.toml`, with its hash on the
//! first line); a directory made by a different config is refused unless the user forces it.
//! Each stage writes its output into a temporary directory and renames it into place with a
//! `STAGE.json` marker inside that records the hash of the settings the stage depends on, so a
//! finished stage is skipped, a stage whose settings changed is redone, and a stage killed
//! half-way leaves nothing that looks finished.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::{self, AtomicDir};
use crate::config::LoadedConfig;
use crate::error::{Error, Result};

/// Every folder and file `workbench run` makes in a run directory, named once: the rest of the
/// workbench joins these names and never spells one itself.
///
/// ```text
/// runs/<name>/
///   config.toml                  the resolved config (hash and source on its first lines)
///   data/                        the data stage: gold, prompts, eval, review sets
///   teacher/                     the teacher's checkpoint (when it is trained here)
///   synthetic/                   the synthetic set; cache/ holds the teacher's raw answers
///   student/final/               the distilled student
///   student-NAME/final/          a `[[distill.compare]]` student beside it
///   gold-only/final/             the baseline: the same student on gold alone
///   candidates/                  the answers put to the experts
///   annotations.db               the experts' decisions
///   feedback/{sft,preference}/   the decisions as training sets
///   finetuned/                   the student after the expert fine-tune, metrics and plots beside
///   report/                      report.md, report.html, eval.json, plots
/// ```
///
/// Each stage folder carries a [`STAGE_MARKER`](layout::STAGE_MARKER) when it is finished; a
/// training stage keeps its step checkpoints in `checkpoints/` until it finishes.
pub mod layout {
    /// The resolved config.
    pub const CONFIG: &str = "config.toml";
    /// The data stage: the sets every other stage reads.
    pub const DATA: &str = "data";
    /// The teacher stage: its checkpoint.
    pub const TEACHER: &str = "teacher";
    /// The synthetic set.
    pub const SYNTHETIC: &str = "synthetic";
    /// The teacher's raw answers, inside the synthetic stage (kept across reruns).
    pub const TEACHER_CACHE: &str = "cache/teacher-responses.jsonl";
    /// The distilled student stage.
    pub const STUDENT: &str = "student";
    /// The gold-only baseline stage.
    pub const BASELINE: &str = "gold-only";

    /// The stage of a `[[distill.compare]]` student.
    pub fn student_variant(name: &str) -> String {
        format!("{STUDENT}-{name}")
    }
    /// The answers put to the experts.
    pub const CANDIDATES: &str = "candidates";
    /// The experts' decisions (an annotation store).
    pub const ANNOTATIONS: &str = "annotations.db";
    /// The experts' decisions exported as training sets.
    pub const FEEDBACK: &str = "feedback";
    /// The fine-tune stage: the student after expert feedback.
    pub const FINETUNED: &str = "finetuned";
    /// The report folder.
    pub const REPORT: &str = "report";
    /// The learning curve: exact match against expert decisions spent, per queue order
    /// (`curve.json`, `curve.md`, `curve.svg`).
    pub const CURVE: &str = "curve";
    /// The model inside a training stage's folder (student, baseline, fine-tune).
    pub const FINAL: &str = "final";
    /// Step checkpoints inside a training stage's folder, while it runs.
    pub const CHECKPOINTS: &str = "checkpoints";
    /// The marker a finished stage carries.
    pub const STAGE_MARKER: &str = "STAGE.json";
}

pub(crate) const HASH_PREFIX: &str = "# workbench config hash: ";
/// The line of a run's `config.toml` that names the config file it was made from: the paths the
/// config holds (`data.gold.path`, `annotate.guidelines`, ...) are relative to that file's folder.
const SOURCE_PREFIX: &str = "# made from the config file: ";

/// An open run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    dir: PathBuf,
    config_hash: String,
}

/// What a finished stage recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageMarker {
    /// The stage.
    pub stage: String,
    /// Hash of the settings it depends on.
    pub stage_hash: String,
    /// Hash of the whole config it ran under.
    pub config_hash: String,
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// What it made, for `run` summaries and the report.
    pub summary: serde_json::Value,
}

impl StageMarker {
    /// The summary as the stage's own type (`DataSummary`, `FitSummary`, ...), or `None` when
    /// it does not read as one.
    pub fn summary_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.summary.clone()).ok()
    }
}

/// Where a stage stands.
#[derive(Debug, Clone)]
pub enum StageState {
    /// Not run, or killed before it finished.
    Missing,
    /// Finished under the same settings: skip it.
    Done(StageMarker),
    /// Finished under other settings: redo it.
    Stale(StageMarker),
}

impl RunDir {
    /// Opens (creating if needed) the run directory of a config and writes its resolved config.
    ///
    /// A directory whose `config.toml` has another hash is an error unless `force`, in which case
    /// the new config replaces it and stages whose settings changed will be redone.
    pub fn open(loaded: &LoadedConfig, force: bool) -> Result<RunDir> {
        let dir = loaded.run_dir();
        let hash = loaded.config.hash();
        std::fs::create_dir_all(&dir).map_err(|e| Error::write(&dir, e))?;
        let config_path = dir.join(layout::CONFIG);
        if config_path.exists() {
            let existing =
                std::fs::read_to_string(&config_path).map_err(|e| Error::read(&config_path, e))?;
            let Some(found) = existing
                .lines()
                .next()
                .and_then(|l| l.strip_prefix(HASH_PREFIX))
                .map(|h| h.trim().to_string())
            else {
                // Not a run directory: `--force` must not overwrite someone's own config.toml.
                return Err(Error::invalid(format!(
                    "`{}` was not written by the workbench (its first line is not `{}…`), so \
                     `{}` is not a run directory; nothing was changed, even with `--force`\n\n\
                     hint: set `[run] name` (or `[run] dir`) to a directory of its own",
                    config_path.display(),
                    HASH_PREFIX.trim_end(),
                    dir.display()
                )));
            };
            if found != hash && !force {
                return Err(Error::RunMismatch {
                    dir,
                    found,
                    expected: hash,
                });
            }
        } else {
            // Every run directory gets its config.toml before anything else, so a folder with
            // files but none is someone's own: the stages would write (and redo) inside it. An
            // annotation store (`annotate import-store` into the run to be) is the workbench's.
            let temporary = format!(".{}.", layout::CONFIG);
            let theirs = atomic::foreign_entry(&dir, |name| {
                name.starts_with(&temporary) || name.starts_with(layout::ANNOTATIONS)
            })?;
            if let Some(name) = theirs {
                return Err(Error::invalid(format!(
                    "`{}` already holds files (`{name}`, ...) but no `{}`, so it is not a run \
                     directory the workbench made; nothing was changed, even with `--force`\n\n\
                     hint: set `[run] name` (or `[run] dir`) to a new or empty directory",
                    dir.display(),
                    layout::CONFIG
                )));
            }
        }
        // The source's absolute path, as a JSON string (a path may hold any character).
        let source = std::path::absolute(&loaded.path).unwrap_or_else(|_| loaded.path.clone());
        let source = serde_json::to_string(&source.to_string_lossy()).expect("strings serialise");
        let text = format!(
            "{HASH_PREFIX}{hash}\n# The resolved config of this run, written by `workbench` before any work.\n\
             {SOURCE_PREFIX}{source}\n\n{}",
            loaded.config.to_toml()
        );
        atomic::write_file(&config_path, text.as_bytes())?;
        Ok(RunDir {
            dir,
            config_hash: hash,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Hash of the run's config.
    pub fn config_hash(&self) -> &str {
        &self.config_hash
    }

    /// The directory of a stage.
    pub fn stage_dir(&self, stage: &str) -> PathBuf {
        self.dir.join(stage)
    }

    /// Where a stage stands, given the hash of its settings now.
    pub fn stage_state(&self, stage: &str, stage_hash: &str) -> StageState {
        match read_marker(&self.stage_dir(stage)) {
            Some(m) if m.stage_hash == stage_hash => StageState::Done(m),
            Some(m) => StageState::Stale(m),
            None => StageState::Missing,
        }
    }

    /// What a finished stage recorded, whatever settings it ran under.
    pub fn marker(&self, stage: &str) -> Option<StageMarker> {
        read_marker(&self.stage_dir(stage))
    }

    /// Starts (or restarts) a stage: a temporary directory that replaces the stage directory on
    /// [`Stage::finish`].
    pub fn begin(&self, stage: &str, stage_hash: &str) -> Result<Stage> {
        Ok(Stage {
            dir: AtomicDir::create(self.stage_dir(stage), true)?,
            marker: StageMarker {
                stage: stage.to_string(),
                stage_hash: stage_hash.to_string(),
                config_hash: self.config_hash.clone(),
                finished_at: String::new(),
                summary: serde_json::Value::Null,
            },
        })
    }
}

/// The config file a run directory was made from (as recorded in its `config.toml`), when it is
/// recorded and still there.
pub fn source_config(run_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(run_dir.join(layout::CONFIG)).ok()?;
    let line = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(SOURCE_PREFIX))?;
    let path = PathBuf::from(serde_json::from_str::<String>(line).ok()?);
    path.is_file().then_some(path)
}

/// A run directory's config, with relative paths resolving as they did for the run: against the
/// folder of the config file it was made from (when that is known), else the run directory's.
pub fn load_config(run_dir: &Path, overrides: &[crate::config::Override]) -> Result<LoadedConfig> {
    let copy = run_dir.join(layout::CONFIG);
    let mut loaded = crate::config::Config::load(&copy, overrides)?;
    if let Some(source) = source_config(run_dir) {
        loaded.path = source;
    }
    Ok(loaded)
}

fn read_marker(stage_dir: &Path) -> Option<StageMarker> {
    let text = std::fs::read_to_string(stage_dir.join(layout::STAGE_MARKER)).ok()?;
    serde_json::from_str(&text).ok()
}

/// A stage being built.
pub struct Stage {
    dir: AtomicDir,
    marker: StageMarker,
}

impl Stage {
    /// The temporary directory to write the stage's outputs into.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the stage will appear.
    pub fn dest(&self) -> &Path {
        self.dir.dest()
    }

    /// Writes the marker and moves the stage into place.
    pub fn finish(mut self, summary: serde_json::Value) -> Result<StageMarker> {
        self.marker.finished_at =
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.marker.summary = summary;
        let text = serde_json::to_string_pretty(&self.marker).expect("markers serialise");
        atomic::write_file(self.dir.path().join(layout::STAGE_MARKER), text.as_bytes())?;
        self.dir.commit()?;
        Ok(self.marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Override};

    fn loaded(dir: &Path, overrides: &[&str]) -> LoadedConfig {
        let text = format!(
            "[run]\nname = \"r\"\ndir = \"{}\"\n[data]\ntask = \"dates\"\n",
            dir.display()
        );
        let o: Vec<Override> = overrides
            .iter()
            .map(|o| Override::parse(o).unwrap())
            .collect();
        LoadedConfig {
            config: Config::from_str_with(&text, "t.toml", &o).unwrap(),
            path: dir.join("t.toml"),
        }
    }

    #[test]
    fn the_resolved_config_is_written_first_with_its_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let l = loaded(tmp.path(), &[]);
        let run = RunDir::open(&l, false).unwrap();
        let text = std::fs::read_to_string(run.path().join("config.toml")).unwrap();
        assert!(text.starts_with(&format!("{HASH_PREFIX}{}", l.config.hash())));
        assert!(
            text.contains("decontam_ngram = 13"),
            "defaults are resolved: {text}"
        );
        // Same config again: fine.
        RunDir::open(&l, false).unwrap();
    }

    #[test]
    fn a_run_remembers_its_config_file_so_relative_paths_resolve_against_it() {
        let tmp = tempfile::tempdir().unwrap();
        let configs = tmp.path().join("my configs \"x\"");
        std::fs::create_dir_all(&configs).unwrap();
        let mut l = loaded(tmp.path(), &[]);
        l.path = configs.join("t.toml");
        std::fs::write(&l.path, "").unwrap();
        let run = RunDir::open(&l, false).unwrap();
        assert_eq!(source_config(run.path()).unwrap(), l.path);
        let again = load_config(run.path(), &[]).unwrap();
        assert_eq!(again.config, l.config);
        assert_eq!(
            again.resolve(Path::new("guidelines/g.md")),
            configs.join("guidelines/g.md")
        );
        // The source gone: the copy resolves against the run directory.
        std::fs::remove_file(&l.path).unwrap();
        assert!(source_config(run.path()).is_none());
        assert_eq!(
            load_config(run.path(), &[]).unwrap().path,
            run.path().join("config.toml")
        );
    }

    #[test]
    fn force_never_overwrites_a_config_toml_the_workbench_did_not_write() {
        let tmp = tempfile::tempdir().unwrap();
        let l = loaded(tmp.path(), &[]);
        let dir = l.run_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), "my = \"own\"\n").unwrap();
        for force in [false, true] {
            let e = RunDir::open(&l, force).unwrap_err().to_string();
            assert!(e.contains("not written by the workbench"), "{e}");
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("config.toml")).unwrap(),
            "my = \"own\"\n"
        );
    }

    /// A folder with someone's files but no config.toml is not taken over; one holding only
    /// what the workbench leaves there first (a config write cut short, an imported store) is.
    #[test]
    fn a_folder_of_someones_own_files_is_not_taken_for_a_run() {
        let tmp = tempfile::tempdir().unwrap();
        let l = loaded(tmp.path(), &[]);
        let dir = l.run_dir();
        std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        for force in [false, true] {
            let e = RunDir::open(&l, force).unwrap_err().to_string();
            assert!(e.contains("no `config.toml`"), "{e}");
        }
        assert!(!dir.join("config.toml").exists());
        std::fs::remove_file(dir.join("notes.txt")).unwrap();
        std::fs::remove_dir(dir.join("checkpoints")).unwrap();
        std::fs::write(dir.join(".config.toml.tmp-1-0"), "cut short").unwrap();
        std::fs::write(dir.join("annotations.db"), "").unwrap();
        std::fs::write(dir.join("annotations.db-wal"), "").unwrap();
        RunDir::open(&l, false).unwrap();
        assert!(dir.join("config.toml").is_file());
    }

    #[test]
    fn another_config_is_refused_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        RunDir::open(&loaded(tmp.path(), &[]), false).unwrap();
        let other = loaded(tmp.path(), &["run.seed=9"]);
        let e = RunDir::open(&other, false).unwrap_err();
        assert!(matches!(e, Error::RunMismatch { .. }), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        RunDir::open(&other, true).unwrap();
    }

    #[test]
    fn stages_are_missing_then_done_then_stale() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::open(&loaded(tmp.path(), &[]), false).unwrap();
        assert!(matches!(run.stage_state("data", "h1"), StageState::Missing));
        let stage = run.begin("data", "h1").unwrap();
        std::fs::write(stage.path().join("x"), b"1").unwrap();
        assert!(
            matches!(run.stage_state("data", "h1"), StageState::Missing),
            "not before finish"
        );
        stage.finish(serde_json::json!({"rows": 1})).unwrap();
        assert!(matches!(run.stage_state("data", "h1"), StageState::Done(_)));
        assert!(matches!(
            run.stage_state("data", "h2"),
            StageState::Stale(_)
        ));
        // A killed restart leaves the finished stage as it was.
        {
            let _half = run.begin("data", "h2").unwrap();
        }
        assert!(matches!(run.stage_state("data", "h1"), StageState::Done(_)));
        assert!(run.stage_dir("data").join("x").exists());
    }
}
