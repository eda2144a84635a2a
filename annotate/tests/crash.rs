//! Crash test of the annotation store, on SQLite and on PostgreSQL: a scripted annotator process
//! is SIGKILLed at random moments across 2,000 decisions; every decision it had acknowledged is in
//! the database afterwards, none is there twice, the derived `decisions` table agrees with the
//! event log, and the integrity check says ok.
//!
//! The test binary is its own annotator: [`crash_child`] returns at once unless `CHILD_ENV` names
//! a database, in which case it decides items from the queue and prints one `ACK` line per
//! decision after [`Store::decide`] returned (the promise the app makes before it moves on). The
//! parent re-executes the binary with `--exact crash_child`, reads those lines on a thread, kills
//! the child after a pseudo-random delay, reopens the store and checks every acknowledgement.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use annotate::store::{Location, testing};
use annotate::{Candidate, Item, QueueOrder, Store, Verdict};
use datasets::{Decision, Message};

/// Names the store the child works on (a file or a PostgreSQL URL); absent, [`crash_child`] does
/// nothing.
const CHILD_ENV: &str = "WORKBENCH_CRASH_CHILD";
/// The child test's name, as `--exact` wants it.
const CHILD_TEST: &str = "crash_child";
const ANNOTATOR: &str = "crash-bot";
/// Items seeded: more than the decisions wanted, since undone and unacknowledged decisions also
/// take items, and a skipped item only comes back once the fresh ones run out.
const ITEMS: usize = 2_600;
/// Acknowledged decisions the test runs until.
const TARGET_ACKS: usize = 2_000;
/// An item with `seq % UNDO_EVERY == 0` has its first decision undone (once per child process).
const UNDO_EVERY: i64 = 23;

/// The decision the script makes on the item with import position `seq`; an item it skipped
/// before is accepted when it comes back, so the queue drains.
fn verdict_for(seq: i64, skipped_before: bool) -> Verdict {
    let decision = match (skipped_before, seq % 10) {
        (true, _) => Decision::Accept,
        (false, 0..=4) => Decision::Accept,
        (false, 5 | 6) => Decision::Reject,
        (false, 7 | 8) => Decision::Edit,
        (false, _) => Decision::Skip,
    };
    let mut verdict = Verdict::of(decision);
    if decision == Decision::Edit {
        verdict.corrected = Some(corrected_text(seq));
    }
    if seq % 3 == 0 {
        verdict.rating = Some((seq % 5 + 1) as u8);
        verdict.labels = vec!["crash".into(), format!("seq-{seq}")];
    }
    verdict.duration_ms = seq as u64;
    verdict
}

fn corrected_text(seq: i64) -> String {
    format!("the corrected answer to prompt {seq}, with ünïcödé and a\nsecond line")
}

/// Not a test of its own: the scripted annotator [`acknowledged_decisions_survive_sigkill`] runs
/// in a child process. It returns at once when `WORKBENCH_CRASH_CHILD` is not set.
#[test]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut store =
        Store::open_at(&Location::parse(&db), false).expect("the child opens the store");
    let mut undone: HashSet<String> = HashSet::new();
    let mut out = std::io::stdout().lock();
    loop {
        let Some(item) = store
            .queue(ANNOTATOR, QueueOrder::File, 1, 1)
            .expect("the child reads the queue")
            .pop()
        else {
            writeln!(out, "\nDONE").unwrap();
            out.flush().unwrap();
            return;
        };
        let skipped_before = store
            .current(&item.id, ANNOTATOR)
            .expect("the child reads its decision")
            .is_some_and(|s| s.annotation.decision == Decision::Skip);
        let verdict = verdict_for(item.seq, skipped_before);
        // `TRY` marks a decision in flight, so the parent can tell a kill inside `decide`.
        writeln!(out, "\nTRY {}", item.id).unwrap();
        out.flush().unwrap();
        let event = store
            .decide(&item.id, ANNOTATOR, &verdict)
            .expect("the child decides");
        let decision = verdict.decision.unwrap().as_str();
        writeln!(out, "\nACK {event} {} {decision}", item.id).unwrap();
        out.flush().unwrap();
        if item.seq % UNDO_EVERY == 0 && undone.insert(item.id.clone()) {
            let taken = store.undo(ANNOTATOR).expect("the child undoes");
            assert_eq!(taken.as_deref(), Some(item.id.as_str()));
            writeln!(out, "\nUNDO {}", item.id).unwrap();
            out.flush().unwrap();
        }
    }
}

/// One line the child printed.
#[derive(Debug, Clone)]
enum Line {
    Try(String),
    Ack {
        event: i64,
        item: String,
        decision: String,
    },
    Undo(String),
    Done,
}

fn parse(line: &str) -> Option<Line> {
    // The test harness's own output may share a line with ours; the markers find ours.
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| matches!(*w, "TRY" | "ACK" | "UNDO" | "DONE"))?;
    let w = &words[at..];
    match w {
        ["TRY", item] => Some(Line::Try(item.to_string())),
        ["ACK", event, item, decision] => Some(Line::Ack {
            event: event.parse().expect("an event number"),
            item: item.to_string(),
            decision: decision.to_string(),
        }),
        ["UNDO", item] => Some(Line::Undo(item.to_string())),
        ["DONE"] => Some(Line::Done),
        _ => panic!("a malformed line from the child: {line:?}"),
    }
}

