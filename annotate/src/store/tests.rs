use std::collections::BTreeMap;

use proptest::prelude::*;

use super::migrations::MIGRATIONS;
use super::*;
use datasets::config::QueueOrder;
use datasets::{Annotation, Decision, Message};

fn item(prompt: &str, output: Option<&str>, disagreement: Option<f64>) -> Item {
    let mut item = Item::new(prompt.into(), vec![Message::new("user", prompt)]);
    item.a = output.map(|t| Candidate {
        text: t.into(),
        model: Some("teacher".into()),
    });
    item.disagreement = disagreement;
    item
}

/// Which database a test runs on: each test below runs on both (see [`on_both`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Backend {
    Sqlite,
    Postgres,
}

/// A new, empty store's place: a temporary directory, or a schema of its own on the test
/// PostgreSQL server (see [`testing`]).
pub(super) struct Fresh {
    _dir: Option<tempfile::TempDir>,
    _pg: Option<testing::TestDb>,
    pub(super) at: Location,
}

impl Fresh {
    /// `None` when the test is on PostgreSQL and no server is configured (outside CI).
    pub(super) fn new(b: Backend, name: &str) -> Option<Fresh> {
        match b {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let at = Location::File(dir.path().join(DB_FILE));
                Some(Fresh {
                    _dir: Some(dir),
                    _pg: None,
                    at,
                })
            }
            Backend::Postgres => {
                let db = testing::postgres(name)?;
                Some(Fresh {
                    at: Location::Postgres(db.url.clone()),
                    _dir: None,
                    _pg: Some(db),
                })
            }
        }
    }

    /// A connection to the store (a second one is a second annotator).
    pub(super) fn open(&self) -> Store {
        Store::open_at(&self.at, true).unwrap()
    }
}

/// Runs each named test `fn NAME(b: Backend)` as `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name(super::Backend::Postgres)
            }
        }
    )*};
}

on_both!(
    importing_the_same_items_twice_adds_nothing,
    a_second_output_for_a_prompt_becomes_candidate_b,
    a_decided_item_keeps_the_outputs_its_deciders_saw,
    the_random_order_is_seeded_and_reproducible,
    the_ranked_order_goes_where_experts_correct,
    decisions_undo_and_the_queue,
    undo_reveals_the_earlier_decision_on_the_same_item,
    bad_decisions_are_refused_and_change_nothing,
    the_event_log_is_append_only,
    search_and_filters,
    a_second_writer_waits_and_a_reader_never_blocks,
    a_claimed_item_leaves_the_others_queues_until_decided_released_or_expired,
    two_annotators_racing_through_one_queue_never_take_the_same_item_at_overlap_1,
    search_finds_what_a_scan_finds,
    a_decision_sent_twice_under_one_key_is_recorded_once,
    items_without_a_score_come_last_in_a_scored_order,
    the_store_equals_an_in_memory_model,
);

fn store_with(f: &Fresh, n: usize) -> (Store, Vec<String>) {
    let mut store = f.open();
    let items: Vec<Item> = (0..n)
        .map(|i| {
            item(
                &format!("prompt {i}"),
                Some(&format!("out {i}")),
                Some(i as f64),
            )
        })
        .collect();
    let ids = items.iter().map(|i| i.id.clone()).collect();
    assert_eq!(store.add_items(items).unwrap(), n as u64);
    (store, ids)
}

#[test]
fn the_store_is_wal_with_full_sync_and_migrated() {
    let f = Fresh::new(Backend::Sqlite, "wal").unwrap();
    let (store, _) = store_with(&f, 1);
    let Conn::Sqlite(conn) = &store.conn else {
        unreachable!()
    };
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 2, "FULL");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

fn importing_the_same_items_twice_adds_nothing(b: Backend) {
    let Some(f) = Fresh::new(b, "importing_the_same_items_twice_adds_nothing") else {
        return;
    };
    let (mut store, _) = store_with(&f, 5);
    let again: Vec<Item> = (0..5)
        .map(|i| item(&format!("prompt {i}"), Some(&format!("out {i}")), None))
        .collect();
    assert_eq!(store.add_items(again).unwrap(), 0);
    assert_eq!(store.progress("x", 1).unwrap().items, 5);
    let first = store.list("x", &Filter::All, 0, 1).unwrap().remove(0);
    assert!(
        first.b.is_none(),
        "the same output is not a second candidate"
    );
}

fn a_second_output_for_a_prompt_becomes_candidate_b(b: Backend) {
    let Some(f) = Fresh::new(b, "a_second_output_for_a_prompt_becomes_candidate_b") else {
        return;
    };
    let (mut store, ids) = store_with(&f, 2);
    let mut other = item("prompt 1", Some("another answer"), None);
    other.a.as_mut().unwrap().model = Some("student".into());
    assert_eq!(store.add_items([other]).unwrap(), 0);
    let it = store.item(&ids[1]).unwrap().unwrap();
    assert_eq!(it.a.unwrap().text, "out 1");
    let b = it.b.unwrap();
    assert_eq!(
        (b.text.as_str(), b.model.as_deref()),
        ("another answer", Some("student"))
    );
}

