//! Grading a student's samples for on-policy distillation: the teacher's logprobs at every token
//! the student wrote.
//!
//! A local teacher scores them on this machine; an `openai` teacher over HTTP
//! ([`OpenAiTeacher::score`]), each sequence's scores kept in the response cache under a hash of
//! the teacher and the token ids, so a resumed run never asks for them twice. Both give the same
//! thing, the teacher's top-k at each sampled position (the distribution it puts outside them is
//! the tail bucket of the top-k loss), so a student distilled against `workbench serve` is the
//! one distilled against the same checkpoint loaded here.

use datasets::TopLogprob;

use super::cache::ResponseCache;
use super::openai::{OpenAiTeacher, ScoreRequest, score_key};
use crate::model::Model;
use crate::train::data::Example;
use crate::{Error, Result};

/// Who grades the samples.
pub enum Grader {
    /// A checkpoint loaded here (inference backend).
    Local {
        /// The teacher.
        model: Model,
        /// Top logprobs kept per token.
        k: usize,
    },
    /// An OpenAI-compatible server, with the run's response cache.
    Remote {
        /// The client (its fleet, retries and concurrency).
        teacher: Box<OpenAiTeacher>,
        /// Where scores are kept.
        cache: ResponseCache,
        /// Top logprobs asked for per token.
        k: usize,
    },
}

impl Grader {
    /// The teacher's top-k at every completion token of each row (the tokens after
    /// `prompt_len`), in order.
    pub fn grade(&mut self, rows: &[Example]) -> Result<Vec<Vec<Vec<TopLogprob>>>> {
        match self {
            Grader::Local { model, k } => rows
                .iter()
                .map(|e| {
                    let scores = crate::generate::score(model, &e.ids, *k)?;
                    // Score `i` is of token `i + 1`.
                    Ok(scores[e.prompt_len.saturating_sub(1)..]
                        .iter()
                        .map(|s| s.top.clone())
                        .collect())
                })
                .collect(),
            Grader::Remote { teacher, cache, k } => {
                let requests: Vec<ScoreRequest> = rows
                    .iter()
                    .map(|e| ScoreRequest {
                        ids: e.ids.clone(),
                        prompt_len: e.prompt_len,
                        top_logprobs: *k,
                    })
                    .collect();
                let keys: Vec<String> = requests
                    .iter()
                    .map(|r| score_key(super::Teacher::cache_id(teacher.as_ref()), r))
                    .collect();
                let mut out: Vec<Option<Vec<Vec<TopLogprob>>>> = Vec::with_capacity(rows.len());
                let mut missing = Vec::new();
                for (i, key) in keys.iter().enumerate() {
                    let hit = cache.get(key)?;
                    if hit.is_none() {
                        missing.push(i);
                    }
                    out.push(hit.map(|r| r.top));
                }
                if !missing.is_empty() {
                    let asked: Vec<ScoreRequest> =
                        missing.iter().map(|&i| requests[i].clone()).collect();
                    let result = teacher.score(&asked, &mut |j, response| {
                        let i = missing[j];
                        cache.put(&keys[i], &response)?;
                        out[i] = Some(response.top);
                        Ok(())
                    });
                    cache.sync()?;
                    result?;
                }
                out.into_iter()
                    .zip(rows)
                    .map(|(top, e)| {
                        top.filter(|t| t.len() == e.completion_len())
                            .ok_or_else(|| {
                                Error::teacher(
                                    "The teacher's scores do not cover the student's sample; its \
                                 response cache may hold another teacher's answers\n\nhint: \
                                 move `cache/teacher-responses.jsonl` in the run directory aside",
                                )
                            })
                    })
                    .collect()
            }
        }
    }
}
