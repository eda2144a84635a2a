//! The store's schema, as numbered migrations applied in order, once: a store made by an older
//! workbench is brought up to date when it is opened. SQLite counts them in `PRAGMA
//! user_version`; PostgreSQL in the table `workbench_schema`, under the store's write lock so two
//! annotators who connect at once do not both migrate.

use super::Store;
use super::db::{Ctx, Fail, Sql, values};
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
    // 5: an idempotency key per event, so a decision sent again (after a lost connection, or by
    // `annotate import-store`) is recorded once.
    r#"
ALTER TABLE events ADD COLUMN key TEXT;
CREATE UNIQUE INDEX events_by_key ON events (key) WHERE key IS NOT NULL;
"#,
];

/// The same schema on PostgreSQL (search is a scan there, see `Store::list`).
pub(super) const PG_MIGRATIONS: &[&str] = &[r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE items (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    prompt       TEXT NOT NULL,
    messages     TEXT NOT NULL,
    output_a     TEXT,
    model_a      TEXT,
    output_b     TEXT,
    model_b      TEXT,
    reference    TEXT,
    logprob      DOUBLE PRECISION,
    entropy      DOUBLE PRECISION,
    disagreement DOUBLE PRECISION
);
CREATE INDEX items_by_disagreement ON items (disagreement DESC NULLS LAST, seq);
CREATE INDEX items_by_entropy ON items (entropy DESC NULLS LAST, seq);

CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('decide', 'undo')),
    item_id     TEXT NOT NULL,
    annotator   TEXT NOT NULL,
    decision    TEXT CHECK (decision IN ('accept', 'reject', 'edit', 'skip')),
    rating      BIGINT CHECK (rating BETWEEN 1 AND 5),
    corrected   TEXT,
    preference  TEXT CHECK (preference IN ('A', 'B', 'tie')),
    labels      TEXT NOT NULL DEFAULT '[]',
    comment     TEXT,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    undoes      BIGINT REFERENCES events (seq),
    created_at  BIGINT NOT NULL,
    key         TEXT,
    CHECK ((kind = 'decide') = (decision IS NOT NULL)),
    CHECK ((kind = 'undo') = (undoes IS NOT NULL))
);
CREATE INDEX events_by_annotator ON events (annotator, seq);
CREATE UNIQUE INDEX events_by_undone ON events (undoes) WHERE undoes IS NOT NULL;
CREATE INDEX events_by_item ON events (item_id, annotator, seq);
CREATE UNIQUE INDEX events_by_key ON events (key) WHERE key IS NOT NULL;
CREATE FUNCTION workbench_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'the event log is append-only'; END $$;
CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION workbench_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION workbench_append_only();

CREATE TABLE decisions (
    item_id   TEXT NOT NULL,
    annotator TEXT NOT NULL,
    event     BIGINT NOT NULL REFERENCES events (seq),
    decision  TEXT NOT NULL,
    PRIMARY KEY (item_id, annotator)
);
CREATE INDEX decisions_by_annotator ON decisions (annotator, decision, event);
CREATE INDEX decisions_by_item ON decisions (item_id, decision);

CREATE TABLE claims (
    item_id    TEXT NOT NULL,
    annotator  TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (item_id, annotator)
);
CREATE INDEX claims_by_annotator ON claims (annotator);
"#];

/// Search by substring through trigram indexes (`pg_trgm`, in the schema `public`), so `/`
/// answers at a million items without a scan. Made with the store when the server lets the user
/// create the extension; otherwise search scans, as it does for texts under three characters.
const PG_TRIGRAM: &str = r#"
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE INDEX items_prompt_trgm ON items USING gin (prompt public.gin_trgm_ops);
CREATE INDEX items_output_a_trgm ON items USING gin (output_a public.gin_trgm_ops);
CREATE INDEX items_output_b_trgm ON items USING gin (output_b public.gin_trgm_ops);
"#;

