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
/// the model lands in `stage_dir` (`runs/<name>/finetuned/`, HF layout).
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
    for r in sft {
        keep(
            recipe::example(&tok, &r.prompt, &r.completion, None)?,
            &mut train,
        );
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
    // Replay: `replay` of the rows come from the synthetic set, picked by a seeded order.
    let wanted = (feedback_rows as f64 * f.replay / (1.0 - f.replay)).round() as usize;
    let mut pool: Vec<&Sample> = synthetic
        .iter()
        .filter(|s| s.completion.is_some())
        .collect();
    let seed = seed_of(c.run.seed, "finetune replay");
    pool.sort_by_key(|s| {
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(s.id.as_bytes());
        *h.finalize().as_bytes()
    });
    let mut replayed = 0;
    for s in pool {
        if replayed >= wanted {
            break;
        }
        let completion = s.completion.as_deref().unwrap_or_default();
        let before = train.len();
        keep(
            recipe::example(&tok, &s.prompt, completion, None)?,
            &mut train,
        );
        replayed += train.len() - before;
    }
    let pairs = preference.len();
    let objective = Objective::Preference {
        beta: f.beta,
        weight: f.dpo_weight,
    };
    let label = format!(
        "sft on {} expert answers + dpo (beta={}, weight={}) on {pairs} pairs + {replayed} replayed synthetic rows",
        sft.len(),
        f.beta,
        f.dpo_weight
    );
    let options = train_options(&f.train, seed_of(c.run.seed, "finetune data"), objective);
    let mut summary = fit(
        Job {
            stage: layout::FINETUNED,
            model,
            tokenizer: &tok,
            train,
            skipped,
            eval: &data.eval,
            options,
            frozen: Some(&reference),
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
    // `workbench eval` measures), so the two numbers compare.
    if !data.eval.prompts.is_empty() {
        let plain = crate::backend::device(&c.teacher.device)?;
        let score = |dir: &Path| -> Result<f64> {
            let model = checkpoint::load(dir, &plain)?;
            let answers = recipe::answers(
                &model,
                &tok,
                &data.eval.prompts,
                c.eval.max_new_tokens,
                c.eval.batch_size,
            )?;
            Ok(recipe::exact_match(
                &answers,
                &data.eval.references,
                &c.eval.normalize,
            ))
        };
        let distilled = score(&start_dir)?;
        let finetuned = score(stage_dir)?;
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

/// Whether the fine-tuned student becomes the run's final one: with `keep = "better"` only when it
/// scores at least as well as the distilled student it started from (a tie keeps the expert's
/// corrections, which the eval set may not cover).
pub(crate) fn keeps_finetuned(keep: KeepStudent, distilled: f64, finetuned: f64) -> bool {
    keep == KeepStudent::Finetuned || finetuned >= distilled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worse_fine_tune_is_kept_only_when_asked() {
        assert!(!keeps_finetuned(KeepStudent::Better, 0.759, 0.618));
        assert!(keeps_finetuned(KeepStudent::Finetuned, 0.759, 0.618));
        assert!(keeps_finetuned(KeepStudent::Better, 0.5, 0.5));
        assert!(keeps_finetuned(KeepStudent::Better, 0.5, 0.6));
    }
}
