//! The event log as it is stored, and its move from one store to another (`workbench annotate
//! import-store`): SQLite to PostgreSQL and back, every event once.

use super::db::{Ctx, Fail, Row, Sql, values};
use super::decisions::ACTIVE_DECIDE;
use super::{Filter, Store};
use crate::error::{Error, Result};

/// One row of the event log, with its idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    /// Its number in the store it was read from.
    pub seq: i64,
    /// `decide` or `undo`.
    pub kind: String,
    pub item_id: String,
    pub annotator: String,
    pub decision: Option<String>,
    pub rating: Option<i64>,
    pub corrected: Option<String>,
    pub preference: Option<String>,
    /// The labels as stored (a JSON list).
    pub labels: String,
    pub comment: Option<String>,
    pub duration_ms: i64,
    /// The number (in the same store) of the decision an undo takes back.
    pub undoes: Option<i64>,
    pub created_at: i64,
    /// The event's idempotency key; events written before keys existed get one derived from
    /// their content and number, the same at every read.
    pub key: String,
}

const EVENTS_SQL: &str = "SELECT seq, kind, item_id, annotator, decision, rating, corrected,
    preference, labels, comment, duration_ms, undoes, created_at, key FROM events ORDER BY seq";

fn event_from_row(r: &Row) -> std::result::Result<LogEvent, super::db::DbError> {
    let mut e = LogEvent {
        seq: r.int(0)?,
        kind: r.text(1)?,
        item_id: r.text(2)?,
        annotator: r.text(3)?,
        decision: r.opt_text(4)?,
        rating: r.opt_int(5)?,
        corrected: r.opt_text(6)?,
        preference: r.opt_text(7)?,
        labels: r.text(8)?,
        comment: r.opt_text(9)?,
        duration_ms: r.int(10)?,
        undoes: r.opt_int(11)?,
        created_at: r.int(12)?,
        key: String::new(),
    };
    e.key = match r.opt_text(13)? {
        Some(k) => k,
        None => legacy_key(&e),
    };
    Ok(e)
}

/// A key for an event stored without one: a hash of everything it holds, its number included.
fn legacy_key(e: &LogEvent) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"workbench legacy event");
    for part in [
        e.seq.to_string().as_str(),
        &e.kind,
        &e.item_id,
        &e.annotator,
        e.decision.as_deref().unwrap_or("\0"),
        &e.rating.map_or("\0".into(), |r| r.to_string()),
        e.corrected.as_deref().unwrap_or("\0"),
        e.preference.as_deref().unwrap_or("\0"),
        &e.labels,
        e.comment.as_deref().unwrap_or("\0"),
        &e.duration_ms.to_string(),
        &e.undoes.map_or("\0".into(), |r| r.to_string()),
        &e.created_at.to_string(),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    format!("legacy-{}", &h.finalize().to_hex()[..32])
}

/// What a move of one store into another did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Moved {
    /// Items in the source.
    pub items: u64,
    /// Of those, new to the target.
    pub items_added: u64,
    /// Events in the source's log.
    pub events: u64,
    /// Of those, new to the target (the rest it had already, by key).
    pub events_added: u64,
}

impl Store {
    /// The whole event log, in order.
    pub fn events(&self) -> Result<Vec<LogEvent>> {
        let what = "cannot read the event log";
        self.read(|db| {
            db.rows(EVENTS_SQL, &[])
                .ctx(what)?
                .iter()
                .map(|r| event_from_row(r).ctx(what))
                .collect()
        })
    }

    /// Copies `from`'s items, meta values the target lacks, and event log into this store, in
    /// one transaction for the log: an event the target has already (by its key) is not added
    /// again, so a move repeated, or interrupted and run again, adds each event once. The
    /// decisions in force are then derived from the log again.
    pub fn import_store(&mut self, from: &Store) -> Result<Moved> {
        let items = from.list("", &Filter::All, 0, usize::MAX >> 1)?;
        let mut moved = Moved {
            items: items.len() as u64,
            ..Moved::default()
        };
        moved.items_added = self.add_items(items)?;
        for (key, value) in from.meta_all()? {
            if self.meta(&key)?.is_none() {
                self.set_meta(&key, &value)?;
            }
        }
        let events = from.events()?;
        moved.events = events.len() as u64;
        let source = from.path().display().to_string();
        moved.events_added = self.write(|tx| append(tx, &events, &source))?;
        Ok(moved)
    }