/// From a review: a later import filled in candidate A or B on an item that already had
/// decisions, so an old accept would have exported text nobody saw.
fn a_decided_item_keeps_the_outputs_its_deciders_saw(b: Backend) {
    let Some(f) = Fresh::new(b, "a_decided_item_keeps_the_outputs_its_deciders_saw") else {
        return;
    };
    let (mut store, _) = store_with(&f, 0);
    let bare = item("prompt only", None, None);
    let id = bare.id.clone();
    store.add_items([bare.clone()]).unwrap();
    store
        .decide(&id, "ana", &Verdict::of(Decision::Skip))
        .unwrap();
    store
        .add_items([item("prompt only", Some("late output"), None)])
        .unwrap();
    assert!(store.item(&id).unwrap().unwrap().a.is_none());
    // Undecided items still gain their outputs.
    let other = item("another", None, None);
    store.add_items([other.clone()]).unwrap();
    store.add_items([item("another", Some("o"), None)]).unwrap();
    assert_eq!(store.item(&other.id).unwrap().unwrap().a.unwrap().text, "o");
}

fn ids_of(q: &[Item]) -> Vec<String> {
    q.iter().map(|i| i.id.clone()).collect()
}

fn the_random_order_is_seeded_and_reproducible(b: Backend) {
    let Some(f) = Fresh::new(b, "the_random_order_is_seeded_and_reproducible") else {
        return;
    };
    let (store, ids) = store_with(&f, 40);
    let first = ids_of(&store.queue("ana", QueueOrder::Random, 1, 40).unwrap());
    assert_eq!(first.len(), 40);
    assert_ne!(first, ids, "shuffled, not in file order");
    // The same seed gives the same order, from a fresh connection too.
    drop(store);
    let mut store = Store::open_at(&f.at, false).unwrap();
    assert_eq!(
        ids_of(&store.queue("ana", QueueOrder::Random, 1, 40).unwrap()),
        first
    );
    // A page is the start of the whole order, and a decision takes its item out of it.
    assert_eq!(
        ids_of(&store.queue("ana", QueueOrder::Random, 1, 5).unwrap()),
        first[..5]
    );
    store
        .decide(&first[0], "ana", &Verdict::of(Decision::Accept))
        .unwrap();
    assert_eq!(
        ids_of(&store.queue("ana", QueueOrder::Random, 1, 4).unwrap()),
        first[1..5]
    );
    // Another seed, another order.
    crate::import::set_queue_seed(&mut store, 18).unwrap();
    assert_eq!(store.queue_seed().unwrap(), 18);
    let other = ids_of(&store.queue("ben", QueueOrder::Random, 2, 40).unwrap());
    assert_ne!(other, first);
    let mut sorted = other.clone();
    sorted.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(sorted, all, "every item once");
}