/// One row of the event log, read straight from the table.
#[derive(Debug)]
struct Event {
    kind: String,
    item_id: String,
    annotator: String,
    decision: Option<String>,
    corrected: Option<String>,
    undoes: Option<i64>,
}

fn read_log(at: &Location) -> HashMap<i64, Event> {
    const SQL: &str =
        "SELECT seq, kind, item_id, annotator, decision, corrected, undoes FROM events";
    match at {
        Location::File(db) => read_sqlite_log(db, SQL),
        Location::Postgres(url) => {
            let mut config: postgres::Config = url.parse().expect("the test URL parses");
            if let Ok(p) = std::env::var("PGPASSWORD") {
                config.password(p);
            }
            let mut c = config
                .connect(postgres::NoTls)
                .expect("the log's server answers");
            c.query(SQL, &[])
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        Event {
                            kind: r.get(1),
                            item_id: r.get(2),
                            annotator: r.get(3),
                            decision: r.get(4),
                            corrected: r.get(5),
                            undoes: r.get(6),
                        },
                    )
                })
                .collect()
        }
    }
}

fn read_sqlite_log(db: &Path, sql: &str) -> HashMap<i64, Event> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the log opens read-only");
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            Event {
                kind: r.get(1)?,
                item_id: r.get(2)?,
                annotator: r.get(3)?,
                decision: r.get(4)?,
                corrected: r.get(5)?,
                undoes: r.get(6)?,
            },
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// Counts across the rounds, for the summary.
#[derive(Debug, Default)]
struct Tally {
    rounds: usize,
    kills: usize,
    acks: usize,
    undos: usize,
    /// Kills that landed inside `decide` (a `TRY` with no `ACK` after it) ...
    in_decide: usize,
    /// ... of which the decision had written its commit (it is in the log, never acknowledged).
    in_decide_committed: usize,
    /// Rounds whose check compared the `decisions` table with a replay of the log.
    replays: usize,
}

/// Reopens the store after a kill and checks every acknowledgement so far against it.
fn check(
    db: &Location,
    seq_of: &HashMap<String, i64>,
    acks: &[(i64, String, String)],
    undos: &HashMap<String, usize>,
    replay: bool,
) -> HashMap<i64, Event> {
    let store = Store::open_at(db, false).expect("the store reopens after a kill");
    assert_eq!(store.integrity_check().unwrap(), "ok");
    let decisions = store.decisions().unwrap();
    if replay {
        // Both are in event order, so equal vectors are equal sets.
        assert_eq!(
            decisions,
            store.replay().unwrap(),
            "the decisions table disagrees with the event log"
        );
    }
    let current: HashMap<&str, i64> = decisions
        .iter()
        .map(|s| (s.annotation.item_id.as_str(), s.event))
        .collect();
    let log = read_log(db);
    let undone: HashSet<i64> = log.values().filter_map(|e| e.undoes).collect();
    let mut latest_decide: HashMap<&str, i64> = HashMap::new();
    let mut undo_rows: HashMap<&str, usize> = HashMap::new();
    for (&seq, e) in &log {
        match e.kind.as_str() {
            "decide" => {
                let at = latest_decide.entry(e.item_id.as_str()).or_insert(seq);
                *at = (*at).max(seq);
            }
            _ => *undo_rows.entry(e.item_id.as_str()).or_default() += 1,
        }
    }
    for (event, item, decision) in acks {
        let e = log
            .get(event)
            .unwrap_or_else(|| panic!("acknowledged event {event} on {item} is not in the log"));
        assert_eq!(
            (e.kind.as_str(), e.item_id.as_str(), e.annotator.as_str()),
            ("decide", item.as_str(), ANNOTATOR),
            "event {event} is not the decision that was acknowledged"
        );
        assert_eq!(e.decision.as_deref(), Some(decision.as_str()));
        if decision == "edit" {
            assert_eq!(e.corrected, Some(corrected_text(seq_of[item])));
        }
        // In force, or taken back by an undo, or replaced by a later decision on the item.
        let in_force = current.get(item.as_str()) == Some(event);
        let superseded = latest_decide[item.as_str()] > *event;
        assert!(
            in_force || undone.contains(event) || superseded,
            "acknowledged event {event} on {item} is neither in force, undone nor superseded"
        );
    }
    for (item, &n) in undos {
        let stored = undo_rows.get(item.as_str()).copied().unwrap_or(0);
        assert!(
            stored >= n,
            "{n} undos acknowledged on {item}, {stored} in the log"
        );
    }
    log
}

/// A scripted annotator SIGKILLed at random moments across 2,000 decisions: every decision it
/// acknowledged is in the log (under the event number it was given) and in force unless undone or
/// replaced, no event number is handed out twice, the `decisions` table equals a replay of the
/// log, and `PRAGMA integrity_check` says ok after every kill.
#[test]
fn acknowledged_decisions_survive_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    survive_sigkill(&Location::File(dir.path().join(annotate::store::DB_FILE)));
}

