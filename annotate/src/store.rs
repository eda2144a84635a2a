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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use datasets::config::QueueOrder;
use datasets::record::IdHasher;
use datasets::{Annotation, Decision, Message, Preference};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use crate::error::{Error, Result};

/// The file name of the store inside a set or a run directory.
pub const DB_FILE: &str = datasets::rundir::layout::ANNOTATIONS;

/// How long a write waits for another process holding the database before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema migrations, in order. `PRAGMA user_version` counts how many have run; a new version
/// appends one, never edits one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE items (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    prompt       TEXT NOT NULL,
    messages     TEXT NOT NULL,
    output_a     TEXT,
    model_a      TEXT,
    output_b     TEXT,
    model_b      TEXT,
    reference    TEXT,
    logprob      REAL,
    entropy      REAL,
    disagreement REAL
) STRICT;
CREATE INDEX items_by_disagreement ON items (disagreement DESC, seq);
CREATE INDEX items_by_entropy ON items (entropy DESC, seq);

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('decide', 'undo')),
    item_id     TEXT NOT NULL,
    annotator   TEXT NOT NULL,
    decision    TEXT CHECK (decision IN ('accept', 'reject', 'edit', 'skip')),
    rating      INTEGER CHECK (rating BETWEEN 1 AND 5),
    corrected   TEXT,
    preference  TEXT CHECK (preference IN ('A', 'B', 'tie')),
    labels      TEXT NOT NULL DEFAULT '[]',
    comment     TEXT,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    undoes      INTEGER REFERENCES events (seq),
    created_at  INTEGER NOT NULL,
    CHECK ((kind = 'decide') = (decision IS NOT NULL)),
    CHECK ((kind = 'undo') = (undoes IS NOT NULL))
) STRICT;
CREATE INDEX events_by_annotator ON events (annotator, seq);
CREATE UNIQUE INDEX events_by_undone ON events (undoes) WHERE undoes IS NOT NULL;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

CREATE TABLE decisions (
    item_id   TEXT NOT NULL,
    annotator TEXT NOT NULL,
    event     INTEGER NOT NULL REFERENCES events (seq),
    decision  TEXT NOT NULL,
    PRIMARY KEY (item_id, annotator)
) STRICT, WITHOUT ROWID;
CREATE INDEX decisions_by_annotator ON decisions (annotator, decision, event);
"#,
    // 2: undo's look-up of the earlier decision on the same item, and replay, by item.
    r#"
CREATE INDEX events_by_item ON events (item_id, annotator, seq);
"#,
    // 3: claims on the items annotators have on screen, so two who start at once are not shown
    // the same item when the overlap leaves room for one (see `Store::claim`).
    r#"
CREATE TABLE claims (
    item_id    TEXT NOT NULL,
    annotator  TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (item_id, annotator)
) STRICT, WITHOUT ROWID;
CREATE INDEX claims_by_annotator ON claims (annotator);
"#,
    // 4: search by substring through an FTS5 trigram index (rowid = items.seq), so `/` answers
    // at a million items without scanning them. `add_items` keeps it in step with `items`.
    r#"
CREATE VIRTUAL TABLE items_text USING fts5 (prompt, output_a, output_b, tokenize = 'trigram');
INSERT INTO items_text (rowid, prompt, output_a, output_b)
    SELECT seq, prompt, output_a, output_b FROM items;
"#,
];

/// How long a claim on the item an annotator has on screen lasts without a decision. A claim of
/// an annotator who walked away (or whose terminal died) stops holding the item back after this.
pub const CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);

/// One output shown to the expert.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The text.
    pub text: String,
    /// Which model wrote it, when known.
    pub model: Option<String>,
}

/// One thing to review: a prompt and up to two candidate outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Content id (prompt and conversation).
    pub id: String,
    /// Position in import order (the `file` queue order).
    pub seq: i64,
    /// The prompt as text.
    pub prompt: String,
    /// The conversation before the answer.
    pub messages: Vec<Message>,
    /// Candidate A (the first output seen for the prompt), when there is one.
    pub a: Option<Candidate>,
    /// Candidate B (a second, different output for the same prompt).
    pub b: Option<Candidate>,
    /// The gold answer, when the set has one.
    pub reference: Option<String>,
    /// Mean logprob of the teacher's tokens.
    pub logprob: Option<f64>,
    /// Mean entropy of the teacher's distribution.
    pub entropy: Option<f64>,
    /// Teacher–student disagreement.
    pub disagreement: Option<f64>,
}

