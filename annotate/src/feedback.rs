//! The experts' decisions out of the store as training sets, in TRL's columns.
//!
//! - **sft**: accepted outputs (the preferred candidate, else A) and corrected outputs, each as
//!   the prompt's conversation ending with that answer.
//! - **preference**: `chosen` = the correction or the preferred candidate, `rejected` = the output
//!   the expert corrected or the candidate they did not prefer. Ties, and accepts or rejects of a
//!   single output, carry no pair and are left out.
//!
//! Every decision in force counts (several annotators give several rows); rows with the same
//! content id are written once.

use std::collections::HashSet;
use std::path::Path;

use datasets::{
    Decision, Kind, Preference, PreferenceRow, SetOptions, SetSummary, SetWriter, SftRow,
};

use crate::error::{Error, Result};
use crate::store::{Item, Store, Stored};

/// What an export wrote and what it left out.
#[derive(Debug, Clone)]
pub struct FeedbackReport {
    /// Decisions in force read from the store.
    pub decisions: u64,
    /// The set written.
    pub set: SetSummary,
}

/// The SFT row a decision gives, if any.
pub fn sft_row(item: &Item, d: &Stored) -> Option<SftRow> {
    let a = &d.annotation;
    let (answer, source) = match a.decision {
        Decision::Accept => (item.chosen(a.preference)?.text.clone(), "accepted"),
        Decision::Edit => (a.corrected.clone()?, "corrected"),
        Decision::Reject | Decision::Skip => return None,
    };
    Some(SftRow::new(
        item.messages.clone(),
        item.prompt.clone(),
        answer,
        Some(source.into()),
    ))
}

/// The preference pair a decision gives, if any.
pub fn preference_row(item: &Item, d: &Stored) -> Option<PreferenceRow> {
    let a = &d.annotation;
    let pair = |chosen: &str, rejected: &str, source: &str| {
        (chosen != rejected).then(|| {
            PreferenceRow::new(
                item.prompt.clone(),
                chosen.to_string(),
                rejected.to_string(),
                Some(source.into()),
            )
        })
    };
    match a.decision {
        Decision::Edit => {
            let corrected = a.corrected.as_deref()?;
            let original = item.chosen(a.preference)?;
            pair(corrected, &original.text, "corrected")
        }
        Decision::Accept | Decision::Reject => {
            let (a_text, b_text) = (&item.a.as_ref()?.text, &item.b.as_ref()?.text);
            match a.preference? {
                Preference::A => pair(a_text, b_text, "preferred"),
                Preference::B => pair(b_text, a_text, "preferred"),
                Preference::Tie => None,
            }
        }
        Decision::Skip => None,
    }
}

/// Writes the store's feedback of `kind` (`Sft` or `Preference`) as a set at `out`.
pub fn export(
    store: &Store,
    kind: Kind,
    out: &Path,
    options: SetOptions,
) -> Result<FeedbackReport> {
    if !matches!(kind, Kind::Sft | Kind::Preference) {
        return Err(Error::invalid(format!(
            "Expert feedback exports as `sft` or `preference`, not `{}`",
            kind.as_str()
        )));
    }
    let decisions = store.decisions()?;
    let mut options = options;
    options.card.provenance.insert(
        0,
        (
            "expert decisions from".into(),
            format!("`{}`", store.path().display()),
        ),
    );
    let mut writer = SetWriter::create(out, kind, options)?;
    let mut seen = HashSet::new();
    let (mut sft, mut pref) = (Vec::new(), Vec::new());
    let wanted = (kind == Kind::Sft, kind == Kind::Preference);
    for chunk in decisions.chunks(8192) {
        collect(store, chunk, wanted, &mut seen, &mut sft, &mut pref)?;
        flush(&mut writer, &mut sft, &mut pref)?;
    }
    let set = writer.finish()?;
    Ok(FeedbackReport {
        decisions: decisions.len() as u64,
        set,
    })
}

/// The SFT rows and preference pairs `decisions` give (as [`export`] writes them, in memory):
/// for a learning curve, the feedback of the first decisions of a review.
pub fn rows(store: &Store, decisions: &[Stored]) -> Result<(Vec<SftRow>, Vec<PreferenceRow>)> {
    let (mut sft, mut pref) = (Vec::new(), Vec::new());
    collect(
        store,
        decisions,
        (true, true),
        &mut HashSet::new(),
        &mut sft,
        &mut pref,
    )?;
    Ok((sft, pref))
}

