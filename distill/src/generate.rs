//! Batched generation with a KV cache: what a local teacher writes and what distillation learns
//! from.
//!
//! Prompts of different lengths are left-padded into one batch (padding keys get a large negative
//! attention bias, positions count from each prompt's first real token), prefilled in one pass,
//! then decoded one token per step for every row at once. The model runs on the device (on the
//! CPU, the decoder of `model/decode.rs`, which keeps a preallocated cache); sampling runs on the
//! host per row: temperature, top-k, top-p, a seeded generator per row, EOS and stop
//! strings. For every generated token the result carries the sampled id, its logprob and the
//! top-k (id, logprob) of the full distribution at temperature 1, plus its entropy: the teacher
//! signal that `teacher_topk`, `logprob_mean` and `entropy_mean` store.

use burn::prelude::*;
use burn::tensor::TensorData;
use datasets::TopLogprob;
use datasets::tasks::Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::decode::Decoder;
use crate::model::kernels::decode::log_softmax_entropy;
use crate::model::{KvCache, Model};

/// Tokens that end an assistant turn in common chat templates; generation from a chat prompt
/// stops at any of them that the tokenizer knows.
pub const TURN_ENDS: [&str; 5] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
    "</s>",
    "<end_of_turn>",
];

/// Turns token ids back into text (for stop strings).
pub type Decode<'a> = &'a dyn Fn(&[u32]) -> String;

/// Attention bias of a padding key: large and finite, so a row that only sees padding still has
/// a well-defined (uniform) softmax instead of NaNs.
const PAD_BIAS: f32 = -1.0e9;

/// How to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f32,
    /// Sample only among the `top_k` most likely tokens (0: no limit).
    pub top_k: usize,
    /// Sample only from the smallest set whose probability reaches `top_p` (1: no limit).
    pub top_p: f32,
    /// Seed of the per-row generators (row `i` uses `seed + i`) unless `row_seeds` is given.
    pub seed: u64,
    /// One seed per row: a row's sample then does not depend on which rows share its batch.
    pub row_seeds: Vec<u64>,
    /// How many (id, logprob) of the full distribution to return per token (0: none).
    pub logprobs: usize,
    /// Tokens that end a sequence (kept as its last token).
    pub eos_ids: Vec<u32>,
    /// Texts that end a sequence (cut before the text; needs a decoder).
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 64,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            row_seeds: Vec::new(),
            logprobs: 20,
            eos_ids: Vec::new(),
            stop: Vec::new(),
        }
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// It produced an EOS token or a stop string.
    Stop,
    /// It reached `max_new_tokens`.
    Length,
}

/// What one prompt produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// New token ids (an EOS that ended it included; a stop string's tokens not).
    pub ids: Vec<u32>,
    /// Logprob of each new token under the model (temperature 1).
    pub logprobs: Vec<f32>,
    /// The top-k of the full distribution at each new token.
    pub top: Vec<Vec<TopLogprob>>,
    /// Entropy (nats) of the full distribution at each new token.
    pub entropy: Vec<f32>,
    /// Why it ended.
    pub finish: FinishReason,
}

impl Generated {
    /// Mean logprob of the new tokens.
    pub fn logprob_mean(&self) -> Option<f32> {
        (!self.logprobs.is_empty())
            .then(|| self.logprobs.iter().sum::<f32>() / self.logprobs.len() as f32)
    }

    /// Mean entropy of the new tokens.
    pub fn entropy_mean(&self) -> Option<f32> {
        (!self.entropy.is_empty())
            .then(|| self.entropy.iter().sum::<f32>() / self.entropy.len() as f32)
    }
}

/// The distribution at one position, computed on the host.
struct Step {
    logprobs: Vec<f32>,
    entropy: f32,
}

fn log_softmax(logits: &[f32]) -> Step {
    let mut logprobs = vec![0.0f32; logits.len()];
    let entropy = log_softmax_entropy(logits, &mut logprobs);
    Step { logprobs, entropy }
}

