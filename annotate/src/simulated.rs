//! The **simulated expert**: a stand-in for a person, for non-interactive runs and tests. It is
//! named as such everywhere it appears: its decisions are stored under the annotator
//! [`SIMULATED_EXPERT`], and every log line and report that counts them says "simulated".
//!
//! It answers from the item's reference (the gold answer the set carries): an output equal to the
//! reference (after the caller's normaliser) is accepted, a wrong one is corrected to the
//! reference, and on an A/B item the right candidate is preferred (a tie when both or neither
//! are right). An item without a reference is skipped: the simulated expert knows nothing a
//! reference does not tell it. It spends a budget of decisions down the same queue a person
//! would see, in the same order, so it costs what a person's time would.

use datasets::{Decision, Preference};

use crate::error::Result;
use crate::store::{Item, Store, Verdict};
use datasets::config::QueueOrder;

/// The annotator name of the simulated expert's decisions.
pub const SIMULATED_EXPERT: &str = "simulated-expert";

/// What the simulated expert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulatedReport {
    /// Outputs it accepted.
    pub accepted: u64,
    /// Outputs it corrected to the reference.
    pub corrected: u64,
    /// Items it skipped (no reference).
    pub skipped: u64,
    /// A/B items on which it preferred one candidate.
    pub preferred: u64,
}

impl SimulatedReport {
    /// Decisions made, skips included (what the budget counts).
    pub fn decisions(&self) -> u64 {
        self.accepted + self.corrected + self.skipped
    }
}

/// The simulated expert's verdict on one item, comparing with `same` (the caller's normalised
/// equality, e.g. exact match after trimming).
pub fn verdict(item: &Item, same: &dyn Fn(&str, &str) -> bool) -> Verdict {
    let Some(reference) = item.reference.as_deref() else {
        return Verdict::of(Decision::Skip);
    };
    let right = |c: Option<&crate::store::Candidate>| c.is_some_and(|c| same(&c.text, reference));
    let (a, b) = (right(item.a.as_ref()), right(item.b.as_ref()));
    let preference = item.b.as_ref().map(|_| match (a, b) {
        (true, false) => Preference::A,
        (false, true) => Preference::B,
        _ => Preference::Tie,
    });
    if a || b {
        Verdict {
            preference,
            ..Verdict::of(Decision::Accept)
        }
    } else {
        Verdict {
            corrected: Some(reference.to_string()),
            preference,
            ..Verdict::of(Decision::Edit)
        }
    }
}

/// Lets the simulated expert decide up to `budget` items of its queue in `store`.
pub fn review(
    store: &mut Store,
    order: QueueOrder,
    budget: u64,
    same: &dyn Fn(&str, &str) -> bool,
) -> Result<SimulatedReport> {
    let mut report = SimulatedReport::default();
    while report.decisions() < budget {
        // A live order changes after each decision: take one item at a time from it.
        let page_size = if crate::store::is_live(order) { 1 } else { 64 };
        let page = store.queue(SIMULATED_EXPERT, order, 1, page_size)?;
        // Skipped items come back at the end of the queue: once only those remain, stop.
        let fresh: Vec<Item> = page
            .into_iter()
            .filter(|i| {
                store
                    .current(&i.id, SIMULATED_EXPERT)
                    .map(|c| c.is_none())
                    .unwrap_or(false)
            })
            .collect();
        if fresh.is_empty() {
            break;
        }
        for item in fresh {
            if report.decisions() >= budget {
                break;
            }
            let v = verdict(&item, same);
            store.decide(&item.id, SIMULATED_EXPERT, &v)?;
            match v.decision {
                Some(Decision::Accept) => report.accepted += 1,
                Some(Decision::Edit) => report.corrected += 1,
                _ => report.skipped += 1,
            }
            if matches!(v.preference, Some(Preference::A | Preference::B)) {
                report.preferred += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Candidate, DB_FILE};
    use datasets::Message;

    fn item(prompt: &str, a: &str, b: Option<&str>, reference: Option<&str>, d: f64) -> Item {
        let mut it = Item::new(prompt.into(), vec![Message::new("user", prompt)]);
        it.a = Some(Candidate {
            text: a.into(),
            model: None,
        });
        it.b = b.map(|t| Candidate {
            text: t.into(),
            model: None,
        });
        it.reference = reference.map(str::to_string);
        it.disagreement = Some(d);
        it
    }

    fn trimmed(a: &str, b: &str) -> bool {
        a.trim() == b.trim()
    }

    #[test]
    fn accepts_right_corrects_wrong_prefers_the_right_candidate() {
        let right = verdict(&item("p", " 1 ", None, Some("1"), 0.0), &trimmed);
        assert_eq!(right, Verdict::of(Decision::Accept));
        let wrong = verdict(&item("p", "2", None, Some("1"), 0.0), &trimmed);
        assert_eq!(
            (wrong.decision, wrong.corrected.as_deref()),
            (Some(Decision::Edit), Some("1"))
        );
        let ab = verdict(&item("p", "2", Some("1"), Some("1"), 0.0), &trimmed);
        assert_eq!(
            (ab.decision, ab.preference),
            (Some(Decision::Accept), Some(Preference::B))
        );
        let neither = verdict(&item("p", "2", Some("3"), Some("1"), 0.0), &trimmed);
        assert_eq!(
            (neither.decision, neither.preference),
            (Some(Decision::Edit), Some(Preference::Tie))
        );
        let unknown = verdict(&item("p", "2", None, None, 0.0), &trimmed);
        assert_eq!(unknown.decision, Some(Decision::Skip));
    }

    #[test]
    fn spends_its_budget_down_the_queue_and_is_named_as_simulated() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join(DB_FILE)).unwrap();
        let items: Vec<Item> = (0..6)
            .map(|i| {
                let reference = (i != 2).then_some("ok");
                let out = if i % 2 == 0 { "ok" } else { "bad" };
                item(&format!("p{i}"), out, None, reference, i as f64)
            })
            .collect();
        store.add_items(items).unwrap();
        let r = review(&mut store, QueueOrder::Disagreement, 4, &trimmed).unwrap();
        // Highest disagreement first: p5 (bad), p4 (ok), p3 (bad), p2 (no reference).
        assert_eq!(
            r,
            SimulatedReport {
                accepted: 1,
                corrected: 2,
                skipped: 1,
                preferred: 0
            }
        );
        let all = store.decisions().unwrap();
        assert!(
            all.iter()
                .all(|d| d.annotation.annotator == SIMULATED_EXPERT)
        );
        // The rest of the budget later; skipped items are not decided again.
        let r = review(&mut store, QueueOrder::Disagreement, 100, &trimmed).unwrap();
        assert_eq!(r.decisions(), 2);
        assert_eq!(
            review(&mut store, QueueOrder::Disagreement, 100, &trimmed)
                .unwrap()
                .decisions(),
            0
        );
    }
}
