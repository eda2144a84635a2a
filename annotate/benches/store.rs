//! The annotation store's latencies: decision → durable, undo, and the first frame on a store of a
//! million items.
//!
//! `cargo bench -p workbench-annotate --bench store [-- --items N] [--postgres-only]` (or
//! `ANNOTATE_BENCH_ITEMS=N`; the default is 1,000,000). The stores live on the real disk, under `CARGO_TARGET_TMPDIR`
//! (`target/tmp`) when cargo sets it, else the system temp directory, since a store on tmpfs would
//! time memory copies instead of fsyncs. Prints `FIGURE <name> <value> <unit>` lines:
//!
//! - `annotate_decide_p50`, `annotate_decide_p99`, `annotate_decide_max`: [`Store::decide`] on a
//!   store of 10,000 items, 2,000 times, each call returning once its transaction is fsynced;
//! - `annotate_undo_p50`, `annotate_undo_p99`: [`Store::undo`], 500 times;
//! - `annotate_insert_1m_items_per_s`: importing the items of the scale check, in batches;
//! - `annotate_search_1m_rare`, `_common`, `_none`: the first 50 matches of a search (`/` in the
//!   app) through the trigram index: one item's number, a word in most items, a text in none;
//! - `annotate_open_1m`, `annotate_open_1m_rss`: the terminal app's first frame on that store
//!   ([`Store::open_existing`], `App::new`, which loads the counts and a 50-item page of the queue
//!   by disagreement, and one draw into a `TestBackend`), in a fresh process so that the import's memory does not count (median time of 3 runs, largest
//!   peak RSS). The page cache is warm: the import has just written the file.
//!
//! With `WORKBENCH_PG_URL` set (`eval "$(scripts/postgres.sh start)"` makes a throwaway server on
//! loopback), the same on PostgreSQL, each in a schema of its own, with `pg_` after `annotate_`
//! in the figure names, and one more: `annotate_pg_decide4_p50` / `_p99` / `_max`, four
//! annotators deciding at once on four connections (claim, then decide, as the app does), each
//! call timed from its start to its commit's return.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use annotate::store::{Location, testing};
use annotate::{Candidate, Item, QueueOrder, Store, Verdict};
use datasets::tasks::Rng;
use datasets::{Decision, Message};

const ANNOTATOR: &str = "bench";
/// Items in the latency store.
const LATENCY_ITEMS: usize = 10_000;
/// Timed `decide` calls.
const DECIDES: usize = 2_000;
/// Timed `undo` calls.
const UNDOS: usize = 500;
/// Items per `add_items` call in the scale check.
const BATCH: usize = 10_000;
/// Decisions made on the scale store before it is reopened (a session being resumed).
const SCALE_DECISIONS: usize = 1_000;
/// Runs of the first-frame child.
const OPEN_RUNS: usize = 3;
/// The argument that makes this binary the first-frame child.
const CHILD_ARG: &str = "--open-child";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD_ARG) {
        open_child(&Location::parse(&args[1]));
        return;
    }
    let items = args
        .iter()
        .position(|a| a == "--items")
        .map(|i| args.get(i + 1).expect("--items N").clone())
        .or_else(|| std::env::var("ANNOTATE_BENCH_ITEMS").ok())
        .map_or(1_000_000, |n| {
            n.replace('_', "").parse().expect("an item count")
        });

    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_TMPDIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).unwrap();
    println!("stores under {}", base.display());

    fsync_baseline(&base);
    let postgres_only = args.iter().any(|a| a == "--postgres-only");
    if !postgres_only {
        sqlite(&base, items);
    }
    if std::env::var_os(testing::URL_ENV).is_none() {
        println!(
            "PostgreSQL: skipped ({} is not set; `eval \"$(scripts/postgres.sh start)\"` starts a throwaway server)",
            testing::URL_ENV
        );
        return;
    }
    let pg = testing::postgres("bench_decide").unwrap();
    decide_latency(&Location::Postgres(pg.url.clone()), "annotate_pg");
    drop(pg);
    let pg = testing::postgres("bench_decide4").unwrap();
    decide_concurrently(&Location::Postgres(pg.url.clone()), 4);
    drop(pg);
    let pg = testing::postgres("bench_scale").unwrap();
    scale(&Location::Postgres(pg.url.clone()), "annotate_pg", items);
}

fn sqlite(base: &Path, items: usize) {
    let dir = temp_dir(base, "annotate-decide-");
    decide_latency(
        &Location::File(dir.path().join(annotate::store::DB_FILE)),
        "annotate",
    );
    let dir = temp_dir(base, "annotate-scale-");
    scale(
        &Location::File(dir.path().join(annotate::store::DB_FILE)),
        "annotate",
        items,
    );
}

const WORDS: [&str; 16] = [
    "the", "date", "of", "invoice", "was", "March", "third", "twenty", "one", "please", "rewrite",
    "as", "ISO", "format", "thanks", "received",
];

fn text(rng: &mut Rng, words: usize) -> String {
    let mut s = String::with_capacity(words * 7);
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[(rng.below(16)) as usize]);
    }
    s
}