fn the_ranked_order_goes_where_experts_correct(b: Backend) {
    let Some(f) = Fresh::new(b, "the_ranked_order_goes_where_experts_correct") else {
        return;
    };
    let mut store = f.open();
    // Two kinds of prompt: slash dates (the larger group) and month names.
    let mut items = Vec::new();
    for i in 0..12 {
        items.push(item(
            &format!("Date: {}/{}/2021", i % 12 + 1, i + 1),
            Some("x"),
            Some(i as f64 / 100.0),
        ));
    }
    let months = [
        "March", "May", "June", "July", "Sept", "Oct", "Nov", "Dec", "Jan", "Feb",
    ];
    for (i, m) in months.iter().enumerate() {
        items.push(item(
            &format!("Date: {m} {}, {}", i + 1, 1990 + i),
            Some("x"),
            Some(1.0 + i as f64),
        ));
    }
    store.add_items(items).unwrap();
    // No decisions yet: the larger group first, its most disputed item first.
    let q = store.queue("ana", QueueOrder::Ranked, 1, 20).unwrap();
    assert_eq!(q[0].prompt, "Date: 12/12/2021");
    // The expert accepts it; the other group, untried, now goes first.
    store
        .decide(&q[0].id, "ana", &Verdict::of(Decision::Accept))
        .unwrap();
    let q = store.queue("ana", QueueOrder::Ranked, 1, 20).unwrap();
    assert!(q[0].prompt.contains("Feb"), "{}", q[0].prompt);
    // The expert corrects the month names: the budget stays there.
    for _ in 0..3 {
        let q = store.queue("ana", QueueOrder::Ranked, 1, 1).unwrap();
        assert!(!q[0].prompt.contains('/'), "{}", q[0].prompt);
        let v = Verdict {
            corrected: Some("fixed".into()),
            ..Verdict::of(Decision::Edit)
        };
        store.decide(&q[0].id, "ana", &v).unwrap();
    }
    let t = store.shape_tallies().unwrap();
    let months = &t[&datasets::text::shape("Date: May 1, 1999")];
    assert_eq!((months.decided, months.wrong), (3, 3));
    let slashes = &t[&datasets::text::shape("Date: 1/1/2021")];
    assert_eq!((slashes.decided, slashes.wrong), (1, 0));
    assert_eq!(slashes.seen, [numbers("Date: 12/12/2021")]);
    // A near-duplicate of a decided prompt is worth less than a new one.
    assert_eq!(slashes.novelty(&numbers("Date: 12/12/2021")), 0.0);
    assert!((slashes.novelty(&numbers("Date: 12/12/1999")) - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(slashes.novelty(&numbers("Date: 3/15/1999")), 1.0);
    assert_eq!(slashes.novelty(&[]), 1.0);
    let q = store.queue("ana", QueueOrder::Ranked, 1, 20).unwrap();
    assert!(!q[0].prompt.contains('/'));
    assert_eq!(q.len(), 18);
}

fn decisions_undo_and_the_queue(b: Backend) {
    let Some(f) = Fresh::new(b, "decisions_undo_and_the_queue") else {
        return;
    };
    let (mut store, ids) = store_with(&f, 4);
    // Highest disagreement first.
    let q = store.queue("ana", QueueOrder::Disagreement, 1, 10).unwrap();
    assert_eq!(
        q.iter().map(|i| &i.id).collect::<Vec<_>>(),
        ids.iter().rev().collect::<Vec<_>>()
    );
    store
        .decide(&ids[3], "ana", &Verdict::of(Decision::Accept))
        .unwrap();
    store
        .decide(&ids[2], "ana", &Verdict::of(Decision::Skip))
        .unwrap();
    let q = store.queue("ana", QueueOrder::Disagreement, 1, 10).unwrap();
    let order: Vec<&str> = q.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        order,
        [&ids[1], &ids[0], &ids[2]],
        "skipped items come last"
    );
    // Another annotator does not see what ana completed at overlap 1, and does at overlap 2.
    assert_eq!(
        store.queue("ben", QueueOrder::File, 1, 10).unwrap().len(),
        3
    );
    assert_eq!(
        store.queue("ben", QueueOrder::File, 2, 10).unwrap().len(),
        4
    );
    assert_eq!(store.undo("ana").unwrap().as_deref(), Some(ids[2].as_str()));
    assert!(store.current(&ids[2], "ana").unwrap().is_none());
    assert_eq!(store.undo("ana").unwrap().as_deref(), Some(ids[3].as_str()));
    assert_eq!(store.undo("ana").unwrap(), None);
    assert_eq!(
        store.queue("ana", QueueOrder::File, 1, 10).unwrap().len(),
        4
    );
}

fn undo_reveals_the_earlier_decision_on_the_same_item(b: Backend) {
    let Some(f) = Fresh::new(b, "undo_reveals_the_earlier_decision_on_the_same_item") else {
        return;
    };
    let (mut store, ids) = store_with(&f, 1);
    store
        .decide(&ids[0], "ana", &Verdict::of(Decision::Reject))
        .unwrap();
    let edit = Verdict {
        decision: Some(Decision::Edit),
        corrected: Some("fixed".into()),
        rating: Some(4),
        ..Verdict::default()
    };
    store.decide(&ids[0], "ana", &edit).unwrap();
    let now = store.current(&ids[0], "ana").unwrap().unwrap().annotation;
    assert_eq!(
        (now.decision, now.corrected.as_deref(), now.rating),
        (Decision::Edit, Some("fixed"), Some(4))
    );
    store.undo("ana").unwrap();
    let now = store.current(&ids[0], "ana").unwrap().unwrap().annotation;
    assert_eq!(now.decision, Decision::Reject);
}

fn bad_decisions_are_refused_and_change_nothing(b: Backend) {
    let Some(f) = Fresh::new(b, "bad_decisions_are_refused_and_change_nothing") else {
        return;
    };
    let (mut store, ids) = store_with(&f, 1);
    for (id, who, verdict) in [
        ("nope", "ana", Verdict::of(Decision::Accept)),
        (ids[0].as_str(), "", Verdict::of(Decision::Accept)),
        (ids[0].as_str(), "a\u{1b}[2J", Verdict::of(Decision::Accept)),
        (ids[0].as_str(), "ana", Verdict::of(Decision::Edit)),
        (
            ids[0].as_str(),
            "ana",
            Verdict {
                rating: Some(6),
                ..Verdict::of(Decision::Accept)
            },
        ),
        (ids[0].as_str(), "ana", Verdict::default()),
    ] {
        let e = store.decide(id, who, &verdict).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
    }
    assert!(store.decisions().unwrap().is_empty());
}

fn the_event_log_is_append_only(b: Backend) {
    let Some(f) = Fresh::new(b, "the_event_log_is_append_only") else {
        return;
    };
    let (mut store, ids) = store_with(&f, 1);
    store
        .decide(&ids[0], "ana", &Verdict::of(Decision::Accept))
        .unwrap();
    for sql in [
        "DELETE FROM events",
        "UPDATE events SET decision = 'reject'",
    ] {
        let e = store
            .write(|tx| tx.exec(sql, &[]).ctx("changing the log"))
            .unwrap_err();
        assert!(format!("{e:?}").contains("append-only"), "{sql}: {e:?}");
    }
    if b == Backend::Postgres {
        let e = store
            .write(|tx| {
                tx.exec("TRUNCATE events CASCADE", &[])
                    .ctx("changing the log")
            })
            .unwrap_err();
        assert!(format!("{e:?}").contains("append-only"), "{e:?}");
    }
    assert_eq!(store.decisions().unwrap().len(), 1);
}

fn search_and_filters(b: Backend) {
    let Some(f) = Fresh::new(b, "search_and_filters") else {
        return;
    };
    let (mut store, ids) = store_with(&f, 12);
    store
        .decide(&ids[5], "ana", &Verdict::of(Decision::Reject))
        .unwrap();
    let found = store
        .list("ana", &Filter::Search("prompt 1".into()), 0, 10)
        .unwrap();
    assert_eq!(found.len(), 3, "prompt 1, 10, 11");
    assert!(
        store
            .list("ana", &Filter::Search("100%_".into()), 0, 10)
            .unwrap()
            .is_empty()
    );
    let rejected = store
        .list("ana", &Filter::Decided(Decision::Reject), 0, 10)
        .unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].id, ids[5]);
    assert_eq!(store.list("ana", &Filter::All, 10, 10).unwrap().len(), 2);
    // ben accepts what ana rejected: a conflict; both accepting another is not.
    store
        .decide(&ids[5], "ben", &Verdict::of(Decision::Accept))
        .unwrap();
    store
        .decide(&ids[6], "ana", &Verdict::of(Decision::Accept))
        .unwrap();
    store
        .decide(&ids[6], "ben", &Verdict::of(Decision::Accept))
        .unwrap();
    let conflicts = store.list("ana", &Filter::Conflicts, 0, 10).unwrap();
    assert_eq!(
        conflicts.iter().map(|i| &i.id).collect::<Vec<_>>(),
        [&ids[5]]
    );
    let on = store.decisions_on(&ids[5]).unwrap();
    assert_eq!(
        on.iter()
            .map(|s| s.annotation.annotator.as_str())
            .collect::<Vec<_>>(),
        ["ana", "ben"]
    );
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    std::fs::write(
        &path,
        b"this is not sqlite, just some text long enough to be a header....",
    )
    .unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    assert!(
        e.to_string().contains("not a readable annotation database"),
        "{e}"
    );
    let e = Store::open_existing(dir.path().join("missing.db")).unwrap_err();
    assert!(e.is_bad_input());
}

