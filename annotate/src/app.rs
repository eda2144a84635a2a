//! The terminal app: `App` owns the store, the list being reviewed and a [`Mode`], routes keys by
//! mode, and draws itself.
//!
//! The promise the app keeps: a decision key writes the decision through [`Store::decide_keyed`]
//! (committed and fsynced) *before* the screen moves to the next item; when the write fails, the
//! item stays on screen marked NOT SAVED, and nothing is marked saved. A decision that failed for
//! the database's sake (a lost connection, a lock) is kept as pending and tried again every few
//! seconds under the same idempotency key, so however often it is sent it is recorded once.

use std::path::Path;
use std::time::{Duration, Instant};

use datasets::text::{count, thousands};
use datasets::{Decision, Preference};
use ratatui::DefaultTerminal;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Gauge, Paragraph, Widget};

use crate::components::diff::{DiffAction, DiffReview, DiffView};
use crate::components::editor::{Editor, EditorAction};
use crate::components::guidelines::Guidelines;
use crate::components::help::Help;
use crate::components::item::{Draft, ItemView};
use crate::components::search::{SearchAction, SearchBox, SearchLine};
use crate::components::stats::StatsPanel;
use crate::components::{Close, KeyOutcome, Overlay, centered};
use crate::error::{Error, Result};
use crate::stats::{IDLE_GAP, MIN_ACTIVE, Stats, stats};
use crate::store::{Filter, Item, Progress, Store, Stored, Verdict};
use crate::theme::{Theme, shown_line};
use datasets::config::QueueOrder;

/// Items fetched from the store at a time: the app never holds more than this many.
pub const PAGE: usize = 50;

/// How a review is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Who is deciding (`--annotator`).
    pub annotator: String,
    /// Queue order.
    pub order: QueueOrder,
    /// Annotators wanted per item.
    pub overlap: u32,
    /// The guidelines: where they came from and their Markdown.
    pub guidelines: Option<(String, String)>,
    /// What is being reviewed (a run or a set), for the header.
    pub title: String,
}

/// Which items the app walks through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The review queue: what this annotator still has to decide, best first.
    Queue,
    /// A filter or a search.
    List(Filter),
}

impl View {
    fn label(&self) -> String {
        match self {
            View::Queue => "queue".into(),
            View::List(Filter::All) => "all items".into(),
            View::List(Filter::Decided(d)) => format!("your {}", past(*d)),
            View::List(Filter::Search(s)) => format!("search “{}”", shown_line(s)),
            View::List(Filter::Conflicts) => "conflicts between annotators".into(),
        }
    }

    /// `f` cycles through these.
    fn next_filter(&self) -> View {
        match self {
            View::Queue => View::List(Filter::Decided(Decision::Accept)),
            View::List(Filter::Decided(Decision::Accept)) => {
                View::List(Filter::Decided(Decision::Reject))
            }
            View::List(Filter::Decided(Decision::Reject)) => {
                View::List(Filter::Decided(Decision::Edit))
            }
            View::List(Filter::Decided(Decision::Edit)) => {
                View::List(Filter::Decided(Decision::Skip))
            }
            View::List(Filter::Decided(Decision::Skip)) => View::List(Filter::All),
            View::List(Filter::All) => View::List(Filter::Conflicts),
            _ => View::Queue,
        }
    }
}

fn past(d: Decision) -> &'static str {
    match d {
        Decision::Accept => "accepted",
        Decision::Reject => "rejected",
        Decision::Edit => "edited",
        Decision::Skip => "skipped",
    }
}

/// What the screen shows besides the item, and which component has the keys.
pub enum Mode {
    /// Reviewing the current item: the app's own keys.
    Review,
    /// Correcting the output.
    Edit(Editor),
    /// The correction against the original, before it is stored.
    Diff(DiffReview),
    /// `?`.
    Help(Overlay),
    /// `g`.
    Guidelines(Overlay),
    /// `/`: typing a search.
    Search(SearchBox),
    /// `t`.
    Stats(Box<Stats>, Overlay),
}

/// The status line's message.
#[derive(Debug, Clone, PartialEq)]
enum Status {
    None,
    Saved { event: i64, what: String },
    Info(String),
    Warn(String),
}

/// The terminal app.
pub struct App {
    store: Store,
    opts: Options,
    theme: Theme,
    mode: Mode,
    view: View,
    items: Vec<Item>,
    /// Items in the list being browsed (all pages), for the header.
    list_total: u64,
    offset: usize,
    cursor: usize,
    current: Option<Stored>,
    /// Other annotators' decisions on the item on screen.
    others: Vec<Stored>,
    draft: Draft,
    scroll: u16,
    shown_at: Instant,
    status: Status,
    progress: Progress,
    /// When this session's decisions were made, from the session's start.
    session: Vec<Duration>,
    started: Instant,
    /// Tests fix the clock: each decision is this long after the one before.
    fixed_step: Option<Duration>,
    quit: bool,
    /// A decision the store could not take yet, tried again under its key.
    pending: Option<Pending>,
    /// `q` was pressed with a decision pending: the next `q` quits without it.
    quit_armed: bool,
    /// The key of an undo that failed, sent again with the next `u`.
    undo_key: Option<String>,
}

