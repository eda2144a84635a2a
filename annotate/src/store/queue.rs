//! The review queue and the listings: what an annotator sees next, claims on the item on
//! screen, filters, search, progress.

use std::time::Duration;

use datasets::Decision;
use datasets::config::QueueOrder;

use super::db::{Ctx, Fail, values};
use super::items::{ITEM_COLUMNS, Item};
use super::{Store, check_annotator, now_micros};
use crate::error::{Error, Result};

/// How long a claim on the item an annotator has on screen lasts without a decision. A claim of
/// an annotator who walked away (or whose terminal died) stops holding the item back after this.
pub const CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);

/// The meta key of the seed the `random` order shuffles with.
pub const QUEUE_SEED: &str = "queue_seed";

/// The ORDER BY of a queue `order`; `random` and `ranked` are ordered after the query (see
/// [`arrange`]).
/// PostgreSQL sorts NULL first in a descending order, SQLite last: `NULLS LAST` there gives
/// SQLite's order, through the index made for it.
pub(super) fn order_sql(order: QueueOrder, postgres: bool) -> &'static str {
    match (order, postgres) {
        (QueueOrder::Disagreement, false) => "i.disagreement DESC, i.seq",
        (QueueOrder::Disagreement, true) => "i.disagreement DESC NULLS LAST, i.seq",
        (QueueOrder::Entropy, false) => "i.entropy DESC, i.seq",
        (QueueOrder::Entropy, true) => "i.entropy DESC NULLS LAST, i.seq",
        (QueueOrder::File | QueueOrder::Random | QueueOrder::Ranked, _) => "i.seq",
    }
}

/// Whether an order is computed from the decisions made so far, so that it changes after each
/// one (a reviewer takes one item at a time from it).
pub fn is_live(order: QueueOrder) -> bool {
    order == QueueOrder::Ranked
}

/// The position of `id` in the shuffle of `seed`: a keyed hash, so the order is the same on
/// every machine and independent of import order.
fn shuffle_key(seed: u64, id: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"workbench queue shuffle");
    h.update(&seed.to_le_bytes());
    h.update(id.as_bytes());
    *h.finalize().as_bytes()
}

/// What the decisions so far say about one shape of prompt (see [`datasets::text::shape`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShapeTally {
    /// Decisions in force on items of this shape (skips aside).
    pub decided: u32,
    /// Of those, corrections and rejects: the output shown was wrong.
    pub wrong: u32,
    /// The numbers of each decided prompt (see [`numbers`]), to tell a near-duplicate.
    pub seen: Vec<Vec<String>>,
}

impl ShapeTally {
    /// The estimated chance that an output of this shape is wrong: corrections and rejects
    /// against accepts, starting from even odds (one of each counted in).
    pub fn wrong_rate(&self) -> f64 {
        (f64::from(self.wrong) + 1.0) / (f64::from(self.decided) + 2.0)
    }

    /// How new a prompt with these numbers is next to the decided ones: 1 less the largest
    /// share of numbers it has in place with one of them (1: nothing alike or no numbers; 0:
    /// the same numbers as a decided prompt).
    pub fn novelty(&self, numbers: &[String]) -> f64 {
        if numbers.is_empty() {
            return 1.0;
        }
        let most = self
            .seen
            .iter()
            .filter(|s| s.len() == numbers.len())
            .map(|s| s.iter().zip(numbers).filter(|(a, b)| a == b).count())
            .max()
            .unwrap_or(0);
        1.0 - most as f64 / numbers.len() as f64
    }
}