fn a_second_writer_waits_and_a_reader_never_blocks(b: Backend) {
    let Some(f) = Fresh::new(b, "a_second_writer_waits_and_a_reader_never_blocks") else {
        return;
    };
    let (mut store, ids) = store_with(&f, 3);
    let mut other = f.open();
    store
        .decide(&ids[0], "ana", &Verdict::of(Decision::Accept))
        .unwrap();
    other
        .decide(&ids[1], "ben", &Verdict::of(Decision::Accept))
        .unwrap();
    assert_eq!(store.decisions().unwrap().len(), 2);
    assert_eq!(other.progress("ben", 1).unwrap().complete, 2);
}

fn a_claimed_item_leaves_the_others_queues_until_decided_released_or_expired(b: Backend) {
    let Some(f) = Fresh::new(
        b,
        "a_claimed_item_leaves_the_others_queues_until_decided_released_or_expired",
    ) else {
        return;
    };
    let (mut store, ids) = store_with(&f, 3);
    let top = |s: &Store, who: &str, overlap: u32| {
        s.queue(who, QueueOrder::Disagreement, overlap, 1).unwrap()[0]
            .id
            .clone()
    };
    // ana and ben start at once: both see the same top item; ana claims it first.
    assert_eq!(top(&store, "ana", 1), ids[2]);
    assert_eq!(top(&store, "ben", 1), ids[2]);
    assert!(store.claim(&ids[2], "ana", 1).unwrap());
    assert!(!store.claim(&ids[2], "ben", 1).unwrap(), "taken");
    assert_eq!(top(&store, "ben", 1), ids[1], "ben moves on");
    // At overlap 2 there is room for both.
    assert_eq!(top(&store, "ben", 2), ids[2]);
    assert!(store.claim(&ids[2], "ben", 2).unwrap());
    // One claim per annotator: ben's claim moved, so at overlap 1 ids[1] is his.
    assert!(store.claim(&ids[1], "ben", 1).unwrap());
    assert!(!store.claim(&ids[1], "cat", 1).unwrap());
    // A decision ends the claim and takes the item's room itself.
    store
        .decide(&ids[2], "ana", &Verdict::of(Decision::Accept))
        .unwrap();
    assert!(!store.claim(&ids[2], "cat", 1).unwrap(), "decided");
    // Quitting releases.
    store.release("ben").unwrap();
    assert!(store.claim(&ids[1], "cat", 1).unwrap());
    // A claim lapses after the lease.
    let later = now_micros() + CLAIM_LEASE.as_micros() as i64 + 1;
    assert!(store.claim_at(&ids[1], "dan", 1, later).unwrap());
    // A skip does not take the item's room.
    store
        .decide(&ids[0], "eve", &Verdict::of(Decision::Skip))
        .unwrap();
    assert!(store.claim(&ids[0], "fay", 1).unwrap());
}