/// A decision not saved yet: what it is, under which idempotency key, and since when.
#[derive(Debug, Clone)]
struct Pending {
    item_id: String,
    verdict: Verdict,
    key: String,
    what: String,
    since: Instant,
    last_try: Instant,
    error: String,
}

/// How long a pending decision waits between tries.
const RETRY_EVERY: Duration = Duration::from_secs(3);

impl App {
    /// Opens the review on `store`.
    pub fn new(store: Store, opts: Options, theme: Theme) -> Result<App> {
        let mut app = App {
            store,
            opts,
            theme,
            mode: Mode::Review,
            view: View::Queue,
            items: Vec::new(),
            list_total: 0,
            offset: 0,
            cursor: 0,
            current: None,
            others: Vec::new(),
            draft: Draft::default(),
            scroll: 0,
            shown_at: Instant::now(),
            status: Status::None,
            progress: Progress::default(),
            session: Vec::new(),
            started: Instant::now(),
            fixed_step: None,
            quit: false,
            pending: None,
            quit_armed: false,
            undo_key: None,
        };
        app.refresh()?;
        Ok(app)
    }

    /// Makes the items/hour figure independent of the wall clock (for screen snapshots).
    pub fn fix_clock(&mut self, step: Duration) {
        self.fixed_step = Some(step);
    }

