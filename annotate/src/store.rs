//! The annotation store: every expert decision, durable before the screen moves on.
//!
//! One SQLite file per set or run (`annotations.db`), opened in WAL mode with
//! `synchronous=FULL`: a decision is one transaction, and [`Store::decide`] returns only after
//! SQLite has fsynced the write-ahead log, so a decision the app has acknowledged survives a
//! killed process or a dead laptop. Several processes (several annotators) share one file; SQLite's
//! locking serialises the writes and a busy timeout waits for the other writer.
//!
//! What was decided is an append-only log (`events`: `decide` and `undo`, guarded by triggers
//! against updates and deletes), so undo and audit are the same data. The current state, the
//! latest decision of each annotator on each item that no undo has taken back, is derived from the
//! log; a table (`decisions`) keeps it up to date inside the same transaction so the queue can
//! read it through an index, and [`Store::replay`] derives it from the log alone, which is how the
//! tests check the two agree.
//!
//! Items are keyed by a content id (the prompt and its conversation), so importing the same
//! candidates twice adds nothing. Two rows with the same prompt become one item with two
//! candidates, shown side by side for an A/B preference.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use crate::error::{Error, Result};

/// The file name of the store inside a set or a run directory.
mod decisions;
mod items;
mod migrations;
mod queue;

pub use decisions::{Stored, Verdict};
pub use items::{Candidate, Item};
pub use queue::{
    CLAIM_LEASE, Filter, Progress, QUEUE_SEED, ShapeTally, arrange, is_live, item_score, numbers,
    shape_score,
};

/// The file name of the store inside a set or a run directory.
pub const DB_FILE: &str = datasets::rundir::layout::ANNOTATIONS;

/// How long a write waits for another process holding the database before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The annotation database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens the store at `path`, creating it (and running migrations) when it does not exist.
    pub fn open(path: impl Into<PathBuf>) -> Result<Store> {
        Self::open_with(path.into(), true)
    }

    /// Opens a store that must already exist.
    pub fn open_existing(path: impl Into<PathBuf>) -> Result<Store> {
        let path = path.into();
        if !path.is_file() {
            return Err(Error::invalid(format!(
                "No annotation database at `{}`\n\nhint: `workbench annotate` creates it when it opens a set or a run",
                path.display()
            )));
        }
        Self::open_with(path, false)
    }

    fn open_with(path: PathBuf, create: bool) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.is_dir()
        {
            return Err(Error::invalid(format!(
                "Cannot create `{}`: the directory `{}` does not exist",
                path.display(),
                parent.display()
            )));
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| classify(&path, "cannot open it", e))?;
        let mut store = Store { conn, path };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    fn configure(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| classify(&path, "cannot set the busy timeout", e))?;
        // WAL lets readers (a second annotator, `stats`) work while one writes; FULL makes each
        // commit fsync the log, which is the durability promise.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| classify(&path, "cannot switch to WAL mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Store {
                path,
                message: format!("the file system does not support WAL mode (got `{mode}`)"),
                source: None,
            });
        }
        self.conn
            .execute_batch(
                "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA trusted_schema = OFF;",
            )
            .map_err(|e| classify(&path, "cannot configure it", e))?;
        Ok(())
    }

    /// How long a write waits for another process's write before failing with
    /// [`Error::Locked`] (default 10 s).
    pub fn set_busy_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.conn
            .busy_timeout(timeout)
            .map_err(self.err("cannot set the busy timeout"))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err<'a>(&'a self, what: &'a str) -> impl Fn(rusqlite::Error) -> Error + 'a {
        move |e| classify(&self.path, what, e)
    }

    /// Starts an IMMEDIATE transaction (the write lock taken now, not at the first write), and
    /// hands back the path beside it for the transaction's error messages.
    fn immediate(&mut self) -> Result<(rusqlite::Transaction<'_>, &Path)> {
        let Store { conn, path } = self;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(path, "cannot start a transaction", e))?;
        Ok((tx, path))
    }

    /// Stores a meta value (for example the fingerprint of the set the items came from).
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(self.err("cannot write meta"))?;
        Ok(())
    }

    /// Reads a meta value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err("cannot read meta"))
    }

    /// `PRAGMA integrity_check`: `ok`, or what SQLite found wrong.
    pub fn integrity_check(&self) -> Result<String> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(self.err("cannot check integrity"))?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err("cannot check integrity"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err("cannot check integrity"))?;
        Ok(lines.join("\n"))
    }
}

fn check_annotator(annotator: &str) -> Result<()> {
    if annotator.trim().is_empty() || annotator.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "`{}` is not an annotator name: use a non-empty name without control characters (`--annotator NAME`)",
            datasets::text::inert_line(annotator)
        )));
    }
    Ok(())
}

/// Microseconds since the Unix epoch, UTC.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Turns SQLite's error into one that says what to do: locked, not a database, or a failure.
fn classify(path: &Path, what: &str, e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, message) = &e {
        match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return Error::Locked {
                    path: path.to_path_buf(),
                };
            }
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                return Error::Corrupt {
                    path: path.to_path_buf(),
                    message: message.clone().unwrap_or_else(|| f.to_string()),
                };
            }
            ErrorCode::DiskFull => {
                return Error::Store {
                    path: path.to_path_buf(),
                    message: format!(
                        "{what}: the disk is full\n\nhint: free some space; nothing was half-written, and the decisions already saved are safe"
                    ),
                    source: Some(e),
                };
            }
            ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied => {
                return Error::Store {
                    path: path.to_path_buf(),
                    message: format!(
                        "{what}: {}\n\nhint: check that the file and its directory are writable",
                        message.clone().unwrap_or_else(|| f.to_string())
                    ),
                    source: Some(e),
                };
            }
            _ => {}
        }
    }
    Error::Store {
        path: path.to_path_buf(),
        message: what.to_string(),
        source: Some(e),
    }
}

#[cfg(test)]
mod tests;