impl Item {
    /// An item for `messages` (the prompt's content id), without candidates yet.
    pub fn new(prompt: String, messages: Vec<Message>) -> Item {
        let mut h = IdHasher::new("item");
        h.part(&prompt);
        for m in &messages {
            h.part(&m.role);
            h.part(&m.content);
        }
        Item {
            id: h.finish(),
            seq: 0,
            prompt,
            messages,
            a: None,
            b: None,
            reference: None,
            logprob: None,
            entropy: None,
            disagreement: None,
        }
    }

    /// The candidate a decision applies to: the preferred one, else A.
    pub fn chosen(&self, preference: Option<Preference>) -> Option<&Candidate> {
        match preference {
            Some(Preference::B) => self.b.as_ref().or(self.a.as_ref()),
            _ => self.a.as_ref(),
        }
    }
}

/// What an expert decided on one item, before it is stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// Accept, reject, edit or skip.
    pub decision: Option<Decision>,
    /// 1 to 5.
    pub rating: Option<u8>,
    /// The expert's correction (for `edit`).
    pub corrected: Option<String>,
    /// A / B / tie, on an item with two candidates.
    pub preference: Option<Preference>,
    /// Free labels.
    pub labels: Vec<String>,
    /// A free comment.
    pub comment: Option<String>,
    /// Time spent on the item.
    pub duration_ms: u64,
}

impl Verdict {
    /// A verdict of `decision` alone.
    pub fn of(decision: Decision) -> Verdict {
        Verdict {
            decision: Some(decision),
            ..Verdict::default()
        }
    }
}

/// A stored decision and the event that holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The event's sequence number.
    pub event: i64,
    /// The decision.
    pub annotation: Annotation,
}

/// The ORDER BY of a queue `order`.
fn order_sql(order: QueueOrder) -> &'static str {
    match order {
        QueueOrder::Disagreement => "i.disagreement DESC, i.seq",
        QueueOrder::Entropy => "i.entropy DESC, i.seq",
        QueueOrder::File => "i.seq",
    }
}

/// Which items a listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Everything, in import order.
    All,
    /// Items this annotator decided this way, newest first.
    Decided(Decision),
    /// Items whose prompt or candidates contain a text.
    Search(String),
    /// Items where annotators disagree (two or more decisions of different kinds, skips aside):
    /// the review of conflicts.
    Conflicts,
}