fn two_annotators_racing_through_one_queue_never_take_the_same_item_at_overlap_1(b: Backend) {
    let Some(f) = Fresh::new(
        b,
        "two_annotators_racing_through_one_queue_never_take_the_same_item_at_overlap_1",
    ) else {
        return;
    };
    // Two connections (as two terminals) take the top of their queue, claim it, decide it;
    // without claims both would often decide the same item.
    let (_store, ids) = store_with(&f, 40);
    let worker = |who: &'static str| {
        let at = f.at.clone();
        std::thread::spawn(move || {
            let mut s = Store::open_at(&at, true).unwrap();
            let mut mine = Vec::new();
            loop {
                let q = s.queue(who, QueueOrder::Disagreement, 1, 1).unwrap();
                let Some(item) = q.first() else { break };
                if s.claim(&item.id, who, 1).unwrap() {
                    s.decide(&item.id, who, &Verdict::of(Decision::Accept))
                        .unwrap();
                    mine.push(item.id.clone());
                }
            }
            mine
        })
    };
    let (a, b) = (worker("ana"), worker("ben"));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let mut all: Vec<&String> = a.iter().chain(&b).collect();
    all.sort();
    let mut want: Vec<&String> = ids.iter().collect();
    want.sort();
    assert_eq!(all, want, "every item decided exactly once");
}

fn search_finds_what_a_scan_finds(b: Backend) {
    let Some(f) = Fresh::new(b, "search") else {
        return;
    };
    let mut store = f.open();
    let texts = [
        "The Quick brown fox",
        "a \"quoted\" answer",
        "50% off_sale",
        "naïve café",
        "quickly done",
        "fox",
    ];
    let items: Vec<Item> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| item(&format!("prompt {i}"), Some(t), None))
        .collect();
    store.add_items(items).unwrap();
    // A second output for prompt 5 becomes candidate B and is searchable too.
    store
        .add_items([item("prompt 5", Some("second fox answer"), None)])
        .unwrap();
    for query in [
        "quick",
        "QUICK",
        "fox",
        "\"quoted\"",
        "50%",
        "off_",
        "café",
        "prompt",
        "ompt 3",
        "zzz",
        "fox answer",
        "x",
        "qu",
    ] {
        let got: Vec<String> = store
            .list("ana", &Filter::Search(query.into()), 0, 100)
            .unwrap()
            .into_iter()
            .map(|i| i.prompt)
            .collect();
        let q = query.to_ascii_lowercase();
        let want: Vec<String> = (0..texts.len())
            .filter(|&i| {
                let b = if i == 5 { "second fox answer" } else { "" };
                [format!("prompt {i}"), texts[i].to_string(), b.to_string()]
                    .iter()
                    .any(|t| t.to_ascii_lowercase().contains(&q))
            })
            .map(|i| format!("prompt {i}"))
            .collect();
        assert_eq!(got, want, "search {query:?}");
    }
    // On SQLite, three characters or more go through the index, not a scan of `items`.
    let Conn::Sqlite(conn) = &store.conn else {
        return;
    };
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT i.seq FROM (
                 SELECT rowid AS seq FROM items_text WHERE items_text MATCH '\"fox\"'
                 ORDER BY rowid LIMIT 50 OFFSET 0) m
             JOIN items i ON i.seq = m.seq ORDER BY i.seq",
        )
        .unwrap()
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(
        plan.iter().any(|l| l.contains("VIRTUAL TABLE INDEX")),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|l| l.starts_with("SEARCH i USING INTEGER PRIMARY KEY")),
        "items are looked up by key, not scanned: {plan:?}"
    );
}

/// What the property test drives.
#[derive(Debug, Clone)]
enum Op {
    Decide {
        item: usize,
        who: usize,
        decision: Decision,
    },
    Undo {
        who: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let decision = prop_oneof![
        Just(Decision::Accept),
        Just(Decision::Reject),
        Just(Decision::Edit),
        Just(Decision::Skip)
    ];
    prop_oneof![
        3 => (0..6usize, 0..3usize, decision).prop_map(|(item, who, decision)| Op::Decide { item, who, decision }),
        1 => (0..3usize).prop_map(|who| Op::Undo { who }),
    ]
}

const WHO: [&str; 3] = ["ana", "ben", "chen"];

/// Random decide / undo sequences across annotators: the store's state equals an in-memory
/// model's, through the maintained table and through a replay of the log.
fn the_store_equals_an_in_memory_model(b: Backend) {
    let cases = if b == Backend::Postgres { 16 } else { 48 };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..60), |ops| {
            model_check(b, &ops)
        })
        .unwrap();
}

