//! Screens of every mode (TestBackend + insta) and the keys' effect on the store.

use datasets::Message;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::store::{Candidate, DB_FILE};

fn item(prompt: &str, a: Option<&str>, b: Option<&str>, disagreement: f64) -> Item {
    let mut it = Item::new(prompt.into(), vec![Message::new("user", prompt)]);
    it.a = a.map(|t| Candidate {
        text: t.into(),
        model: Some("teacher".into()),
    });
    it.b = b.map(|t| Candidate {
        text: t.into(),
        model: Some("student".into()),
    });
    it.disagreement = Some(disagreement);
    it.entropy = Some(0.25);
    it.logprob = Some(-0.5);
    it
}

struct Fixture {
    _dir: tempfile::TempDir,
    app: App,
    ids: Vec<String>,
}

fn fixture(items: Vec<Item>, guidelines: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join(DB_FILE)).unwrap();
    let ids = items.iter().map(|i| i.id.clone()).collect();
    store.add_items(items).unwrap();
    let opts = Options {
        annotator: "ana".into(),
        order: Order::Disagreement,
        overlap: 1,
        guidelines: guidelines.then(|| {
            (
                "guidelines.md".to_string(),
                "# Dates\n\nAnswer in ISO 8601.\n\n- `2021-03-03`, not `3/3/21`\n- two-digit years: 19xx above 30\n".to_string(),
            )
        }),
        title: "runs/demo".into(),
    };
    let mut app = App::new(store, opts, Theme::plain()).unwrap();
    app.fix_clock(Duration::from_secs(30));
    Fixture {
        _dir: dir,
        app,
        ids,
    }
}

fn demo() -> Fixture {
    fixture(
        vec![
            item(
                "Normalise the date: 3rd of March '21",
                Some("2021-03-03"),
                None,
                2.0,
            ),
            item(
                "Normalise the date: 12/05/1999",
                Some("1999-05-12"),
                Some("1999-12-05"),
                3.0,
            ),
            item(
                "Normalise the date: 1 Jan 2000",
                Some("2000-01-01"),
                None,
                1.0,
            ),
        ],
        true,
    )
}

/// ana's decision in force on the fixture's item `i`.
fn decided(f: &Fixture, i: usize) -> datasets::Annotation {
    f.app
        .store()
        .current(&f.ids[i], "ana")
        .unwrap()
        .expect("a decision")
        .annotation
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, keys: &str) {
    for c in keys.chars() {
        app.handle_key(key(KeyCode::Char(c))).unwrap();
    }
}

/// Ctrl-S in the editor: save, and show the diff.
fn save(app: &mut App) {
    app.handle_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL))
        .unwrap();
}

fn screen(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| f.render_widget(app, f.area())).unwrap();
    terminal.backend().to_string()
}

#[test]
fn item_view_with_two_candidates() {
    let f = demo();
    // Highest disagreement first: the A/B item.
    insta::assert_snapshot!("item_ab", screen(&f.app));
}

#[test]
fn item_view_single_output_after_a_decision() {
    let mut f = demo();
    press(&mut f.app, "4");
    f.app.handle_key(key(KeyCode::Right)).unwrap();
    press(&mut f.app, "a");
    let d = decided(&f, 1);
    assert_eq!(
        (d.decision, d.rating, d.preference),
        (Decision::Accept, Some(4), Some(Preference::B))
    );
    insta::assert_snapshot!("item_single_saved", screen(&f.app));
}

#[test]
fn editor_then_diff_then_stored() {
    let mut f = demo();
    press(&mut f.app, "e"); // the A/B item: A = 1999-05-12
    assert!(matches!(f.app.mode, Mode::Edit(_)));
    // The cursor starts at the beginning: delete the date, type the day-first reading.
    for _ in 0.."1999-05-12".len() {
        f.app.handle_key(key(KeyCode::Delete)).unwrap();
    }
    press(&mut f.app, "1999-12-05 (day first)");
    insta::assert_snapshot!("editor", screen(&f.app));
    save(&mut f.app);
    assert!(matches!(f.app.mode, Mode::Diff { .. }));
    insta::assert_snapshot!("diff", screen(&f.app));
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    let d = decided(&f, 1);
    assert_eq!(d.decision, Decision::Edit);
    assert_eq!(d.corrected.as_deref(), Some("1999-12-05 (day first)"));
    assert_ne!(
        f.app.item().unwrap().id,
        f.ids[1],
        "the screen moved on after the store"
    );
}

#[test]
fn an_edit_that_changes_nothing_is_an_accept() {
    let mut f = demo();
    press(&mut f.app, "e");
    save(&mut f.app);
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    let d = decided(&f, 1);
    assert_eq!((d.decision, d.corrected), (Decision::Accept, None));
}