/// Counts for the progress gauge and `annotate stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Items in the store.
    pub items: u64,
    /// Items with as many decisions (skips aside) as the overlap asks for.
    pub complete: u64,
    /// Items this annotator decided (skips aside).
    pub mine: u64,
}

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

    fn migrate(&mut self) -> Result<()> {
        let (tx, path) = self.immediate()?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| classify(path, "cannot read its version", e))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(Error::invalid(format!(
                "`{}` was written by a newer workbench (schema version {version}; this one knows {known})\n\nhint: upgrade the workbench",
                path.display()
            )));
        }
        if version == 0 {
            // A database someone else made (another program's tables) is not ours to change.
            let tables: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
                .map_err(|e| classify(path, "cannot read its schema", e))?;
            if tables > 0 {
                return Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    message: "it holds tables the workbench did not make".into(),
                });
            }
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)
                .map_err(|e| classify(path, &format!("migration {} failed", i + 1), e))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| classify(path, "cannot record its version", e))?;
        }
        tx.commit()
            .map_err(|e| classify(path, "cannot commit the migration", e))?;
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

    /// Adds items, in one transaction; items already present (same content id) are merged: a
    /// second, different output for the same prompt becomes candidate B. An item someone has
    /// decided on keeps the outputs they saw: a decision never comes to refer to text nobody was
    /// shown. Returns how many items were new.
    pub fn add_items(&mut self, items: impl IntoIterator<Item = Item>) -> Result<u64> {
        let (tx, path) = self.immediate()?;
        let e = |what: &'static str| move |err| classify(path, what, err);
        let mut added = 0u64;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO items (id, prompt, messages, output_a, model_a, output_b, model_b,
                         reference, logprob, entropy, disagreement)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (id) DO NOTHING",
                )
                .map_err(e("cannot prepare the import"))?;
            let mut second = tx
                .prepare_cached(
                    "UPDATE items SET output_b = ?2, model_b = ?3
                     WHERE id = ?1 AND output_b IS NULL AND output_a IS NOT NULL AND output_a != ?2
                       AND NOT EXISTS (SELECT 1 FROM events e WHERE e.item_id = ?1)",
                )
                .map_err(e("cannot prepare the import"))?;
            let mut first = tx
                .prepare_cached(
                    "UPDATE items SET output_a = ?2, model_a = ?3 WHERE id = ?1 AND output_a IS NULL
                       AND NOT EXISTS (SELECT 1 FROM events e WHERE e.item_id = ?1)",
                )
                .map_err(e("cannot prepare the import"))?;
            let mut unindex = tx
                .prepare_cached(
                    "DELETE FROM items_text WHERE rowid = (SELECT seq FROM items WHERE id = ?1)",
                )
                .map_err(e("cannot prepare the import"))?;
            let mut index = tx
                .prepare_cached(
                    "INSERT INTO items_text (rowid, prompt, output_a, output_b)
                     SELECT seq, prompt, output_a, output_b FROM items WHERE id = ?1",
                )
                .map_err(e("cannot prepare the import"))?;
            for item in items {
                let messages = serde_json::to_string(&item.messages)
                    .map_err(|err| Error::invalid(format!("cannot encode messages: {err}")))?;
                let n = insert
                    .execute(params![
                        item.id,
                        item.prompt,
                        messages,
                        item.a.as_ref().map(|c| &c.text),
                        item.a.as_ref().and_then(|c| c.model.as_ref()),
                        item.b.as_ref().map(|c| &c.text),
                        item.b.as_ref().and_then(|c| c.model.as_ref()),
                        item.reference,
                        item.logprob,
                        item.entropy,
                        item.disagreement,
                    ])
                    .map_err(e("cannot add an item"))?;
                added += n as u64;
                let mut changed = n > 0;
                if n == 0
                    && let Some(a) = &item.a
                {
                    let filled = first
                        .execute(params![item.id, a.text, a.model])
                        .map_err(e("cannot add an item"))?;
                    changed = filled > 0
                        || second
                            .execute(params![item.id, a.text, a.model])
                            .map_err(e("cannot add an item"))?
                            > 0;
                    if changed {
                        unindex
                            .execute([&item.id])
                            .map_err(e("cannot index an item"))?;
                    }
                }
                if changed {
                    index
                        .execute([&item.id])
                        .map_err(e("cannot index an item"))?;
                }
            }
        }
        tx.commit().map_err(e("cannot commit the import"))?;
        Ok(added)
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

    /// The item with content id `id`.
    pub fn item(&self, id: &str) -> Result<Option<Item>> {
        self.conn
            .query_row(
                &format!("SELECT {ITEM_COLUMNS} FROM items i WHERE i.id = ?1"),
                [id],
                item_from_row,
            )
            .optional()
            .map_err(self.err("cannot read an item"))
    }

    /// Records `verdict` by `annotator` on item `item_id` and returns its event number once the
    /// transaction is committed (and, with `synchronous=FULL`, on disk).
    pub fn decide(&mut self, item_id: &str, annotator: &str, verdict: &Verdict) -> Result<i64> {
        self.decide_at(item_id, annotator, verdict, now_micros())
    }

    /// [`Store::decide`] with an explicit time (microseconds since the epoch), for tests and
    /// imports of decisions made elsewhere.
    pub fn decide_at(
        &mut self,
        item_id: &str,
        annotator: &str,
        verdict: &Verdict,
        created_at: i64,
    ) -> Result<i64> {
        check_annotator(annotator)?;
        let decision = verdict.decision.ok_or_else(|| {
            Error::invalid("A decision needs one of accept, reject, edit or skip")
        })?;
        if let Some(r) = verdict.rating
            && !(1..=5).contains(&r)
        {
            return Err(Error::invalid(format!("A rating is 1 to 5, not {r}")));
        }
        if decision == Decision::Edit && verdict.corrected.is_none() {
            return Err(Error::invalid("An edit needs the corrected text"));
        }
        let labels = serde_json::to_string(&verdict.labels)
            .map_err(|e| Error::invalid(format!("cannot encode labels: {e}")))?;
        let (tx, path) = self.immediate()?;
        let e = |what: &'static str| move |err| classify(path, what, err);
        let exists: bool = tx
            .query_row("SELECT 1 FROM items WHERE id = ?1", [item_id], |_| Ok(true))
            .optional()
            .map_err(e("cannot read an item"))?
            .unwrap_or(false);
        if !exists {
            return Err(Error::invalid(format!(
                "No item `{item_id}` in `{}`",
                path.display()
            )));
        }
        tx.execute(
            "INSERT INTO events (kind, item_id, annotator, decision, rating, corrected, preference,
                 labels, comment, duration_ms, created_at)
             VALUES ('decide', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                item_id,
                annotator,
                decision.as_str(),
                verdict.rating,
                verdict.corrected,
                verdict.preference.map(Preference::as_str),
                labels,
                verdict.comment,
                verdict.duration_ms as i64,
                created_at,
            ],
        )
        .map_err(e("cannot record the decision"))?;
        let event = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO decisions (item_id, annotator, event, decision) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (item_id, annotator) DO UPDATE
                 SET event = excluded.event, decision = excluded.decision",
            params![item_id, annotator, event, decision.as_str()],
        )
        .map_err(e("cannot record the decision"))?;
        tx.execute(
            "DELETE FROM claims WHERE item_id = ?1 AND annotator = ?2",
            params![item_id, annotator],
        )
        .map_err(e("cannot release the claim"))?;
        tx.commit().map_err(e("cannot commit the decision"))?;
        Ok(event)
    }

    /// Claims item `item_id` for `annotator`, who is about to see it in their queue, unless the
    /// item is already spoken for: `overlap` other annotators have decided it (skips aside) or
    /// hold live claims on it. Checked and written in one IMMEDIATE transaction, so of two
    /// annotators who reach the same item at once, one gets it and the other is told to move on
    /// (`Ok(false)`). An annotator holds one claim at a time; it ends with their decision on the
    /// item, [`Store::release`], or [`CLAIM_LEASE`] after it was taken.
    pub fn claim(&mut self, item_id: &str, annotator: &str, overlap: u32) -> Result<bool> {
        self.claim_at(item_id, annotator, overlap, now_micros())
    }

    /// [`Store::claim`] at an explicit time (microseconds since the epoch), for tests.
    pub fn claim_at(
        &mut self,
        item_id: &str,
        annotator: &str,
        overlap: u32,
        now: i64,
    ) -> Result<bool> {
        check_annotator(annotator)?;
        let (tx, path) = self.immediate()?;
        let e = |what: &'static str| move |err| classify(path, what, err);
        let taken: i64 = tx
            .query_row(
                "SELECT (SELECT count(*) FROM decisions
                         WHERE item_id = ?1 AND annotator != ?2 AND decision != 'skip')
                      + (SELECT count(*) FROM claims
                         WHERE item_id = ?1 AND annotator != ?2 AND expires_at > ?3)",
                params![item_id, annotator, now],
                |r| r.get(0),
            )
            .map_err(e("cannot read the claims"))?;
        if taken >= i64::from(overlap) {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM claims WHERE annotator = ?1 OR expires_at <= ?2",
            params![annotator, now],
        )
        .map_err(e("cannot release old claims"))?;
        tx.execute(
            "INSERT INTO claims (item_id, annotator, expires_at) VALUES (?1, ?2, ?3)",
            params![item_id, annotator, now + CLAIM_LEASE.as_micros() as i64],
        )
        .map_err(e("cannot claim the item"))?;
        tx.commit().map_err(e("cannot commit the claim"))?;
        Ok(true)
    }

    /// Ends `annotator`'s claim (they quit): the item goes back to the others' queues.
    pub fn release(&mut self, annotator: &str) -> Result<()> {
        let (tx, path) = self.immediate()?;
        tx.execute("DELETE FROM claims WHERE annotator = ?1", [annotator])
            .map_err(|e| classify(path, "cannot release the claim", e))?;
        tx.commit()
            .map_err(|e| classify(path, "cannot commit the release", e))
    }

    /// Takes back `annotator`'s most recent decision that is still in force. Returns the item it
    /// was on, or `None` when there is nothing to undo.
    pub fn undo(&mut self, annotator: &str) -> Result<Option<String>> {
        check_annotator(annotator)?;
        let (tx, path) = self.immediate()?;
        let e = |what: &'static str| move |err| classify(path, what, err);
        let last: Option<(i64, String)> = tx
            .query_row(
                &format!("SELECT e.seq, e.item_id FROM events e {ACTIVE_DECIDE} AND e.annotator = ?1 ORDER BY e.seq DESC LIMIT 1"),
                [annotator],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(e("cannot find the last decision"))?;
        let Some((event, item_id)) = last else {
            return Ok(None);
        };
        tx.execute(
            "INSERT INTO events (kind, item_id, annotator, undoes, created_at)
             VALUES ('undo', ?1, ?2, ?3, ?4)",
            params![item_id, annotator, event, now_micros()],
        )
        .map_err(e("cannot record the undo"))?;
        // The decision in force is now the latest earlier one on the same item, if any.
        let previous: Option<(i64, String)> = tx
            .query_row(
                &format!(
                    "SELECT e.seq, e.decision FROM events e {ACTIVE_DECIDE}
                     AND e.annotator = ?1 AND e.item_id = ?2 ORDER BY e.seq DESC LIMIT 1"
                ),
                params![annotator, item_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(e("cannot find the previous decision"))?;
        match previous {
            Some((prev, decision)) => tx.execute(
                "UPDATE decisions SET event = ?3, decision = ?4 WHERE item_id = ?1 AND annotator = ?2",
                params![item_id, annotator, prev, decision],
            ),
            None => tx.execute(
                "DELETE FROM decisions WHERE item_id = ?1 AND annotator = ?2",
                params![item_id, annotator],
            ),
        }
        .map_err(e("cannot record the undo"))?;
        tx.commit().map_err(e("cannot commit the undo"))?;
        Ok(Some(item_id))
    }

    /// `annotator`'s decision in force on `item_id`.
    pub fn current(&self, item_id: &str, annotator: &str) -> Result<Option<Stored>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM decisions d JOIN events e ON e.seq = d.event
                     WHERE d.item_id = ?1 AND d.annotator = ?2"
                ),
                params![item_id, annotator],
                stored_from_row,
            )
            .optional()
            .map_err(self.err("cannot read a decision"))
    }

    /// Every annotator's decision in force on `item_id`, in event order.
    pub fn decisions_on(&self, item_id: &str) -> Result<Vec<Stored>> {
        self.stored_query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM decisions d JOIN events e ON e.seq = d.event
                 WHERE d.item_id = ?1 ORDER BY e.seq"
            ),
            [item_id],
            "cannot read decisions",
        )
    }

    /// Every decision in force (skips included), in event order.
    pub fn decisions(&self) -> Result<Vec<Stored>> {
        self.stored_query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM decisions d JOIN events e ON e.seq = d.event ORDER BY e.seq"
            ),
            [],
            "cannot read decisions",
        )
    }

    /// The decisions in force derived from the event log alone (not from the `decisions` table):
    /// for each item and annotator, the latest `decide` no `undo` has taken back.
    pub fn replay(&self) -> Result<Vec<Stored>> {
        self.stored_query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events e {ACTIVE_DECIDE}
                 AND e.seq = (SELECT max(f.seq) FROM events f
                     WHERE f.kind = 'decide' AND f.item_id = e.item_id AND f.annotator = e.annotator
                     AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = f.seq))
                 ORDER BY e.seq"
            ),
            [],
            "cannot replay the event log",
        )
    }

    fn stored_query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        what: &str,
    ) -> Result<Vec<Stored>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.err(what))?;
        stmt.query_map(params, stored_from_row)
            .map_err(self.err(what))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err(what))
    }

    /// The next items for `annotator` to review, best first: items they have not decided, that
    /// fewer than `overlap` annotators have decided; then the items they skipped, oldest skip
    /// first.
    pub fn queue(
        &self,
        annotator: &str,
        order: QueueOrder,
        overlap: u32,
        limit: usize,
    ) -> Result<Vec<Item>> {
        // Room on an item: decisions in force (skips aside) plus other annotators' live claims.
        let fresh = format!(
            "SELECT {ITEM_COLUMNS} FROM items i
             WHERE NOT EXISTS (SELECT 1 FROM decisions d WHERE d.item_id = i.id AND d.annotator = ?1)
               AND (SELECT count(*) FROM decisions d
                    WHERE d.item_id = i.id AND d.decision != 'skip')
                 + (SELECT count(*) FROM claims c
                    WHERE c.item_id = i.id AND c.annotator != ?1 AND c.expires_at > ?4) < ?2
             ORDER BY {} LIMIT ?3",
            order_sql(order)
        );
        let now = now_micros();
        let mut items = self.items_query(&fresh, params![annotator, overlap, limit as i64, now])?;
        if items.len() < limit {
            let skipped = format!(
                "SELECT {ITEM_COLUMNS} FROM decisions d JOIN items i ON i.id = d.item_id
                 WHERE d.annotator = ?1 AND d.decision = 'skip'
                   AND (SELECT count(*) FROM decisions o
                        WHERE o.item_id = i.id AND o.decision != 'skip')
                     + (SELECT count(*) FROM claims c
                        WHERE c.item_id = i.id AND c.annotator != ?1 AND c.expires_at > ?4) < ?2
                 ORDER BY d.event LIMIT ?3"
            );
            let more = (limit - items.len()) as i64;
            items.extend(self.items_query(&skipped, params![annotator, overlap, more, now])?);
        }
        Ok(items)
    }

    /// A page of items matching `filter` for `annotator`.
    pub fn list(
        &self,
        annotator: &str,
        filter: &Filter,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Item>> {
        let (offset, limit) = (offset as i64, limit as i64);
        match filter {
            Filter::All => self.items_query(
                &format!("SELECT {ITEM_COLUMNS} FROM items i ORDER BY i.seq LIMIT ?1 OFFSET ?2"),
                params![limit, offset],
            ),
            Filter::Decided(decision) => self.items_query(
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM decisions d JOIN items i ON i.id = d.item_id
                     WHERE d.annotator = ?1 AND d.decision = ?2
                     ORDER BY d.event DESC LIMIT ?3 OFFSET ?4"
                ),
                params![annotator, decision.as_str(), limit, offset],
            ),
            Filter::Conflicts => self.items_query(
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM items i WHERE i.id IN (
                         SELECT item_id FROM decisions WHERE decision != 'skip'
                         GROUP BY item_id HAVING count(DISTINCT decision) > 1)
                     ORDER BY i.seq LIMIT ?1 OFFSET ?2"
                ),
                params![limit, offset],
            ),
            // Three characters or more: the trigram index (case-insensitive like LIKE for
            // ASCII). Shorter: a scan, as a trigram index cannot answer it.
            Filter::Search(text) if text.chars().count() >= 3 => self.items_query(
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM (
                         SELECT rowid AS seq FROM items_text WHERE items_text MATCH ?1
                         ORDER BY rowid LIMIT ?2 OFFSET ?3) m
                     JOIN items i ON i.seq = m.seq
                     ORDER BY i.seq"
                ),
                params![fts_phrase(text), limit, offset],
            ),
            Filter::Search(text) => {
                let pattern = like_pattern(text);
                self.items_query(
                    &format!(
                        "SELECT {ITEM_COLUMNS} FROM items i
                         WHERE i.prompt LIKE ?1 ESCAPE '\\' OR i.output_a LIKE ?1 ESCAPE '\\'
                            OR i.output_b LIKE ?1 ESCAPE '\\'
                         ORDER BY i.seq LIMIT ?2 OFFSET ?3"
                    ),
                    params![pattern, limit, offset],
                )
            }
        }
    }

    /// How many items [`Store::list`] pages through for `annotator` and `filter`.
    pub fn count(&self, annotator: &str, filter: &Filter) -> Result<u64> {
        let (sql, params): (&str, Vec<String>) = match filter {
            Filter::All => ("SELECT count(*) FROM items", vec![]),
            Filter::Decided(decision) => (
                "SELECT count(*) FROM decisions WHERE annotator = ?1 AND decision = ?2",
                vec![annotator.to_string(), decision.as_str().to_string()],
            ),
            Filter::Conflicts => (
                "SELECT count(*) FROM (SELECT item_id FROM decisions WHERE decision != 'skip'
                 GROUP BY item_id HAVING count(DISTINCT decision) > 1)",
                vec![],
            ),
            Filter::Search(text) if text.chars().count() >= 3 => (
                "SELECT count(*) FROM items_text WHERE items_text MATCH ?1",
                vec![fts_phrase(text)],
            ),
            Filter::Search(text) => (
                "SELECT count(*) FROM items i
                 WHERE i.prompt LIKE ?1 ESCAPE '\\' OR i.output_a LIKE ?1 ESCAPE '\\'
                    OR i.output_b LIKE ?1 ESCAPE '\\'",
                vec![like_pattern(text)],
            ),
        };
        let n: i64 = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut stmt| {
                stmt.query_row(rusqlite::params_from_iter(params.iter()), |r| r.get(0))
            })
            .map_err(self.err("cannot count items"))?;
        Ok(n as u64)
    }

    fn items_query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Item>> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(self.err("cannot read items"))?;
        stmt.query_map(params, item_from_row)
            .map_err(self.err("cannot read items"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err("cannot read items"))
    }

    /// Progress counts for `annotator` with `overlap` annotators wanted per item.
    pub fn progress(&self, annotator: &str, overlap: u32) -> Result<Progress> {
        let items: i64 = self
            .conn
            .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
            .map_err(self.err("cannot count items"))?;
        let complete: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM (SELECT item_id FROM decisions WHERE decision != 'skip'
                 GROUP BY item_id HAVING count(*) >= ?1)",
                [overlap],
                |r| r.get(0),
            )
            .map_err(self.err("cannot count decisions"))?;
        let mine: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM decisions WHERE annotator = ?1 AND decision != 'skip'",
                [annotator],
                |r| r.get(0),
            )
            .map_err(self.err("cannot count decisions"))?;
        Ok(Progress {
            items: items as u64,
            complete: complete as u64,
            mine: mine as u64,
        })
    }

    /// The times (microseconds since the epoch) of every decision made (skips aside), per
    /// annotator, in order: what items/hour is measured on.
    pub fn decision_times(&self) -> Result<HashMap<String, Vec<i64>>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT annotator, created_at FROM events
                 WHERE kind = 'decide' AND decision != 'skip' ORDER BY seq",
            )
            .map_err(self.err("cannot read events"))?;
        let mut out: HashMap<String, Vec<i64>> = HashMap::new();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(self.err("cannot read events"))?;
        for row in rows {
            let (annotator, at) = row.map_err(self.err("cannot read events"))?;
            out.entry(annotator).or_default().push(at);
        }
        Ok(out)
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