/// The `k` most likely tokens, most likely first (ties broken by lower id).
///
/// One pass with a small sorted buffer: with k ≪ vocabulary almost every entry is rejected by
/// one comparison with the current k-th best, which beats a quickselect over the whole row.
pub fn top_k(logprobs: &[f32], k: usize) -> Vec<TopLogprob> {
    let k = k.min(logprobs.len());
    if k == 0 {
        return Vec::new();
    }
    // Sorted best first; ties keep the lower id first because ids arrive in order.
    let mut best: Vec<TopLogprob> = Vec::with_capacity(k + 1);
    for (id, &lp) in logprobs.iter().enumerate() {
        if best.len() == k
            && lp.partial_cmp(&best[k - 1].logprob) != Some(std::cmp::Ordering::Greater)
        {
            continue;
        }
        let at = best.partition_point(|t| t.logprob >= lp);
        best.insert(
            at,
            TopLogprob {
                id: id as u32,
                logprob: lp,
            },
        );
        best.truncate(k);
    }
    best
}

/// Picks the next token from logits under the options (host side).
fn choose(logits: &[f32], step: &Step, options: &GenerateOptions, rng: &mut Rng) -> u32 {
    if options.temperature <= 0.0 {
        // Greedy: the first maximum, as torch.argmax returns.
        let mut best = 0usize;
        for (i, &x) in logits.iter().enumerate() {
            if x > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let t = options.temperature as f64;
    let mut cand: Vec<(u32, f64)> = step
        .logprobs
        .iter()
        .enumerate()
        .map(|(i, &lp)| (i as u32, lp as f64 / t))
        .collect();
    cand.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(&b.0))
    });
    if options.top_k > 0 {
        cand.truncate(options.top_k);
    }
    let max = cand.first().map_or(0.0, |c| c.1);
    let mut probs: Vec<f64> = cand.iter().map(|c| (c.1 - max).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if options.top_p < 1.0 {
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if acc >= options.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        cand.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut acc = 0.0;
    for (c, p) in cand.iter().zip(&probs) {
        acc += p;
        if u < acc {
            return c.0;
        }
    }
    cand.last().map_or(0, |c| c.0)
}

/// Picks the next token from logits alone, normalising them only when it samples: greedy
/// choice needs no distribution.
fn choose_from_logits(logits: &[f32], options: &GenerateOptions, rng: &mut Rng) -> u32 {
    let step = if options.temperature <= 0.0 {
        Step {
            logprobs: Vec::new(),
            entropy: 0.0,
        }
    } else {
        log_softmax(logits)
    };
    choose(logits, &step, options, rng)
}

/// A row's sampled token: its distribution, the id, the top-k, and the row's generator after it.
type Pick = (Step, u32, Vec<TopLogprob>, Rng);

/// What runs the model step by step: the host decoder on the CPU (`model/decode.rs`), burn's
/// operations with their KV cache elsewhere.
enum Engine<'a> {
    Host(Box<Decoder>),
    Burn(&'a Model, KvCache),
}

impl<'a> Engine<'a> {
    fn new(model: &'a Model, batch: usize, capacity: usize) -> Self {
        match Decoder::new(model, batch, capacity) {
            Some(d) => Engine::Host(Box::new(d)),
            None => Engine::Burn(model, KvCache::new(model.config().num_hidden_layers)),
        }
    }

    /// `[f(0), …, f(n - 1)]` in parallel: on the decoder's team (whose threads are waiting for
    /// the next step anyway), else on rayon's pool.
    fn rows<T: Send + Sync>(&mut self, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
        match self {
            Engine::Host(d) => d.team().map(n, f),
            Engine::Burn(..) => (0..n).into_par_iter().map(&f).collect(),
        }
    }

    /// One step for `ids` `[batch × s]`: the logits of each row's last position, on the host.
    fn step(
        &mut self,
        ids: &[u32],
        positions: &[Vec<usize>],
        bias: Option<&[Vec<f32>]>,
    ) -> Result<Vec<f32>> {
        match self {
            Engine::Host(d) => Ok(d.step(ids, positions, bias)),
            Engine::Burn(model, cache) => {
                let b = positions.len();
                let ids = Tensor::<2, Int>::from_data(
                    TensorData::new(
                        ids.iter().map(|&t| t as i64).collect::<Vec<_>>(),
                        [b, ids.len() / b],
                    ),
                    &model.device(),
                );
                model
                    .step(ids, positions, bias, cache)
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| Error::invalid(format!("Failed to read logits: {e:?}")))
            }
        }
    }
}

