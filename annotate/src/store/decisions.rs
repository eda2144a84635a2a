//! Decisions: the append-only event log (`decide`, `undo`) and the state derived from it.

use std::collections::HashMap;

use datasets::{Annotation, Decision, Preference};

use super::db::{Ctx, DbError, Fail, Row, values};
use super::{Store, check_annotator, now_micros};
use crate::error::{Error, Result};

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

/// `WHERE` clause of the decide events no undo has taken back (the table is aliased `e`).
pub(super) const ACTIVE_DECIDE: &str = "WHERE e.kind = 'decide'
    AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.seq)";

pub(super) const EVENT_COLUMNS: &str =
    "e.seq, e.item_id, e.annotator, e.decision, e.rating, e.corrected,
    e.preference, e.labels, e.comment, e.duration_ms, e.created_at";

pub(super) fn stored_from_row(r: &Row) -> std::result::Result<Stored, DbError> {
    let decision = r.text(3)?;
    let preference = r.opt_text(6)?;
    let labels = r.text(7)?;
    Ok(Stored {
        event: r.int(0)?,
        annotation: Annotation {
            item_id: r.text(1)?,
            annotator: r.text(2)?,
            decision: Decision::parse(&decision)
                .ok_or_else(|| DbError::Decode(format!("unknown decision `{decision}`")))?,
            rating: r.opt_int(4)?.map(|v| v as u8),
            corrected: r.opt_text(5)?,
            preference: match preference {
                Some(p) => Some(
                    Preference::parse(&p)
                        .ok_or_else(|| DbError::Decode(format!("unknown preference `{p}`")))?,
                ),
                None => None,
            },
            labels: serde_json::from_str(&labels)
                .map_err(|e| DbError::Decode(format!("labels are not a JSON list: {e}")))?,
            comment: r.opt_text(8)?,
            duration_ms: r.int(9)? as u64,
            created_at: r.int(10)?,
        },
    })
}