/// `WHERE` clause of the decide events no undo has taken back (the table is aliased `e`).
const ACTIVE_DECIDE: &str = "WHERE e.kind = 'decide'
    AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.seq)";

const ITEM_COLUMNS: &str = "i.seq, i.id, i.prompt, i.messages, i.output_a, i.model_a, i.output_b,
    i.model_b, i.reference, i.logprob, i.entropy, i.disagreement";

const EVENT_COLUMNS: &str = "e.seq, e.item_id, e.annotator, e.decision, e.rating, e.corrected,
    e.preference, e.labels, e.comment, e.duration_ms, e.created_at";

fn item_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let messages: String = r.get(3)?;
    let candidate =
        |text: Option<String>, model: Option<String>| text.map(|text| Candidate { text, model });
    Ok(Item {
        seq: r.get(0)?,
        id: r.get(1)?,
        prompt: r.get(2)?,
        messages: serde_json::from_str(&messages).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        a: candidate(r.get(4)?, r.get(5)?),
        b: candidate(r.get(6)?, r.get(7)?),
        reference: r.get(8)?,
        logprob: r.get(9)?,
        entropy: r.get(10)?,
        disagreement: r.get(11)?,
    })
}

fn stored_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    let bad = |i: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::<dyn std::error::Error + Send + Sync>::from(what),
        )
    };
    let decision: String = r.get(3)?;
    let preference: Option<String> = r.get(6)?;
    let labels: String = r.get(7)?;
    Ok(Stored {
        event: r.get(0)?,
        annotation: Annotation {
            item_id: r.get(1)?,
            annotator: r.get(2)?,
            decision: Decision::parse(&decision)
                .ok_or_else(|| bad(3, format!("unknown decision `{decision}`")))?,
            rating: r.get::<_, Option<i64>>(4)?.map(|v| v as u8),
            corrected: r.get(5)?,
            preference: match preference {
                Some(p) => Some(
                    Preference::parse(&p)
                        .ok_or_else(|| bad(6, format!("unknown preference `{p}`")))?,
                ),
                None => None,
            },
            labels: serde_json::from_str(&labels).map_err(|e| bad(7, e.to_string()))?,
            comment: r.get(8)?,
            duration_ms: r.get::<_, i64>(9)? as u64,
            created_at: r.get(10)?,
        },
    })
}

/// `text` as an FTS5 phrase (matched as is by the trigram index).
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// A `LIKE … ESCAPE '\'` pattern matching `text` anywhere.
fn like_pattern(text: &str) -> String {
    format!(
        "%{}%",
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
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