/// Cuts a sequence at the first stop string: returns how many tokens to keep, or `None`.
fn stop_at(ids: &[u32], stops: &[String], decode: &dyn Fn(&[u32]) -> String) -> Option<usize> {
    let text = decode(ids);
    let start = stops.iter().filter_map(|s| text.find(s.as_str())).min()?;
    // The longest prefix of tokens whose text ends before the stop string begins.
    let mut keep = 0;
    for n in (0..=ids.len()).rev() {
        if decode(&ids[..n]).len() <= start {
            keep = n;
            break;
        }
    }
    Some(keep)
}

/// Checks that every prompt has tokens from the model's vocabulary and fits with `new_tokens[i]`
/// more (the last entry serves every later row); returns the padding token.
fn check_prompts(model: &Model, prompts: &[Vec<u32>], new_tokens: &[usize]) -> Result<u32> {
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(Error::invalid(format!(
            "Prompt {i} has no tokens; generation needs at least one"
        )));
    }
    let config = model.config();
    let vocab = config.vocab_size as u32;
    if let Some((i, id)) = prompts
        .iter()
        .enumerate()
        .find_map(|(i, p)| p.iter().find(|&&t| t >= vocab).map(|t| (i, *t)))
    {
        return Err(Error::invalid(format!(
            "Prompt {i} has token id {id}, outside the model's vocabulary of {vocab}; is the tokenizer the model's?"
        )));
    }
    let limit = config
        .sliding_window
        .unwrap_or(usize::MAX)
        .min(config.max_position_embeddings);
    let new = |i: usize| new_tokens[i.min(new_tokens.len().saturating_sub(1))];
    if let Some((i, p)) = prompts
        .iter()
        .enumerate()
        .max_by_key(|(i, p)| p.len() + new(*i))
        .filter(|(i, p)| p.len() + new(*i) > limit)
    {
        return Err(Error::invalid(format!(
            "A prompt of {} tokens plus {} new tokens exceeds the model's {limit} positions",
            p.len(),
            new(i)
        )));
    }
    Ok(config
        .pad_token_id
        .or(config.eos_token_ids.first().copied())
        .unwrap_or(0))
}

/// Rows decoding together: the prompts left-padded into one batch, then one token per row per
/// step, a finished row's keys masked as padding.
struct Batch<'a> {
    engine: Engine<'a>,
    /// Per row, the attention bias of every key so far.
    bias: Vec<Vec<f32>>,
    any_padding: bool,
    /// Per row, the position of its next token.
    next_pos: Vec<usize>,
}

impl<'a> Batch<'a> {
    /// Prefills the prompts with room for `new_tokens` more per row; returns the batch and the
    /// logits of each row's last prompt token, `[batch × vocab]`.
    fn prefill(
        model: &'a Model,
        prompts: &[Vec<u32>],
        new_tokens: usize,
        pad: u32,
    ) -> Result<(Self, Vec<f32>)> {
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut flat = Vec::with_capacity(prompts.len() * longest);
        let mut positions = Vec::with_capacity(prompts.len());
        let mut bias: Vec<Vec<f32>> = Vec::with_capacity(prompts.len());
        for p in prompts {
            let padding = longest - p.len();
            flat.extend(std::iter::repeat_n(pad, padding));
            flat.extend_from_slice(p);
            positions.push(
                (0..longest)
                    .map(|j| j.saturating_sub(padding))
                    .collect::<Vec<_>>(),
            );
            let mut row = vec![PAD_BIAS; padding];
            row.extend(std::iter::repeat_n(0.0, p.len()));
            bias.push(row);
        }
        let any_padding = prompts.iter().any(|p| p.len() != longest);
        let mut engine = Engine::new(model, prompts.len(), longest + new_tokens);
        let logits = engine.step(&flat, &positions, any_padding.then_some(bias.as_slice()))?;
        let batch = Batch {
            engine,
            bias,
            any_padding,
            next_pos: prompts.iter().map(Vec::len).collect(),
        };
        Ok((batch, logits))
    }