fn model_check(b: Backend, ops: &[Op]) -> Result<(), TestCaseError> {
    let Some(f) = Fresh::new(b, "model") else {
        return Ok(());
    };
    let (mut store, ids) = store_with(&f, 6);
    // The model: the event log as a list of (item, who, decision, undone).
    let mut log: Vec<(usize, usize, Decision, bool)> = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        match *op {
            Op::Decide {
                item,
                who,
                decision,
            } => {
                let verdict = Verdict {
                    corrected: (decision == Decision::Edit).then(|| format!("fix {n}")),
                    ..Verdict::of(decision)
                };
                store.decide(&ids[item], WHO[who], &verdict).unwrap();
                log.push((item, who, decision, false));
            }
            Op::Undo { who } => {
                let expected = log.iter().rposition(|e| e.1 == who && !e.3);
                let got = store.undo(WHO[who]).unwrap();
                prop_assert_eq!(got, expected.map(|i| ids[log[i].0].clone()));
                if let Some(i) = expected {
                    log[i].3 = true;
                }
            }
        }
    }
    let mut model: BTreeMap<(String, String), Decision> = BTreeMap::new();
    for (item, who, decision, undone) in &log {
        if !undone {
            model.insert((ids[*item].clone(), WHO[*who].to_string()), *decision);
        }
    }
    let as_map = |stored: Vec<Stored>| -> BTreeMap<(String, String), Decision> {
        stored
            .into_iter()
            .map(|s| {
                (
                    (s.annotation.item_id, s.annotation.annotator),
                    s.annotation.decision,
                )
            })
            .collect()
    };
    prop_assert_eq!(&as_map(store.decisions().unwrap()), &model);
    prop_assert_eq!(&as_map(store.replay().unwrap()), &model);
    for (w, who) in WHO.iter().enumerate() {
        let decided = model
            .iter()
            .filter(|((_, a), d)| a == who && **d != Decision::Skip)
            .count();
        prop_assert_eq!(store.progress(who, 1).unwrap().mine, decided as u64);
        let queue = store.queue(who, QueueOrder::File, 2, 100).unwrap();
        for it in &queue {
            let idx = ids.iter().position(|x| x == &it.id).unwrap();
            let mine = model.get(&(it.id.clone(), who.to_string()));
            prop_assert!(mine.is_none() || mine == Some(&Decision::Skip), "{w}");
            let others = model
                .iter()
                .filter(|((i, _), d)| i == &ids[idx] && **d != Decision::Skip)
                .count();
            prop_assert!(others < 2);
        }
    }
    Ok(())
}

fn a_decision_sent_twice_under_one_key_is_recorded_once(b: Backend) {
    let Some(f) = Fresh::new(b, "keyed") else {
        return;
    };
    let (mut store, ids) = store_with(&f, 2);
    let v = Verdict::of(Decision::Accept);
    let first = store.decide_keyed("k1", &ids[0], "ana", &v, 10).unwrap();
    // Sent again (the first reply was lost): the same event, nothing new.
    assert_eq!(
        store.decide_keyed("k1", &ids[0], "ana", &v, 11).unwrap(),
        first
    );
    // From a second connection too, as a restarted app would.
    let mut other = f.open();
    assert_eq!(
        other.decide_keyed("k1", &ids[0], "ana", &v, 12).unwrap(),
        first
    );
    assert_eq!(store.decisions().unwrap().len(), 1);
    // A key is one decision's: used for another item or annotator it is refused.
    for (item, who) in [(&ids[1], "ana"), (&ids[0], "ben")] {
        let e = store.decide_keyed("k1", item, who, &v, 13).unwrap_err();
        assert!(e.to_string().contains("already belongs"), "{e}");
    }
    // An undo under a key takes back one decision however often it is sent.
    store.decide_keyed("k2", &ids[1], "ana", &v, 14).unwrap();
    assert_eq!(
        store.undo_keyed("u1", "ana").unwrap().as_deref(),
        Some(ids[1].as_str())
    );
    assert_eq!(
        store.undo_keyed("u1", "ana").unwrap().as_deref(),
        Some(ids[1].as_str())
    );
    let left: Vec<String> = store
        .decisions()
        .unwrap()
        .into_iter()
        .map(|s| s.annotation.item_id)
        .collect();
    assert_eq!(left, [ids[0].clone()]);
}

