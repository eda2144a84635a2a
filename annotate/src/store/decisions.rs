//! Decisions: the append-only event log (`decide`, `undo`) and the state derived from it.

use std::collections::HashMap;

use datasets::{Annotation, Decision, Preference};
use rusqlite::{OptionalExtension, params};

use super::{Store, check_annotator, classify, now_micros};
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

pub(super) fn stored_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
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

impl Store {
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

    pub(super) fn stored_query(
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
}