    /// Feeds `next[row]` to every row (a `done` row's becomes a padding key); returns the logits
    /// after it.
    fn advance(&mut self, next: &[u32], done: &[bool]) -> Result<Vec<f32>> {
        for (r, row) in self.bias.iter_mut().enumerate() {
            row.push(if done[r] { PAD_BIAS } else { 0.0 });
        }
        let pos: Vec<Vec<usize>> = self.next_pos.iter().map(|&p| vec![p]).collect();
        self.next_pos.iter_mut().for_each(|p| *p += 1);
        let need_bias = self.any_padding || done.iter().any(|&d| d);
        self.engine
            .step(next, &pos, need_bias.then_some(self.bias.as_slice()))
    }
}

/// Per row, a generator seeded by `row_seeds` (else `seed + row`).
fn row_rngs(options: &GenerateOptions, rows: usize) -> Vec<Rng> {
    (0..rows)
        .map(|i| {
            Rng::new(
                options
                    .row_seeds
                    .get(i)
                    .copied()
                    .unwrap_or_else(|| options.seed.wrapping_add(i as u64)),
            )
        })
        .collect()
}

/// Generates a continuation for every prompt (token ids), in one batch.
pub fn generate(
    model: &Model,
    prompts: &[Vec<u32>],
    options: &GenerateOptions,
    decode: Option<Decode<'_>>,
) -> Result<Vec<Generated>> {
    generate_with(model, prompts, options, decode, &mut |_, _| true)
}

/// A token as it is produced, for streaming.
#[derive(Debug, Clone)]
pub struct TokenEvent<'a> {
    /// The token.
    pub id: u32,
    /// Its logprob.
    pub logprob: f32,
    /// The top-k at its position.
    pub top: &'a [TopLogprob],
}

/// Like [`generate`], calling `on_token(row, token)` as each token is produced; returning `false`
/// stops that row (its client went away). Tokens later cut by a stop string were reported too:
/// the final [`Generated`] is the truth.
pub fn generate_with(
    model: &Model,
    prompts: &[Vec<u32>],
    options: &GenerateOptions,
    decode: Option<Decode<'_>>,
    on_token: &mut dyn FnMut(usize, TokenEvent<'_>) -> bool,
) -> Result<Vec<Generated>> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    if !options.stop.is_empty() && decode.is_none() {
        return Err(Error::invalid(
            "Stop strings need a tokenizer to decode the output",
        ));
    }
    let pad = check_prompts(model, prompts, &[options.max_new_tokens])?;
    let config = model.config();
    let b = prompts.len();
    let (mut batch, mut logits) = Batch::prefill(model, prompts, options.max_new_tokens, pad)?;
    let mut rngs = row_rngs(options, b);
    let mut out: Vec<Generated> = (0..b)
        .map(|_| Generated {
            ids: Vec::new(),
            logprobs: Vec::new(),
            top: Vec::new(),
            entropy: Vec::new(),
            finish: FinishReason::Length,
        })
        .collect();
    let mut done = vec![false; b];
    for _ in 0..options.max_new_tokens {
        let host = std::mem::take(&mut logits);
        let v = config.vocab_size;
        // The distribution, the choice and the top-k of every live row, rows in parallel (each
        // row has its own generator, so the result does not depend on the split).
        let picked: Vec<Option<Pick>> = batch.engine.rows(b, |r| {
            (!done[r]).then(|| {
                let row = &host[r * v..(r + 1) * v];
                let step = log_softmax(row);
                let mut rng = rngs[r].clone();
                let id = choose(row, &step, options, &mut rng);
                let top = top_k(&step.logprobs, options.logprobs);
                (step, id, top, rng)
            })
        });
        let mut next = Vec::with_capacity(b);
        for (r, picked) in picked.into_iter().enumerate() {
            let Some((step, id, top, rng)) = picked else {
                next.push(pad);
                continue;
            };
            rngs[r] = rng;
            let g = &mut out[r];
            g.ids.push(id);
            g.logprobs.push(step.logprobs[id as usize]);
            g.top.push(top);
            g.entropy.push(step.entropy);
            let wanted = on_token(
                r,
                TokenEvent {
                    id,
                    logprob: step.logprobs[id as usize],
                    top: g.top.last().map_or(&[], Vec::as_slice),
                },
            );
            if !wanted || options.eos_ids.contains(&id) {
                done[r] = true;
                g.finish = FinishReason::Stop;
            } else if let Some(decode) = decode
                && !options.stop.is_empty()
                && let Some(keep) = stop_at(&g.ids, &options.stop, decode)
            {
                g.ids.truncate(keep);
                g.logprobs.truncate(keep);
                g.top.truncate(keep);
                g.entropy.truncate(keep);
                done[r] = true;
                g.finish = FinishReason::Stop;
            }
            next.push(id);
        }
        if done.iter().all(|&d| d) {
            break;
        }
        logits = batch.advance(&next, &done)?;
    }
    Ok(out)
}

