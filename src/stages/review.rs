//! Expert review in a run: the simulated expert's decisions (when the config asks for it), the
//! decisions in force, and their export to `runs/<name>/feedback/` as training sets. People
//! review with `workbench annotate` (see `src/commands/annotate.rs`).

use std::path::Path;

use annotate::store::{DB_FILE, Location, Store, Stored};
use anyhow::Result;
use datasets::config::{AnnotateConfig, LoadedConfig};
use datasets::rundir::{RunDir, layout};
use distill::report::ExpertUse;

use crate::BadInput;
use crate::output::Output;

/// Where a run's expert decisions are: `annotate.store` (PostgreSQL), else `annotations.db` in
/// the run directory.
pub fn run_store(annotate: &AnnotateConfig, run: &Path) -> Location {
    match &annotate.store {
        Some(url) => Location::Postgres(url.clone()),
        None => Location::File(run.join(DB_FILE)),
    }
}

/// The store at `at` when there is one to read: a database file that exists, or a server
/// (where an empty store is made).
pub fn existing_store(at: &Location) -> Result<Option<Store>> {
    if !at.exists() {
        return Ok(None);
    }
    Ok(Some(Store::open_at(at, false)?))
}

/// The **simulated expert** (not a person) reviews the run's candidates, up to the budget; its
/// decisions are stored under its own name and said to be simulated.
pub fn simulated_review(out: &Output, loaded: &LoadedConfig, run: &RunDir) -> Result<()> {
    use annotate::simulated::{self, SIMULATED_EXPERT};
    let c = &loaded.config;
    let mut store = Store::open_at(&run_store(&c.annotate, run.path()), true)?;
    annotate::import::set_queue_seed(&mut store, c.run.seed)?;
    let items = annotate::import::run_items(run.path())?;
    annotate::import::import(&mut store, &items, &mut |_| {})?;
    let candidates = store.progress(SIMULATED_EXPERT, 1)?.items;
    if c.annotate.budget > candidates {
        return Err(BadInput(format!(
            "`annotate.budget` is {}, more than the {candidates} review candidates there are to \
             decide\n\nhint: set `annotate.budget` to at most {candidates} (a budget smaller \
             than the candidates is what makes the queue's order matter), or give a larger \
             review set",
            c.annotate.budget
        ))
        .into());
    }
    let spent = store
        .decisions()?
        .iter()
        .filter(|d| d.annotation.annotator == SIMULATED_EXPERT)
        .count() as u64;
    let left = c.annotate.budget.saturating_sub(spent);
    let steps = &c.eval.normalize;
    let same = |a: &str, b: &str| {
        datasets::config::Normalize::apply(steps, a) == datasets::config::Normalize::apply(steps, b)
    };
    let order = c.annotate.order;
    let r = simulated::review(&mut store, order, left, &same)?;
    out.say(format!(
        "simulated expert (answers from the references; not a person, stored as \
         `{SIMULATED_EXPERT}`): {} accepted, {} corrected, {} skipped this time; {} of the \
         budget of {} spent",
        r.accepted,
        r.corrected,
        r.skipped,
        spent + r.decisions(),
        c.annotate.budget
    ));
    Ok(())
}

/// Expert decisions in force (skips aside) in the run's annotation store; 0 without one.
pub fn expert_decisions(loaded: &LoadedConfig, run: &RunDir) -> Result<u64> {
    Ok(expert_use(loaded, run)?.map_or(0, |e| e.decisions))
}

/// The run's annotation store and its decisions in force, read once; `None` without a store.
pub fn store_decisions(
    loaded: &LoadedConfig,
    run: &RunDir,
) -> Result<Option<(Store, Vec<Stored>)>> {
    let Some(store) = existing_store(&run_store(&loaded.config.annotate, run.path()))? else {
        return Ok(None);
    };
    let decisions = store.decisions()?;
    Ok(Some((store, decisions)))
}

/// The decisions in force (skips aside) in the run's annotation store, who made them and how
/// many the simulated expert made; `None` without any.
pub fn expert_use(loaded: &LoadedConfig, run: &RunDir) -> Result<Option<ExpertUse>> {
    Ok(store_decisions(loaded, run)?.and_then(|(_, decisions)| expert_use_of(&decisions)))
}

/// [`expert_use`] of decisions already read.
pub fn expert_use_of(decisions: &[Stored]) -> Option<ExpertUse> {
    let mut e = ExpertUse::default();
    for d in decisions {
        let a = &d.annotation;
        if a.decision == datasets::Decision::Skip {
            continue;
        }
        e.decisions += 1;
        if a.annotator == annotate::simulated::SIMULATED_EXPERT {
            e.simulated += 1;
        }
        if !e.annotators.contains(&a.annotator) {
            e.annotators.push(a.annotator.clone());
        }
    }
    (e.decisions > 0).then_some(e)
}

/// The fine-tune's settings hash for the feedback `decisions` give (what a fine-tune would
/// train on now).
pub fn finetune_hash_of(
    loaded: &LoadedConfig,
    store: &Store,
    decisions: &[Stored],
) -> Result<String> {
    let (sft, preference) = annotate::feedback::rows(store, decisions)?;
    Ok(distill::stages::hashes::finetune_hash_on(
        &loaded.config,
        &sft,
        &preference,
    ))
}

/// The experts' decisions out of the run's store (`runs/<name>/annotations.db`, or
/// `annotate.store`) into `runs/<name>/feedback/` (`sft/` and `preference/`), read back as rows.
pub fn export_feedback(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
) -> Result<(Vec<datasets::SftRow>, Vec<datasets::PreferenceRow>)> {
    let db = run_store(&loaded.config.annotate, run.path());
    let Some(store) = existing_store(&db)? else {
        return Err(BadInput(format!(
            "There are no expert decisions for this run yet (no `{db}`)\n\nhint: review with \
             `workbench annotate {}`",
            run.path().display()
        ))
        .into());
    };
    let dir = run.path().join(layout::FEEDBACK);
    let options = |kind: &str| datasets::SetOptions {
        replace: true,
        card: datasets::card::CardInfo {
            title: format!("Expert feedback ({kind})"),
            description: format!(
                "The experts' decisions in `{db}` as {kind} rows, in TRL's columns."
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    let sft = annotate::feedback::export(
        &store,
        datasets::Kind::Sft,
        &dir.join("sft"),
        options("sft"),
    )?;
    let pref = annotate::feedback::export(
        &store,
        datasets::Kind::Preference,
        &dir.join("preference"),
        options("preference"),
    )?;
    out.say(format!(
        "feedback: {} in force → {}, {} in `{}`",
        datasets::text::count(sft.decisions, "decision"),
        datasets::text::count(sft.set.rows, "SFT row"),
        datasets::text::count(pref.set.rows, "preference pair"),
        dir.display()
    ));
    let sft_rows = datasets::Set::open(dir.join("sft"))?.read_all(None)?;
    let pref_rows = datasets::Set::open(dir.join("preference"))?.read_all(None)?;
    Ok((sft_rows, pref_rows))
}
