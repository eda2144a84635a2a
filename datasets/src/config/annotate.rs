//! `[annotate]`: how the expert review is set up (the queue's order, annotators per item, the
//! guidelines shown with `g`).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The order of the review queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueOrder {
    /// Highest teacher–student disagreement first: the expert's time goes where the student is
    /// furthest from the teacher.
    #[default]
    Disagreement,
    /// Highest teacher entropy first: where the teacher itself was unsure.
    Entropy,
    /// As the set lists them.
    File,
}

impl QueueOrder {
    /// Every order, as configs and `--order` name them.
    pub const NAMES: &[&str] = &["disagreement", "entropy", "file"];

    /// The order a config or `--order` names.
    pub fn parse(s: &str) -> Option<QueueOrder> {
        match s {
            "disagreement" => Some(QueueOrder::Disagreement),
            "entropy" => Some(QueueOrder::Entropy),
            "file" => Some(QueueOrder::File),
            _ => None,
        }
    }
}

/// `[annotate]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnotateConfig {
    /// Queue order: `disagreement`, `entropy` or `file`.
    #[serde(default)]
    pub order: QueueOrder,
    /// Annotators wanted per item (overlap k): an item leaves everyone's queue once this many
    /// annotators decided it. 2 or more gives agreement figures (`workbench annotate stats`).
    #[serde(default = "default_overlap")]
    pub overlap: u32,
    /// A Markdown file of guidelines, shown with `g` (relative to the config file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidelines: Option<PathBuf>,
    /// Let the **simulated expert** answer in `workbench run` (for non-interactive runs and
    /// tests): it accepts outputs equal to the reference, corrects wrong ones to it and prefers
    /// the right candidate; its decisions are stored, logged and reported as simulated.
    #[serde(default)]
    pub simulated_expert: bool,
    /// Expert decisions to spend (the simulated expert stops there), down the queue's order.
    #[serde(default = "default_budget")]
    pub budget: u64,
}

fn default_budget() -> u64 {
    100
}

fn default_overlap() -> u32 {
    1
}

impl Default for AnnotateConfig {
    fn default() -> Self {
        AnnotateConfig {
            order: QueueOrder::default(),
            overlap: default_overlap(),
            guidelines: None,
            simulated_expert: false,
            budget: default_budget(),
        }
    }
}

impl AnnotateConfig {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if self.overlap == 0 {
            return Err((
                "annotate.overlap".into(),
                "is 0; expected at least 1 annotator per item".into(),
            ));
        }
        Ok(())
    }
}