/// Item `i`: a 20-word prompt, a 60-word answer and scores, as a distillation run writes them.
fn item(rng: &mut Rng, i: usize) -> Item {
    let prompt = format!("{} #{i}", text(rng, 20));
    let mut item = Item::new(prompt.clone(), vec![Message::new("user", prompt)]);
    item.a = Some(Candidate {
        text: text(rng, 60),
        model: Some("teacher".into()),
    });
    item.logprob = Some(-3.0 * rng.unit());
    item.entropy = Some(4.0 * rng.unit());
    item.disagreement = Some(rng.unit());
    item
}

/// The decision made on the `i`th item: mostly accepts, some rejects, edits and skips.
fn verdict(i: usize) -> Verdict {
    let decision = match i % 10 {
        0..=5 => Decision::Accept,
        6 | 7 => Decision::Reject,
        8 => Decision::Edit,
        _ => Decision::Skip,
    };
    let mut v = Verdict::of(decision);
    if decision == Decision::Edit {
        v.corrected = Some(format!("the corrected answer, number {i}"));
    }
    v.rating = Some((i % 5 + 1) as u8);
    v.duration_ms = 4_000 + (i as u64 % 7) * 1_000;
    v
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q` quantile (nearest rank) of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn temp_dir(base: &Path, prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .unwrap()
}

/// What one fsync costs on this disk, for reading the decide figures against (not a figure).
fn fsync_baseline(base: &Path) {
    use std::io::Write;
    let dir = temp_dir(base, "annotate-fsync-");
    let mut file = std::fs::File::create(dir.path().join("f")).unwrap();
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        file.write_all(&[7u8; 4096]).unwrap();
        file.sync_data().unwrap();
        times.push(ms(t.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "disk baseline: 4 KiB append + fdatasync p50 {:.3} ms, p99 {:.3} ms",
        quantile(&times, 0.5),
        quantile(&times, 0.99)
    );
}

fn decide_latency(at: &Location, name: &str) {
    let mut store = Store::open_at(at, true).unwrap();
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let items: Vec<Item> = (0..LATENCY_ITEMS).map(|i| item(&mut rng, i)).collect();
    let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    store.add_items(items).unwrap();

    let mut times = Vec::with_capacity(DECIDES);
    for (i, id) in ids.iter().take(DECIDES).enumerate() {
        let v = verdict(i);
        let t = Instant::now();
        store.decide(id, ANNOTATOR, &v).unwrap();
        times.push(ms(t.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{name}: decide: {DECIDES} calls on {LATENCY_ITEMS} items, mean {:.3} ms",
        times.iter().sum::<f64>() / times.len() as f64
    );
    println!("FIGURE {name}_decide_p50 {:.3} ms", quantile(&times, 0.5));
    println!("FIGURE {name}_decide_p99 {:.3} ms", quantile(&times, 0.99));
    println!("FIGURE {name}_decide_max {:.3} ms", times[times.len() - 1]);

    let mut times = Vec::with_capacity(UNDOS);
    for _ in 0..UNDOS {
        let t = Instant::now();
        let undone = store.undo(ANNOTATOR).unwrap();
        times.push(ms(t.elapsed()));
        assert!(undone.is_some());
    }
    times.sort_by(f64::total_cmp);
    println!("FIGURE {name}_undo_p50 {:.3} ms", quantile(&times, 0.5));
    println!("FIGURE {name}_undo_p99 {:.3} ms", quantile(&times, 0.99));
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

/// `annotators` threads, each with its own connection, take the top of their queue, claim it and
/// decide it, as the app does, until each made `DECIDES / annotators` decisions; the decide calls
/// are timed.
fn decide_concurrently(at: &Location, annotators: usize) {
    let mut store = Store::open_at(at, true).unwrap();
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    store
        .add_items((0..LATENCY_ITEMS).map(|i| item(&mut rng, i)))
        .unwrap();
    drop(store);
    let per = DECIDES / annotators;
    let start = std::sync::Arc::new(std::sync::Barrier::new(annotators));
    let threads: Vec<_> = (0..annotators)
        .map(|a| {
            let at = at.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let who = format!("bench-{a}");
                let mut store = Store::open_at(&at, false).unwrap();
                let mut times = Vec::with_capacity(per);
                start.wait();
                while times.len() < per {
                    let q = store.queue(&who, QueueOrder::Disagreement, 1, 1).unwrap();
                    let it = q.first().expect("items left");
                    if !store.claim(&it.id, &who, 1).unwrap() {
                        continue;
                    }
                    let t = Instant::now();
                    store.decide(&it.id, &who, &verdict(times.len())).unwrap();
                    times.push(ms(t.elapsed()));
                }
                times
            })
        })
        .collect();
    let mut times: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    times.sort_by(f64::total_cmp);
    let store = Store::open_at(at, false).unwrap();
    assert_eq!(
        store.decisions().unwrap().len(),
        per * annotators,
        "each item once"
    );
    println!(
        "annotate_pg: {annotators} annotators at once, {} decisions, mean {:.3} ms",
        times.len(),
        times.iter().sum::<f64>() / times.len() as f64
    );
    println!(
        "FIGURE annotate_pg_decide{annotators}_p50 {:.3} ms",
        quantile(&times, 0.5)
    );
    println!(
        "FIGURE annotate_pg_decide{annotators}_p99 {:.3} ms",
        quantile(&times, 0.99)
    );
    println!(
        "FIGURE annotate_pg_decide{annotators}_max {:.3} ms",
        times[times.len() - 1]
    );
}

fn scale(db: &Location, name: &str, n: usize) {
    {
        let mut store = Store::open_at(db, true).unwrap();
        let mut rng = Rng::new(0xD1B5_4A32_D192_ED03);
        let t = Instant::now();
        let mut start = 0;
        while start < n {
            let end = (start + BATCH).min(n);
            let batch = (start..end).map(|i| item(&mut rng, i));
            assert_eq!(store.add_items(batch).unwrap(), (end - start) as u64);
            start = end;
        }
        let secs = t.elapsed().as_secs_f64();
        println!("{name}: scale: {n} items imported in {secs:.1} s, {BATCH} per add_items");
        println!(
            "FIGURE {name}_insert_1m_items_per_s {:.0} items/s",
            n as f64 / secs
        );
        // `/` in the app: a first page of matches, for a rare text (one item's number), a
        // common one (a word in most items) and one nowhere.
        for (what, query) in [
            ("rare", format!("#{}", n - 1)),
            ("common", WORDS[3].to_string()),
            ("none", "zzzz".to_string()),
        ] {
            let t = Instant::now();
            let found = store
                .list(
                    ANNOTATOR,
                    &annotate::store::Filter::Search(query.clone()),
                    0,
                    50,
                )
                .unwrap();
            println!(
                "{name}: scale: search {query:?} found {} (first page) in {:.1} ms",
                found.len(),
                ms(t.elapsed())
            );
            println!("FIGURE {name}_search_1m_{what} {:.1} ms", ms(t.elapsed()));
        }
        // A session being resumed: the top of the queue has been worked through.
        let queue = store
            .queue(ANNOTATOR, QueueOrder::Disagreement, 1, SCALE_DECISIONS)
            .unwrap();
        for (i, it) in queue.iter().enumerate() {
            store.decide(&it.id, ANNOTATOR, &verdict(i)).unwrap();
        }
    }
    if let Location::File(db) = db {
        let bytes: u64 = std::fs::read_dir(db.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        println!(
            "{name}: scale: database {:.0} MiB with {} decisions",
            bytes as f64 / (1024.0 * 1024.0),
            SCALE_DECISIONS.min(n)
        );
    }
    let spec = match db {
        Location::File(p) => p.display().to_string(),
        Location::Postgres(url) => url.clone(),
    };

    let exe = std::env::current_exe().unwrap();
    let mut runs: Vec<Vec<f64>> = (0..OPEN_RUNS)
        .map(|_| {
            let out = Command::new(&exe)
                .arg(CHILD_ARG)
                .arg(&spec)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "the first-frame child failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            let line = stdout
                .lines()
                .find_map(|l| l.strip_prefix("OPEN "))
                .expect("the child reports");
            line.split_whitespace()
                .map(|w| w.parse::<f64>().unwrap())
                .collect()
        })
        .collect();
    println!(
        "{name}: scale: first frame on {n} items, {OPEN_RUNS} runs: {}",
        runs.iter()
            .map(|r| format!(
                "{:.1} ms (open {:.1}, app {:.1}, draw {:.1}) / {:.1} MiB",
                r[0], r[2], r[3], r[4], r[1]
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rss = runs.iter().map(|r| r[1]).fold(0.0, f64::max);
    runs.sort_by(|a, b| a[0].total_cmp(&b[0]));
    println!("FIGURE {name}_open_1m {:.1} ms", runs[runs.len() / 2][0]);
    println!("FIGURE {name}_open_1m_rss {rss:.1} MiB");
}

/// The child: the app's first frame, timed step by step, with this process's peak RSS:
/// `OPEN <total ms> <peak RSS MiB> <open ms> <app ms> <draw ms>`. The app is the real one
/// (`App::new` loads the first page of the queue and the counts); the frame is drawn into a
/// 120 × 40 `TestBackend`, which is what a terminal gets minus the bytes on the wire.
fn open_child(db: &Location) {
    let t = Instant::now();
    let store = Store::open_at(db, false).unwrap();
    let opened = t.elapsed();
    let options = annotate::app::Options {
        annotator: ANNOTATOR.into(),
        order: QueueOrder::Disagreement,
        overlap: 1,
        guidelines: None,
        title: "bench".into(),
    };
    let app = annotate::app::App::new(store, options, annotate::theme::Theme::plain()).unwrap();
    let ready = t.elapsed();
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
    terminal.draw(|f| f.render_widget(&app, f.area())).unwrap();
    let done = t.elapsed();
    assert!(app.item().is_some(), "the first frame shows an item");
    println!(
        "OPEN {:.3} {:.1} {:.3} {:.3} {:.3}",
        ms(done),
        peak_rss_mib(),
        ms(opened),
        ms(ready - opened),
        ms(done - ready)
    );
}
