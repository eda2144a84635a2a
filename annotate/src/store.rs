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

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::{Error, Result};

mod db;
mod decisions;
mod items;
mod log;
mod migrations;
mod queue;
#[doc(hidden)]
pub mod testing;

pub use db::{PASSWORD_ENV, is_postgres_url, redact};
pub use decisions::{Stored, Verdict, new_key};
pub use items::{Candidate, Item};
pub use log::{LogEvent, Moved};
pub use queue::{
    CLAIM_LEASE, Filter, Progress, QUEUE_SEED, ShapeTally, arrange, is_live, item_score, numbers,
    shape_score,
};

use db::{Conn, Ctx, DbError, Fail, Sql, values};

/// The file name of the store inside a set or a run directory.
pub const DB_FILE: &str = datasets::rundir::layout::ANNOTATIONS;

/// How long a write waits for another process holding the database before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a store lives: a SQLite file, or a PostgreSQL database that a team shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (`annotations.db` in a set or a run directory).
    File(PathBuf),
    /// A PostgreSQL URL without a password (`postgres://USER@HOST:PORT/DATABASE`).
    Postgres(String),
}

impl Location {
    /// Whether there is a store here to read: a database file that exists, or a server (where
    /// an empty store is made).
    pub fn exists(&self) -> bool {
        match self {
            Location::File(p) => p.is_file(),
            Location::Postgres(_) => true,
        }
    }

    /// A PostgreSQL URL, or else the path of a SQLite file.
    pub fn parse(spec: &str) -> Location {
        if is_postgres_url(spec) {
            Location::Postgres(spec.to_string())
        } else {
            Location::File(PathBuf::from(spec))
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// The annotation database.
#[derive(Debug)]
pub struct Store {
    conn: Conn,
    /// The file, or the server's URL (what messages name).
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

    /// Opens the store at `location`; a SQLite file is created when `create` says so, a
    /// PostgreSQL store always is (its tables, in the database the URL names).
    pub fn open_at(location: &Location, create: bool) -> Result<Store> {
        match location {
            Location::File(path) if create => Store::open(path.clone()),
            Location::File(path) => Store::open_existing(path.clone()),
            Location::Postgres(url) => Store::connect(url),
        }
    }

    /// Connects to the PostgreSQL store at `url` (no password in it: it is read from
    /// `PGPASSWORD`), creating its tables when the database has none.
    pub fn connect(url: &str) -> Result<Store> {
        let config = db::Pg::config(url)?;
        let path = PathBuf::from(redact(url));
        let pg = db::Pg::connect(config).map_err(|e| classify(&path, "cannot connect", e))?;
        let mut store = Store {
            conn: Conn::Postgres(Box::new(std::sync::Mutex::new(pg))),
            path,
        };
        store.migrate()?;
        Ok(store)
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
            .map_err(|e| classify(&path, "cannot open it", e.into()))?;
        configure(&conn, &path)?;
        let mut store = Store {
            conn: Conn::Sqlite(conn),
            path,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Whether the store is on a PostgreSQL server.
    pub fn is_postgres(&self) -> bool {
        self.conn.is_postgres()
    }

    /// How long a write waits for another process's write before failing with
    /// [`Error::Locked`] (default 10 s).
    pub fn set_busy_timeout(&mut self, timeout: Duration) -> Result<()> {
        match &self.conn {
            Conn::Sqlite(c) => c
                .busy_timeout(timeout)
                .map_err(|e| classify(&self.path, "cannot set the busy timeout", e.into())),
            Conn::Postgres(_) => {
                let ms = timeout.as_millis().max(1) as i64;
                self.write(|tx| {
                    tx.batch(&format!("SET lock_timeout = {ms}"))
                        .ctx("cannot set the lock timeout")
                })
            }
        }
    }

    /// The database file, or the server's URL (without a password).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read, turning a database failure into the store's error.
    fn read<T>(&self, f: impl FnMut(&mut dyn Sql) -> std::result::Result<T, Fail>) -> Result<T> {
        self.conn.read(f).map_err(|e| self.fail(e))
    }

    /// Runs a write transaction (see [`Conn::write`]).
    fn write<T>(
        &mut self,
        f: impl FnMut(&mut dyn Sql) -> std::result::Result<T, Fail>,
    ) -> Result<T> {
        let out = self.conn.write(f);
        out.map_err(|e| self.fail(e))
    }

    fn fail(&self, e: Fail) -> Error {
        match e {
            Fail::Db { what, source } => classify(&self.path, &what, source),
            Fail::Other(e) => e,
        }
    }

    /// Stores a meta value (for example the fingerprint of the set the items came from).
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.write(|tx| {
            tx.exec(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                values![key, value],
            )
            .ctx("cannot write meta")
        })?;
        Ok(())
    }

    /// Reads a meta value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.read(|db| {
            match db
                .row("SELECT value FROM meta WHERE key = ?1", values![key])
                .ctx("cannot read meta")?
            {
                Some(r) => Ok(Some(r.text(0).ctx("cannot read meta")?)),
                None => Ok(None),
            }
        })
    }

    /// `ok`, or what the database found wrong: SQLite's `PRAGMA integrity_check`; on PostgreSQL,
    /// the server checks its own pages, so this checks that the store's tables answer.
    pub fn integrity_check(&self) -> Result<String> {
        let postgres = self.is_postgres();
        self.read(|db| {
            if postgres {
                db.rows(
                    "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM items)",
                    &[],
                )
                .ctx("cannot check integrity")?;
                return Ok("ok".to_string());
            }
            let lines = db
                .rows("PRAGMA integrity_check", &[])
                .ctx("cannot check integrity")?;
            let mut out = Vec::new();
            for l in &lines {
                out.push(l.text(0).ctx("cannot check integrity")?);
            }
            Ok(out.join("\n"))
        })
    }
}

fn configure(conn: &Connection, path: &Path) -> Result<()> {
    let err = |what: &'static str| move |e: rusqlite::Error| classify(path, what, e.into());
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(err("cannot set the busy timeout"))?;
    // WAL lets readers (a second annotator, `stats`) work while one writes; FULL makes each
    // commit fsync the log, which is the durability promise.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(err("cannot switch to WAL mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Store {
            path: path.to_path_buf(),
            message: format!("the file system does not support WAL mode (got `{mode}`)"),
            source: None,
        });
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA trusted_schema = OFF;",
    )
    .map_err(err("cannot configure it"))?;
    Ok(())
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