#[test]
fn cancelling_the_editor_stores_nothing() {
    let mut f = demo();
    press(&mut f.app, "e");
    press(&mut f.app, "zzz");
    f.app.handle_key(key(KeyCode::Esc)).unwrap();
    assert!(f.app.store().decisions().unwrap().is_empty());
    assert!(matches!(f.app.mode, Mode::Review));
}

#[test]
fn undo_takes_the_decision_back_and_shows_the_item() {
    let mut f = demo();
    press(&mut f.app, "a");
    assert_ne!(f.app.item().unwrap().id, f.ids[1]);
    press(&mut f.app, "u");
    assert_eq!(f.app.item().unwrap().id, f.ids[1]);
    assert!(f.app.store().decisions().unwrap().is_empty());
}

#[test]
fn help_overlay() {
    let mut f = demo();
    press(&mut f.app, "?");
    insta::assert_snapshot!("help", screen(&f.app));
    f.app.handle_key(key(KeyCode::PageDown)).unwrap();
    insta::assert_snapshot!("help_scrolled", screen(&f.app));
    f.app.handle_key(key(KeyCode::Esc)).unwrap();
    assert!(matches!(f.app.mode, Mode::Review));
}

#[test]
fn guidelines_overlay() {
    let mut f = demo();
    press(&mut f.app, "g");
    insta::assert_snapshot!("guidelines", screen(&f.app));
}

#[test]
fn stats_overlay() {
    let mut f = demo();
    // Decisions at fixed times (the figures must not depend on the wall clock): ana decides
    // three items a minute apart, ben two of them.
    let minute = 60_000_000;
    for (i, (who, d)) in [
        ("ana", Decision::Accept),
        ("ana", Decision::Reject),
        ("ana", Decision::Accept),
        ("ben", Decision::Accept),
        ("ben", Decision::Accept),
    ]
    .into_iter()
    .enumerate()
    {
        let item = &f.ids[i % 3];
        f.app
            .store
            .decide_at(item, who, &Verdict::of(d), i as i64 * minute)
            .unwrap();
    }
    press(&mut f.app, "t");
    insta::assert_snapshot!("stats", screen(&f.app));
}

#[test]
fn search_and_filter() {
    let mut f = demo();
    press(&mut f.app, "/");
    press(&mut f.app, "1 Jan");
    insta::assert_snapshot!("search", screen(&f.app));
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    assert_eq!(f.app.item().unwrap().id, f.ids[2]);
    f.app.handle_key(key(KeyCode::Esc)).unwrap();
    press(&mut f.app, "s");
    press(&mut f.app, "ffff"); // accepted → rejected → edited → skipped
    assert_eq!(f.app.view, View::List(Filter::Decided(Decision::Skip)));
    assert_eq!(f.app.item().unwrap().id, f.ids[1]);
}

#[test]
fn queue_done_screen() {
    let mut f = demo();
    press(&mut f.app, "aaa");
    insta::assert_snapshot!("done", screen(&f.app));
    press(&mut f.app, "q");
    assert!(f.app.should_quit());
}

#[test]
fn wide_and_combining_text_lays_out() {
    let f = fixture(
        vec![item(
            "日付を正規化してください: 2021年3月3日 — e\u{301}te\u{301} 👩‍🔬",
            Some("２０２１-03-03 ✓ café"),
            None,
            1.0,
        )],
        false,
    );
    insta::assert_snapshot!("wide", screen(&f.app));
}

/// Escape sequences in data (OSC 52 clipboard write, CSI clear screen) are drawn as visible,
/// inert text: no cell holds a control character.
#[test]
fn escape_injection_is_inert() {
    let osc52 = "\u{1b}]52;c;ZXZpbA==\u{7}";
    let clear = "\u{1b}[2J";
    let mut f = fixture(
        vec![item(
            &format!("steal {osc52} and {clear}"),
            Some(&format!("out {clear}")),
            Some(osc52),
            1.0,
        )],
        false,
    );
    let mut terminal = Terminal::new(TestBackend::new(100, 24)).unwrap();
    for keys in ["", "e"] {
        press(&mut f.app, keys);
        terminal
            .draw(|fr| fr.render_widget(&f.app, fr.area()))
            .unwrap();
        let buf = terminal.backend().buffer();
        for cell in buf.content() {
            assert!(
                !cell.symbol().chars().any(|c| c.is_control()),
                "{:?}",
                cell.symbol()
            );
        }
        let text = terminal.backend().to_string();
        assert!(
            text.contains("\\u{1b}]52;c;ZXZpbA==\\u{7}") || keys == "e",
            "{text}"
        );
        assert!(text.contains("\\u{1b}[2J"), "{text}");
    }
}