    /// Whether `q` was pressed.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// The item on screen.
    pub fn item(&self) -> Option<&Item> {
        self.items.get(self.cursor)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs the app until `q`: draw, wait for a key, handle it.
    pub fn run(&mut self, terminal: &mut DefaultTerminal) -> Result<()> {
        while !self.quit {
            terminal
                .draw(|f| f.render_widget(&*self, f.area()))
                .map_err(Error::Terminal)?;
            // With a decision pending, wake up to try it again.
            if self.pending.is_some() && !event::poll(RETRY_EVERY / 3).map_err(Error::Terminal)? {
                if let Err(e) = self.tick() {
                    self.reload_failed(&e);
                }
                continue;
            }
            match event::read().map_err(Error::Terminal)? {
                Event::Key(key) if key.kind != KeyEventKind::Release => self.on_key(key)?,
                // A resize redraws on the next turn of the loop.
                _ => {}
            }
        }
        // The item on screen goes back to the others (a failure here only delays that until
        // the claim's lease runs out).
        let _ = self.store.release(&self.opts.annotator);
        Ok(())
    }

    /// Reloads the page at the current offset, the decision on the current item and the counts.
    fn refresh(&mut self) -> Result<()> {
        let keep = self.item().map(|i| i.id.clone());
        self.items = match &self.view {
            View::Queue => {
                self.offset = 0;
                self.store.queue(
                    &self.opts.annotator,
                    self.opts.order,
                    self.opts.overlap,
                    PAGE,
                )?
            }
            View::List(filter) => {
                self.list_total = self.store.count(&self.opts.annotator, filter)?;
                self.store
                    .list(&self.opts.annotator, filter, self.offset, PAGE)?
            }
        };
        if self.view != View::Queue
            && let Some(pos) = keep.and_then(|id| self.items.iter().position(|i| i.id == id))
        {
            self.cursor = pos;
        }
        self.cursor = self.cursor.min(self.items.len().saturating_sub(1));
        self.progress = self
            .store
            .progress(&self.opts.annotator, self.opts.overlap)?;
        self.load_current()
    }

    fn load_current(&mut self) -> Result<()> {
        if self.view == View::Queue {
            self.claim_current();
        }
        self.show_current()
    }

    /// Loads the decisions on the item at the cursor, as [`Self::load_current`] without a claim.
    fn show_current(&mut self) -> Result<()> {
        self.current = match self.item() {
            Some(item) => self.store.current(&item.id, &self.opts.annotator)?,
            None => None,
        };
        self.others = match self.item() {
            Some(item) => {
                let mut all = self.store.decisions_on(&item.id)?;
                all.retain(|s| s.annotation.annotator != self.opts.annotator);
                all
            }
            None => Vec::new(),
        };
        self.draft = Draft::default();
        self.scroll = 0;
        self.shown_at = Instant::now();
        Ok(())
    }

    /// Claims the queue item on screen so that no other annotator is shown it while the overlap
    /// has no room; an item someone else claimed first leaves this queue and the next one is
    /// tried. A store that cannot take the claim (locked, read-only) does not stop the review:
    /// the item is shown, and the decision itself reports any failure.
    fn claim_current(&mut self) {
        for _ in 0..PAGE {
            let Some(item) = self.item() else { return };
            let id = item.id.clone();
            match self
                .store
                .claim(&id, &self.opts.annotator, self.opts.overlap)
            {
                Ok(true) | Err(_) => return,
                Ok(false) => {
                    self.items.remove(self.cursor);
                    self.cursor = self.cursor.min(self.items.len().saturating_sub(1));
                }
            }
        }
    }

    /// Handles one key press: the component in focus first, then the review's own keys.
    /// [`Self::handle_key`], staying open when the store fails (a server gone, a lock held): the
    /// status line says so, what was saved is safe, and the key can be pressed again. Only a
    /// failure of the terminal ends the app.
    pub fn on_key(&mut self, key: KeyEvent) -> Result<()> {
        match self.handle_key(key) {
            Ok(()) => Ok(()),
            Err(e @ Error::Terminal(_)) => Err(e),
            Err(e) => {
                self.status = Status::Warn(format!(
                    "the store did not answer ({}); what was saved is safe: press the key again to retry",
                    first_line(&e)
                ));
                Ok(())
            }
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Result<()> {
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return Ok(());
        }
        self.mode = match std::mem::replace(&mut self.mode, Mode::Review) {
            Mode::Review => return self.review_key(key),
            Mode::Edit(mut editor) => match editor.handle_key(key) {
                KeyOutcome::Act(EditorAction::Save(text)) => {
                    Mode::Diff(DiffReview::new(editor, text))
                }
                KeyOutcome::Act(EditorAction::Cancel) => {
                    self.status = Status::Info("edit cancelled".into());
                    Mode::Review
                }
                KeyOutcome::Consumed | KeyOutcome::NotConsumed => Mode::Edit(editor),
            },
            Mode::Diff(mut diff) => match diff.handle_key(key) {
                KeyOutcome::Act(DiffAction::Store) => return self.store_correction(diff),
                KeyOutcome::Act(DiffAction::EditAgain) => Mode::Edit(diff.editor),
                KeyOutcome::Act(DiffAction::Cancel) => {
                    self.status = Status::Info("edit cancelled".into());
                    Mode::Review
                }
                KeyOutcome::Consumed | KeyOutcome::NotConsumed => Mode::Diff(diff),
            },
            Mode::Help(mut o) => match o.handle_key(key) {
                KeyOutcome::Act(Close) => Mode::Review,
                _ => Mode::Help(o),
            },
            Mode::Guidelines(mut o) => match o.handle_key(key) {
                KeyOutcome::Act(Close) => Mode::Review,
                _ => Mode::Guidelines(o),
            },
            Mode::Stats(s, mut o) => match o.handle_key(key) {
                KeyOutcome::Act(Close) => Mode::Review,
                _ => Mode::Stats(s, o),
            },
            Mode::Search(mut search) => match search.handle_key(key) {
                KeyOutcome::Act(SearchAction::Cancel) => Mode::Review,
                KeyOutcome::Act(SearchAction::Submit(text)) => {
                    let view = if text.trim().is_empty() {
                        View::Queue
                    } else {
                        View::List(Filter::Search(text))
                    };
                    return self.set_view(view);
                }
                KeyOutcome::Consumed | KeyOutcome::NotConsumed => Mode::Search(search),
            },
        };
        Ok(())
    }

    /// Enter on the diff: stores the correction, or keeps it on screen when it is not stored (so
    /// nothing is retyped).
    fn store_correction(&mut self, diff: DiffReview) -> Result<()> {
        if diff.text.trim().is_empty() {
            self.status = Status::Warn(
                "an empty correction is not stored: press e to write the answer, or Esc and x \
                 to reject"
                    .into(),
            );
            self.mode = Mode::Diff(diff);
            return Ok(());
        }
        // A correction that changes nothing is an accept of the output the editor named (A,
        // unless B was chosen).
        let saved = if diff.text == diff.editor.original {
            self.commit_named(Decision::Accept, None)?
        } else {
            self.commit(Decision::Edit, Some(diff.text.clone()))?
        };
        if !saved {
            self.mode = Mode::Diff(diff);
        }
        Ok(())
    }

    fn review_key(&mut self, key: KeyEvent) -> Result<()> {
        match key.code {
            KeyCode::Char('q') => self.quit_key()?,
            KeyCode::Char('a') => {
                self.commit(Decision::Accept, None)?;
            }
            KeyCode::Char('x') => {
                self.commit(Decision::Reject, None)?;
            }
            KeyCode::Char('s') => {
                self.commit(Decision::Skip, None)?;
            }
            KeyCode::Char(c @ '1'..='5') if self.item().is_some() => {
                self.draft.rating = Some(c as u8 - b'0');
            }
            KeyCode::Left => self.prefer(Preference::A),
            KeyCode::Right => self.prefer(Preference::B),
            KeyCode::Char('=') => self.prefer(Preference::Tie),
            KeyCode::Char('e') => self.open_editor(),
            KeyCode::Char('u') => self.undo()?,
            KeyCode::Char('n') | KeyCode::Tab => self.step(1)?,
            KeyCode::Char('p') | KeyCode::BackTab => self.step(-1)?,
            KeyCode::Down | KeyCode::Char('j') => self.scroll = self.scroll.saturating_add(1),
            KeyCode::Up | KeyCode::Char('k') => self.scroll = self.scroll.saturating_sub(1),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_add(10),
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Home => self.scroll = 0,
            KeyCode::Char('?') => self.mode = Mode::Help(Overlay::new('?')),
            KeyCode::Char('g') => match self.opts.guidelines {
                Some(_) => self.mode = Mode::Guidelines(Overlay::new('g')),
                None => {
                    self.status = Status::Warn(
                        "no guidelines: name a Markdown file in `annotate.guidelines` (or `--guidelines FILE`)".into(),
                    )
                }
            },
            KeyCode::Char('t') => {
                // The gauge and the overlay count the same store at the same moment (others
                // may have decided since the last key).
                self.progress = self
                    .store
                    .progress(&self.opts.annotator, self.opts.overlap)?;
                self.mode = Mode::Stats(
                    Box::new(stats(&self.store, self.opts.overlap)?),
                    Overlay::new('t'),
                )
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Search(SearchBox::default())
            }
            KeyCode::Char('f') => self.set_view(self.view.next_filter())?,
            KeyCode::Esc if self.view != View::Queue => self.set_view(View::Queue)?,
            _ => {}
        }
        Ok(())
    }

    fn prefer(&mut self, p: Preference) {
        match self.item() {
            Some(item) if item.b.is_some() => self.draft.preference = Some(p),
            Some(_) => {
                self.status = Status::Info("one candidate: nothing to prefer".into());
            }
            None => {}
        }
    }

    fn open_editor(&mut self) {
        let Some(item) = self.item() else { return };
        let pref = self
            .draft
            .preference
            .or(self.current.as_ref().and_then(|c| c.annotation.preference));
        let original = item
            .chosen(pref)
            .map(|c| c.text.clone())
            .unwrap_or_default();
        let what = match (&item.b, item.a.is_some()) {
            (Some(_), _) => format!("output {}", chosen_label(item, pref)),
            (None, true) => "the output".to_string(),
            (None, false) => "the answer".to_string(),
        };
        let start = self
            .current
            .as_ref()
            .and_then(|c| c.annotation.corrected.clone())
            .unwrap_or_else(|| original.clone());
        self.mode = Mode::Edit(Editor::new(&original, &start, &what, &self.theme));
    }

    fn set_view(&mut self, view: View) -> Result<()> {
        self.view = view;
        self.offset = 0;
        self.cursor = 0;
        self.items.clear();
        self.refresh()?;
        if self.items.is_empty() {
            self.status = Status::Info(format!("{}: nothing here", self.view.label()));
        }
        Ok(())
    }

    /// Moves `delta` items along the list, fetching the next or previous page when needed.
    fn step(&mut self, delta: isize) -> Result<()> {
        let target = self.cursor as isize + delta;
        if target >= 0 && (target as usize) < self.items.len() {
            self.cursor = target as usize;
            return self.load_current();
        }
        if self.view == View::Queue {
            return Ok(());
        }
        if target < 0 && self.offset > 0 {
            self.offset = self.offset.saturating_sub(PAGE);
            self.items.clear();
            self.refresh()?;
            self.cursor = self.items.len().saturating_sub(1);
            return self.load_current();
        }
        if target as usize >= self.items.len() && self.items.len() == PAGE {
            self.offset += PAGE;
            self.items.clear();
            self.cursor = 0;
            self.refresh()?;
            if self.items.is_empty() {
                self.offset -= PAGE;
                self.refresh()?;
                self.cursor = self.items.len().saturating_sub(1);
            }
            return self.load_current();
        }
        Ok(())
    }

    /// Stores a decision on the item on screen, then moves on. The store has committed (and
    /// fsynced) before anything on screen changes.
    /// Returns whether the decision was stored.
    fn commit(&mut self, decision: Decision, corrected: Option<String>) -> Result<bool> {
        self.store_decision(decision, corrected, false)
    }

    /// [`Self::commit`] of a decision on an output the expert was shown by name (the editor's
    /// title), so an accept on an A/B item needs no separate choice.
    fn commit_named(&mut self, decision: Decision, corrected: Option<String>) -> Result<bool> {
        self.store_decision(decision, corrected, true)
    }

    fn store_decision(
        &mut self,
        decision: Decision,
        corrected: Option<String>,
        named: bool,
    ) -> Result<bool> {
        let Some(item) = self.item() else {
            self.status = Status::Info("nothing to decide here".into());
            return Ok(false);
        };
        if item.a.is_none() && matches!(decision, Decision::Accept | Decision::Reject) {
            self.status = Status::Warn(
                "this item has no output to accept or reject: press e to write the answer".into(),
            );
            return Ok(false);
        }
        let id = item.id.clone();
        // What the screen shows is what is stored: the keys pressed now, else the decision in
        // force (a re-decided item keeps its rating and preference unless changed).
        let stored = self.current.as_ref().map(|c| &c.annotation);
        let verdict = Verdict {
            decision: Some(decision),
            rating: self.draft.rating.or(stored.and_then(|a| a.rating)),
            corrected,
            preference: self.draft.preference.or(stored.and_then(|a| a.preference)),
            duration_ms: self.shown_at.elapsed().as_millis() as u64,
            ..Verdict::default()
        };
        // Accepting one of two outputs says which: A is never accepted by default.
        if decision == Decision::Accept
            && item.b.is_some()
            && verdict.preference.is_none()
            && !named
        {
            self.status =
                Status::Warn("not saved: accept needs a choice: ← A, → B or = tie, then a".into());
            return Ok(false);
        }
        let what = stored_summary(item, &verdict);
        // The same decision again (the expert pressed the key again while it was pending) goes
        // under the same key: recorded once even if an earlier try was committed unseen.
        // (The time spent on the item grows between tries; it is not part of the decision.)
        let same = |p: &Pending| {
            p.item_id == id
                && Verdict {
                    duration_ms: 0,
                    ..p.verdict.clone()
                } == Verdict {
                    duration_ms: 0,
                    ..verdict.clone()
                }
        };
        match self.pending.as_ref().filter(|p| same(p)) {
            Some(p) => {
                let p = p.clone();
                self.save(p.item_id, p.verdict, p.key, p.what)
            }
            None => {
                // Another decision waits: it goes first, and the new one only once it is saved,
                // so none is dropped and they reach the store in the order they were made.
                if !self.flush_pending()? {
                    return Ok(false);
                }
                self.save(id, verdict, crate::store::new_key(), what)
            }
        }
    }

    /// Sends a decision; on success the screen moves on, on a database failure the decision
    /// stays pending.
    fn save(&mut self, id: String, verdict: Verdict, key: String, what: String) -> Result<bool> {
        let now = crate::store::now_micros();
        match self
            .store
            .decide_keyed(&key, &id, &self.opts.annotator, &verdict, now)
        {
            Ok(event) => {
                let retried = self.pending.take().is_some_and(|p| p.key == key);
                let what = if retried {
                    format!("{what}, after the store came back")
                } else {
                    what
                };
                let at = match self.fixed_step {
                    Some(step) => step * (self.session.len() as u32 + 1),
                    None => self.started.elapsed(),
                };
                self.session.push(at);
                self.status = Status::Saved { event, what };
                if self.view == View::Queue {
                    self.cursor = 0;
                }
                // Browsing a list: stay on the item just re-decided when it still matches, else
                // on the one that took its place. The decision is saved whatever the reload
                // does: a failed reload must not invite the same key again.
                if let Err(e) = self.refresh() {
                    self.reload_failed(&e);
                }
                Ok(true)
            }
            Err(e) if e.is_bad_input() => {
                self.status = Status::Warn(format!("not saved: {e}"));
                Ok(false)
            }
            Err(e) => {
                // Lost connection, locked, disk full, read-only: the decision is not
                // acknowledged; the item stays, and the decision is tried again under its key.
                let error = first_line(&e);
                let since = match &self.pending {
                    Some(p) if p.key == key => p.since,
                    _ => Instant::now(),
                };
                self.pending = Some(Pending {
                    item_id: id,
                    verdict,
                    key,
                    what,
                    since,
                    last_try: Instant::now(),
                    error: error.clone(),
                });
                self.status = Status::Warn(self.offline_message());
                Ok(false)
            }
        }
    }

    /// What the status line says while a decision is pending.
    fn offline_message(&self) -> String {
        match &self.pending {
            Some(p) => format!(
                "NOT SAVED ({}): working offline for {} s, trying again every {} s; the item stays until it is saved: {}",
                p.what,
                p.since.elapsed().as_secs(),
                RETRY_EVERY.as_secs(),
                p.error
            ),
            None => String::new(),
        }
    }

    /// Tries a pending decision again when it is time, unless the expert is busy in an editor
    /// or an overlay (their next decision key tries it as well).
    pub fn tick(&mut self) -> Result<()> {
        let Some(p) = &self.pending else {
            return Ok(());
        };
        if p.last_try.elapsed() < RETRY_EVERY || !matches!(self.mode, Mode::Review) {
            if p.last_try.elapsed() >= Duration::from_secs(1) {
                self.status = Status::Warn(self.offline_message());
            }
            return Ok(());
        }
        let p = p.clone();
        if self.save(p.item_id, p.verdict, p.key, p.what)?
            && let Err(e) = self.load_current()
        {
            self.reload_failed(&e);
        }
        Ok(())
    }

    /// Tries the pending decision (if any) now. Returns whether nothing is pending any more;
    /// when it still cannot be saved the status line says so, and the caller does not go on.
    fn flush_pending(&mut self) -> Result<bool> {
        let Some(p) = self.pending.clone() else {
            return Ok(true);
        };
        if self.save(p.item_id, p.verdict, p.key, p.what)? {
            return Ok(true);
        }
        let (what, since) = self.pending.as_ref().map_or((String::new(), 0), |p| {
            (p.what.clone(), p.since.elapsed().as_secs())
        });
        self.status = Status::Warn(format!(
            "nothing else is sent before the decision NOT SAVED yet ({what}); offline {since} s, trying again every {} s",
            RETRY_EVERY.as_secs()
        ));
        Ok(false)
    }

    /// `q`: quits, unless a decision is still not saved; then once more quits without it.
    fn quit_key(&mut self) -> Result<()> {
        if self.quit_armed || self.flush_pending()? {
            self.quit = true;
            return Ok(());
        }
        self.quit_armed = true;
        let what = self
            .pending
            .as_ref()
            .map_or(String::new(), |p| p.what.clone());
        self.status = Status::Warn(format!(
            "q again quits WITHOUT the decision NOT SAVED yet ({what}); the app tries it every {} s",
            RETRY_EVERY.as_secs()
        ));
        Ok(())
    }

    /// A reload after a saved write failed: the write stands; the status line keeps what was
    /// saved and says the list is stale.
    fn reload_failed(&mut self, e: &Error) {
        let note = format!("the list could not be reloaded ({})", first_line(e));
        self.status = match std::mem::replace(&mut self.status, Status::None) {
            Status::Saved { event, what } => Status::Saved {
                event,
                what: format!("{what}; {note}"),
            },
            Status::Info(m) => Status::Info(format!("{m}; {note}")),
            _ => Status::Warn(note),
        };
    }

    /// Whether a decision waits to be saved.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn undo(&mut self) -> Result<()> {
        // A pending decision is the last one made: it is saved (or found saved) first, so the
        // undo takes back what the expert last decided.
        if !self.flush_pending()? {
            return Ok(());
        }
        // One key per undo asked for: pressed again after a failure whose commit landed, it
        // takes back one decision, not two.
        let key = self
            .undo_key
            .get_or_insert_with(crate::store::new_key)
            .clone();
        match self.store.undo_keyed(&key, &self.opts.annotator) {
            Ok(Some(id)) => {
                self.undo_key = None;
                self.session.pop();
                self.view = View::Queue;
                self.cursor = 0;
                self.status = Status::Info("undone: your last decision is taken back".into());
                if let Err(e) = self.undone(&id) {
                    self.reload_failed(&e);
                }
            }
            Ok(None) => {
                self.undo_key = None;
                self.status = Status::Info("nothing to undo".into());
            }
            Err(e) => {
                self.status = Status::Warn(format!(
                    "undo NOT saved: {}; press u again to retry (it takes back one decision however often it is sent)",
                    first_line(&e)
                ))
            }
        }
        Ok(())
    }

    /// Shows the item an undo gave back.
    fn undone(&mut self, id: &str) -> Result<()> {
        self.refresh()?;
        match self.items.iter().position(|i| i.id == id) {
            Some(pos) => self.cursor = pos,
            None => {
                // Others completed it meanwhile: show it anyway, first.
                if let Some(item) = self.store.item(id)? {
                    self.items.insert(0, item);
                    self.items.truncate(PAGE);
                }
            }
        }
        // The item is this annotator's to redo whatever others hold: claimed when there is
        // room, shown either way.
        let _ = self
            .store
            .claim(id, &self.opts.annotator, self.opts.overlap);
        self.show_current()
    }

    /// Decisions per hour of active time in this session, as `annotate stats` counts them: the
    /// gaps between consecutive decisions, each capped at [`IDLE_GAP`].
    fn items_per_hour(&self) -> Option<f64> {
        let active: Duration = self
            .session
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]).min(IDLE_GAP))
            .sum();
        (self.session.len() >= 2 && active >= MIN_ACTIVE)
            .then(|| (self.session.len() - 1) as f64 / active.as_secs_f64() * 3600.0)
    }

    fn render_header(&self, area: Rect, buf: &mut Buffer) {
        let t = &self.theme;
        let position = if self.items.is_empty() {
            String::new()
        } else {
            format!(
                " · {} of {}",
                self.offset + self.cursor + 1,
                self.list_size()
            )
        };
        Line::from(vec![
            Span::styled(" workbench annotate ", t.selected),
            Span::raw(format!(
                " {} · {} · {}{}",
                shown_line(&self.opts.title),
                shown_line(&self.opts.annotator),
                self.view.label(),
                position
            )),
        ])
        .render(area, buf);
    }

    fn list_size(&self) -> String {
        match self.view {
            View::Queue => {
                let left = self
                    .progress
                    .items
                    .saturating_sub(self.progress.complete)
                    .max(self.items.len() as u64);
                format!("{left} open")
            }
            // The count is taken with the page; a page that reaches past it (others decided
            // meanwhile) still shows a true upper bound.
            _ => format!(
                "{}",
                self.list_total.max((self.offset + self.items.len()) as u64)
            ),
        }
    }

    fn render_footer(&self, area: Rect, buf: &mut Buffer) {
        let t = &self.theme;
        let [gauge_row, keys] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
        let p = self.progress;
        let ratio = if p.items == 0 {
            0.0
        } else {
            p.complete as f64 / p.items as f64
        };
        let rate = self
            .items_per_hour()
            .map_or("— items/h".to_string(), |r| format!("{r:.0} items/h"));
        let gauge = Gauge::default()
            .gauge_style(t.gauge)
            .ratio(ratio.clamp(0.0, 1.0))
            .label(format!(
                "{}/{} complete · yours {} · {rate}",
                p.complete, p.items, p.mine
            ));
        let message = match &self.status {
            Status::None => Span::raw(""),
            Status::Saved { event, what } => {
                Span::styled(format!(" ✓ saved ({what}, event {event})"), t.ok)
            }
            Status::Info(m) => Span::raw(format!(" {}", shown_line(m))),
            Status::Warn(m) => Span::styled(format!(" {}", shown_line(m)), t.warn),
        };
        // The message is read in full: the gauge gives way to it, and steps aside for a
        // message too long to share the row (until the next key).
        let message = Line::from(message);
        let gauge_cells = (gauge_row.width * 55 / 100)
            .min(gauge_row.width.saturating_sub(message.width() as u16 + 1));
        let gauge_cells = if gauge_cells < 24 { 0 } else { gauge_cells };
        let [gauge_area, status] =
            Layout::horizontal([Constraint::Length(gauge_cells), Constraint::Fill(1)])
                .areas(gauge_row);
        gauge.render(gauge_area, buf);
        message.render(status, buf);
        let two = self.item().is_some_and(|i| i.b.is_some());
        let hints = key_bar(&self.mode, two, keys.width as usize);
        let mut spans = Vec::new();
        for (k, v) in hints {
            spans.push(Span::styled(format!(" {k}"), t.key));
            spans.push(Span::raw(format!(" {v} ")));
        }
        Line::from(spans).render(keys, buf);
    }

    fn render_empty(&self, area: Rect, buf: &mut Buffer) {
        let text = match &self.view {
            View::Queue => vec![
                Line::styled("Nothing left to review.", self.theme.ok),
                Line::raw(""),
                Line::raw(format!(
                    "{} of {} have the {} they need; you made {}.",
                    thousands(self.progress.complete),
                    count(self.progress.items, "item"),
                    count(u64::from(self.opts.overlap), "decision"),
                    thousands(self.progress.mine)
                )),
                Line::raw("u takes back your last decision · f browses what was decided · q quits"),
            ],
            view => vec![Line::raw(format!("{}: nothing here.", view.label()))],
        };
        Paragraph::new(text)
            .block(Block::bordered())
            .render(area, buf);
    }
}