/// Appends the rows of the `(sft, preference)` kinds `wanted` that `decisions` give, each
/// content id once across calls that share `seen`.
fn collect(
    store: &Store,
    decisions: &[Stored],
    wanted: (bool, bool),
    seen: &mut HashSet<String>,
    sft: &mut Vec<SftRow>,
    pref: &mut Vec<PreferenceRow>,
) -> Result<()> {
    for d in decisions {
        let Some(item) = store.item(&d.annotation.item_id)? else {
            continue;
        };
        if wanted.0
            && let Some(row) = sft_row(&item, d).filter(|r| seen.insert(r.id.clone()))
        {
            sft.push(row);
        }
        if wanted.1
            && let Some(row) = preference_row(&item, d).filter(|r| seen.insert(r.id.clone()))
        {
            pref.push(row);
        }
    }
    Ok(())
}

fn flush(
    writer: &mut SetWriter,
    sft: &mut Vec<SftRow>,
    pref: &mut Vec<PreferenceRow>,
) -> Result<()> {
    if !sft.is_empty() {
        writer.write(&std::mem::take(sft))?;
    }
    if !pref.is_empty() {
        writer.write(&std::mem::take(pref))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Candidate, DB_FILE, Verdict};
    use datasets::{Message, Set};

    fn pair_item(prompt: &str, a: &str, b: Option<&str>) -> Item {
        let mut item = Item::new(prompt.into(), vec![Message::new("user", prompt)]);
        item.a = Some(Candidate {
            text: a.into(),
            model: None,
        });
        item.b = b.map(|t| Candidate {
            text: t.into(),
            model: None,
        });
        item
    }

    #[test]
    fn decisions_become_sft_rows_and_preference_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join(DB_FILE)).unwrap();
        let items = vec![
            pair_item("accept me", "good", None),
            pair_item("fix me", "bad", None),
            pair_item("choose", "worse", Some("better")),
            pair_item("tie", "one", Some("two")),
            pair_item("reject", "wrong", None),
        ];
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        store.add_items(items).unwrap();
        store
            .decide(&ids[0], "ana", &Verdict::of(Decision::Accept))
            .unwrap();
        let edit = Verdict {
            corrected: Some("fixed".into()),
            ..Verdict::of(Decision::Edit)
        };
        store.decide(&ids[1], "ana", &edit).unwrap();
        let prefer_b = Verdict {
            preference: Some(Preference::B),
            ..Verdict::of(Decision::Accept)
        };
        store.decide(&ids[2], "ana", &prefer_b).unwrap();
        let tie = Verdict {
            preference: Some(Preference::Tie),
            ..Verdict::of(Decision::Accept)
        };
        store.decide(&ids[3], "ana", &tie).unwrap();
        store
            .decide(&ids[4], "ana", &Verdict::of(Decision::Reject))
            .unwrap();
        // A second annotator accepting the same output adds no duplicate row.
        store
            .decide(&ids[0], "ben", &Verdict::of(Decision::Accept))
            .unwrap();

        let out = dir.path().join("sft");
        let report = export(&store, Kind::Sft, &out, SetOptions::default()).unwrap();
        assert_eq!(report.decisions, 6);
        let rows: Vec<SftRow> = Set::open(&out).unwrap().read_all(None).unwrap();
        let got: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.prompt.as_str(),
                    r.completion.as_str(),
                    r.source.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("accept me", "good", "accepted"),
                ("fix me", "fixed", "corrected"),
                ("choose", "better", "accepted"),
                ("tie", "one", "accepted"),
            ]
        );
        assert_eq!(rows[1].messages.last().unwrap().content, "fixed");

        let out = dir.path().join("pref");
        export(&store, Kind::Preference, &out, SetOptions::default()).unwrap();
        let rows: Vec<PreferenceRow> = Set::open(&out).unwrap().read_all(None).unwrap();
        let got: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.prompt.as_str(), r.chosen.as_str(), r.rejected.as_str()))
            .collect();
        assert_eq!(
            got,
            [("fix me", "fixed", "bad"), ("choose", "better", "worse")]
        );
    }
}