/// The same on PostgreSQL: a killed child's connection ends mid-transaction (the server rolls it
/// back) or after its commit, never half-way.
#[test]
fn acknowledged_decisions_survive_sigkill_on_postgres() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let Some(pg) = testing::postgres("crash") else {
        return;
    };
    survive_sigkill(&Location::Postgres(pg.url.clone()));
}

fn survive_sigkill(db: &Location) {
    let started = Instant::now();
    let mut seq_of = HashMap::new();
    {
        let mut store = Store::open_at(db, true).unwrap();
        let items: Vec<Item> = (0..ITEMS)
            .map(|i| {
                let prompt = format!("prompt {i}: what is {i} squared?");
                let mut item = Item::new(prompt.clone(), vec![Message::new("user", prompt)]);
                item.a = Some(Candidate {
                    text: format!("{} is the answer", i * i),
                    model: Some("teacher".into()),
                });
                item
            })
            .collect();
        assert_eq!(store.add_items(items).unwrap(), ITEMS as u64);
        for item in store
            .list(ANNOTATOR, &annotate::Filter::All, 0, ITEMS)
            .unwrap()
        {
            seq_of.insert(item.id, item.seq);
        }
    }

    let exe = std::env::current_exe().unwrap();
    let mut rng = datasets::tasks::Rng::new(0x2545_F491_4F6C_DD1D);
    let mut acks: Vec<(i64, String, String)> = Vec::new();
    let mut undos: HashMap<String, usize> = HashMap::new();
    let mut tally = Tally::default();
    while acks.len() < TARGET_ACKS {
        tally.rounds += 1;
        assert!(
            tally.rounds <= 5_000,
            "no progress after {} rounds",
            tally.rounds
        );
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, db_spec(db))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the child starts");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let lines = thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut lines = Vec::new();
            let mut line = String::new();
            // Only whole lines count: a line cut by the kill was never acknowledged.
            while reader.read_line(&mut line).unwrap() > 0 {
                if line.ends_with('\n') {
                    lines.extend(parse(&line));
                }
                line.clear();
            }
            lines
        });
        let errors = thread::spawn(move || {
            let mut s = String::new();
            stderr.read_to_string(&mut s).unwrap();
            s
        });
        // A few ms (often before the store is open) to 100 ms (tens of decisions).
        thread::sleep(Duration::from_millis(2 + rng.below(99)));
        // SIGKILL on Unix; an error only means the child has already exited.
        let _ = child.kill();
        let status = child.wait().unwrap();
        let lines = lines.join().unwrap();
        let errors = errors.join().unwrap();
        let done = lines.iter().any(|l| matches!(l, Line::Done));
        match status.signal() {
            Some(9) => tally.kills += 1,
            _ => assert!(
                status.success() && done,
                "the child failed ({status}):\n{errors}"
            ),
        }
        assert!(!done, "the queue ran dry; seed more items");

        let mut in_flight = None;
        for line in lines {
            match line {
                Line::Try(item) => in_flight = Some(item),
                Line::Ack {
                    event,
                    item,
                    decision,
                } => {
                    assert_eq!(in_flight.take().as_ref(), Some(&item));
                    if let Some((last, _, _)) = acks.last() {
                        assert!(
                            event > *last,
                            "event {event} handed out after {last}: a number was reused"
                        );
                    }
                    acks.push((event, item, decision));
                }
                Line::Undo(item) => {
                    tally.undos += 1;
                    *undos.entry(item).or_default() += 1;
                }
                Line::Done => {}
            }
        }
        tally.acks = acks.len();
        // Replaying the log is quadratic in its length: every third round and the last one.
        let replay = tally.rounds % 3 == 0 || acks.len() >= TARGET_ACKS;
        tally.replays += usize::from(replay);
        let log = check(db, &seq_of, &acks, &undos, replay);
        if let Some(item) = in_flight {
            tally.in_decide += 1;
            let last_ack = acks.last().map_or(0, |a| a.0);
            let committed = log
                .iter()
                .any(|(&seq, e)| seq > last_ack && e.kind == "decide" && e.item_id == item);
            tally.in_decide_committed += usize::from(committed);
        }
    }

    let store = Store::open_at(db, false).unwrap();
    let log = read_log(db);
    eprintln!(
        "crash test on {}: {} rounds, {} SIGKILLs ({} inside decide, {} of them after its commit was \
         written), {} acknowledged decisions and {} undos, {} events in the log, {} decisions in \
         force, {} replays compared, {:.1} s",
        if store.is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        tally.rounds,
        tally.kills,
        tally.in_decide,
        tally.in_decide_committed,
        tally.acks,
        tally.undos,
        log.len(),
        store.decisions().unwrap().len(),
        tally.replays,
        started.elapsed().as_secs_f64()
    );
    assert!(
        tally.kills > 0,
        "no child was killed: the test proved nothing"
    );
}

/// What the child is told to open.
fn db_spec(at: &Location) -> String {
    match at {
        Location::File(p) => p.display().to_string(),
        Location::Postgres(url) => url.clone(),
    }
}
