//! Screens of every mode (TestBackend + insta) and the keys' effect on the store.

use datasets::Message;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::diff::Change;
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
        order: QueueOrder::Disagreement,
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
    assert!(matches!(f.app.mode, Mode::Diff(_)));
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
    // The editor named the output (A), so the accept needed no separate choice; it says which.
    assert!(status(&f.app).contains("saved (accepted A, event"));
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
    f.app.handle_key(key(KeyCode::Left)).unwrap();
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
    f.app.handle_key(key(KeyCode::Left)).unwrap();
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

/// The demo with a second connection holding the store's write lock (roll it back to let
/// writes through), and a busy timeout short enough that a write fails at once.
fn demo_locked() -> (Fixture, rusqlite::Connection) {
    let mut f = demo();
    f.app
        .store
        .set_busy_timeout(Duration::from_millis(50))
        .unwrap();
    let other = rusqlite::Connection::open(f.app.store().path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    (f, other)
}

/// When the store cannot take a decision (another process holds the write lock past the busy
/// timeout), the item stays on screen marked NOT SAVED; once the lock is gone the same key saves.
#[test]
fn a_decision_the_store_refuses_is_not_acknowledged() {
    let (mut f, other) = demo_locked();
    let first = f.app.item().unwrap().id.clone();
    press(&mut f.app, "x");
    assert_eq!(
        f.app.item().unwrap().id,
        first,
        "the screen did not move on"
    );
    let text = screen(&f.app);
    assert!(text.contains("NOT SAVED"), "{text}");
    assert!(!text.contains("✓ saved"), "{text}");
    assert!(f.app.has_pending());
    // Pressed again while still refused: the same decision under the same key.
    let key = f.app.pending.as_ref().unwrap().key.clone();
    press(&mut f.app, "x");
    assert_eq!(f.app.pending.as_ref().unwrap().key, key);
    assert_eq!(f.app.item().unwrap().id, first);
    // The app says it works offline, and tries again on its own once the wait is over.
    f.app.tick().unwrap();
    assert!(screen(&f.app).contains("working offline"));
    other.execute_batch("ROLLBACK").unwrap();
    f.app.pending.as_mut().unwrap().last_try -= RETRY_EVERY;
    f.app.tick().unwrap();
    assert!(!f.app.has_pending());
    assert_ne!(f.app.item().unwrap().id, first);
    let text = screen(&f.app);
    assert!(
        text.contains("✓ saved") && text.contains("after the store came back"),
        "{text}"
    );
    assert_eq!(f.app.store().decisions().unwrap().len(), 1);
    let log = f.app.store().events().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].key, key);
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
    assert!(matches!(f.app.mode, Mode::Diff(_)));
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
        matches!(f.app.mode, Mode::Diff(_)),
        "the correction is still there"
    );
    other.execute_batch("ROLLBACK").unwrap();
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    let d = decided(&f, 2);
    assert_eq!(d.corrected.as_deref(), Some("2000-01-01"));
}

/// The status line after a key.
fn status(app: &App) -> String {
    let text = screen(app);
    text.lines().rev().nth(1).unwrap_or_default().to_string()
}

