//! Files and directories that appear whole or not at all.
//!
//! Everything the workbench writes goes to a temporary name beside its destination, is closed and
//! fsynced, renamed into place, and then the directory is fsynced so the rename itself survives a
//! power cut. A crash at any point leaves either the old file or the new one, plus at most a
//! stray temporary: [`Drop`] removes it when the process lives, and the next write to the same
//! destination sweeps those of processes that died (SIGKILL, power cut).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// fsyncs a directory so that renames into it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    // Directories cannot be opened for writing; a read-only handle is enough for fsync on Linux.
    let d = File::open(dir).map_err(|e| Error::write(dir, e))?;
    d.sync_all().map_err(|e| Error::write(dir, e))
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes `dest`'s folder where it is missing. A path through a file is named as such: it is the
/// user's path that is wrong, not the disk.
fn make_parent(dest: &Path) -> Result<()> {
    let parent = parent_of(dest);
    if let Some(file) = parent.ancestors().find(|a| a.is_file()) {
        return Err(Error::invalid(format!(
            "`{}` cannot be written: `{}` is a file, not a folder\n\nhint: choose a path inside \
             a folder",
            dest.display(),
            file.display()
        )));
    }
    std::fs::create_dir_all(&parent).map_err(|e| Error::write(&parent, e))
}

/// The tags of the temporaries beside a destination.
const TAGS: [&str; 3] = ["tmp", "partial", "old"];

/// Removes the temporaries that dead processes left beside `dest` (named
/// `.{name}.{tag}-{pid}-{n}` by [`temp_sibling`]). A temporary of a live process, this one
/// included, is never touched. Best effort: where `/proc` cannot tell whether a process lives,
/// nothing is removed.
fn sweep_stale(dest: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Some(name) = dest.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let parent = parent_of(dest);
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = stale_pid(&file_name, &name) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

/// The process id in a temporary's name, if `file_name` is one of `dest_name`'s.
fn stale_pid(file_name: &str, dest_name: &str) -> Option<u32> {
    let rest = file_name
        .strip_prefix('.')?
        .strip_prefix(dest_name)?
        .strip_prefix('.')?;
    let (tag, rest) = rest.split_once('-')?;
    if !TAGS.contains(&tag) {
        return None;
    }
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Puts the finished `temp` at `dest`, where a `dest` exists. On Linux the two are swapped in one
/// step (`RENAME_EXCHANGE`), so `dest` is never missing, and the old tree is left at `temp` for
/// the caller to remove; elsewhere (or where the file system cannot swap) the old tree is moved
/// aside first. Returns where the old tree now is.
fn replace_dir(temp: &Path, dest: &Path) -> Result<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        match renameat_with(CWD, temp, CWD, dest, RenameFlags::EXCHANGE) {
            Ok(()) => return Ok(temp.to_path_buf()),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(Error::write(dest, std::io::Error::from(e))),
        }
    }
    let aside = temp_sibling(dest, "old");
    std::fs::rename(dest, &aside).map_err(|e| Error::write(dest, e))?;
    std::fs::rename(temp, dest).map_err(|e| Error::write(dest, e))?;
    Ok(aside)
}

fn temp_sibling(dest: &Path, tag: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    parent_of(dest).join(format!(".{name}.{tag}-{}-{n}", std::process::id()))
}