/// A teacher that checks each token as the student writes it (speculative sampling, SKD): a
/// token it gives less than `floor` (a logprob), or leaves out of its top `top_k` when that is
/// set, is replaced by its most likely token before the student writes the next.
pub struct Checker<'a> {
    /// The teacher. It shares the student's vocabulary.
    pub teacher: &'a Model,
    /// The least logprob the teacher keeps a student's token at.
    pub floor: f32,
    /// The teacher's top-k returned at every written token, as a grader gives them; a token
    /// outside them is replaced too. 0: none returned, only `floor` decides.
    pub top_k: usize,
    /// The seed of row `row`'s generator after its `n`-th replacement (`n` ≥ 1): the student
    /// samples on from there as from a new prompt.
    pub reseed: &'a (dyn Fn(usize, usize) -> u64 + Sync),
}

/// A live row's step under a [`Checker`]: the token kept, the teacher's top-k there, whether
/// the teacher replaced the student's token, and the row's generator after the draw.
type CheckedPick = (u32, Vec<TopLogprob>, bool, Rng);

/// What one prompt produced under a [`Checker`].
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The written tokens, the teacher's replacements among them.
    pub ids: Vec<u32>,
    /// The teacher's top-k at each written token (empty lists when `top_k` is 0).
    pub top: Vec<Vec<TopLogprob>>,
    /// How many tokens the teacher replaced.
    pub replaced: usize,
}