/// An expert who changes one word of an answer holding control characters (a bell, an escape
/// sequence, a tab, a carriage return) stores the answer with that word changed and nothing
/// else: the editor holds the text itself and escapes it only on screen.
#[test]
fn an_edit_stores_the_original_with_only_the_keys_typed() {
    let original = "Go \u{7}\u{1b}[H\thome\r\nnow";
    let mut f = fixture(vec![item("ctl", Some(original), None, 1.0)], false);
    press(&mut f.app, "e");
    let text = screen(&f.app);
    assert!(text.contains(r"Go \u{7}\u{1b}[H    home\r"), "{text}");
    // "Go ", BEL, ESC, "[H" and the tab are 8 characters.
    for _ in 0..8 {
        f.app.handle_key(key(KeyCode::Right)).unwrap();
    }
    for _ in 0..4 {
        f.app.handle_key(key(KeyCode::Delete)).unwrap();
    }
    press(&mut f.app, "HOME");
    save(&mut f.app);
    let Mode::Diff(DiffReview { changes, .. }) = &f.app.mode else {
        panic!("the diff is shown")
    };
    assert_eq!(
        changes,
        &[
            Change::Same("Go \u{7}\u{1b}[H\t".into()),
            Change::Removed("home".into()),
            Change::Added("HOME".into()),
            Change::Same("\r\nnow".into()),
        ]
    );
    let text = screen(&f.app);
    assert!(text.contains("[-home-]{+HOME+}"), "{text}");
    assert!(text.contains("1 word(s) removed, 1 added"), "{text}");
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    let d = decided(&f, 0);
    assert_eq!(d.decision, Decision::Edit);
    assert_eq!(
        d.corrected.as_deref(),
        Some("Go \u{7}\u{1b}[H\tHOME\r\nnow")
    );
}

/// Tab in the editor types a tab, stored as one.
#[test]
fn tab_in_the_editor_types_a_tab() {
    let mut f = fixture(vec![item("tab", Some("a b"), None, 1.0)], false);
    press(&mut f.app, "e");
    f.app.handle_key(key(KeyCode::Right)).unwrap();
    f.app.handle_key(key(KeyCode::Tab)).unwrap();
    save(&mut f.app);
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    assert_eq!(decided(&f, 0).corrected.as_deref(), Some("a\t b"));
}

/// On an A/B item, `a` does not pick A for the expert: it asks for a choice and stores nothing;
/// after the choice it stores it and says which output was accepted.
#[test]
fn accept_on_an_ab_item_needs_a_choice_and_says_which() {
    let mut f = demo();
    press(&mut f.app, "a");
    assert!(f.app.store().decisions().unwrap().is_empty());
    assert_eq!(f.app.item().unwrap().id, f.ids[1], "the item stays");
    let line = status(&f.app);
    assert!(line.contains("not saved: accept needs a choice"), "{line}");
    f.app.handle_key(key(KeyCode::Right)).unwrap();
    press(&mut f.app, "a");
    let d = decided(&f, 1);
    assert_eq!(
        (d.decision, d.preference),
        (Decision::Accept, Some(Preference::B))
    );
    let line = status(&f.app);
    assert!(line.contains("saved (accepted B, event"), "{line}");
    // A tie is stored as one, and said so.
    press(&mut f.app, "u");
    press(&mut f.app, "=a");
    assert!(status(&f.app).contains("accepted A and B as a tie"));
    // A single output needs no choice.
    press(&mut f.app, "a");
    assert!(status(&f.app).contains("saved (accepted, event"));
}

/// The diff marks what was removed and added in the text itself, so it reads without colour.
#[test]
fn the_diff_reads_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join(DB_FILE)).unwrap();
    store
        .add_items([item("p", Some("the cat sat"), None, 1.0)])
        .unwrap();
    let opts = Options {
        annotator: "ana".into(),
        order: QueueOrder::Disagreement,
        overlap: 1,
        guidelines: None,
        title: "t".into(),
    };
    let mut app = App::new(store, opts, Theme::colour()).unwrap();
    press(&mut app, "e");
    for _ in 0.."the ".len() {
        app.handle_key(key(KeyCode::Right)).unwrap();
    }
    for _ in 0.."cat".len() {
        app.handle_key(key(KeyCode::Delete)).unwrap();
    }
    press(&mut app, "dog");
    save(&mut app);
    let text = screen(&app);
    assert!(text.contains("the [-cat-]{+dog+} sat"), "{text}");
}