/// A file written under a temporary name and renamed over `dest` on [`AtomicFile::commit`].
pub struct AtomicFile {
    file: Option<File>,
    temp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file beside `dest`, and `dest`'s folder if it is missing (as
    /// [`AtomicDir::create`] does). A failure names `dest`, the path the user gave.
    pub fn create(dest: impl Into<PathBuf>) -> Result<Self> {
        let dest = dest.into();
        make_parent(&dest)?;
        sweep_stale(&dest);
        let temp = temp_sibling(&dest, "tmp");
        let file = File::create_new(&temp).map_err(|e| Error::write(&dest, e))?;
        Ok(AtomicFile {
            file: Some(file),
            temp,
            dest,
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is open until commit")
    }

    /// Takes the file out (for writers that own their sink); give it back with [`Self::commit_file`].
    pub fn take_file(&mut self) -> File {
        self.file.take().expect("file is open until commit")
    }

    /// Where the file will appear.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes, fsyncs, renames into place and fsyncs the directory.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("file is open until commit");
        self.commit_file(file)
    }

    /// Like [`Self::commit`], for a file that was taken out with [`Self::take_file`].
    pub fn commit_file(mut self, mut file: File) -> Result<()> {
        file.flush().map_err(|e| Error::write(&self.dest, e))?;
        file.sync_all().map_err(|e| Error::write(&self.dest, e))?;
        drop(file);
        std::fs::rename(&self.temp, &self.dest).map_err(|e| Error::write(&self.dest, e))?;
        // The temporary is gone; nothing for Drop to clean.
        self.temp = PathBuf::new();
        sync_dir(&parent_of(&self.dest))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `dest` atomically.
pub fn write_file(dest: impl Into<PathBuf>, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    let dest = f.dest().to_path_buf();
    f.file()
        .write_all(bytes)
        .map_err(|e| Error::write(&dest, e))?;
    f.commit()
}

/// A directory built under a temporary name and renamed into place on [`AtomicDir::commit`].
///
/// If the build fails or the process dies, the destination is untouched and the temporary is
/// removed (by [`Drop`], or ignored as a dot-name by the next run).
pub struct AtomicDir {
    temp: PathBuf,
    dest: PathBuf,
    replace: bool,
}

impl AtomicDir {
    /// Starts building `dest`. Unless `replace`, a `dest` that exists and is not empty is an error;
    /// with `replace`, so is one the workbench did not make (see [`check_replaceable`]).
    pub fn create(dest: impl Into<PathBuf>, replace: bool) -> Result<Self> {
        let dest = dest.into();
        if dest.exists() || dest.is_symlink() {
            let empty = dest.is_dir()
                && std::fs::read_dir(&dest)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
            if !replace && !empty {
                return Err(Error::invalid(format!(
                    "`{}` already exists\n\nhint: choose another output directory, or pass `--force` to replace it",
                    dest.display()
                )));
            }
            if replace {
                check_replaceable(&dest)?;
            }
        }
        make_parent(&dest)?;
        sweep_stale(&dest);
        let temp = temp_sibling(&dest, "partial");
        std::fs::create_dir(&temp).map_err(|e| Error::write(&temp, e))?;
        Ok(AtomicDir {
            temp,
            dest,
            replace,
        })
    }

    /// The temporary directory to write into.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Where the directory will appear.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// fsyncs the tree, renames it into place (moving an old `dest` aside first) and fsyncs the
    /// parent.
    pub fn commit(mut self) -> Result<PathBuf> {
        sync_tree(&self.temp)?;
        let parent = parent_of(&self.dest);
        let mut old = None;
        if self.dest.exists() && !self.replace {
            // Only an empty directory can be here (checked at create).
            std::fs::remove_dir(&self.dest).map_err(|e| Error::write(&self.dest, e))?;
        }
        if self.dest.exists() {
            old = Some(replace_dir(&self.temp, &self.dest)?);
        } else {
            std::fs::rename(&self.temp, &self.dest).map_err(|e| Error::write(&self.dest, e))?;
        }
        self.temp = PathBuf::new();
        sync_dir(&parent)?;
        if let Some(old) = old {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(self.dest.clone())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

/// The key of `config.json` that marks a checkpoint the workbench wrote (its version).
pub const CHECKPOINT_VERSION_KEY: &str = "workbench_version";

/// The files of a checkpoint the workbench writes.
const CHECKPOINT_FILES: [&str; 6] = [
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
];

/// What the workbench made that may stand at a destination it is asked to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    /// A set: `README.md` with the workbench's card and `data/` of Parquet files.
    Set,
    /// A checkpoint whose `config.json` names the workbench version.
    Checkpoint,
    /// A run stage: everything under a directory with a `STAGE.json` marker.
    Stage,
}

impl Made {
    fn what(self) -> &'static str {
        match self {
            Made::Set => "a set",
            Made::Checkpoint => "a checkpoint",
            Made::Stage => "a run stage",
        }
    }

    /// Whether `name`, directly inside the directory, belongs to this kind of output.
    fn owns(self, name: &str, path: &Path) -> bool {
        match self {
            Made::Stage => true,
            Made::Checkpoint => CHECKPOINT_FILES.contains(&name) && path.is_file(),
            Made::Set => match name {
                "README.md" => path.is_file(),
                "data" => std::fs::read_dir(path).is_ok_and(|entries| {
                    entries.filter_map(|e| e.ok()).all(|e| {
                        e.file_type().is_ok_and(|t| t.is_file())
                            && e.path().extension().is_some_and(|x| x == "parquet")
                    })
                }),
                _ => false,
            },
        }
    }
}

/// What `dir` is, when the workbench made it.
fn made_by_us(dir: &Path) -> Option<Made> {
    if dir.join(crate::rundir::layout::STAGE_MARKER).is_file() {
        return Some(Made::Stage);
    }
    let card = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
    if dir.join("data").is_dir() && card.contains(crate::card::CARD_MARKER) {
        return Some(Made::Set);
    }
    let config = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&config).ok()?;
    // A final model inside a run stage (`runs/NAME/student/final`) is the run's.
    let in_stage = dir
        .parent()
        .is_some_and(|p| p.join(crate::rundir::layout::STAGE_MARKER).is_file());
    (config.get(CHECKPOINT_VERSION_KEY).is_some() || in_stage).then_some(Made::Checkpoint)
}

/// Refuses to let anything but the workbench's own output be replaced at `dest`: an empty
/// directory, a set it wrote, a checkpoint it wrote, or a run stage, each holding nothing but
/// what the workbench puts there. A user's folder that happens to be named as an output, or an
/// output the user has added files to (notes, an `annotations.db` of expert decisions), is left
/// alone, whole, with a message that says what is there.
pub fn check_replaceable(dest: &Path) -> Result<()> {
    let shown = dest.display();
    let keep = "so nothing was deleted; the workbench replaces only its own sets, checkpoints and \
                run stages (or an empty directory), even with `--force`";
    if dest.is_symlink() || !dest.is_dir() {
        return Err(Error::invalid(format!(
            "`{shown}` already exists and is {}, not a directory the workbench wrote, {keep}\n\n\
             hint: choose another output path",
            if dest.is_symlink() {
                "a symbolic link"
            } else {
                "a file"
            }
        )));
    }
    let mut names: Vec<(String, PathBuf)> = std::fs::read_dir(dest)
        .map_err(|e| Error::read(dest, e))?
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let listed = |names: &[&str]| {
        let mut shown: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
        if names.len() > 3 {
            shown.push(format!("{} more", names.len() - 3));
        }
        shown.join(", ")
    };
    let Some(made) = made_by_us(dest) else {
        let all: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::invalid(format!(
            "`{shown}` already exists and is not a set, a checkpoint or a run stage the workbench \
             wrote (it holds {}), {keep}\n\nhint: choose another output directory, or move \
             `{shown}` aside yourself",
            listed(&all)
        )));
    };
    let foreign: Vec<&str> = names
        .iter()
        .filter(|(n, p)| !made.owns(n, p))
        .map(|(n, _)| n.as_str())
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    let why = if foreign.contains(&"annotations.db") {
        " (`annotations.db` holds expert decisions)"
    } else {
        ""
    };
    Err(Error::invalid(format!(
        "`{shown}` is {} the workbench wrote, but it also holds {}, which the workbench did not \
         put there{why}, {keep}\n\nhint: move {} out of `{shown}` first, or choose another \
         output directory",
        made.what(),
        listed(&foreign),
        if foreign.len() == 1 { "it" } else { "them" },
    )))
}

/// The first entry of `dir` (by name) that `ours` does not claim: what the user keeps there, so
/// the workbench must not take the folder over. `None` when everything in it is the workbench's.
pub fn foreign_entry(dir: &Path, ours: impl Fn(&str) -> bool) -> Result<Option<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::read(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !ours(name))
        .collect();
    names.sort();
    Ok(names.into_iter().next())
}

/// fsyncs every directory under `root` (files are fsynced by their writers).
fn sync_tree(root: &Path) -> Result<()> {
    let entries = std::fs::read_dir(root).map_err(|e| Error::write(root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::write(root, e))?;
        if entry
            .file_type()
            .map_err(|e| Error::write(entry.path(), e))?
            .is_dir()
        {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file or directory is written into folders made for it; a path through a file is
    /// refused naming that file, and nothing is made.
    #[test]
    fn outputs_get_their_folders_and_paths_through_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path().join("new/deeper/x.bin"), b"x").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("new/deeper/x.bin")).unwrap(),
            b"x"
        );
        AtomicDir::create(dir.path().join("made/set"), false)
            .unwrap()
            .commit()
            .unwrap();
        assert!(dir.path().join("made/set").is_dir());
        std::fs::write(dir.path().join("plain"), "mine").unwrap();
        for e in [
            write_file(dir.path().join("plain/sub/x.bin"), b"x").unwrap_err(),
            AtomicDir::create(dir.path().join("plain/set"), false)
                .err()
                .unwrap(),
        ] {
            let e = e.to_string();
            assert!(e.contains("is a file, not a folder"), "{e}");
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("plain")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn a_dropped_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.bin");
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.file().write_all(b"half").unwrap();
        }
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_committed_file_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.txt");
        write_file(&dest, b"old").unwrap();
        write_file(&dest, b"new").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_directory_appears_only_on_commit_and_refuses_to_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("set");
        let d = AtomicDir::create(&dest, false).unwrap();
        std::fs::write(d.path().join("a"), b"1").unwrap();
        assert!(!dest.exists());
        d.commit().unwrap();
        assert!(dest.join("a").exists());