/// The keys shown at the bottom in `mode`, as many as fit in `width` cells: the least needed
/// go first, and `? help` (which lists them all) and `q quit` always stay.
fn key_bar(mode: &Mode, two_outputs: bool, width: usize) -> Vec<(&'static str, &'static str)> {
    // (key, what it does, rank: lower stays longer).
    let all: &[(&str, &str, u8)] = match mode {
        Mode::Edit(_) => &[("Ctrl-S", "save", 0), ("Esc", "cancel", 0)],
        Mode::Diff { .. } => &[
            ("Enter", "store", 0),
            ("e", "edit again", 0),
            ("Esc", "cancel", 0),
        ],
        Mode::Search { .. } => &[("Enter", "search", 0), ("Esc", "cancel", 0)],
        _ => &[
            ("a", "accept", 1),
            ("x", "reject", 1),
            ("s", "skip", 2),
            ("e", "edit", 1),
            ("←→=", "A/B/tie", if two_outputs { 1 } else { 9 }),
            ("1-5", "rate", 4),
            ("u", "undo", 3),
            ("/", "search", 5),
            ("f", "filter", 6),
            ("t", "stats", 7),
            ("?", "help", 0),
            ("q", "quit", 0),
        ],
    };
    // Each hint is drawn as ` KEY LABEL `.
    let cells = |(k, v, _): &(&str, &str, u8)| crate::theme::width(k) + crate::theme::width(v) + 3;
    let mut kept: Vec<(&str, &str, u8)> = all
        .iter()
        .copied()
        .filter(|&(_, _, rank)| rank < 9)
        .collect();
    while kept.iter().map(cells).sum::<usize>() > width {
        // The last of the least needed goes first.
        let Some(drop) = kept
            .iter()
            .enumerate()
            .filter(|(_, h)| h.2 > 0)
            .max_by_key(|(i, h)| (h.2, *i))
            .map(|(i, _)| i)
        else {
            break;
        };
        kept.remove(drop);
    }
    kept.into_iter().map(|(k, v, _)| (k, v)).collect()
}