/// Coming back to an item the expert corrected shows the correction, marked as theirs.
#[test]
fn an_edited_item_shows_the_correction() {
    let mut f = demo();
    press(&mut f.app, "e"); // the A/B item, A = 1999-05-12
    f.app.handle_key(key(KeyCode::End)).unwrap();
    press(&mut f.app, " (day first)");
    save(&mut f.app);
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    assert!(status(&f.app).contains("saved (edited A, event"));
    press(&mut f.app, "fff"); // accepted → rejected → edited
    assert_eq!(f.app.view, View::List(Filter::Decided(Decision::Edit)));
    assert_eq!(f.app.item().unwrap().id, f.ids[1]);
    let text = screen(&f.app);
    assert!(text.contains("A · teacher · corrected by you"), "{text}");
    assert!(text.contains("1999-05-12 (day first)"), "{text}");
    assert!(text.contains("your correction is shown"), "{text}");
    // The editor starts from the correction; the diff is against the original.
    press(&mut f.app, "e");
    save(&mut f.app);
    let text = screen(&f.app);
    assert!(text.contains("1999-05-12{+ (day first)+}"), "{text}");
}

/// The header counts a filter's items exactly, past the first page.
#[test]
fn filters_count_their_items_exactly() {
    let items: Vec<Item> = (0..120)
        .map(|i| item(&format!("prompt {i}"), Some("out"), None, f64::from(i)))
        .collect();
    let mut f = fixture(items, false);
    press(&mut f.app, "xxx");
    press(&mut f.app, "ff"); // your accepted → your rejected
    assert!(screen(&f.app).contains("your rejected · 1 of 3"));
    press(&mut f.app, "fff"); // edited → skipped → all
    assert_eq!(f.app.view, View::List(Filter::All));
    assert!(
        screen(&f.app).contains("all items · 1 of 120"),
        "{}",
        screen(&f.app)
    );
    for _ in 0..60 {
        press(&mut f.app, "n");
    }
    assert!(
        screen(&f.app).contains("all items · 61 of 120"),
        "{}",
        screen(&f.app)
    );
    press(&mut f.app, "/");
    press(&mut f.app, "prompt 1");
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    // prompt 1, 10–19, 100–119.
    assert!(screen(&f.app).contains("· 1 of 31"), "{}", screen(&f.app));
}

/// At 80 columns the key bar keeps `? help` and `q quit`, on every kind of item.
#[test]
fn the_key_bar_fits_80_columns() {
    let mut f = demo();
    for keys in ["", "a"] {
        // The A/B item, then (after choosing A) a single output.
        if keys == "a" {
            f.app.handle_key(key(KeyCode::Left)).unwrap();
        }
        press(&mut f.app, keys);
        let text = screen(&f.app);
        let bar = text.lines().last().unwrap();
        assert!(bar.contains("? help") && bar.contains("q quit"), "{bar}");
        assert!(bar.contains("a accept") && bar.contains("e edit"), "{bar}");
    }
    // Wider terminals show more.
    let mut terminal = Terminal::new(TestBackend::new(140, 24)).unwrap();
    terminal
        .draw(|fr| fr.render_widget(&f.app, fr.area()))
        .unwrap();
    let text = terminal.backend().to_string();
    assert!(
        text.contains("f filter") && text.contains("t stats"),
        "{text}"
    );
}

/// Flags, joined emoji and zero-width characters are drawn as escapes, so every cell holds
/// something of one agreed width and nothing is left behind when the screen changes.
#[test]
fn text_of_disputed_width_is_drawn_escaped() {
    let mut f = fixture(
        vec![item(
            "flag 🇺🇸 and 👩\u{200d}🔬",
            Some("a\u{200b}b ❤\u{fe0f}"),
            None,
            1.0,
        )],
        false,
    );
    let text = screen(&f.app);
    assert!(
        text.contains(r"flag \u{1f1fa}\u{1f1f8} and 👩\u{200d}🔬"),
        "{text}"
    );
    assert!(text.contains(r"a\u{200b}b ❤\u{fe0f}"), "{text}");
    // The editor holds the text itself: saved untouched, it is the original, an accept.
    press(&mut f.app, "e");
    save(&mut f.app);
    f.app.handle_key(key(KeyCode::Enter)).unwrap();
    let d = decided(&f, 0);
    assert_eq!((d.decision, d.corrected), (Decision::Accept, None));
}