        let err = AtomicDir::create(&dest, false).err().unwrap();
        assert!(err.to_string().contains("already exists"), "{err}");

        // `a` is not the workbench's: not even `replace` may delete it.
        let err = AtomicDir::create(&dest, true).err().unwrap();
        assert!(err.to_string().contains("nothing was deleted"), "{err}");
        assert!(dest.join("a").exists());

        std::fs::write(dest.join(crate::rundir::layout::STAGE_MARKER), b"{}").unwrap();
        let d = AtomicDir::create(&dest, true).unwrap();
        std::fs::write(d.path().join("b"), b"2").unwrap();
        d.commit().unwrap();
        assert!(dest.join("b").exists() && !dest.join("a").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A folder of the user's, given as an output with `--force`, lost everything in it.
    #[test]
    fn force_replaces_only_what_the_workbench_made() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |p: &Path| check_replaceable(p).err().map(|e| e.to_string());

        // The user's folder.
        let mine = dir.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        std::fs::write(mine.join("important.txt"), b"keep").unwrap();
        let e = refused(&mine).expect("a user's folder is refused");
        assert!(
            e.contains("important.txt") && e.contains("nothing was deleted"),
            "{e}"
        );
        assert!(AtomicDir::create(&mine, true).is_err());
        assert!(mine.join("important.txt").exists());

        // An empty directory, and a set the workbench wrote.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(refused(&empty), None);
        let set = dir.path().join("set");
        std::fs::create_dir_all(set.join("data")).unwrap();
        std::fs::write(set.join("data/train-00000-of-00001.parquet"), b"PAR1").unwrap();
        std::fs::write(
            set.join("README.md"),
            format!("---\n---\n# x\n\n{} 0.1.0\n", crate::card::CARD_MARKER),
        )
        .unwrap();
        assert_eq!(refused(&set), None);
        // ... until someone keeps their notes or their decisions in it.
        std::fs::write(set.join("annotations.db"), b"").unwrap();
        let e = refused(&set).expect("expert decisions are kept");
        assert!(
            e.contains("is a set") && e.contains("expert decisions"),
            "{e}"
        );
        std::fs::remove_file(set.join("annotations.db")).unwrap();
        std::fs::write(set.join("data/notes.txt"), b"").unwrap();
        assert!(refused(&set).is_some());

        // A set-like folder without the workbench's card is not a set the workbench wrote.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir_all(theirs.join("data")).unwrap();
        std::fs::write(theirs.join("README.md"), b"# my data\n").unwrap();
        assert!(refused(&theirs).is_some());

        // A checkpoint: by the version key of its config, or by the run stage it is in.
        let ckpt = dir.path().join("ckpt");
        std::fs::create_dir(&ckpt).unwrap();
        std::fs::write(ckpt.join("model.safetensors"), b"").unwrap();
        std::fs::write(ckpt.join("config.json"), br#"{"model_type": "llama"}"#).unwrap();
        assert!(refused(&ckpt).is_some(), "a checkpoint from elsewhere");
        std::fs::write(
            ckpt.join("config.json"),
            format!(r#"{{"model_type": "llama", "{CHECKPOINT_VERSION_KEY}": "0.1.0"}}"#),
        )
        .unwrap();
        assert_eq!(refused(&ckpt), None);
        let stage = dir.path().join("student");
        std::fs::create_dir_all(stage.join("final")).unwrap();
        std::fs::write(stage.join(crate::rundir::layout::STAGE_MARKER), b"{}").unwrap();
        std::fs::write(stage.join("final/config.json"), b"{}").unwrap();
        assert_eq!(refused(&stage.join("final")), None);
        assert_eq!(refused(&stage), None);

        // A file is never replaced by a directory.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(refused(&file).unwrap().contains("is a file"));
    }

    #[test]
    fn temporaries_of_dead_processes_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("set");
        // A pid far above any kernel's pid_max is never alive.
        let dead = dir.path().join(".set.partial-4294967290-0");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("half.parquet"), b"PAR1").unwrap();
        std::fs::write(dir.path().join(".set.tmp-4294967291-3"), b"half").unwrap();
        let mine = dir
            .path()
            .join(format!(".set.old-{}-7", std::process::id()));
        std::fs::create_dir(&mine).unwrap();
        let other = dir.path().join(".settings.tmp-4294967290-0");
        std::fs::write(&other, b"not ours").unwrap();
        let d = AtomicDir::create(&dest, false).unwrap();
        d.commit().unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let want = [
            format!(".set.old-{}-7", std::process::id()),
            ".settings.tmp-4294967290-0".to_string(),
            "set".to_string(),
        ];
        assert_eq!(left, want);
    }

