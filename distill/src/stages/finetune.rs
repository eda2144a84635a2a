//! The expert fine-tune: the distilled student on the experts' feedback (SFT on their answers,
//! DPO on preference pairs, synthetic rows replayed), and whether it becomes the run's final
//! student.

use datasets::rundir::layout;
use std::path::Path;

use datasets::config::{KeepStudent, LoadedConfig};
use datasets::{PreferenceRow, Sample, SftRow};

use crate::data::tokenizer::Tokenizer;
use crate::model::checkpoint;
use crate::recipe::{self, seed_of};
use crate::stages::inputs::RunData;
use crate::train::data::Example;
use crate::train::job::{Checkpoints, Comparison, FitSummary, Job, fit, train_options};
use crate::train::{Objective, StepLog};
use crate::{Error, Result};

/// The expert fine-tune: starts from the distilled student (`runs/<name>/student/final/`), learns
/// the experts' accepted and corrected answers (SFT) and their preference pairs (DPO against the
/// distilled student, frozen), with a share of the synthetic set replayed against forgetting;
/// the model lands in `stage_dir` (`runs/<name>/finetuned/`, HF layout). With `compare`, both
/// students are scored on the validation set (the eval set without one) and the summary says
/// which one the run keeps.
#[allow(clippy::too_many_arguments)]
pub fn finetune_student(
    loaded: &LoadedConfig,
    run_dir: &Path,
    data: &RunData,
    sft: &[SftRow],
    preference: &[PreferenceRow],
    synthetic: &[Sample],
    checkpoints: &Checkpoints,
    stage_dir: &Path,
    config_hash: &str,
    compare: bool,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<FitSummary> {
    let c = &loaded.config;
    let f = &c.finetune;
    let device = crate::backend::device(&c.teacher.device)?.autodiff();
    let start_dir = run_dir.join(layout::STUDENT).join(layout::FINAL);
    if !start_dir.join("config.json").is_file() {
        return Err(Error::invalid(format!(
            "There is no distilled student in `{}` to fine-tune\n\nhint: run `workbench distill` \
             (or `workbench run`) on this config first",
            start_dir.display()
        )));
    }
    let model = checkpoint::load(&start_dir, &device)?;
    let reference = burn::module::Module::no_grad(checkpoint::load(&start_dir, &device)?);
    let tok = Tokenizer::from_dir(&start_dir)?;
    let max_positions = model.config().max_position_embeddings;
    let mut train = Vec::new();
    let mut skipped = 0;
    let mut keep = |e: Example, train: &mut Vec<Example>| {
        let longest = e
            .ids
            .len()
            .max(e.prompt_len + e.rejected.as_ref().map_or(0, Vec::len));
        if longest <= max_positions {
            train.push(e);
        } else {
            skipped += 1;
        }
    };
    // What each correction corrected: the output the expert changed, from its preference pair.
    let corrected_from: std::collections::HashMap<&str, &str> = preference
        .iter()
        .filter(|p| p.source.as_deref() == Some("corrected"))
        .map(|p| (p.prompt.as_str(), p.rejected.as_str()))
        .collect();
    for r in sft {
        let mut e = recipe::example(&tok, &r.prompt, &r.completion, None)?;
        if let Some(old) = corrected_from.get(r.prompt.as_str())
            && r.source.as_deref() == Some("corrected")
            && f.corrected_weight != 1.0
        {
            let mut old_ids = tok.encode(old, false)?;
            old_ids.extend(tok.eos_id());
            let changed = changed_tokens(&e.ids[e.prompt_len..], &old_ids);
            e.weights = Some(
                changed
                    .iter()
                    .map(|&c| if c { f.corrected_weight as f32 } else { 1.0 })
                    .collect(),
            );
        }
        keep(e, &mut train);
    }
    for r in preference {
        keep(
            recipe::pair_example(&tok, &r.prompt, &r.chosen, &r.rejected)?,
            &mut train,
        );
    }
    let feedback_rows = train.len();
    if feedback_rows == 0 {
        return Err(Error::invalid(
            "There is no expert feedback to fine-tune on (no accepted or corrected answer, no \
             preference pair)\n\nhint: review candidates with `workbench annotate`, or let the \
             simulated expert answer (`annotate.simulated_expert = true`)",
        ));
    }
    // Replay: `replay` of the rows come from the synthetic set, but never against the experts:
    // a prompt they answered is theirs, and so is every prompt of a shape they mostly corrected
    // (the teacher's answers there are what they corrected). Every other synthetic row is
    // replayed, and the feedback rows are repeated until they are the other `1 - replay` of the
    // rows: a small budget then meets the breadth of the synthetic set, not a few hundred rows
    // seen dozens of times.
    let overruled = ReplayFilter::new(sft);
    let mut pool: Vec<&Sample> = synthetic
        .iter()
        .filter(|s| s.completion.is_some() && !overruled.covers(&s.prompt))
        .collect();
    let left_out = synthetic.iter().filter(|s| s.completion.is_some()).count() - pool.len();
    let seed = seed_of(c.run.seed, "finetune replay");
    pool.sort_by_key(|s| {
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(s.id.as_bytes());
        *h.finalize().as_bytes()
    });
    let mut replayed = 0;
    for s in pool {
        let completion = s.completion.as_deref().unwrap_or_default();
        let before = train.len();
        keep(
            recipe::example(&tok, &s.prompt, completion, None)?,
            &mut train,
        );
        replayed += train.len() - before;
    }
    let repeats = feedback_repeats(feedback_rows, replayed, f.replay);
    let feedback: Vec<Example> = train[..feedback_rows].to_vec();
    for _ in 1..repeats {
        train.extend(feedback.iter().cloned());
    }
    let pairs = preference.len();
    let objective = Objective::Preference {
        beta: f.beta,
        weight: f.dpo_weight,
    };
    let label = format!(
        "sft on {} expert answers + dpo (beta={}, weight={}) on {pairs} pairs, the feedback \
         repeated {repeats}× + {replayed} replayed synthetic rows ({left_out} left out: prompts \
         the experts answered, or of {} the experts mostly corrected)",
        sft.len(),
        f.beta,
        f.dpo_weight,
        datasets::text::count(overruled.shapes.len() as u64, "shape"),
    );
    let options = train_options(&f.train, seed_of(c.run.seed, "finetune data"), objective);
    let mut summary = fit(
        Job {
            stage: layout::FINETUNED,
            model,
            tokenizer: &tok,
            train,
            skipped,
            eval: data.selection(),
            options,
            frozen: Some(&reference),
            grader: None,
            settings: &c.eval,
            objective: label,
        },
        &device,
        checkpoints,
        stage_dir,
        stage_dir,
        config_hash,
        on_step,
    )?;
    // Both students as saved, scored with the same prompts, decoding and normaliser (what
    // `workbench eval` measures), so the two numbers compare; on the validation set when the
    // run holds one out, so the eval set chooses nothing.
    if compare && !data.selection().prompts.is_empty() {
        let (distilled, _) = crate::evaluate::exact_match_of(c, &start_dir, data.selection())?;
        let (finetuned, _) = crate::evaluate::exact_match_of(c, stage_dir, data.selection())?;
        let kept = keeps_finetuned(f.keep, distilled, finetuned);
        summary.compared = Some(Comparison {
            distilled_exact_match: distilled,
            finetuned_exact_match: finetuned,
            kept,
            final_student: if kept {
                layout::FINETUNED.to_string()
            } else {
                format!("{}/{}", layout::STUDENT, layout::FINAL)
            },
        });
    }
    Ok(summary)
}

/// How many times each feedback row goes into the training rows so that they are `1 - replay`
/// of them beside `replayed` synthetic rows: at least once.
pub(crate) fn feedback_repeats(feedback: usize, replayed: usize, replay: f64) -> usize {
    if feedback == 0 || replay <= 0.0 {
        return 1;
    }
    let wanted = replayed as f64 * (1.0 - replay) / replay;
    ((wanted / feedback as f64).round() as usize).max(1)
}

/// Which tokens of `new` are not in a longest common subsequence with `old`: what an edit
/// changed, token by token.
pub(crate) fn changed_tokens(new: &[u32], old: &[u32]) -> Vec<bool> {
    let (n, m) = (new.len(), old.len());
    // lcs[i][j]: the longest common subsequence of new[i..] and old[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if new[i] == old[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut changed = vec![true; n];
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if new[i] == old[j] {
            changed[i] = false;
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    changed
}

/// Which synthetic rows replay leaves out: prompts the experts answered (their answer
/// supersedes the teacher's), and prompts of a shape ([`datasets::text::shape`]) whose outputs
/// the experts corrected more often than they accepted (the teacher is wrong there as a rule, so
/// its answers would teach back what the corrections take out).
pub(crate) struct ReplayFilter {
    answered: std::collections::HashSet<String>,
    shapes: std::collections::HashSet<String>,
}

impl ReplayFilter {
    pub(crate) fn new(sft: &[SftRow]) -> ReplayFilter {
        let mut tally = std::collections::HashMap::<String, (u32, u32)>::new();
        let mut answered = std::collections::HashSet::new();
        for r in sft {
            answered.insert(r.prompt.clone());
            let t = tally.entry(datasets::text::shape(&r.prompt)).or_default();
            t.0 += 1;
            if r.source.as_deref() == Some("corrected") {
                t.1 += 1;
            }
        }
        let shapes = tally
            .into_iter()
            .filter(|(_, (decided, corrected))| 2 * corrected > *decided)
            .map(|(shape, _)| shape)
            .collect();
        ReplayFilter { answered, shapes }
    }

    pub(crate) fn covers(&self, prompt: &str) -> bool {
        self.answered.contains(prompt) || self.shapes.contains(&datasets::text::shape(prompt))
    }
}

/// Whether the fine-tuned student becomes the run's final one: with `keep = "better"` only when it
/// scores at least as well as the distilled student it started from (a tie keeps the expert's
/// corrections, which the eval set may not cover).
pub(crate) fn keeps_finetuned(keep: KeepStudent, distilled: f64, finetuned: f64) -> bool {
    keep == KeepStudent::Finetuned || finetuned >= distilled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(prompt: &str, answer: &str, source: &str) -> SftRow {
        SftRow::new(
            vec![datasets::Message::new("user", prompt)],
            prompt.into(),
            answer.into(),
            Some(source.into()),
        )
    }

    #[test]
    fn replay_leaves_out_what_the_experts_answered_or_mostly_corrected() {
        let sft = [
            row("Date: 3/4/2021", "2021-04-03", "corrected"),
            row("Date: 5/6/1999", "1999-06-05", "corrected"),
            row("Date: 7/8/2001", "2001-08-07", "accepted"),
            row("Date: March 3, 2021", "2021-03-03", "accepted"),
            row("Date: May 9, 2021", "2021-05-09", "corrected"),
        ];
        let f = ReplayFilter::new(&sft);
        // Two of three slash dates corrected: the shape is the experts'.
        assert!(f.covers("Date: 10/11/1987"));
        // One of two month-name dates corrected: not a rule, replayed, but not the prompts
        // the experts answered.
        assert!(!f.covers("Date: June 1, 2020"));
        assert!(f.covers("Date: March 3, 2021"));
        assert!(!f.covers("Date: 1.2.2003"));
    }

    #[test]
    fn feedback_is_repeated_to_its_share_of_the_rows() {
        // 4,000 synthetic rows at replay 0.75: the feedback is a quarter, about 1,333 rows.
        assert_eq!(feedback_repeats(150, 4000, 0.75), 9);
        assert_eq!(feedback_repeats(50, 4000, 0.75), 27);
        // Feedback already past its share, no replay, or nothing to replay: once.
        assert_eq!(feedback_repeats(5000, 4000, 0.75), 1);
        assert_eq!(feedback_repeats(150, 4000, 0.0), 1);
        assert_eq!(feedback_repeats(150, 0, 0.5), 1);
    }

    #[test]
    fn the_tokens_an_edit_changed() {
        // 1993-05-12 corrected to 1993-11-05, as tokens.
        let old = [1, 9, 9, 3, 0, 5, 0, 1, 2];
        let new = [1, 9, 9, 3, 1, 1, 0, 0, 5];
        let changed = changed_tokens(&new, &old);
        assert_eq!(changed.iter().filter(|&&c| c).count(), new.len() - 6);
        assert!(changed[..4].iter().all(|&c| !c), "{changed:?}");
        assert_eq!(changed_tokens(&[1, 2], &[1, 2]), [false, false]);
        assert_eq!(changed_tokens(&[1, 2], &[]), [true, true]);
        assert!(changed_tokens(&[], &[1]).is_empty());
    }

    #[test]
    fn a_worse_fine_tune_is_kept_only_when_asked() {
        assert!(!keeps_finetuned(KeepStudent::Better, 0.759, 0.618));
        assert!(keeps_finetuned(KeepStudent::Finetuned, 0.759, 0.618));
        assert!(keeps_finetuned(KeepStudent::Better, 0.5, 0.5));
        assert!(keeps_finetuned(KeepStudent::Better, 0.5, 0.6));
    }
}