impl Store {
    pub(super) fn migrate(&mut self) -> Result<()> {
        let postgres = self.is_postgres();
        let path = self.path.display().to_string();
        let newer = |version: i64, known: i64| {
            Fail::Other(Error::invalid(format!(
                "`{path}` was written by a newer workbench (schema version {version}; this one knows {known})\n\nhint: upgrade the workbench"
            )))
        };
        let foreign = || {
            Fail::Other(Error::Corrupt {
                path: path.clone().into(),
                message: "it holds tables the workbench did not make".into(),
            })
        };
        self.write(|tx| {
            if postgres {
                migrate_postgres(tx, &newer, &foreign)
            } else {
                migrate_sqlite(tx, &newer, &foreign)
            }
        })
    }
}

fn migrate_sqlite(
    tx: &mut dyn Sql,
    newer: &dyn Fn(i64, i64) -> Fail,
    foreign: &dyn Fn() -> Fail,
) -> std::result::Result<(), Fail> {
    let version = tx
        .number("PRAGMA user_version", &[])
        .ctx("cannot read its version")?
        .unwrap_or(0);
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(newer(version, known));
    }
    if version == 0 {
        // A database someone else made (another program's tables) is not ours to change.
        let tables = tx
            .number("SELECT count(*) FROM sqlite_schema", &[])
            .ctx("cannot read its schema")?
            .unwrap_or(0);
        if tables > 0 {
            return Err(foreign());
        }
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch(sql).ctx(&format!("migration {} failed", i + 1))?;
        tx.batch(&format!("PRAGMA user_version = {}", i + 1))
            .ctx("cannot record its version")?;
    }
    Ok(())
}

fn migrate_postgres(
    tx: &mut dyn Sql,
    newer: &dyn Fn(i64, i64) -> Fail,
    foreign: &dyn Fn() -> Fail,
) -> std::result::Result<(), Fail> {
    let ours = tx
        .number(
            "SELECT count(*) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name = 'workbench_schema'",
            &[],
        )
        .ctx("cannot read its schema")?
        .unwrap_or(0);
    if ours == 0 {
        // A database (or schema) holding someone else's tables is not ours to change.
        let tables = tx
            .number(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
                &[],
            )
            .ctx("cannot read its schema")?
            .unwrap_or(0);
        if tables > 0 {
            return Err(foreign());
        }
        tx.batch("CREATE TABLE workbench_schema (version BIGINT NOT NULL)")
            .ctx("cannot create the schema table")?;
        tx.exec("INSERT INTO workbench_schema (version) VALUES (0)", &[])
            .ctx("cannot create the schema table")?;
    }
    let version = tx
        .number("SELECT max(version) FROM workbench_schema", &[])
        .ctx("cannot read its version")?
        .unwrap_or(0);
    let known = PG_MIGRATIONS.len() as i64;
    if version > known {
        return Err(newer(version, known));
    }
    for (i, sql) in PG_MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch(sql).ctx(&format!("migration {} failed", i + 1))?;
        if i == 0 {
            // The extension is the database's, not the schema's: stores made at once in two
            // schemas take turns here (a lock of the one-key space, apart from the stores').
            tx.batch("SELECT pg_advisory_xact_lock(8606395292590254947)")
                .ctx("migration 1 failed")?;
            tx.batch("SAVEPOINT trigram").ctx("migration 1 failed")?;
            if let Err(e) = tx.batch(PG_TRIGRAM) {
                tracing::warn!(
                    "the store's search will scan: the trigram indexes (pg_trgm) cannot be made ({e})"
                );
                tx.batch("ROLLBACK TO SAVEPOINT trigram")
                    .ctx("migration 1 failed")?;
            }
            tx.batch("RELEASE SAVEPOINT trigram")
                .ctx("migration 1 failed")?;
        }
        tx.exec(
            "UPDATE workbench_schema SET version = ?1",
            values![(i + 1) as i64],
        )
        .ctx("cannot record its version")?;
    }
    Ok(())
}