/// On a PostgreSQL store whose tables go away mid-review (as when the server is down for longer
/// than the store's reconnects): reading keys leave the app open with a message, a decision stays
/// pending and NOT SAVED, and once the tables are back the pending decision saves once.
#[test]
fn the_app_stays_open_while_the_store_is_away() {
    let Some(db) = crate::store::testing::postgres("app_away") else {
        return;
    };
    let mut store = Store::connect(&db.url).unwrap();
    let items: Vec<Item> = (0..4)
        .map(|i| item(&format!("prompt {i}"), Some("out"), None, i as f64))
        .collect();
    store.add_items(items).unwrap();
    let opts = Options {
        annotator: "ana".into(),
        order: QueueOrder::Disagreement,
        overlap: 1,
        guidelines: None,
        title: "team".into(),
    };
    let mut app = App::new(store, opts, Theme::plain()).unwrap();
    let first = app.item().unwrap().id.clone();
    let mut admin = db.client();
    admin
        .batch_execute("ALTER TABLE decisions RENAME TO decisions_away")
        .unwrap();
    // A decision now is pending, and the item stays.
    app.on_key(key(KeyCode::Char('x'))).unwrap();
    assert!(app.has_pending(), "{}", screen(&app));
    assert_eq!(app.item().unwrap().id, first);
    assert!(screen(&app).contains("NOT SAVED"));
    // `f` lists what was decided: it cannot be read, and the app says so instead of quitting.
    app.on_key(key(KeyCode::Char('f'))).unwrap();
    assert!(
        screen(&app).contains("the store did not answer"),
        "{}",
        screen(&app)
    );
    admin
        .batch_execute("ALTER TABLE decisions_away RENAME TO decisions")
        .unwrap();
    app.pending.as_mut().unwrap().last_try -= RETRY_EVERY;
    app.tick().unwrap();
    assert!(!app.has_pending(), "{}", screen(&app));
    let decided: Vec<String> = app
        .store()
        .decisions()
        .unwrap()
        .into_iter()
        .map(|d| d.annotation.item_id)
        .collect();
    assert_eq!(decided, [first]);
    let events: i64 = admin
        .query_one("SELECT count(*) FROM events", &[])
        .unwrap()
        .get(0);
    assert_eq!(events, 1);
}

/// With a decision pending, nothing else overtakes or drops it: another decision waits for it,
/// an undo saves it first and then takes it back, and `q` warns before quitting without it.
#[test]
fn a_pending_decision_is_never_dropped_or_overtaken() {
    let (mut f, other) = demo_locked();
    let first = f.app.item().unwrap().id.clone();
    press(&mut f.app, "x");
    assert!(f.app.has_pending());
    // `n` moves on; a second decision is not sent while the first waits.
    press(&mut f.app, "n");
    let second = f.app.item().unwrap().id.clone();
    assert_ne!(second, first);
    press(&mut f.app, "s");
    assert!(
        screen(&f.app).contains("nothing else is sent before"),
        "{}",
        screen(&f.app)
    );
    assert_eq!(f.app.pending.as_ref().unwrap().item_id, first);
    // `q` warns, and does not quit yet.
    press(&mut f.app, "q");
    assert!(!f.app.quit);
    assert!(
        screen(&f.app).contains("q again quits WITHOUT"),
        "{}",
        screen(&f.app)
    );
    // The store is back: `u` saves the pending decision, then takes it back.
    other.execute_batch("ROLLBACK").unwrap();
    press(&mut f.app, "u");
    assert!(!f.app.has_pending());
    let log = f.app.store().events().unwrap();
    assert_eq!(
        log.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        ["decide", "undo"]
    );
    assert_eq!(log[0].item_id, first);
    assert!(f.app.store().decisions().unwrap().is_empty());
}
