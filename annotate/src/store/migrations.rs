//! The store's schema, as numbered migrations applied in order (`PRAGMA user_version` counts
//! them): a store made by an older workbench is brought up to date when it is opened.

use super::{Store, classify};
use crate::error::{Error, Result};

/// Schema migrations, in order. `PRAGMA user_version` counts how many have run; a new version
/// appends one, never edits one.
pub(super) const MIGRATIONS: &[&str] = &[
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

impl Store {
    pub(super) fn migrate(&mut self) -> Result<()> {
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
}
