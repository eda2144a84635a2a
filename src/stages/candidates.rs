//! The review candidates (`runs/<name>/candidates/`): the distilled student's and the teacher's
//! answers to held-out review prompts, side by side, for the experts.

use anyhow::Result;
use datasets::config::LoadedConfig;
use datasets::rundir::{RunDir, layout};

use crate::output::Output;

/// The review candidates (when the data stage made a review set): the distilled student's and
/// the teacher's answers to prompts neither trained on, unless up to date.
pub fn candidates_stage(out: &Output, loaded: &LoadedConfig, run: &RunDir) -> Result<()> {
    use distill::candidates;
    let review_dir = run.stage_dir(layout::DATA).join("review");
    if !datasets::Set::is_set(&review_dir) {
        return Ok(());
    }
    let hash = candidates::candidates_hash(&loaded.config);
    if !super::must_run(
        out,
        run,
        layout::CANDIDATES,
        "candidates",
        &hash,
        "answering again",
    ) {
        return Ok(());
    }
    let review = datasets::Set::open(&review_dir)?.read_all::<datasets::Sample>(None)?;
    if review.is_empty() {
        return Ok(());
    }
    let stage = run.begin(layout::CANDIDATES, &hash)?;
    let device = distill::backend::device(&loaded.config.teacher.device)?;
    let summary = candidates::write_candidates(
        loaded,
        run.path(),
        &review,
        stage.path(),
        run.config_hash(),
        &device,
    )?;
    out.say(format!(
        "candidates: {} answered ({}) in `{}`",
        datasets::text::count(review.len() as u64, "review prompt"),
        datasets::text::count(summary.rows, "row"),
        run.stage_dir(layout::CANDIDATES).display()
    ));
    stage.finish(serde_json::to_value(&summary)?)?;
    Ok(())
}
