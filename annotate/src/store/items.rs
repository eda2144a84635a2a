//! Items: a prompt and the output(s) an expert decides on, keyed by content so an import is
//! idempotent.

use datasets::record::IdHasher;
use datasets::{Message, Preference};

use super::Store;
use super::db::{Ctx, DbError, Fail, Row, Value, values};
use crate::error::{Error, Result};

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

pub(super) const ITEM_COLUMNS: &str =
    "i.seq, i.id, i.prompt, i.messages, i.output_a, i.model_a, i.output_b,
    i.model_b, i.reference, i.logprob, i.entropy, i.disagreement";

pub(super) fn item_from_row(r: &Row) -> std::result::Result<Item, DbError> {
    let messages = r.text(3)?;
    let candidate =
        |text: Option<String>, model: Option<String>| text.map(|text| Candidate { text, model });
    Ok(Item {
        seq: r.int(0)?,
        id: r.text(1)?,
        prompt: r.text(2)?,
        messages: serde_json::from_str(&messages)
            .map_err(|e| DbError::Decode(format!("messages are not JSON: {e}")))?,
        a: candidate(r.opt_text(4)?, r.opt_text(5)?),
        b: candidate(r.opt_text(6)?, r.opt_text(7)?),
        reference: r.opt_text(8)?,
        logprob: r.opt_real(9)?,
        entropy: r.opt_real(10)?,
        disagreement: r.opt_real(11)?,
    })
}

impl Store {
    /// Adds items, in one transaction; items already present (same content id) are merged: a
    /// second, different output for the same prompt becomes candidate B. An item someone has
    /// decided on keeps the outputs they saw: a decision never comes to refer to text nobody was
    /// shown. Returns how many items were new.
    pub fn add_items(&mut self, items: impl IntoIterator<Item = Item>) -> Result<u64> {
        let items: Vec<(Item, String)> = items
            .into_iter()
            .map(|item| {
                serde_json::to_string(&item.messages)
                    .map(|m| (item, m))
                    .map_err(|err| Error::invalid(format!("cannot encode messages: {err}")))
            })
            .collect::<Result<_>>()?;
        // SQLite's search index (FTS5) is kept in step here; PostgreSQL searches by a scan.
        let fts = !self.is_postgres();
        self.write(|tx| {
            let e = "cannot add an item";
            let mut added = 0u64;
            for (item, messages) in &items {
                let n = tx
                    .exec(
                        "INSERT INTO items (id, prompt, messages, output_a, model_a, output_b, model_b,
                             reference, logprob, entropy, disagreement)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                         ON CONFLICT (id) DO NOTHING",
                        values![
                            &item.id,
                            &item.prompt,
                            messages,
                            item.a.as_ref().map(|c| &c.text),
                            item.a.as_ref().and_then(|c| c.model.as_ref()),
                            item.b.as_ref().map(|c| &c.text),
                            item.b.as_ref().and_then(|c| c.model.as_ref()),
                            item.reference.as_ref(),
                            item.logprob,
                            item.entropy,
                            item.disagreement,
                        ],
                    )
                    .ctx(e)?;
                added += n;
                let mut changed = n > 0;
                if n == 0
                    && let Some(a) = &item.a
                {
                    let params = values![&item.id, &a.text, a.model.as_ref()];
                    let filled = tx
                        .exec(
                            "UPDATE items SET output_a = ?2, model_a = ?3 WHERE id = ?1 AND output_a IS NULL
                               AND NOT EXISTS (SELECT 1 FROM events e WHERE e.item_id = ?1)",
                            params,
                        )
                        .ctx(e)?;
                    changed = filled > 0
                        || tx
                            .exec(
                                "UPDATE items SET output_b = ?2, model_b = ?3
                                 WHERE id = ?1 AND output_b IS NULL AND output_a IS NOT NULL AND output_a != ?2
                                   AND NOT EXISTS (SELECT 1 FROM events e WHERE e.item_id = ?1)",
                                params,
                            )
                            .ctx(e)?
                            > 0;
                    if changed && fts {
                        tx.exec(
                            "DELETE FROM items_text WHERE rowid = (SELECT seq FROM items WHERE id = ?1)",
                            values![&item.id],
                        )
                        .ctx("cannot index an item")?;
                    }
                }
                if changed && fts {
                    tx.exec(
                        "INSERT INTO items_text (rowid, prompt, output_a, output_b)
                         SELECT seq, prompt, output_a, output_b FROM items WHERE id = ?1",
                        values![&item.id],
                    )
                    .ctx("cannot index an item")?;
                }
            }
            Ok::<_, Fail>(added)
        })
    }

    /// The item with content id `id`.
    pub fn item(&self, id: &str) -> Result<Option<Item>> {
        Ok(self
            .items_query(
                &format!("SELECT {ITEM_COLUMNS} FROM items i WHERE i.id = ?1"),
                values![id],
            )?
            .into_iter()
            .next())
    }

    pub(super) fn items_query(&self, sql: &str, params: &[Value]) -> Result<Vec<Item>> {
        let what = "cannot read items";
        self.read(|db| {
            db.rows(sql, params)
                .ctx(what)?
                .iter()
                .map(|r| item_from_row(r).ctx(what))
                .collect()
        })
    }
}
