//! `workbench annotate`: the real binary in a real terminal (tmux), the database it leaves, the
//! statistics, the feedback export, and bad input.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Sandbox, python, run_python};

const ITEMS: &str = concat!(
    r#"{"prompt": "Normalise: 3rd of March 21", "completion": "2021-03-03", "teacher": "big", "disagreement": 0.9}"#,
    "\n",
    r#"{"prompt": "Normalise: 12/05/1999", "completion": "1999-05-12", "disagreement": 0.5}"#,
    "\n",
    r#"{"prompt": "Normalise: 1 Jan 2000 \u001b]52;c;ZXZpbA==\u0007", "completion": "2000-01-01 \u001b[2J", "disagreement": 0.1}"#,
    "\n",
);

/// tmux, or `None` with a message (CI must have it: `.ci/run` installs it).
fn tmux() -> Option<&'static str> {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("tmux");
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI must run the terminal test: install tmux (`.ci/run` does)");
    }
    eprintln!("skipped: the terminal end-to-end test needs tmux (`apt-get install tmux`)");
    None
}

/// A tmux server of its own (a socket in the sandbox), killed when dropped.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "review"];
        args.extend_from_slice(keys);
        self.cmd(&args);
    }

    /// Types `text` as it is (no key names).
    fn type_text(&self, text: &str) {
        self.cmd(&["send-keys", "-t", "review", "-l", text]);
    }

    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "review"])
    }

    /// Waits until the screen shows `text` (the app draws after each key).
    #[track_caller]
    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!("the screen never showed {text:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn events(db: &Path) -> Vec<(String, Option<String>, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT kind, decision, corrected FROM events ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The real binary in tmux: accept, edit (with the diff), undo, quit; then the database holds
/// exactly those decisions and the escape sequences in the data were drawn as text.
#[test]
fn review_in_a_real_terminal_accept_edit_undo_quit() {
    let Some(_) = tmux() else { return };
    let sb = Sandbox::new();
    sb.write("items.jsonl", ITEMS);
    let t = Tmux {
        socket: sb.join("tmux.sock"),
    };
    let command = format!(
        "{} annotate items.jsonl --annotator ana; echo EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_workbench")
    );
    t.cmd(&[
        "new-session",
        "-d",
        "-s",
        "review",
        "-x",
        "100",
        "-y",
        "30",
        "-c",
        sb.path().to_str().unwrap(),
        "-e",
        "NO_COLOR=1",
        &command,
    ]);
    // Highest disagreement first.
    t.wait_for("3rd of March 21");
    t.keys(&["a"]);
    t.wait_for("saved (accepted");
    t.wait_for("12/05/1999");
    t.keys(&["e"]);
    t.wait_for("Edit the output");
    t.keys(&["End", " (day first)", "C-s"]);
    let diff = t.wait_for("Correction:");
    assert!(diff.contains("1999-05-12{+ (day first)+}"), "{diff}");
    t.keys(&["Enter"]);
    let screen = t.wait_for("saved (edited");
    // The third item's OSC 52 and clear-screen are on screen as text, and did nothing.
    assert!(screen.contains(r"\u{1b}]52;c;ZXZpbA==\u{7}"), "{screen}");
    assert!(screen.contains(r"\u{1b}[2J"), "{screen}");
    t.keys(&["u"]);
    t.wait_for("undone");
    t.wait_for("12/05/1999");
    t.keys(&["q"]);
    let end = t.wait_for("EXIT=");
    assert!(end.contains("EXIT=0"), "{end}");
    assert!(end.contains("ana has 1 decision in force"), "{end}");

    let db = sb.join("items.annotations.db");
    let got = events(&db);
    assert_eq!(
        got,
        [
            ("decide".into(), Some("accept".into()), None),
            (
                "decide".into(),
                Some("edit".into()),
                Some("1999-05-12 (day first)".into())
            ),
            ("undo".into(), None, None),
        ]
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

fn seeded(sb: &Sandbox) -> std::path::PathBuf {
    // Decisions made through the library, as a second process would.
    sb.write("set/items.jsonl", ITEMS);
    let db = sb.join("set/items.annotations.db");
    let mut store = ::annotate::Store::open(&db).unwrap();
    ::annotate::import::import(&mut store, &sb.join("set/items.jsonl"), &mut |_| {}).unwrap();
    let items = store.list("x", &::annotate::Filter::All, 0, 10).unwrap();
    let v = |d| ::annotate::Verdict::of(d);
    use datasets::Decision::*;
    store.decide(&items[0].id, "ana", &v(Accept)).unwrap();
    store.decide(&items[1].id, "ana", &v(Reject)).unwrap();
    let edit = ::annotate::Verdict {
        corrected: Some("2000-01-01".into()),
        ..v(Edit)
    };
    store.decide(&items[2].id, "ana", &edit).unwrap();
    store.decide(&items[0].id, "ben", &v(Accept)).unwrap();
    store.decide(&items[1].id, "ben", &v(Accept)).unwrap();
    db
}

#[test]
fn stats_report_progress_and_agreement() {
    let sb = Sandbox::new();
    seeded(&sb);
    let run = sb
        .run(&[
            "annotate",
            "stats",
            "set/items.jsonl",
            "--overlap",
            "2",
            "--json",
        ])
        .ok();
    let s = run.json();
    assert_eq!(s["items"], 3);
    assert_eq!(s["complete"], 2);
    assert_eq!(s["overlapping_items"], 2);
    assert_eq!(s["annotators"][0]["annotator"], "ana");
    assert_eq!(s["annotators"][0]["decided"], 3);
    assert_eq!(s["pairs"][0]["items"], 2);
    let text = sb.run(&["annotate", "stats", "set/items.jsonl"]).ok();
    assert!(text.stdout.contains("Krippendorff"), "{}", text.stdout);
    assert!(
        text.stdout.contains("Cohen's κ ana × ben on 2 items"),
        "{}",
        text.stdout
    );
}

#[test]
fn feedback_exports_as_sft_and_preference_sets() {
    let sb = Sandbox::new();
    seeded(&sb);
    sb.run(&[
        "datasets",
        "export",
        "set/items.jsonl",
        "--annotations",
        "--kind",
        "sft",
        "--out",
        "sft",
    ])
    .ok();
    sb.run(&[
        "datasets",
        "export",
        "set/items.jsonl",
        "--annotations",
        "--kind",
        "preference",
        "--out",
        "pref",
    ])
    .ok();
    let Some(py) = python() else { return };
    let out = run_python(
        &py,
        "read_feedback.py",
        &[&sb.join("sft"), &sb.join("pref")],
    );
    // ana's and ben's accept of the first item are one row; ben's accept of the item ana
    // rejected is a row; ana's correction is a row and a pair against the output it replaced.
    assert_eq!(
        out.trim(),
        "[('1999-05-12', 'accepted'), ('2000-01-01', 'corrected'), ('2021-03-03', 'accepted')]\n[('2000-01-01', '2000-01-01 \\x1b[2J')]",
    );
}

#[test]
fn annotate_without_a_terminal_says_so() {
    let sb = Sandbox::new();
    sb.write("items.jsonl", ITEMS);
    let run = sb.run(&["annotate", "items.jsonl"]).bad_input();
    assert!(run.stderr.contains("needs a terminal"), "{}", run.stderr);
    assert!(run.stderr.contains("annotate stats"), "{}", run.stderr);
}

#[test]
fn bad_databases_and_targets_are_clear_errors() {
    let sb = Sandbox::new();
    let run = sb.run(&["annotate", "stats", "nowhere"]).bad_input();
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    sb.write("items.jsonl", ITEMS);
    let run = sb.run(&["annotate", "stats", "items.jsonl"]).bad_input();
    assert!(
        run.stderr.contains("No annotation database"),
        "{}",
        run.stderr
    );
    sb.write("broken.db", vec![b'x'; 4096]);
    let run = sb.run(&["annotate", "stats", "broken.db"]).bad_input();
    assert!(
        run.stderr.contains("is not a readable annotation database"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    // Flags and config keys.
    let run = sb
        .run(&["annotate", "items.jsonl", "--overlap", "0"])
        .bad_input();
    assert!(run.stderr.contains("--overlap 0"), "{}", run.stderr);
    let run = sb
        .run(&["annotate", "items.jsonl", "--order", "smart"])
        .bad_input();
    assert!(run.stderr.contains("ranked"), "{}", run.stderr);
    let run = sb
        .run(&["annotate", "items.jsonl", "--guidelines", "missing.md"])
        .bad_input();
    assert!(run.stderr.contains("missing.md"), "{}", run.stderr);
    // A config whose run has nothing to review yet.
    let config = crate::common::tiny_config(&sb, "notyet", "");
    let run = sb.run(&["annotate", config.to_str().unwrap()]).bad_input();
    assert!(
        run.stderr.contains("nothing to review yet"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("workbench generate"), "{}", run.stderr);
    let run = sb
        .run(&[
            "config",
            "check",
            config.to_str().unwrap(),
            "--set",
            "annotate.overlap=0",
        ])
        .bad_input();
    assert!(run.stderr.contains("annotate.overlap"), "{}", run.stderr);
}

/// In a run, the database is `runs/NAME/annotations.db`; `annotate stats` and `datasets export
/// RUN --kind sft|preference` read it without further flags.
#[test]
fn a_runs_feedback_exports_from_its_database() {
    let sb = Sandbox::new();
    let config = crate::common::tiny_config(&sb, "fb", "");
    // `eval` before any model prepares the run directory and its data, then refuses.
    sb.run(&["eval", config.to_str().unwrap()]).bad_input();
    let run = sb.join("runs/fb");
    let mut store = ::annotate::Store::open(run.join("annotations.db")).unwrap();
    let added =
        ::annotate::import::import(&mut store, &run.join("data/gold"), &mut |_| {}).unwrap();
    assert_eq!(added.added, 30);
    let items = store.list("x", &::annotate::Filter::All, 0, 3).unwrap();
    let edit = ::annotate::Verdict {
        corrected: Some("1999-01-01".into()),
        ..::annotate::Verdict::of(datasets::Decision::Edit)
    };
    store.decide(&items[0].id, "ana", &edit).unwrap();
    drop(store);
    let s = sb
        .run(&["annotate", "stats", "runs/fb", "--json"])
        .ok()
        .json();
    assert_eq!(
        (s["items"].as_u64(), s["annotators"][0]["decided"].as_u64()),
        (Some(30), Some(1))
    );
    let out = sb
        .run(&[
            "datasets", "export", "runs/fb", "--kind", "sft", "--out", "sft", "--json",
        ])
        .ok();
    assert!(out.stderr.contains("experts' feedback"), "{}", out.stderr);
    assert_eq!(out.json()["rows"], 1);
    // The gold rows carry no output, so a correction has nothing to be preferred over.
    let out = sb
        .run(&[
            "datasets",
            "export",
            "runs/fb",
            "--kind",
            "preference",
            "--out",
            "pref",
            "--json",
        ])
        .ok();
    assert_eq!(out.json()["rows"], 0);
}

/// `workbench annotate FILE --annotator ana` in a tmux window of `width` × `height`, without
/// colour; the shell prints `EXIT=` when it ends.
fn review_in_tmux(sb: &Sandbox, file: &str, width: u16, height: u16) -> Tmux {
    let t = Tmux {
        socket: sb.join("tmux.sock"),
    };
    let command = format!(
        "{} annotate {file} --annotator ana; echo EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_workbench")
    );
    t.cmd(&[
        "new-session",
        "-d",
        "-s",
        "review",
        "-x",
        &width.to_string(),
        "-y",
        &height.to_string(),
        "-c",
        sb.path().to_str().unwrap(),
        "-e",
        "NO_COLOR=1",
        &command,
    ]);
    t
}

/// The decisions in force in `db`: (decision, corrected, preference) per event, in order.
fn decided(db: &Path) -> Vec<(String, Option<String>, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT e.decision, e.corrected, e.preference FROM decisions d
             JOIN events e ON e.seq = d.event ORDER BY e.seq",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// At 80 × 24, an expert changes one word ("home" → "HOME") of an answer that holds a bell, an
/// escape sequence, a tab and a carriage return: the diff marks only that word, the database
/// holds the answer with only that word changed, and coming back to the item shows the
/// correction. The key bar shows `? help` and `q quit` throughout.
#[test]
fn an_expert_edit_is_stored_exactly_as_typed() {
    let Some(_) = tmux() else { return };
    let sb = Sandbox::new();
    sb.write(
        "ctl.jsonl",
        concat!(
            r#"{"prompt": "Where now?", "completion": "Go \u0007\u001b[H\thome\r\nnow", "disagreement": 0.9}"#,
            "\n",
            r#"{"prompt": "And then?", "completion": "rest", "disagreement": 0.1}"#,
            "\n",
        ),
    );
    let t = review_in_tmux(&sb, "ctl.jsonl", 80, 24);
    let screen = t.wait_for("Where now?");
    let bar = screen.lines().last().unwrap_or_default();
    assert!(bar.contains("? help") && bar.contains("q quit"), "{screen}");
    assert!(screen.contains(r"Go \u{7}\u{1b}[H    home\r"), "{screen}");
    t.keys(&["e"]);
    t.wait_for("Edit the output");
    // "Go ", the bell, the escape, "[H" and the tab: 8 characters before "home".
    for _ in 0..8 {
        t.keys(&["Right"]);
    }
    for _ in 0..4 {
        t.keys(&["Delete"]);
    }
    t.type_text("HOME");
    t.keys(&["C-s"]);
    let diff = t.wait_for("Correction:");
    assert!(diff.contains("1 word(s) removed, 1 added"), "{diff}");
    assert!(
        diff.contains(r"Go \u{7}\u{1b}[H    [-home-]{+HOME+}\r"),
        "{diff}"
    );
    assert_eq!(diff.matches("[-").count(), 1, "{diff}");
    assert_eq!(diff.matches("{+").count(), 1, "{diff}");
    t.keys(&["Enter"]);
    t.wait_for("saved (edited");
    // Back to it through the filter of edited items: the correction is what is shown.
    t.keys(&["f", "f", "f"]);
    let back = t.wait_for("your edited");
    assert!(back.contains("corrected by you"), "{back}");
    assert!(back.contains(r"Go \u{7}\u{1b}[H    HOME\r"), "{back}");
    t.keys(&["q"]);
    assert!(t.wait_for("EXIT=").contains("EXIT=0"));
    assert_eq!(
        decided(&sb.join("ctl.annotations.db")),
        [(
            "edit".to_string(),
            Some("Go \u{7}\u{1b}[H\tHOME\r\nnow".to_string()),
            None
        )]
    );
}

/// On an A/B item, `a` asks for a choice and saves nothing; after `→` it saves B and says so.
/// The list of all items counts them exactly, flags and joined emoji are drawn as escapes, and
/// the key bar fits 80 columns.
#[test]
fn accept_on_an_ab_item_says_what_it_saved() {
    let Some(_) = tmux() else { return };
    let sb = Sandbox::new();
    let mut rows = String::new();
    rows.push_str(
        r#"{"prompt": "Normalise: 12/05/1999", "completion": "1999-05-12", "disagreement": 0.9}"#,
    );
    rows.push('\n');
    rows.push_str(r#"{"prompt": "Normalise: 12/05/1999", "completion": "1999-12-05"}"#);
    rows.push('\n');
    rows.push_str(
        r#"{"prompt": "Flag \ud83c\uddfa\ud83c\uddf8 and \ud83d\udc69\u200d\ud83d\udd2c", "completion": "ok", "disagreement": 0.5}"#,
    );
    rows.push('\n');
    for i in 0..58 {
        rows.push_str(&format!(
            "{{\"prompt\": \"Item {i}\", \"completion\": \"{i}\", \"disagreement\": 0.0}}\n"
        ));
    }
    sb.write("ab.jsonl", rows);
    let t = review_in_tmux(&sb, "ab.jsonl", 80, 24);
    let screen = t.wait_for("Normalise: 12/05/1999");
    let bar = screen.lines().last().unwrap_or_default();
    assert!(bar.contains("? help") && bar.contains("q quit"), "{screen}");
    t.keys(&["a"]);
    t.wait_for("accept needs a choice");
    assert!(decided(&sb.join("ab.annotations.db")).is_empty());
    t.keys(&["Right", "a"]);
    let screen = t.wait_for("saved (accepted B");
    // The next item: a flag and a joined emoji, drawn as their parts.
    assert!(
        screen.contains(r"Flag \u{1f1fa}\u{1f1f8} and 👩\u{200d}🔬"),
        "{screen}"
    );
    assert_eq!(
        decided(&sb.join("ab.annotations.db")),
        [("accept".to_string(), None, Some("B".to_string()))]
    );
    // Queue → accepted → rejected → edited → skipped → all items.
    t.keys(&["f", "f", "f", "f", "f"]);
    t.wait_for("all items · 1 of 60");
    for _ in 0..52 {
        t.keys(&["n"]);
    }
    t.wait_for("all items · 53 of 60");
    t.keys(&["q"]);
    assert!(t.wait_for("EXIT=").contains("EXIT=0"));
}

/// `annotate stats` with the simulated expert's decisions (made microseconds apart) and a
/// person's: the columns line up, each row adds up to the items, the simulated expert is named
/// as such and has no items/hour, and the JSON says the same.
#[test]
fn stats_align_add_up_and_name_the_simulated_expert() {
    let sb = Sandbox::new();
    let db = seeded(&sb);
    let mut store = ::annotate::Store::open(&db).unwrap();
    let items = store.list("x", &::annotate::Filter::All, 0, 10).unwrap();
    let sim = ::annotate::simulated::SIMULATED_EXPERT;
    use datasets::Decision::*;
    for (item, d) in items.iter().zip([Accept, Skip, Edit]) {
        let v = ::annotate::Verdict {
            corrected: (d == Edit).then(|| "2000-01-01".to_string()),
            ..::annotate::Verdict::of(d)
        };
        store.decide(&item.id, sim, &v).unwrap();
    }
    drop(store);
    let text = sb
        .run(&["annotate", "stats", "set/items.jsonl"])
        .ok()
        .stdout;
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("annotator"))
        .take(4)
        .collect();
    assert_eq!(table.len(), 4, "{text}");
    // Every column ends where its header ends.
    let ends = |line: &str| -> Vec<usize> {
        let cells: Vec<char> = line.chars().collect();
        (0..cells.len())
            .filter(|&i| cells[i] != ' ' && cells.get(i + 1).is_none_or(|c| *c == ' '))
            .collect()
    };
    let header_ends = ends(table[0]);
    for row in &table[1..] {
        assert_eq!(ends(row)[1..], header_ends[1..], "{text}");
    }
    let sim_row = table.iter().find(|l| l.starts_with(sim)).unwrap();
    // accept reject edit skip undecided items/h
    let cols: Vec<&str> = sim_row.split_whitespace().collect();
    assert_eq!(cols[1..], ["1", "0", "1", "1", "0", "—"], "{text}");
    assert!(
        text.contains("simulated-expert is the simulated expert"),
        "{text}"
    );
    assert!(text.contains("Each row adds up to the 3 items"), "{text}");
    let s = sb
        .run(&["annotate", "stats", "set/items.jsonl", "--json"])
        .ok()
        .json();
    let a = s["annotators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["annotator"] == sim)
        .unwrap();
    assert_eq!(a["simulated"], true);
    assert_eq!(a["items_per_hour"], serde_json::Value::Null);
    assert_eq!(
        (
            a["decided"].as_u64(),
            a["skipped"].as_u64(),
            a["undecided"].as_u64()
        ),
        (Some(2), Some(1), Some(0))
    );
    assert_eq!(s["annotators"][0]["simulated"], false);
}

/// A person cannot review under the simulated expert's name.
#[test]
fn a_person_cannot_take_the_simulated_experts_name() {
    let sb = Sandbox::new();
    sb.write("items.jsonl", ITEMS);
    let run = sb
        .run(&["annotate", "items.jsonl", "--annotator", "simulated-expert"])
        .bad_input();
    assert!(run.stderr.contains("simulated expert"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}