/// The student continues every prompt under the options (temperature, seeds, EOS), row `i` for
/// at most `budgets[i]` tokens, while `checker`'s teacher decodes the same tokens beside it,
/// its KV cache in step with the student's: each token is checked once, as it is written, and
/// the teacher's top-k there is its grade.
pub fn generate_checked(
    student: &Model,
    prompts: &[Vec<u32>],
    budgets: &[usize],
    options: &GenerateOptions,
    checker: &Checker<'_>,
) -> Result<Vec<Checked>> {
    let b = prompts.len();
    if b == 0 {
        return Ok(Vec::new());
    }
    if budgets.len() != b {
        return Err(Error::invalid(format!(
            "{} token budgets for {b} prompts; give one per prompt",
            budgets.len()
        )));
    }
    let (sv, tv) = (
        student.config().vocab_size,
        checker.teacher.config().vocab_size,
    );
    if sv != tv {
        return Err(Error::invalid(format!(
            "The teacher's vocabulary has {tv} tokens and the student's {sv}; a teacher checks a student's tokens only with the same tokenizer"
        )));
    }
    let steps = budgets.iter().copied().max().unwrap_or(0);
    let spad = check_prompts(student, prompts, budgets)?;
    let tpad = check_prompts(checker.teacher, prompts, budgets)?;
    let (mut students, mut s_logits) = Batch::prefill(student, prompts, steps, spad)?;
    let (mut teachers, mut t_logits) = Batch::prefill(checker.teacher, prompts, steps, tpad)?;
    let mut rngs = row_rngs(options, b);
    let mut out: Vec<Checked> = (0..b)
        .map(|_| Checked {
            ids: Vec::new(),
            top: Vec::new(),
            replaced: 0,
        })
        .collect();
    let mut done: Vec<bool> = budgets.iter().map(|&n| n == 0).collect();
    let keep = checker.top_k.max(1);
    while !done.iter().all(|&d| d) {
        let (s_host, t_host) = (std::mem::take(&mut s_logits), std::mem::take(&mut t_logits));
        let picked: Vec<Option<CheckedPick>> = students.engine.rows(b, |r| {
            (!done[r]).then(|| {
                let row = &s_host[r * sv..(r + 1) * sv];
                let mut rng = rngs[r].clone();
                let id = choose_from_logits(row, options, &mut rng);
                let judged = log_softmax(&t_host[r * tv..(r + 1) * tv]);
                let top = top_k(&judged.logprobs, keep);
                let outside = checker.top_k > 0 && !top.iter().any(|t| t.id == id);
                let rejected = outside || judged.logprobs[id as usize] < checker.floor;
                let id = if rejected { top[0].id } else { id };
                (id, top, rejected, rng)
            })
        });
        let mut next = Vec::with_capacity(b);
        for (r, picked) in picked.into_iter().enumerate() {
            let Some((id, top, rejected, rng)) = picked else {
                next.push(spad);
                continue;
            };
            let row = &mut out[r];
            row.ids.push(id);
            row.top
                .push(if checker.top_k > 0 { top } else { Vec::new() });
            rngs[r] = if rejected {
                row.replaced += 1;
                Rng::new((checker.reseed)(r, row.replaced))
            } else {
                rng
            };
            done[r] = options.eos_ids.contains(&id) || row.ids.len() >= budgets[r];
            next.push(id);
        }
        if done.iter().all(|&d| d) {
            break;
        }
        s_logits = students.advance(&next, &done)?;
        t_logits = teachers.advance(&next, &done)?;
    }
    Ok(out)
}

/// Logits of every position of one sequence, `[len][vocab]` (for parity checks).
pub fn logits(model: &Model, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
    if ids.is_empty() {
        return Err(Error::invalid(
            "No input tokens; give at least one id or a non-empty text",
        ));
    }
    let vocab = model.config().vocab_size;
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::invalid(format!(
            "Token id {bad} is outside the model's vocabulary of {vocab}"
        )));
    }
    if ids.len() > model.config().max_position_embeddings {
        return Err(Error::invalid(format!(
            "{} tokens exceed the model's {} positions",
            ids.len(),
            model.config().max_position_embeddings
        )));
    }
    let device = model.device();
    let t = Tensor::<2, Int>::from_data(
        TensorData::new(
            ids.iter().map(|&t| t as i64).collect::<Vec<_>>(),
            [1, ids.len()],
        ),
        &device,
    );
    let out = model.forward(t);
    let flat: Vec<f32> = out
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::invalid(format!("Failed to read logits: {e:?}")))?;
    Ok(flat.chunks(vocab).map(<[f32]>::to_vec).collect())
}

/// How a model scores one token of a sequence it reads: the token's logprob and rank under the
/// distribution at the position before it, and that distribution's top-k.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The token at this position.
    pub id: u32,
    /// Its logprob (temperature 1).
    pub logprob: f32,
    /// Its rank in the distribution: 1 is the most likely token.
    pub rank: usize,
    /// The `k` most likely tokens, most likely first.
    pub top: Vec<TopLogprob>,
}

