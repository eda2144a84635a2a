//! The expert fine-tune (`runs/<name>/finetuned/`): the distilled student trained on the
//! experts' feedback (SFT on their answers, DPO on preference pairs, synthetic rows replayed),
//! kept as the run's final student only when it scores at least as well, unless asked.

use anyhow::Result;
use datasets::config::LoadedConfig;
use datasets::rundir::{RunDir, layout};

use crate::output::{Output, thousands};

/// Fine-tunes the distilled student on the experts' feedback unless it is up to date.
pub fn finetune_stage(
    out: &Output,
    loaded: &LoadedConfig,
    run: &RunDir,
    resume: bool,
) -> Result<()> {
    let c = &loaded.config;
    let (sft, preference) = super::review::export_feedback(out, loaded, run)?;
    let decisions = sft.len() + preference.len();
    if decisions < c.finetune.min_decisions {
        out.say(format!(
            "finetune: warning: only {} expert {} to learn from (`finetune.min_decisions` is {}); \
             a fine-tune on so few rarely lifts a student and can lower it. {}",
            thousands(decisions as u64),
            if decisions == 1 { "answer" } else { "answers" },
            c.finetune.min_decisions,
            match c.finetune.keep {
                datasets::config::KeepStudent::Better => {
                    "The run keeps the fine-tuned student only if it scores at least as well as \
                     the distilled one (`finetune.keep = \"better\"`)."
                }
                datasets::config::KeepStudent::Finetuned => {
                    "`finetune.keep = \"finetuned\"` keeps it whatever it scores."
                }
            }
        ));
    }
    // What the fine-tune learns from, for the report: the store may hold more by then.
    let expert = super::review::expert_use(loaded, run)?;
    let data = distill::stages::inputs::read_data(&run.stage_dir(layout::DATA))?;
    let synthetic_dir = run.stage_dir(layout::SYNTHETIC);
    let run_dir = run.path();
    let hash = distill::stages::hashes::finetune_hash_on(c, &sft, &preference);
    super::training::training_stage(
        out,
        loaded,
        run,
        layout::FINETUNED,
        "finetune",
        &hash,
        c.finetune.train.steps,
        resume,
        Box::new(|ck, dir, hash, report| {
            let synthetic = if synthetic_dir.join("data").is_dir() {
                datasets::Set::open(&synthetic_dir)?.read_all::<datasets::Sample>(None)?
            } else {
                Vec::new()
            };
            distill::stages::finetune::finetune_student(
                loaded,
                run_dir,
                &data,
                &sft,
                &preference,
                &synthetic,
                ck,
                dir,
                hash,
                true,
                report,
            )
            .map(|summary| distill::train::job::FitSummary {
                expert: expert.clone(),
                ..summary
            })
        }),
    )
}