#[test]
fn the_postgres_store_is_migrated_once_and_commits_synchronously() {
    let Some(db) = testing::postgres("migrated") else {
        return;
    };
    // Four annotators connect at once to an empty database: one migrates, none fails.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || Store::connect(&url).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let mut c = db.client();
    let versions: Vec<i64> = c
        .query("SELECT version FROM workbench_schema", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [super::migrations::PG_MIGRATIONS.len() as i64]);
    // Search goes through trigram indexes where the server has pg_trgm (the test server does).
    let trigram: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()
             AND indexname LIKE '%_trgm'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(trigram, 3);
    let store = Store::connect(&db.url).unwrap();
    assert!(store.is_postgres());
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let sync: String = store
        .read(|db| {
            db.row("SHOW synchronous_commit", &[])
                .ctx("reading")?
                .unwrap()
                .text(0)
                .ctx("reading")
        })
        .unwrap();
    assert_eq!(sync, "on");
}

#[test]
fn a_postgres_schema_with_other_tables_is_not_ours() {
    let Some(db) = testing::postgres("foreign") else {
        return;
    };
    db.client()
        .batch_execute("CREATE TABLE invoices (id BIGINT)")
        .unwrap();
    let e = Store::connect(&db.url).unwrap_err();
    assert!(e.to_string().contains("did not make"), "{e}");
}

#[test]
fn a_password_in_the_url_is_refused_and_never_shown() {
    let e = Store::connect("postgres://ana:s3cret@127.0.0.1:1/wb").unwrap_err();
    let text = e.to_string();
    assert!(e.is_bad_input(), "{text}");
    assert!(text.contains(PASSWORD_ENV), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert_eq!(
        redact("postgres://ana:s3cret@db:5432/wb"),
        "postgres://ana:***@db:5432/wb"
    );
    assert_eq!(redact("postgres://ana@db/wb"), "postgres://ana@db/wb");
    for (url, shown) in [
        ("postgres://ana:p@ss@db/wb", "postgres://ana:***@db/wb"),
        (
            "postgres://ana:a/b?c@db:5432/wb",
            "postgres://ana:***@db:5432/wb",
        ),
        (
            "postgres://ana@db/wb?password=s3cret&x=1",
            "postgres://ana@db/wb?password=***&x=1",
        ),
        ("postgress://ana:s3cret@db/wb", "postgress://ana:***@db/wb"),
    ] {
        assert_eq!(redact(url), shown);
        assert!(datasets::config::check_store_url(url).is_err(), "{url}");
    }
    let e = datasets::config::check_store_url("postgress://ana:s3cret@db/wb").unwrap_err();
    assert!(!e.contains("s3cret"), "{e}");
    // Nobody listens on port 1: one clear error, no panic.
    let e = Store::connect("postgres://ana@127.0.0.1:1/wb").unwrap_err();
    assert!(e.to_string().contains("cannot be reached"), "{e}");
}

#[test]
fn a_connection_killed_mid_decision_loses_nothing_and_duplicates_nothing() {
    let Some(db) = testing::postgres("killed") else {
        return;
    };
    // Its own application name, so the killer below reaches this test's connections only.
    let app = format!("wb_killed_{}", &new_key()[..8]);
    let mut store = Store::connect(&format!("{}&application_name={app}", db.url)).unwrap();
    let items: Vec<Item> = (0..30)
        .map(|i| item(&format!("prompt {i}"), Some("out"), None))
        .collect();
    let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    store.add_items(items).unwrap();
    let mut killer = db.client();
    for (n, id) in ids.iter().enumerate() {
        // Every third decision, the server ends this store's backend (as a restart or a
        // dropped network would) right before the decision is sent.
        if n % 3 == 0 {
            let pid = store.conn.pg().unwrap().backend_pid().unwrap();
            killer
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .unwrap();
        }
        store
            .decide(id, "ana", &Verdict::of(Decision::Accept))
            .unwrap();
    }
    assert_eq!(store.decisions().unwrap().len(), 30);
    let events: i64 = killer
        .query_one("SELECT count(*) FROM events", &[])
        .unwrap()
        .get(0);
    assert_eq!(events, 30, "none twice");
    // Killed at any moment, the commit itself included, by a second connection while decisions
    // go on: each acknowledged decision is there once (a commit whose reply was lost is found
    // again by its key).
    let more: Vec<Item> = (0..60)
        .map(|i| item(&format!("later {i}"), Some("out"), None))
        .collect();
    let more_ids: Vec<String> = more.iter().map(|i| i.id.clone()).collect();
    store.add_items(more).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kills = {
        let stop = stop.clone();
        let mut killer = db.client();
        std::thread::spawn(move || {
            let mut n = 0u32;
            let mut wait = 1u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // 20 to 80 ms apart: time for a reconnect (and a decision or two) in between,
                // even on a loaded machine.
                wait = (wait * 7 + 3) % 61;
                std::thread::sleep(std::time::Duration::from_millis(20 + wait));
                let rows = killer
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = $1",
                        &[&app],
                    )
                    .unwrap();
                n += rows.len() as u32;
            }
            n
        })
    };
    for id in &more_ids {
        store
            .decide(id, "ben", &Verdict::of(Decision::Reject))
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = kills.join().unwrap();
    assert!(kills > 0, "the killer never reached the store's connection");
    let events: i64 = db
        .client()
        .query_one("SELECT count(*) FROM events", &[])
        .unwrap()
        .get(0);
    assert_eq!(events, 90, "{kills} kills: every decision once");
    assert_eq!(store.replay().unwrap().len(), 90);
}