/// `f` reaches the conflicts between annotators; the item shows the others' decisions.
#[test]
fn conflicts_view_shows_the_other_annotators() {
    let mut f = demo();
    f.app
        .store
        .decide(&f.ids[0], "ben", &Verdict::of(Decision::Accept))
        .unwrap();
    press(&mut f.app, "x"); // ana rejects the A/B item (ids[1]): no conflict yet
    f.app
        .store
        .decide(&f.ids[1], "ben", &Verdict::of(Decision::Accept))
        .unwrap();
    press(&mut f.app, "ffffff");
    assert_eq!(f.app.view, View::List(Filter::Conflicts));
    assert_eq!(f.app.item().unwrap().id, f.ids[1]);
    insta::assert_snapshot!("conflicts", screen(&f.app));
}

/// When the store cannot take a decision (another process holds the write lock past the busy
/// timeout), the item stays on screen marked NOT SAVED; once the lock is gone the same key saves.
#[test]
fn a_decision_the_store_refuses_is_not_acknowledged() {
    let mut f = demo();
    f.app
        .store
        .set_busy_timeout(Duration::from_millis(50))
        .unwrap();
    let first = f.app.item().unwrap().id.clone();
    let other = rusqlite::Connection::open(f.app.store().path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    press(&mut f.app, "a");
    assert_eq!(
        f.app.item().unwrap().id,
        first,
        "the screen did not move on"
    );
    let text = screen(&f.app);
    assert!(text.contains("NOT SAVED"), "{text}");
    assert!(!text.contains("✓ saved"), "{text}");
    other.execute_batch("ROLLBACK").unwrap();
    press(&mut f.app, "a");
    assert_ne!(f.app.item().unwrap().id, first);
    assert!(screen(&f.app).contains("✓ saved"));
    assert_eq!(f.app.store().decisions().unwrap().len(), 1);
}

/// Any terminal size draws without a panic, down to a single cell (a resize redraws at the new
/// size).
#[test]
fn every_size_draws() {
    let mut f = demo();
    for keys in ["", "?", "e"] {
        press(&mut f.app, keys);
        for (w, h) in [(1, 1), (10, 5), (20, 8), (40, 12), (200, 60)] {
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            terminal
                .draw(|fr| fr.render_widget(&f.app, fr.area()))
                .unwrap();
        }
    }
}

/// Review fixes: a re-decision keeps the rating and preference the screen shows; a correction
/// keeps tabs and newlines byte for byte; an empty correction and an accept without an output
/// are refused; a correction the store refuses stays on screen.
#[test]
fn what_is_stored_is_what_the_screen_showed() {
    let mut f = fixture(
        vec![
            item("tabs", Some("a\tb\nc"), None, 3.0),
            item("pair", Some("x"), Some("y"), 2.0),
            item("none", None, None, 1.0),
        ],
        false,
    );
    // The correction keeps the tab.
    press(&mut f.app, "e");
    f.app.handle_key(key(KeyCode::End)).unwrap();
    press(&mut f.app, "!");
    save(&mut f.app);
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    let d = decided(&f, 0);
    assert_eq!(d.corrected.as_deref(), Some("a\tb!\nc"));
    // Prefer B and accept; browse back to it and accept again: B stays preferred.
    f.app.handle_key(key(KeyCode::Right)).unwrap();
    press(&mut f.app, "4a");
    press(&mut f.app, "f"); // your accepted
    assert_eq!(f.app.item().unwrap().id, f.ids[1]);
    press(&mut f.app, "a");
    let d = decided(&f, 1);
    assert_eq!((d.preference, d.rating), (Some(Preference::B), Some(4)));
    f.app.handle_key(key(KeyCode::Esc)).unwrap();
    // No output: accept is refused; an empty correction is refused.
    assert_eq!(f.app.item().unwrap().id, f.ids[2]);
    press(&mut f.app, "a");
    assert!(f.app.store().current(&f.ids[2], "ana").unwrap().is_none());
    press(&mut f.app, "e");
    save(&mut f.app);
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    assert!(f.app.store().current(&f.ids[2], "ana").unwrap().is_none());
    assert!(matches!(f.app.mode, Mode::Diff { .. }));
    // A correction the store refuses stays on screen.
    press(&mut f.app, "e");
    press(&mut f.app, "2000-01-01");
    save(&mut f.app);
    f.app
        .store
        .set_busy_timeout(Duration::from_millis(50))
        .unwrap();
    let other = rusqlite::Connection::open(f.app.store().path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    assert!(
        matches!(f.app.mode, Mode::Diff { .. }),
        "the correction is still there"
    );
    other.execute_batch("ROLLBACK").unwrap();
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    let d = decided(&f, 2);
    assert_eq!(d.corrected.as_deref(), Some("2000-01-01"));
}