/// The label of the candidate a decision applies to (see [`Item::chosen`]).
fn chosen_label(item: &Item, preference: Option<Preference>) -> &'static str {
    match preference {
        Some(Preference::B) if item.b.is_some() => "B",
        _ => "A",
    }
}

/// What a verdict stores, in words, for the status line: the decision, which output it applies
/// to on an A/B item, and the rating.
fn stored_summary(item: &Item, verdict: &Verdict) -> String {
    let Some(decision) = verdict.decision else {
        return String::new();
    };
    let pref = verdict.preference;
    let mut out = match (decision, item.b.is_some(), pref) {
        (Decision::Accept, true, Some(Preference::Tie)) => "accepted A and B as a tie".into(),
        (Decision::Accept, true, _) => format!("accepted {}", chosen_label(item, pref)),
        (Decision::Reject, true, None | Some(Preference::Tie)) => "rejected A and B".into(),
        (Decision::Reject, true, Some(p)) => {
            format!("rejected, {} preferred", p.as_str())
        }
        (Decision::Edit, true, _) => format!("edited {}", chosen_label(item, pref)),
        (Decision::Skip, true, Some(Preference::Tie)) => "skipped (A and B tie)".into(),
        (Decision::Skip, true, Some(p)) => {
            format!("skipped ({} preferred)", p.as_str())
        }
        (d, _, _) => past(d).into(),
    };
    if let Some(r) = verdict.rating {
        out.push_str(&format!(", rated {r}"));
    }
    out
}