/// The runs of digits in `prompt`, in order: what tells apart prompts of one shape.
pub fn numbers(prompt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut run = String::new();
    for c in prompt.chars() {
        if c.is_numeric() {
            run.push(c);
        } else if !run.is_empty() {
            out.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// The ranked order's score of a shape: the wrong outputs it is expected to hold (the chance an
/// output of the shape is wrong times the items of the shape that wait: what a student that
/// learns the shape's answers stands to fix), over the square root of the decisions the shape
/// already had (each more teaches less).
pub fn shape_score(tally: &ShapeTally, waiting: usize) -> f64 {
    tally.wrong_rate() * waiting as f64 / (1.0 + f64::from(tally.decided)).sqrt()
}

/// The ranked order's score of an item within its shape: its novelty next to the decided
/// prompts of the shape (a near-duplicate of a decided item teaches little), times up to 1.5 for
/// its teacher–student disagreement (its rank among the waiting items, 0 to 1).
pub fn item_score(novelty: f64, disagreement_rank: f64) -> f64 {
    novelty * (1.0 + 0.5 * disagreement_rank)
}

/// Puts `items` (waiting for a reviewer) in the order `order` asks: `random` by the seeded
/// shuffle, `ranked` by [`shape_score`] then [`item_score`] given `tallies` per shape; other
/// orders as they are.
pub fn arrange(
    items: &mut Vec<Item>,
    order: QueueOrder,
    seed: u64,
    tallies: &std::collections::HashMap<String, ShapeTally>,
) {
    match order {
        QueueOrder::Random => items.sort_by_cached_key(|i| shuffle_key(seed, &i.id)),
        QueueOrder::Ranked => {
            let shapes: Vec<String> = items
                .iter()
                .map(|i| datasets::text::shape(&i.prompt))
                .collect();
            let mut waiting = std::collections::HashMap::<&str, usize>::new();
            for s in &shapes {
                *waiting.entry(s).or_default() += 1;
            }
            // Disagreement as a rank among the waiting items: its scale depends on the model.
            let mut by_disagreement: Vec<usize> = (0..items.len()).collect();
            let value = |i: usize| items[i].disagreement.or(items[i].entropy).unwrap_or(0.0);
            by_disagreement.sort_by(|&a, &b| value(a).total_cmp(&value(b)));
            let mut rank = vec![0.0; items.len()];
            let top = items.len().saturating_sub(1).max(1) as f64;
            for (r, &i) in by_disagreement.iter().enumerate() {
                rank[i] = r as f64 / top;
            }
            let none = ShapeTally::default();
            // The best shape first, and within it the best item.
            let scores: Vec<(f64, f64)> = (0..items.len())
                .map(|i| {
                    let tally = tallies.get(&shapes[i]).unwrap_or(&none);
                    let novelty = tally.novelty(&numbers(&items[i].prompt));
                    (
                        shape_score(tally, waiting[shapes[i].as_str()]),
                        item_score(novelty, rank[i]),
                    )
                })
                .collect();
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by(|&a, &b| {
                scores[b]
                    .0
                    .total_cmp(&scores[a].0)
                    .then(shapes[a].cmp(&shapes[b]))
                    .then(scores[b].1.total_cmp(&scores[a].1))
                    .then(items[a].seq.cmp(&items[b].seq))
            });
            let mut taken: Vec<Option<Item>> =
                std::mem::take(items).into_iter().map(Some).collect();
            items.extend(order.into_iter().filter_map(|i| taken[i].take()));
        }
        QueueOrder::Disagreement | QueueOrder::Entropy | QueueOrder::File => {}
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
        let postgres = self.is_postgres();
        self.write(|tx| {
            if postgres {
                // A claim is not a decision: one lost in a crash only lapses early, so its
                // commit need not wait for the disk (and holds the write lock the shorter).
                tx.batch("SET LOCAL synchronous_commit = off")
                    .ctx("cannot claim the item")?;
            }
            let taken = tx
                .number(
                    "SELECT (SELECT count(*) FROM decisions
                             WHERE item_id = ?1 AND annotator != ?2 AND decision != 'skip')
                          + (SELECT count(*) FROM claims
                             WHERE item_id = ?1 AND annotator != ?2 AND expires_at > ?3)",
                    values![item_id, annotator, now],
                )
                .ctx("cannot read the claims")?
                .unwrap_or(0);
            if taken >= i64::from(overlap) {
                return Ok(false);
            }
            tx.exec(
                "DELETE FROM claims WHERE annotator = ?1 OR expires_at <= ?2",
                values![annotator, now],
            )
            .ctx("cannot release old claims")?;
            // ON CONFLICT: the same claim again (a retry after a lost connection) is one claim.
            tx.exec(
                "INSERT INTO claims (item_id, annotator, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (item_id, annotator) DO UPDATE SET expires_at = excluded.expires_at",
                values![item_id, annotator, now + CLAIM_LEASE.as_micros() as i64],
            )
            .ctx("cannot claim the item")?;
            Ok::<_, Fail>(true)
        })
    }

    /// Ends `annotator`'s claim (they quit): the item goes back to the others' queues.
    pub fn release(&mut self, annotator: &str) -> Result<()> {
        let postgres = self.is_postgres();
        self.write(|tx| {
            if postgres {
                tx.batch("SET LOCAL synchronous_commit = off")
                    .ctx("cannot release the claim")?;
            }
            tx.exec(
                "DELETE FROM claims WHERE annotator = ?1",
                values![annotator],
            )
            .ctx("cannot release the claim")?;
            Ok(())
        })
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
            order_sql(order, self.is_postgres())
        );
        let now = now_micros();
        let mut items = if matches!(order, QueueOrder::Random | QueueOrder::Ranked) {
            // Ordered here, over every waiting item.
            let mut all = self.items_query(&fresh, values![annotator, overlap, i64::MAX, now])?;
            let seed = self.queue_seed()?;
            let tallies = if order == QueueOrder::Ranked {
                self.shape_tallies()?
            } else {
                Default::default()
            };
            arrange(&mut all, order, seed, &tallies);
            all.truncate(limit);
            all
        } else {
            self.items_query(&fresh, values![annotator, overlap, limit as i64, now])?
        };
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
            items.extend(self.items_query(&skipped, values![annotator, overlap, more, now])?);
        }
        Ok(items)
    }

    /// The seed of the `random` order: the meta value [`QUEUE_SEED`] (a run's import sets it to
    /// `run.seed`), 0 without one.
    pub fn queue_seed(&self) -> Result<u64> {
        let Some(v) = self.meta(QUEUE_SEED)? else {
            return Ok(0);
        };
        v.parse().map_err(|_| {
            Error::invalid(format!(
                "The annotation database `{}` holds a queue seed that is not a number ({v:?})\n\n\
                 hint: set it again by importing the run (`workbench annotate RUN`)",
                self.path.display()
            ))
        })
    }

    /// Decisions in force (skips aside, every annotator) per shape of prompt.
    pub fn shape_tallies(&self) -> Result<std::collections::HashMap<String, ShapeTally>> {
        let what = "cannot read decisions";
        let rows = self.read(|db| {
            db.rows(
                "SELECT i.prompt, d.decision FROM decisions d JOIN items i ON i.id = d.item_id
                 WHERE d.decision != 'skip'",
                &[],
            )
            .ctx(what)?
            .iter()
            .map(|r| Ok((r.text(0).ctx(what)?, r.text(1).ctx(what)?)))
            .collect::<std::result::Result<Vec<_>, Fail>>()
        })?;
        let mut tallies = std::collections::HashMap::<String, ShapeTally>::new();
        for (prompt, decision) in rows {
            let t = tallies.entry(datasets::text::shape(&prompt)).or_default();
            t.decided += 1;
            t.seen.push(numbers(&prompt));
            if decision != Decision::Accept.as_str() {
                t.wrong += 1;
            }
        }
        Ok(tallies)
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
                values![limit, offset],
            ),
            Filter::Decided(decision) => self.items_query(
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM decisions d JOIN items i ON i.id = d.item_id
                     WHERE d.annotator = ?1 AND d.decision = ?2
                     ORDER BY d.event DESC LIMIT ?3 OFFSET ?4"
                ),
                values![annotator, decision.as_str(), limit, offset],
            ),
            Filter::Conflicts => self.items_query(
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM items i WHERE i.id IN (
                         SELECT item_id FROM decisions WHERE decision != 'skip'
                         GROUP BY item_id HAVING count(DISTINCT decision) > 1)
                     ORDER BY i.seq LIMIT ?1 OFFSET ?2"
                ),
                values![limit, offset],
            ),
            // Three characters or more: the trigram index (case-insensitive like LIKE for
            // ASCII). Shorter, or on PostgreSQL: a scan, as a trigram index cannot answer it.
            Filter::Search(text) if text.chars().count() >= 3 && !self.is_postgres() => self
                .items_query(
                    &format!(
                        "SELECT {ITEM_COLUMNS} FROM (
                         SELECT rowid AS seq FROM items_text WHERE items_text MATCH ?1
                         ORDER BY rowid LIMIT ?2 OFFSET ?3) m
                     JOIN items i ON i.seq = m.seq
                     ORDER BY i.seq"
                    ),
                    values![fts_phrase(text), limit, offset],
                ),
            Filter::Search(text) => self.items_query(
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM items i WHERE {} ORDER BY i.seq LIMIT ?2 OFFSET ?3",
                    self.like_clause()
                ),
                values![like_pattern(text), limit, offset],
            ),
        }
    }

    /// Items whose prompt or candidates contain the pattern `?1` (case-insensitive: SQLite's
    /// LIKE is for ASCII, PostgreSQL's ILIKE for every letter).
    fn like_clause(&self) -> &'static str {
        if self.is_postgres() {
            "i.prompt ILIKE ?1 ESCAPE '\\' OR i.output_a ILIKE ?1 ESCAPE '\\'
             OR i.output_b ILIKE ?1 ESCAPE '\\'"
        } else {
            "i.prompt LIKE ?1 ESCAPE '\\' OR i.output_a LIKE ?1 ESCAPE '\\'
             OR i.output_b LIKE ?1 ESCAPE '\\'"
        }
    }

    /// How many items [`Store::list`] pages through for `annotator` and `filter`.
    pub fn count(&self, annotator: &str, filter: &Filter) -> Result<u64> {
        let like = format!("SELECT count(*) FROM items i WHERE {}", self.like_clause());
        let (sql, params): (&str, Vec<super::db::Value>) = match filter {
            Filter::All => ("SELECT count(*) FROM items", vec![]),
            Filter::Decided(decision) => (
                "SELECT count(*) FROM decisions WHERE annotator = ?1 AND decision = ?2",
                vec![annotator.into(), decision.as_str().into()],
            ),
            Filter::Conflicts => (
                "SELECT count(*) FROM (SELECT item_id FROM decisions WHERE decision != 'skip'
                 GROUP BY item_id HAVING count(DISTINCT decision) > 1) c",
                vec![],
            ),
            Filter::Search(text) if text.chars().count() >= 3 && !self.is_postgres() => (
                "SELECT count(*) FROM items_text WHERE items_text MATCH ?1",
                vec![fts_phrase(text).into()],
            ),
            Filter::Search(text) => (like.as_str(), vec![like_pattern(text).into()]),
        };
        self.count_query(sql, &params, "cannot count items")
    }

    fn count_query(&self, sql: &str, params: &[super::db::Value], what: &str) -> Result<u64> {
        self.read(|db| Ok(db.number(sql, params).ctx(what)?.unwrap_or(0) as u64))
    }

    /// Progress counts for `annotator` with `overlap` annotators wanted per item.
    pub fn progress(&self, annotator: &str, overlap: u32) -> Result<Progress> {
        Ok(Progress {
            items: self.count_query("SELECT count(*) FROM items", &[], "cannot count items")?,
            complete: self.count_query(
                "SELECT count(*) FROM (SELECT item_id FROM decisions WHERE decision != 'skip'
                 GROUP BY item_id HAVING count(*) >= ?1) c",
                values![overlap],
                "cannot count decisions",
            )?,
            mine: self.count_query(
                "SELECT count(*) FROM decisions WHERE annotator = ?1 AND decision != 'skip'",
                values![annotator],
                "cannot count decisions",
            )?,
        })
    }
}
