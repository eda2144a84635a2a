//! `workbench annotate stats`: how far the review is, how fast each expert goes, and how much the
//! experts agree where they saw the same items.
//!
//! Speed is items per hour of *active* time: the gaps between an annotator's consecutive
//! decisions (skips aside), each capped at [`IDLE_GAP`], so a lunch break does not count as slow
//! work. Under [`MIN_ACTIVE`] of it there is no rate: two decisions a second apart say nothing
//! about an hour, and the simulated expert, which decides in microseconds, would read as
//! millions an hour.
//! Agreement is on the decision label (accept / reject / edit) of items two or more annotators
//! decided, skips aside: Cohen's κ for each pair of annotators, Krippendorff's α (nominal) over
//! everyone.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::agreement::{cohen_kappa, krippendorff_alpha};
use crate::error::Result;
use crate::store::Store;
use datasets::Decision;

/// A gap between two decisions longer than this is a break, and counts as this long.
pub const IDLE_GAP: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// Less active time than this gives no items/hour figure.
pub const MIN_ACTIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// One annotator's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnnotatorStats {
    /// The name given with `--annotator`.
    pub annotator: String,
    /// Decisions in force, skips aside: accept + reject + edit.
    pub decided: u64,
    /// Items skipped (still in force).
    pub skipped: u64,
    /// Items with no decision of theirs in force: with `decided` and `skipped`, their items
    /// add up to every item in the store.
    pub undecided: u64,
    /// Whether this is the simulated expert (a script answering from references, not a person).
    pub simulated: bool,
    /// Decisions in force by kind.
    pub by_decision: BTreeMap<String, u64>,
    /// Every decision made (skips aside), including ones later undone or replaced.
    pub events: u64,
    /// Minutes of active time.
    pub active_minutes: f64,
    /// Decisions per hour of active time; `None` before two decisions or under [`MIN_ACTIVE`].
    pub items_per_hour: Option<f64>,
}

/// Agreement between two annotators.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairAgreement {
    /// First annotator.
    pub a: String,
    /// Second annotator.
    pub b: String,
    /// Items both decided.
    pub items: u64,
    /// Cohen's κ; `None` when undefined (no items, or both gave one label throughout).
    pub kappa: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Items in the store.
    pub items: u64,
    /// Annotators wanted per item.
    pub overlap: u32,
    /// Items with `overlap` decisions.
    pub complete: u64,
    /// Items decided by two or more annotators.
    pub overlapping_items: u64,
    /// Per annotator, by name.
    pub annotators: Vec<AnnotatorStats>,
    /// Cohen's κ per pair of annotators with shared items.
    pub pairs: Vec<PairAgreement>,
    /// Krippendorff's α over all annotators; `None` without overlap.
    pub alpha: Option<f64>,
}

/// Computes the report.
pub fn stats(store: &Store, overlap: u32) -> Result<Stats> {
    let decisions = store.decisions()?;
    let times = store.decision_times()?;
    let progress = store.progress("", overlap)?;

    let mut annotators: BTreeMap<String, AnnotatorStats> = BTreeMap::new();
    let mut by_item: HashMap<&str, Vec<(&str, Decision)>> = HashMap::new();
    for d in &decisions {
        let a = &d.annotation;
        let entry = annotators
            .entry(a.annotator.clone())
            .or_insert_with(|| empty(&a.annotator));
        if a.decision == Decision::Skip {
            entry.skipped += 1;
        } else {
            entry.decided += 1;
            by_item
                .entry(a.item_id.as_str())
                .or_default()
                .push((a.annotator.as_str(), a.decision));
        }
        *entry
            .by_decision
            .entry(a.decision.as_str().to_string())
            .or_default() += 1;
    }
    for (annotator, at) in &times {
        let entry = annotators
            .entry(annotator.clone())
            .or_insert_with(|| empty(annotator));
        entry.events = at.len() as u64;
        let cap = IDLE_GAP.as_micros() as i64;
        let active: i64 = at.windows(2).map(|w| (w[1] - w[0]).clamp(0, cap)).sum();
        entry.active_minutes = active as f64 / 60e6;
        entry.items_per_hour = (at.len() >= 2 && active >= MIN_ACTIVE.as_micros() as i64)
            .then(|| (at.len() - 1) as f64 / (active as f64 / 3.6e9));
    }
    for entry in annotators.values_mut() {
        entry.undecided = progress.items.saturating_sub(entry.decided + entry.skipped);
    }

    let units: Vec<Vec<Decision>> = by_item
        .values()
        .filter(|v| v.len() >= 2)
        .map(|v| v.iter().map(|(_, d)| *d).collect())
        .collect();
    let names: Vec<&String> = annotators.keys().collect();
    let mut pairs = Vec::new();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let shared: Vec<(Decision, Decision)> = by_item
                .values()
                .filter_map(|v| {
                    let of = |who: &str| v.iter().find(|(n, _)| *n == who).map(|(_, d)| *d);
                    Some((of(a)?, of(b)?))
                })
                .collect();
            if !shared.is_empty() {
                pairs.push(PairAgreement {
                    a: (*a).clone(),
                    b: (*b).clone(),
                    items: shared.len() as u64,
                    kappa: cohen_kappa(&shared),
                });
            }
        }
    }
    Ok(Stats {
        items: progress.items,
        overlap,
        complete: progress.complete,
        overlapping_items: units.len() as u64,
        annotators: annotators.into_values().collect(),
        pairs,
        alpha: krippendorff_alpha(&units),
    })
}

