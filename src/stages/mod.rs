//! The stages of `workbench run`, one file each, in the loop's order: [`data`] → [`teacher`] →
//! [`synthetic`] → [`student`] (and the gold-only baseline) → [`candidates`] → [`review`] →
//! [`finetune`] → [`curve`] (when asked) → [`eval`] (and the [`report`]) → [`export`] (when asked). [`training`] holds what the training stages
//! share.
//!
//! Each stage has a folder in the run directory (named in [`datasets::rundir::layout`]) that
//! appears whole, with a `STAGE.json` marker, when the stage is done. A stage whose marker records
//! the same settings is skipped; one whose settings changed is redone ([`must_run`]). The
//! commands in `src/commands/` parse arguments and call these.

pub mod candidates;
pub mod curve;
pub mod data;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod report;
pub mod review;
pub mod student;
pub mod synthetic;
pub mod teacher;
pub mod training;

use datasets::rundir::{RunDir, StageState};

use crate::output::Output;

/// Says where a stage stands and whether it must run: skipped when it is up to date, redone
/// (saying `redo`, e.g. "training it again") when its settings changed. `label` names it to
/// the user.
pub fn must_run(
    out: &Output,
    run: &RunDir,
    stage: &str,
    label: &str,
    hash: &str,
    redo: &str,
) -> bool {
    match run.stage_state(stage, hash) {
        StageState::Done(_) => {
            out.say(format!(
                "{label}: up to date in `{}` (skipped)",
                run.stage_dir(stage).display()
            ));
            false
        }
        StageState::Stale(_) => {
            out.say(format!(
                "{label}: settings changed since the last run; {redo}"
            ));
            true
        }
        StageState::Missing => true,
    }
}