    #[test]
    fn stale_names_parse_only_for_their_destination() {
        assert_eq!(stale_pid(".set.partial-12-0", "set"), Some(12));
        assert_eq!(stale_pid(".set.tmp-12-3", "set"), Some(12));
        assert_eq!(stale_pid(".set.old-12-3", "set"), Some(12));
        assert_eq!(stale_pid(".set.other-12-3", "set"), None);
        assert_eq!(stale_pid(".settings.tmp-12-3", "set"), None);
        assert_eq!(stale_pid(".set.tmp-x-3", "set"), None);
        assert_eq!(stale_pid("set", "set"), None);
    }

    #[test]
    fn a_replaced_directory_is_never_missing() {
        // The swap leaves no moment without `dest`; after commit only the new tree is there.
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("set");
        let d = AtomicDir::create(&dest, true).unwrap();
        std::fs::write(d.path().join("a"), b"1").unwrap();
        std::fs::write(d.path().join(crate::rundir::layout::STAGE_MARKER), b"{}").unwrap();
        d.commit().unwrap();
        let d = AtomicDir::create(&dest, true).unwrap();
        std::fs::write(d.path().join("b"), b"2").unwrap();
        let temp = d.path().to_path_buf();
        let old = replace_dir(&temp, &dest).unwrap();
        assert!(dest.join("b").exists(), "the new tree is in place");
        assert!(old.join("a").exists(), "the old tree is aside, whole");
        std::fs::remove_dir_all(&old).unwrap();
    }

    #[test]
    fn a_failed_directory_build_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("set");
        {
            let d = AtomicDir::create(&dest, false).unwrap();
            std::fs::write(d.path().join("a"), b"1").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
