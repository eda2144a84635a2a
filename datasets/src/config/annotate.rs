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
    /// A seeded shuffle (`run.seed`): the same order on every machine and every run of one
    /// config. The baseline a ranked queue has to beat.
    Random,
    /// Where expert decisions are likeliest to change the student, re-ranked after every
    /// decision: prompts are grouped by their shape (digits, words and punctuation as classes,
    /// see [`crate::text::shape`]); a group's chance of holding a wrong answer is estimated
    /// from the decisions made in it so far (corrections and rejects against accepts, starting
    /// at even odds), times how many of its items wait, discounted by the square root of the
    /// decisions it had: the budget tries the large groups first and then goes where experts
    /// keep correcting; within a group, prompts whose numbers repeat a decided one's wait (no
    /// budget on near-duplicates of one mistake), then highest teacher–student disagreement
    /// first.
    Ranked,
}

impl QueueOrder {
    /// Every order, as configs and `--order` name them.
    pub const NAMES: &[&str] = &["disagreement", "entropy", "file", "random", "ranked"];

    /// The order's name, as configs and `--order` write it.
    pub fn name(self) -> &'static str {
        match self {
            QueueOrder::Disagreement => "disagreement",
            QueueOrder::Entropy => "entropy",
            QueueOrder::File => "file",
            QueueOrder::Random => "random",
            QueueOrder::Ranked => "ranked",
        }
    }

    /// The order a config or `--order` names.
    pub fn parse(s: &str) -> Option<QueueOrder> {
        [
            QueueOrder::Disagreement,
            QueueOrder::Entropy,
            QueueOrder::File,
            QueueOrder::Random,
            QueueOrder::Ranked,
        ]
        .into_iter()
        .find(|o| o.name() == s)
    }
}

/// `[annotate]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnotateConfig {
    /// Queue order: `disagreement`, `entropy`, `file`, `random` or `ranked`.
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
    /// With the simulated expert: a learning curve after the fine-tune (`runs/<name>/curve/`
    /// and the report): the budget spent again from a fresh database in this queue's order and
    /// in `random` order, a fine-tune after a third, two thirds and all of it, each scored on
    /// the eval set. Six fine-tunes more than the run's one.
    #[serde(default)]
    pub curve: bool,
    /// Where the experts' decisions live. Unset: `annotations.db` in the run directory (SQLite,
    /// one machine). A PostgreSQL URL, `postgres://USER@HOST:PORT/DATABASE`, for a team of
    /// experts on several machines; the password is read from `PGPASSWORD`, never from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
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
            curve: false,
            store: None,
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
        if let Some(url) = &self.store {
            check_store_url(url).map_err(|m| ("annotate.store".to_string(), m))?;
        }
        Ok(())
    }
}

/// A store URL names a PostgreSQL server and holds no password (configs are copied into run
/// directories and shown in logs).
pub fn check_store_url(url: &str) -> Result<(), String> {
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(format!(
            "is `{}`; expected a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE (leave it unset for `annotations.db` in the run directory)",
            crate::text::inert_line(&redact_store_url(url))
        ));
    }
    if redact_store_url(url) != url {
        return Err(
            "holds a password; leave it out of the URL (configs are copied into run directories and logs) and set it in the environment variable PGPASSWORD"
                .into(),
        );
    }
    Ok(())
}

/// `url` with any password in it replaced by `***`: in the user part (`user:secret@host`,
/// the last `@` before the path ends it) and in a `password=` parameter.
pub fn redact_store_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    // The user part ends at the last `@` before the path, so an `@`, `/` or `?` in a
    // password stays in it.
    let (mut authority, mut tail) = match rest.rfind('@') {
        Some(at) => {
            let end = rest[at..].find(['/', '?']).map_or(rest.len(), |e| at + e);
            (rest[..end].to_string(), rest[end..].to_string())
        }
        None => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            (rest[..end].to_string(), rest[end..].to_string())
        }
    };
    if let Some(at) = authority.rfind('@')
        && let Some(colon) = authority[..at].find(':')
    {
        authority = format!("{}:***{}", &authority[..colon], &authority[at..]);
    }
    if let Some(q) = tail.find('?') {
        let query: Vec<String> = tail[q + 1..]
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        tail = format!("{}?{}", &tail[..q], query.join("&"));
    }
    format!("{scheme}{authority}{tail}")
}