/// Turns the database's error into one that says what to do: locked, not a database, a lost
/// server, or a failure.
fn classify(path: &Path, what: &str, e: DbError) -> Error {
    // PostgreSQL's words are in the message already: its error is not chained a second time.
    let store = |message: String, e: DbError| Error::Store {
        path: path.to_path_buf(),
        message,
        source: match e {
            DbError::Postgres(_) => None,
            e => Some(Box::new(e)),
        },
    };
    match &e {
        DbError::Sqlite(rusqlite::Error::SqliteFailure(f, message)) => match f.code {
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
                return store(
                    format!(
                        "{what}: the disk is full\n\nhint: free some space; nothing was half-written, and the decisions already saved are safe"
                    ),
                    e,
                );
            }
            ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied => {
                let detail = message.clone().unwrap_or_else(|| f.to_string());
                return store(
                    format!(
                        "{what}: {detail}\n\nhint: check that the file and its directory are writable"
                    ),
                    e,
                );
            }
            _ => {}
        },
        DbError::Postgres(pg) => {
            if let Some(db) = pg.as_db_error() {
                let code = db.code().code();
                let detail = format!("{} ({code})", db.message());
                let hint = match code {
                    "55P03" => {
                        return Error::Locked {
                            path: path.to_path_buf(),
                        };
                    }
                    "28P01" | "28000" => Some(format!(
                        "set the password in the environment variable {PASSWORD_ENV}, and check the user in the URL"
                    )),
                    "3D000" => Some(
                        "create the database first (`createdb NAME`), or name one that exists in the URL"
                            .to_string(),
                    ),
                    "42501" => Some(
                        "the user needs the right to create tables in the database (or its schema) the first time"
                            .to_string(),
                    ),
                    _ => None,
                };
                let message = match hint {
                    Some(h) => format!("{what}: {detail}\n\nhint: {h}"),
                    None => format!("{what}: {detail}"),
                };
                return store(message, e);
            }
            if e.is_connection_lost() {
                let detail = pg
                    .source()
                    .map_or_else(|| pg.to_string(), ToString::to_string);
                return store(
                    format!(
                        "{what}: the PostgreSQL server cannot be reached ({detail})\n\nhint: check that the server runs and the URL's host and port are right; nothing was half-written, and what was saved before is safe"
                    ),
                    e,
                );
            }
        }
        _ => {}
    }
    store(what.to_string(), e)
}

#[cfg(test)]
mod tests;
