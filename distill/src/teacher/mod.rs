//! Teachers: what writes the synthetic set.
//!
//! Two real implementations behind one trait: [`local::LocalTeacher`] runs a checkpoint on this
//! machine; [`openai::OpenAiTeacher`] asks any OpenAI-compatible server (vLLM, llama.cpp, Ollama,
//! a hosted API). Both answer a [`Request`] with a [`Response`] that carries the completion, its
//! token ids, and the teacher's top-k logprobs per token. [`cache::ResponseCache`] keeps every
//! answer so that a rerun or a resume never asks twice.

pub mod cache;
pub mod fleet;
pub mod grade;
pub mod local;
pub mod openai;

use datasets::{Message, TopLogprob};
use serde::{Deserialize, Serialize};

use crate::Result;

/// One prompt to answer, with how to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The conversation to continue (chat APIs and chat templates).
    pub messages: Vec<Message>,
    /// The same prompt as plain text, for completion APIs and checkpoints without a chat
    /// template.
    pub prompt: String,
    /// Tokens to write at most.
    pub max_tokens: usize,
    /// Sampling temperature (0: greedy).
    pub temperature: f32,
    /// Nucleus sampling (1: off).
    pub top_p: f32,
    /// Seed of this request's sampling.
    pub seed: u64,
    /// Texts that end the completion.
    pub stop: Vec<String>,
    /// How many of the teacher's top logprobs to return per token.
    pub top_logprobs: usize,
}

/// A teacher's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The completion text.
    pub text: String,
    /// Its token ids.
    pub ids: Vec<u32>,
    /// False when the server returned token strings that were mapped to ids through a
    /// tokenizer (approximate); true for a local teacher and for servers that return ids.
    pub ids_exact: bool,
    /// The logprob of each completion token.
    pub logprobs: Vec<f32>,
    /// The teacher's top-k at each completion token.
    pub top: Vec<Vec<TopLogprob>>,
    /// Mean entropy of the teacher's distribution per token (exact for a local teacher; from the
    /// top-k and the mass left over for a server).
    pub entropy_mean: Option<f32>,
    /// `stop` or `length`.
    pub finish: String,
    /// Prompt tokens the teacher read.
    pub prompt_tokens: u64,
    /// Completion tokens it wrote.
    pub completion_tokens: u64,
    /// The host that answered (`None` for a local teacher).
    pub host: Option<String>,
    /// When the answer arrived, microseconds since the Unix epoch.
    pub received_at: i64,
}

impl Response {
    /// Mean logprob of the completion tokens.
    pub fn logprob_mean(&self) -> Option<f32> {
        (!self.logprobs.is_empty())
            .then(|| self.logprobs.iter().sum::<f32>() / self.logprobs.len() as f32)
    }
}

/// Counters a teacher keeps while it works, for the progress bar and the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TeacherStats {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Hosts that received prompts.
    pub hosts: Vec<String>,
    /// What each server of an `openai` teacher's fleet did (none for a local teacher).
    pub servers: Vec<fleet::ServerStats>,
}

/// Something that answers prompts.
pub trait Teacher {
    /// The model id written into every row's `teacher` column.
    fn id(&self) -> &str;

    /// What identifies this teacher's answers in the response cache: the same id with the same
    /// request means the same answer can be reused.
    fn cache_id(&self) -> &str;

    /// How many requests to hand over at once (a local batch, or a server's concurrency).
    fn batch_size(&self) -> usize;

    /// Answers `requests`, calling `done(i, response)` as each answer arrives (so the caller can
    /// make it durable at once). On failure, answers that arrived were still passed to `done`;
    /// the error names what failed.
    fn answer(
        &mut self,
        requests: &[Request],
        done: &mut dyn FnMut(usize, Response) -> Result<()>,
    ) -> Result<()>;

    /// Counters so far.
    fn stats(&self) -> TeacherStats;
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Entropy estimate from a top-k: the top-k's own terms, plus the mass left over treated as
/// one outcome (a lower bound of the true entropy).
pub fn entropy_from_topk(top: &[TopLogprob]) -> f32 {
    let mut h = 0.0f64;
    let mut mass = 0.0f64;
    for t in top {
        let p = (t.logprob as f64).exp();
        if p > 0.0 {
            h -= p * t.logprob as f64;
            mass += p;
        }
    }
    let rest = (1.0 - mass).max(0.0);
    if rest > 1e-12 {
        h -= rest * rest.ln();
    }
    h.max(0.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_from_a_full_topk_is_exact_and_leftover_mass_counts() {
        let half = TopLogprob {
            id: 0,
            logprob: 0.5f32.ln(),
        };
        let other = TopLogprob {
            id: 1,
            logprob: 0.5f32.ln(),
        };
        assert!((entropy_from_topk(&[half, other]) - 2f32.ln()).abs() < 1e-6);
        // Only one half known: the other half is one outcome, same entropy.
        assert!((entropy_from_topk(&[half]) - 2f32.ln()).abs() < 1e-6);
        assert_eq!(entropy_from_topk(&[]), 0.0);
    }
}