fn first_line(e: &Error) -> String {
    let text = format!("{e}");
    let mut out = text.lines().next().unwrap_or_default().to_string();
    if let Some(source) = std::error::Error::source(e) {
        out.push_str(&format!(": {source}"));
    }
    out
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [header, body, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(2),
        ])
        .areas(area);
        self.render_header(header, buf);
        self.render_footer(footer, buf);
        match (&self.mode, self.item()) {
            (Mode::Edit(editor), Some(item))
            | (Mode::Diff(DiffReview { editor, .. }), Some(item)) => {
                let [prompt, panel] =
                    Layout::vertical([Constraint::Percentage(30), Constraint::Fill(1)]).areas(body);
                Paragraph::new(crate::theme::shown(&item.prompt))
                    .wrap(ratatui::widgets::Wrap { trim: false })
                    .block(Block::bordered().title(Span::styled(" Prompt ", self.theme.title)))
                    .render(prompt, buf);
                match &self.mode {
                    Mode::Diff(diff) => DiffView {
                        changes: &diff.changes,
                        theme: &self.theme,
                    }
                    .render(panel, buf),
                    _ => editor.render(panel, buf),
                }
            }
            (_, Some(item)) => ItemView {
                item,
                current: self.current.as_ref().map(|c| &c.annotation),
                others: &self.others,
                draft: self.draft,
                scroll: self.scroll,
                theme: &self.theme,
            }
            .render(body, buf),
            (_, None) => self.render_empty(body, buf),
        }
        match &self.mode {
            Mode::Help(o) => Help {
                scroll: o.scroll,
                theme: &self.theme,
            }
            .render(centered(body, 96, 100), buf),
            Mode::Guidelines(o) => {
                if let Some((source, text)) = &self.opts.guidelines {
                    Guidelines {
                        text,
                        source,
                        scroll: o.scroll,
                        theme: &self.theme,
                    }
                    .render(centered(body, 80, 90), buf)
                }
            }
            Mode::Stats(s, o) => StatsPanel {
                stats: s,
                scroll: o.scroll,
                theme: &self.theme,
            }
            .render(centered(body, 90, 80), buf),
            Mode::Search(search) => SearchLine {
                search,
                theme: &self.theme,
            }
            .render(body, buf),
            _ => {}
        }
    }
}

/// Opens the terminal, runs the app, and gives the terminal back, even on a panic
/// (`ratatui::init` installs a hook that restores it first).
pub fn run(store: Store, opts: Options) -> Result<Store> {
    let mut app = App::new(store, opts, Theme::from_env())?;
    let mut terminal = ratatui::try_init().map_err(Error::Terminal)?;
    let result = app.run(&mut terminal);
    ratatui::try_restore().map_err(Error::Terminal)?;
    result?;
    Ok(app.store)
}

/// Reads the guidelines file named in the config.
pub fn read_guidelines(path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((path.display().to_string(), text))
}

#[cfg(test)]
mod tests;
