//! The review queue and the listings: what an annotator sees next, claims on the item on
//! screen, filters, search, progress.

use std::time::Duration;

use datasets::Decision;
use datasets::config::QueueOrder;
use rusqlite::params;

use super::items::{ITEM_COLUMNS, Item};
use super::{Store, check_annotator, classify, now_micros};
use crate::error::Result;

/// How long a claim on the item an annotator has on screen lasts without a decision. A claim of
/// an annotator who walked away (or whose terminal died) stops holding the item back after this.
pub const CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);

/// The ORDER BY of a queue `order`.
pub(super) fn order_sql(order: QueueOrder) -> &'static str {
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

/// `text` as an FTS5 phrase (matched as is by the trigram index).
pub(super) fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// A `LIKE … ESCAPE '\'` pattern matching `text` anywhere.
pub(super) fn like_pattern(text: &str) -> String {
    format!(
        "%{}%",
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

impl Store {
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
}