/// A new idempotency key: unique per process, time and call.
pub fn new_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(b"workbench event key");
    h.update(&std::process::id().to_le_bytes());
    h.update(&now_micros().to_le_bytes());
    h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    h.update(&nanos.to_le_bytes());
    h.update(format!("{:?}", std::thread::current().id()).as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

impl Store {
    /// Records `verdict` by `annotator` on item `item_id` and returns its event number once the
    /// transaction is committed (and, with `synchronous=FULL` or PostgreSQL's
    /// `synchronous_commit`, on disk).
    pub fn decide(&mut self, item_id: &str, annotator: &str, verdict: &Verdict) -> Result<i64> {
        self.decide_keyed(&new_key(), item_id, annotator, verdict, now_micros())
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
        self.decide_keyed(&new_key(), item_id, annotator, verdict, created_at)
    }

    /// [`Store::decide_at`] under an idempotency key: a decision sent again with the same key
    /// (after a lost connection, when it is not known whether the first one was committed) is
    /// recorded once, and its first event number is returned.
    pub fn decide_keyed(
        &mut self,
        key: &str,
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
        let path = self.path.display().to_string();
        self.write(|tx| {
            if let Some(event) = keyed_event(tx, key, item_id, annotator)? {
                return Ok(event);
            }
            if tx
                .row("SELECT 1 FROM items WHERE id = ?1", values![item_id])
                .ctx("cannot read an item")?
                .is_none()
            {
                return Err(Fail::Other(Error::invalid(format!(
                    "No item `{item_id}` in `{path}`"
                ))));
            }
            let event = tx
                .number(
                    "INSERT INTO events (kind, item_id, annotator, decision, rating, corrected,
                         preference, labels, comment, duration_ms, created_at, key)
                     VALUES ('decide', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     RETURNING seq",
                    values![
                        item_id,
                        annotator,
                        decision.as_str(),
                        verdict.rating.map(i64::from),
                        verdict.corrected.as_ref(),
                        verdict.preference.map(Preference::as_str),
                        &labels,
                        verdict.comment.as_ref(),
                        verdict.duration_ms as i64,
                        created_at,
                        key,
                    ],
                )
                .ctx("cannot record the decision")?
                .ok_or_else(|| Fail::Other(Error::invalid("the decision got no event number")))?;
            tx.exec(
                "INSERT INTO decisions (item_id, annotator, event, decision) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (item_id, annotator) DO UPDATE
                     SET event = excluded.event, decision = excluded.decision",
                values![item_id, annotator, event, decision.as_str()],
            )
            .ctx("cannot record the decision")?;
            tx.exec(
                "DELETE FROM claims WHERE item_id = ?1 AND annotator = ?2",
                values![item_id, annotator],
            )
            .ctx("cannot release the claim")?;
            Ok(event)
        })
    }

    /// Takes back `annotator`'s most recent decision that is still in force. Returns the item it
    /// was on, or `None` when there is nothing to undo.
    pub fn undo(&mut self, annotator: &str) -> Result<Option<String>> {
        self.undo_keyed(&new_key(), annotator)
    }

    /// [`Store::undo`] under an idempotency key: an undo sent again with the same key takes back
    /// one decision, not two.
    pub fn undo_keyed(&mut self, key: &str, annotator: &str) -> Result<Option<String>> {
        check_annotator(annotator)?;
        self.write(|tx| {
            if let Some(r) = tx
                .row(
                    "SELECT item_id, annotator, kind FROM events WHERE key = ?1",
                    values![key],
                )
                .ctx("cannot read the event log")?
            {
                let (item, by, kind) = (
                    r.text(0).ctx("cannot read the event log")?,
                    r.text(1).ctx("cannot read the event log")?,
                    r.text(2).ctx("cannot read the event log")?,
                );
                return if by == annotator && kind == "undo" {
                    Ok(Some(item))
                } else {
                    Err(Fail::Other(key_reused(key)))
                };
            }
            let last = tx
                .row(
                    &format!("SELECT e.seq, e.item_id FROM events e {ACTIVE_DECIDE} AND e.annotator = ?1 ORDER BY e.seq DESC LIMIT 1"),
                    values![annotator],
                )
                .ctx("cannot find the last decision")?;
            let Some(last) = last else {
                return Ok(None);
            };
            let (event, item_id) = (
                last.int(0).ctx("cannot find the last decision")?,
                last.text(1).ctx("cannot find the last decision")?,
            );
            tx.exec(
                "INSERT INTO events (kind, item_id, annotator, undoes, created_at, key)
                 VALUES ('undo', ?1, ?2, ?3, ?4, ?5)",
                values![&item_id, annotator, event, now_micros(), key],
            )
            .ctx("cannot record the undo")?;
            // The decision in force is now the latest earlier one on the same item, if any.
            let previous = tx
                .row(
                    &format!(
                        "SELECT e.seq, e.decision FROM events e {ACTIVE_DECIDE}
                         AND e.annotator = ?1 AND e.item_id = ?2 ORDER BY e.seq DESC LIMIT 1"
                    ),
                    values![annotator, &item_id],
                )
                .ctx("cannot find the previous decision")?;
            match previous {
                Some(p) => tx.exec(
                    "UPDATE decisions SET event = ?3, decision = ?4 WHERE item_id = ?1 AND annotator = ?2",
                    values![
                        &item_id,
                        annotator,
                        p.int(0).ctx("cannot find the previous decision")?,
                        p.text(1).ctx("cannot find the previous decision")?
                    ],
                ),
                None => tx.exec(
                    "DELETE FROM decisions WHERE item_id = ?1 AND annotator = ?2",
                    values![&item_id, annotator],
                ),
            }
            .ctx("cannot record the undo")?;
            Ok(Some(item_id))
        })
    }

    /// `annotator`'s decision in force on `item_id`.
    pub fn current(&self, item_id: &str, annotator: &str) -> Result<Option<Stored>> {
        Ok(self
            .stored_query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM decisions d JOIN events e ON e.seq = d.event
                     WHERE d.item_id = ?1 AND d.annotator = ?2"
                ),
                values![item_id, annotator],
                "cannot read a decision",
            )?
            .into_iter()
            .next())
    }

    /// Every annotator's decision in force on `item_id`, in event order.
    pub fn decisions_on(&self, item_id: &str) -> Result<Vec<Stored>> {
        self.stored_query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM decisions d JOIN events e ON e.seq = d.event
                 WHERE d.item_id = ?1 ORDER BY e.seq"
            ),
            values![item_id],
            "cannot read decisions",
        )
    }

    /// Every decision in force (skips included), in event order.
    pub fn decisions(&self) -> Result<Vec<Stored>> {
        self.stored_query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM decisions d JOIN events e ON e.seq = d.event ORDER BY e.seq"
            ),
            &[],
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
            &[],
            "cannot replay the event log",
        )
    }

    pub(super) fn stored_query(
        &self,
        sql: &str,
        params: &[super::db::Value],
        what: &str,
    ) -> Result<Vec<Stored>> {
        self.read(|db| {
            db.rows(sql, params)
                .ctx(what)?
                .iter()
                .map(|r| stored_from_row(r).ctx(what))
                .collect()
        })
    }

    /// The times (microseconds since the epoch) of every decision made (skips aside), per
    /// annotator, in order: what items/hour is measured on.
    pub fn decision_times(&self) -> Result<HashMap<String, Vec<i64>>> {
        let what = "cannot read events";
        self.read(|db| {
            let mut out: HashMap<String, Vec<i64>> = HashMap::new();
            for r in db
                .rows(
                    "SELECT annotator, created_at FROM events
                     WHERE kind = 'decide' AND decision != 'skip' ORDER BY seq",
                    &[],
                )
                .ctx(what)?
            {
                out.entry(r.text(0).ctx(what)?)
                    .or_default()
                    .push(r.int(1).ctx(what)?);
            }
            Ok(out)
        })
    }
}

/// The event recorded under `key`, if any; an error if it is not `annotator`'s decision on
/// `item_id` (a key is one decision's, never reused).
fn keyed_event(
    tx: &mut dyn super::db::Sql,
    key: &str,
    item_id: &str,
    annotator: &str,
) -> std::result::Result<Option<i64>, Fail> {
    let what = "cannot read the event log";
    let Some(r) = tx
        .row(
            "SELECT seq, item_id, annotator, kind FROM events WHERE key = ?1",
            values![key],
        )
        .ctx(what)?
    else {
        return Ok(None);
    };
    if r.text(1).ctx(what)? != item_id
        || r.text(2).ctx(what)? != annotator
        || r.text(3).ctx(what)? != "decide"
    {
        return Err(Fail::Other(key_reused(key)));
    }
    Ok(Some(r.int(0).ctx(what)?))
}

fn key_reused(key: &str) -> Error {
    Error::invalid(format!(
        "The idempotency key `{key}` already belongs to another event: a key is one decision's\n\nhint: make a new key for each decision (`annotate::store::new_key`)"
    ))
}