fn empty(annotator: &str) -> AnnotatorStats {
    AnnotatorStats {
        annotator: annotator.to_string(),
        decided: 0,
        skipped: 0,
        undecided: 0,
        simulated: annotator == crate::simulated::SIMULATED_EXPERT,
        by_decision: BTreeMap::new(),
        events: 0,
        active_minutes: 0.0,
        items_per_hour: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Candidate, DB_FILE, Item, Verdict};
    use datasets::Message;

    #[test]
    fn speed_counts_active_time_and_agreement_uses_shared_items() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join(DB_FILE)).unwrap();
        let items: Vec<Item> = (0..4)
            .map(|i| {
                let mut it =
                    Item::new(format!("p{i}"), vec![Message::new("user", format!("p{i}"))]);
                it.a = Some(Candidate {
                    text: "o".into(),
                    model: None,
                });
                it
            })
            .collect();
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        store.add_items(items).unwrap();
        let minute = 60_000_000i64;
        // ana: 4 decisions, 1 minute apart, then a 2-hour break counted as 5 minutes.
        let ana = [
            Decision::Accept,
            Decision::Reject,
            Decision::Accept,
            Decision::Reject,
        ];
        let ben = [
            Decision::Accept,
            Decision::Reject,
            Decision::Reject,
            Decision::Reject,
        ];
        let at = [0, minute, 2 * minute, 122 * minute];
        for i in 0..4 {
            store
                .decide_at(&ids[i], "ana", &Verdict::of(ana[i]), at[i])
                .unwrap();
            store
                .decide_at(&ids[i], "ben", &Verdict::of(ben[i]), at[i] + 1)
                .unwrap();
        }
        let s = stats(&store, 2).unwrap();
        assert_eq!((s.items, s.complete, s.overlapping_items), (4, 4, 4));
        let a = &s.annotators[0];
        assert_eq!((a.annotator.as_str(), a.decided, a.events), ("ana", 4, 4));
        assert!(
            (a.active_minutes - 7.0).abs() < 1e-9,
            "{}",
            a.active_minutes
        );
        assert!((a.items_per_hour.unwrap() - 3.0 / (7.0 / 60.0)).abs() < 1e-6);
        // 3 of 4 agree; ana says accept half the time, ben a quarter: κ = (0.75 - 0.5) / 0.5.
        assert_eq!(s.pairs.len(), 1);
        assert!(
            (s.pairs[0].kappa.unwrap() - 0.5).abs() < 1e-9,
            "{:?}",
            s.pairs
        );
        assert!(s.alpha.is_some());
    }

    /// Each annotator's counts add up to the items, skips counted once; decisions made faster
    /// than a person could (the simulated expert's) give no items/hour, and are named simulated.
    #[test]
    fn rows_add_up_and_a_burst_gives_no_rate() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join(DB_FILE)).unwrap();
        let items: Vec<Item> = (0..5)
            .map(|i| Item::new(format!("p{i}"), vec![Message::new("user", format!("p{i}"))]))
            .collect();
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        store.add_items(items).unwrap();
        let sim = crate::simulated::SIMULATED_EXPERT;
        let edit = Verdict {
            corrected: Some("x".into()),
            ..Verdict::of(Decision::Edit)
        };
        for (i, v) in [
            Verdict::of(Decision::Accept),
            Verdict::of(Decision::Skip),
            edit,
        ]
        .iter()
        .enumerate()
        {
            store.decide_at(&ids[i], sim, v, i as i64).unwrap();
        }
        // ana: two decisions 30 seconds apart: under a minute of work.
        store
            .decide_at(&ids[0], "ana", &Verdict::of(Decision::Reject), 0)
            .unwrap();
        store
            .decide_at(&ids[1], "ana", &Verdict::of(Decision::Accept), 30_000_000)
            .unwrap();
        let s = stats(&store, 1).unwrap();
        for a in &s.annotators {
            let by: u64 = a.by_decision.values().sum();
            assert_eq!(by + a.undecided, s.items, "{a:?}");
            assert_eq!(a.decided + a.skipped, by, "{a:?}");
            assert_eq!(a.items_per_hour, None, "{a:?}");
        }
        let names: Vec<(&str, bool)> = s
            .annotators
            .iter()
            .map(|a| (a.annotator.as_str(), a.simulated))
            .collect();
        assert_eq!(names, [("ana", false), (sim, true)]);
    }
}