    /// Every meta value.
    pub(super) fn meta_all(&self) -> Result<Vec<(String, String)>> {
        let what = "cannot read meta";
        self.read(|db| {
            db.rows("SELECT key, value FROM meta ORDER BY key", &[])
                .ctx(what)?
                .iter()
                .map(|r| Ok((r.text(0).ctx(what)?, r.text(1).ctx(what)?)))
                .collect()
        })
    }
}

fn append(tx: &mut dyn Sql, events: &[LogEvent], source: &str) -> std::result::Result<u64, Fail> {
    let what = "cannot import an event";
    // The source's event numbers to the target's.
    let mut seq_of = std::collections::HashMap::<i64, i64>::new();
    let mut added = 0u64;
    // The target's keys as `Store::events` gives them (derived for events stored without one),
    // read inside the transaction.
    let mut have = std::collections::HashMap::<String, i64>::new();
    for r in tx.rows(EVENTS_SQL, &[]).ctx(what)? {
        let e = event_from_row(&r).ctx(what)?;
        have.insert(e.key, e.seq);
    }
    for e in events {
        if let Some(&seq) = have.get(&e.key) {
            seq_of.insert(e.seq, seq);
            continue;
        }
        if tx
            .row("SELECT 1 FROM items WHERE id = ?1", values![&e.item_id])
            .ctx(what)?
            .is_none()
        {
            return Err(Fail::Other(Error::invalid(format!(
                "Event {} of `{source}` is on item `{}`, which `{source}` does not hold: the store is damaged\n\nhint: nothing was imported; check the source with `workbench annotate stats`",
                e.seq, e.item_id
            ))));
        }
        let undoes = match e.undoes {
            Some(u) => Some(*seq_of.get(&u).ok_or_else(|| {
                Fail::Other(Error::invalid(format!(
                    "Event {} of `{source}` undoes event {u}, which comes after it or is missing: the store is damaged\n\nhint: nothing was imported",
                    e.seq
                )))
            })?),
            None => None,
        };
        let seq = tx
            .number(
                "INSERT INTO events (kind, item_id, annotator, decision, rating, corrected,
                     preference, labels, comment, duration_ms, undoes, created_at, key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 RETURNING seq",
                values![
                    &e.kind,
                    &e.item_id,
                    &e.annotator,
                    e.decision.as_ref(),
                    e.rating,
                    e.corrected.as_ref(),
                    e.preference.as_ref(),
                    &e.labels,
                    e.comment.as_ref(),
                    e.duration_ms,
                    undoes,
                    e.created_at,
                    &e.key,
                ],
            )
            .ctx(what)?
            .ok_or_else(|| Fail::Other(Error::invalid("an imported event got no number")))?;
        seq_of.insert(e.seq, seq);
        have.insert(e.key.clone(), seq);
        added += 1;
    }
    if added > 0 {
        // The state in force, derived from the whole log (as `Store::replay` does).
        tx.exec("DELETE FROM decisions", &[])
            .ctx("cannot derive the decisions")?;
        tx.exec(
            &format!(
                "INSERT INTO decisions (item_id, annotator, event, decision)
                 SELECT e.item_id, e.annotator, e.seq, e.decision FROM events e {ACTIVE_DECIDE}
                 AND e.seq = (SELECT max(f.seq) FROM events f
                     WHERE f.kind = 'decide' AND f.item_id = e.item_id AND f.annotator = e.annotator
                     AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = f.seq))"
            ),
            &[],
        )
        .ctx("cannot derive the decisions")?;
    }
    Ok(added)
}