/// Scores every token of `ids` after the first: what `/v1/completions` returns as
/// `prompt_logprobs` (and, with `echo`, as the prompt's logprobs), and what a teacher grades a
/// student's sample with. One teacher-forced pass per sequence, so a sequence's scores do not
/// depend on what else is scored with it; the logprobs are `logits` log-softmaxed.
pub fn score(model: &Model, ids: &[u32], k: usize) -> Result<Vec<Scored>> {
    let rows = logits(model, ids)?;
    let mut out = Vec::with_capacity(ids.len().saturating_sub(1));
    let mut logprobs = vec![0.0f32; rows.first().map_or(0, Vec::len)];
    for (row, &id) in rows.iter().zip(&ids[1..]) {
        log_softmax_entropy(row, &mut logprobs);
        let lp = logprobs[id as usize];
        out.push(Scored {
            id,
            logprob: lp,
            rank: 1 + logprobs.iter().filter(|&&x| x > lp).count(),
            top: top_k(&logprobs, k),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_sorted_and_breaks_ties_by_id() {
        let lp = [-2.0, -0.5, -0.5, -3.0, -0.1];
        let t = top_k(&lp, 3);
        let ids: Vec<u32> = t.iter().map(|x| x.id).collect();
        assert_eq!(ids, [4, 1, 2]);
        assert!(top_k(&lp, 0).is_empty());
        assert_eq!(top_k(&lp, 10).len(), 5);
    }

    #[test]
    fn log_softmax_normalises_and_entropy_is_right() {
        let s = log_softmax(&[0.0, 0.0, 0.0, 0.0]);
        let total: f32 = s.logprobs.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!((s.entropy - 4f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_k() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32) * 0.1).collect();
        let step = log_softmax(&logits);
        let options = GenerateOptions {
            temperature: 1.0,
            top_k: 3,
            ..Default::default()
        };
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..200)
                .map(|_| choose(&logits, &step, &options, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(1);
        assert_eq!(a, draw(1));
        assert_ne!(a, draw(2));
        assert!(a.iter().all(|&id| id >= 47), "only the top 3 of 50");
    }

    /// A checker needs one budget per prompt and a teacher with the student's vocabulary; the
    /// messages say which.
    #[test]
    fn checked_generation_refuses_a_mismatched_teacher_or_budgets() {
        let cpu = crate::backend::cpu();
        let config = |vocab| crate::model::ModelConfig::llama(vocab, 16, 32, 1, 2, 1, 32, false);
        let student = config(24).init(&cpu);
        let other = config(30).init(&cpu);
        let reseed = |_: usize, n: usize| n as u64;
        let checker = |teacher| Checker {
            teacher,
            floor: -1.0,
            top_k: 3,
            reseed: &reseed,
        };
        let prompts = vec![vec![1, 5, 6], vec![1, 7]];
        let options = GenerateOptions::default();
        let err = generate_checked(&student, &prompts, &[4], &options, &checker(&student));
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("1 token budgets for 2 prompts")
        );
        let err = generate_checked(&student, &prompts, &[4, 4], &options, &checker(&other));
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("vocabulary has 30 tokens")
        );
        let err = generate_checked(&student, &prompts, &[4, 40], &options, &checker(&student));
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("exceeds the model's 32 positions")
        );
        // Each row stops at its own budget, and a top-k is kept per written token.
        let out = generate_checked(&student, &prompts, &[2, 5], &options, &checker(&student));
        let out = out.unwrap();
        assert_eq!((out[0].ids.len(), out[1].ids.len()), (2, 5));
        assert!(out.iter().all(|c| c.top.len() == c.ids.len()));
        assert!(out.iter().flat_map(|c| &c.top).all(|t| t.len() == 3));
    }

    #[test]
    fn stop_strings_cut_before_the_text() {
        let decode = |ids: &[u32]| {
            ids.iter()
                .map(|&i| char::from(b'a' + i as u8))
                .collect::<String>()
        };
        // "abcd": stop at "cd" keeps "ab".
        assert_eq!(stop_at(&[0, 1, 2, 3], &["cd".into()], &decode), Some(2));
        assert_eq!(stop_at(&[0, 1], &["cd".into()], &decode), None);
    }
}