/// SQLite to PostgreSQL and back: every event once, the same decisions in force, and a move run
/// again adds nothing.
#[test]
fn a_store_moves_to_postgres_and_back_without_losing_or_duplicating_an_event() {
    let sqlite = Fresh::new(Backend::Sqlite, "from").unwrap();
    let Some(pg) = Fresh::new(Backend::Postgres, "moved") else {
        return;
    };
    let (mut from, ids) = store_with(&sqlite, 8);
    crate::import::set_queue_seed(&mut from, 7).unwrap();
    let edit = Verdict {
        corrected: Some("fixed, as typed  ".into()),
        rating: Some(2),
        labels: vec!["l1".into()],
        comment: Some("why".into()),
        duration_ms: 1234,
        ..Verdict::of(Decision::Edit)
    };
    from.decide(&ids[0], "ana", &edit).unwrap();
    from.decide(&ids[1], "ana", &Verdict::of(Decision::Reject))
        .unwrap();
    from.decide(&ids[1], "ben", &Verdict::of(Decision::Accept))
        .unwrap();
    from.decide(&ids[2], "ana", &Verdict::of(Decision::Skip))
        .unwrap();
    from.undo("ana").unwrap();
    from.decide(&ids[3], "ben", &Verdict::of(Decision::Accept))
        .unwrap();
    // An event written before keys existed (a store made by an older workbench).
    if let Conn::Sqlite(c) = &from.conn {
        c.execute(
            "INSERT INTO events (kind, item_id, annotator, decision, labels, created_at)
             VALUES ('decide', ?1, 'cat', 'accept', '[]', 5)",
            [&ids[4]],
        )
        .unwrap();
        c.execute(
            "INSERT INTO decisions (item_id, annotator, event, decision)
             VALUES (?1, 'cat', last_insert_rowid(), 'accept')",
            [&ids[4]],
        )
        .unwrap();
    }
    let strip =
        |s: Vec<Stored>| -> Vec<Annotation> { s.into_iter().map(|s| s.annotation).collect() };
    let keys =
        |s: &Store| -> Vec<String> { s.events().unwrap().into_iter().map(|e| e.key).collect() };

    let mut to = pg.open();
    let moved = to.import_store(&from).unwrap();
    assert_eq!(
        (
            moved.items,
            moved.items_added,
            moved.events,
            moved.events_added
        ),
        (8, 8, 7, 7)
    );
    assert_eq!(
        strip(to.decisions().unwrap()),
        strip(from.decisions().unwrap())
    );
    assert_eq!(strip(to.replay().unwrap()), strip(to.decisions().unwrap()));
    assert_eq!(keys(&to), keys(&from));
    assert_eq!(to.queue_seed().unwrap(), 7);
    // Again: nothing new.
    let again = to.import_store(&from).unwrap();
    assert_eq!((again.items_added, again.events_added), (0, 0));
    assert_eq!(to.events().unwrap().len(), 7);
    // New decisions on PostgreSQL, then back into the SQLite file: only those are added.
    to.decide(&ids[5], "dan", &Verdict::of(Decision::Accept))
        .unwrap();
    to.undo("ben").unwrap();
    let back = from.import_store(&to).unwrap();
    assert_eq!(
        (back.items_added, back.events, back.events_added),
        (0, 9, 2)
    );
    assert_eq!(
        strip(from.decisions().unwrap()),
        strip(to.decisions().unwrap())
    );
    assert_eq!(
        strip(from.replay().unwrap()),
        strip(from.decisions().unwrap())
    );
    assert_eq!(keys(&from), keys(&to));
}

fn items_without_a_score_come_last_in_a_scored_order(b: Backend) {
    let Some(f) = Fresh::new(b, "nulls") else {
        return;
    };
    let mut store = f.open();
    let mut none = item("no score", Some("o"), None);
    none.entropy = None;
    let mut low = item("low", Some("o"), Some(0.1));
    low.entropy = Some(0.1);
    let mut high = item("high", Some("o"), Some(0.9));
    high.entropy = Some(0.9);
    store.add_items([none, low, high]).unwrap();
    for order in [QueueOrder::Disagreement, QueueOrder::Entropy] {
        let q: Vec<String> = store
            .queue("ana", order, 1, 10)
            .unwrap()
            .into_iter()
            .map(|i| i.prompt)
            .collect();
        assert_eq!(q, ["high", "low", "no score"], "{order:?}");
    }
}
