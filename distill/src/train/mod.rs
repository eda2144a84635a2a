//! Training: distillation losses, the loop, checkpoints that resume exactly.
//!
//! The loop is ours, not a black box: AdamW, linear warmup then cosine decay, gradient clipping,
//! gradient accumulation, evaluation every N steps with early stopping on eval loss. Every
//! `checkpoint_every` steps it writes `step-N/` (weights, optimizer state, and the loop's own state:
//! step, data cursor, the log so far, early-stopping counters) under a temporary name, renames it,
//! and writes `COMPLETE` last; a resumed run picks the newest complete one and continues with the
//! same data order, so its loss curve is the uninterrupted one, bit for bit (the log so far is
//! read back with `serde_json`'s `float_roundtrip`, so it is the same bits too). Data order is a seeded permutation per epoch, so the cursor (epoch,
//! position) is the whole RNG state.

pub mod adamw;
pub mod data;
pub mod job;
pub mod loss;
pub mod plots;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::{Model, checkpoint};
use crate::{Error, Result};
use data::{Example, batch};
use datasets::TopLogprob;
use loss::Divergence;

/// What the student learns from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Cross-entropy on the completion tokens only (SFT, sequence-level KD).
    CrossEntropy,
    /// `alpha · KD + (1 − alpha) · CE`, KD on the stored top-k (tail bucket) or, when a teacher
    /// model is given to [`train`], on its full distribution.
    Distill {
        /// Weight of the KD term.
        alpha: f64,
        /// Which divergence.
        divergence: Divergence,
        /// Softmax temperature (the KD term is scaled by T²).
        temperature: f64,
    },
    /// The expert fine-tune: cross-entropy on every row's completion (SFT on accepted and
    /// corrected answers, replayed synthetic rows, and the chosen side of preference pairs) plus
    /// `weight · DPO` on the rows that are preference pairs, against the frozen reference model
    /// given to [`train`] (the distilled student).
    Preference {
        /// DPO's β.
        beta: f64,
        /// Weight of the DPO term.
        weight: f64,
    },
}

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub accumulation: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warmup steps (linear from 0).
    pub warmup: usize,
    /// The cosine decays to `lr · min_lr_ratio`.
    pub min_lr_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradient clipping: each parameter's gradient scaled down to this L2 norm (0: off).
    pub grad_clip: f64,
    /// Evaluate every N steps (0: only at the end).
    pub eval_every: usize,
    /// Stop after this many evaluations without a better eval loss (0: never).
    pub patience: usize,
    /// Return the weights of the best evaluation (the highest exact match when the caller
    /// measures it, else the lowest eval loss), not the last step's. Early stopping returns the
    /// lowest eval loss's without it.
    pub keep_best: bool,
    /// Write a checkpoint every N steps (0: never).
    pub checkpoint_every: usize,
    /// Seed of the data order.
    pub seed: u64,
    /// Stop after this step in this process (a checkpoint is written there) and leave the rest to
    /// a resumed run: for time budgets. `None`: run to `steps`.
    pub pause_after: Option<usize>,
    /// The loss.
    pub objective: Objective,
    /// On-policy distillation: batches the student writes itself, graded by the frozen teacher.
    pub on_policy: Option<OnPolicy>,
}

/// On-policy distillation (GKD): with probability `lambda` a micro-batch's completions are
/// sampled from the student as it is at that step, and the loss is the divergence between the
/// teacher's distribution (the frozen model's, or a grader's top-k) and the student's at every
/// sampled position (no cross-entropy: the sampled tokens are not labels). The other
/// micro-batches are the stored completions, as off-policy distillation trains. The draws and
/// the samples are seeded by the step, so a resumed run samples what the uninterrupted one did.
#[derive(Debug, Clone)]
pub struct OnPolicy {
    /// The share of micro-batches the student writes (0 to 1).
    pub lambda: f64,
    /// Sampling temperature.
    pub temperature: f32,
    /// Tokens sampled per prompt at most.
    pub max_new_tokens: usize,
    /// Tokens that end a sample.
    pub eos_ids: Vec<u32>,
    /// The student's positions, which prompt and sample together must fit.
    pub max_positions: usize,
    /// Steps of off-policy distillation before the student writes any batch: a student must
    /// first be able to write something the teacher's grades can correct.
    pub after: usize,
    /// Speculative sampling (0: off): a sampled token the teacher gives less than this
    /// probability (or leaves out of its top-k) is replaced by the teacher's most likely token,
    /// and the student writes on from there. So a weak student's batches stay on paths the
    /// teacher can grade, instead of running on past its first mistake.
    pub replace_below: f64,
}

/// Whether micro-batch `micro` of `step` is written by the student.
fn on_policy_draw(p: &OnPolicy, seed: u64, step: usize, micro: usize) -> bool {
    if p.lambda <= 0.0 || step <= p.after {
        return false;
    }
    let h = crate::recipe::seed_of(seed, &format!("on-policy draw\0{step}\0{micro}"));
    ((h >> 11) as f64 / (1u64 << 53) as f64) < p.lambda
}

/// The generator seed of row `i`'s sample at `step`: round 0 is plain on-policy sampling, later
/// rounds are speculative sampling's, after the teacher replaced a token. So a teacher that
/// replaces nothing leaves the student's samples as plain sampling draws them.
fn sample_seed(seed: u64, step: usize, micro: usize, i: usize, round: usize) -> u64 {
    let label = match round {
        0 => format!("on-policy sample\0{step}\0{micro}\0{i}"),
        r => format!("on-policy sample\0{step}\0{micro}\0{i}\0{r}"),
    };
    crate::recipe::seed_of(seed, &label)
}

/// How the student samples on-policy: `max_new_tokens` (at least 1) at the set temperature,
/// one seed per row.
fn sample_options(
    p: &OnPolicy,
    max_new_tokens: usize,
    row_seeds: Vec<u64>,
) -> crate::generate::GenerateOptions {
    crate::generate::GenerateOptions {
        max_new_tokens: max_new_tokens.max(1),
        temperature: p.temperature,
        row_seeds,
        logprobs: 0,
        eos_ids: p.eos_ids.clone(),
        ..Default::default()
    }
}

/// The picked rows' prompts with completions sampled from `model` (the student at this step).
fn sample_completions(
    model: &Model,
    picked: &[&Example],
    p: &OnPolicy,
    seed: u64,
    step: usize,
    micro: usize,
) -> Result<Vec<Example>> {
    let mut rows = prompts_of(picked);
    let prompts: Vec<Vec<u32>> = rows.iter().map(|e| e.ids.clone()).collect();
    let room = prompts
        .iter()
        .map(|q| p.max_positions.saturating_sub(q.len()))
        .min()
        .unwrap_or(0);
    let seeds = (0..prompts.len())
        .map(|i| sample_seed(seed, step, micro, i, 0))
        .collect();
    let options = sample_options(p, p.max_new_tokens.min(room), seeds);
    let generated = crate::generate::generate(&model.valid(), &prompts, &options, None)?;
    for (row, g) in rows.iter_mut().zip(generated) {
        row.ids.extend(g.ids);
    }
    Ok(rows)
}

/// The teacher's view of a sampled token: its logprob for the token (`None`: outside the top-k
/// it gave) and the token it finds most likely.
struct Check {
    logprob: Option<f32>,
    best: u32,
}

/// What grades the samples during training: a grader's top-k, or the frozen teacher itself.
enum Judge<'a> {
    Grader(&'a mut crate::teacher::grade::Grader),
    Frozen(&'a Model),
}

impl Judge<'_> {
    /// Per row, per completion token, the teacher's check, and the top-k a grader gave (to be
    /// the rows' grades without asking again).
    #[allow(clippy::type_complexity)]
    fn check(
        &mut self,
        rows: &[Example],
    ) -> Result<(Vec<Vec<Check>>, Option<Vec<Vec<Vec<TopLogprob>>>>)> {
        match self {
            Judge::Grader(g) => {
                let tops = g.grade(rows)?;
                let checks = rows
                    .iter()
                    .zip(&tops)
                    .map(|(e, top)| {
                        e.ids[e.prompt_len..]
                            .iter()
                            .zip(top)
                            .map(|(&id, t)| Check {
                                logprob: t.iter().find(|x| x.id == id).map(|x| x.logprob),
                                best: t.first().map_or(id, |x| x.id),
                            })
                            .collect()
                    })
                    .collect();
                Ok((checks, Some(tops)))
            }
            Judge::Frozen(model) => {
                let checks = rows
                    .iter()
                    .map(|e| {
                        let scored = crate::generate::score(model, &e.ids, 1)?;
                        Ok(scored[e.prompt_len.saturating_sub(1)..]
                            .iter()
                            .map(|s| Check {
                                logprob: Some(s.logprob),
                                best: s.top.first().map_or(s.id, |t| t.id),
                            })
                            .collect())
                    })
                    .collect::<Result<_>>()?;
                Ok((checks, None))
            }
        }
    }
}

/// The rows' token budgets: `max_new_tokens`, or what the positions leave after the prompt
/// (at least 1).
fn budgets(rows: &[Example], p: &OnPolicy) -> Vec<usize> {
    rows.iter()
        .map(|e| {
            p.max_new_tokens
                .min(p.max_positions.saturating_sub(e.prompt_len))
                .max(1)
        })
        .collect()
}

/// The picked rows' prompts, without completions.
fn prompts_of(picked: &[&Example]) -> Vec<Example> {
    picked
        .iter()
        .map(|e| Example {
            prompt_len: e.prompt_len,
            ids: e.ids[..e.prompt_len].to_vec(),
            topk: None,
            rejected: None,
            weights: None,
        })
        .collect()
}

/// Speculatively sampled rows, their grades when a grader gave them, and the completion tokens
/// the teacher checked on the way beyond the final rows'.
type Speculated = (Vec<Example>, Option<Vec<Vec<Vec<TopLogprob>>>>, usize);

/// Speculative sampling (SKD): the student writes, the teacher checks each token, a token it
/// rejects is replaced by its own, and the student writes on from there, until every row ends
/// (or has its tokens). Returns the rows, their grades when a grader gave them, and the
/// completion tokens the teacher checked on the way beyond the final rows'.
///
/// A teacher loaded here decodes beside the student and checks each token once, as it is
/// written ([`speculative_lockstep`]); a server checks whole samples, so the student writes
/// rounds and the teacher checks each again ([`speculative_rounds`]). Both write the same rows
/// up to float rounding.
fn speculative_completions(
    model: &Model,
    picked: &[&Example],
    p: &OnPolicy,
    seed: u64,
    step: usize,
    micro: usize,
    judge: &mut Judge<'_>,
) -> Result<Speculated> {
    let (teacher, k) = match judge {
        Judge::Frozen(t) => (*t, 0),
        Judge::Grader(crate::teacher::grade::Grader::Local { model, k }) => (&*model, (*k).max(1)),
        Judge::Grader(_) => return speculative_rounds(model, picked, p, seed, step, micro, judge),
    };
    speculative_lockstep(model, teacher, k, picked, p, seed, step, micro)
}

/// Speculative sampling with the teacher decoding beside the student: every token is checked
/// once. With `k` > 0 the teacher's top-k at each token is returned as the rows' grades (and a
/// token outside it is replaced, as a grader's check does). No token is checked twice.
#[allow(clippy::too_many_arguments)]
fn speculative_lockstep(
    model: &Model,
    teacher: &Model,
    k: usize,
    picked: &[&Example],
    p: &OnPolicy,
    seed: u64,
    step: usize,
    micro: usize,
) -> Result<Speculated> {
    let mut rows = prompts_of(picked);
    let budget = budgets(&rows, p);
    let prompts: Vec<Vec<u32>> = rows.iter().map(|e| e.ids.clone()).collect();
    let reseed = |i: usize, n: usize| sample_seed(seed, step, micro, i, n);
    let teacher = teacher.valid();
    let checker = crate::generate::Checker {
        teacher: &teacher,
        floor: p.replace_below.ln() as f32,
        top_k: k,
        reseed: &reseed,
    };
    let options = sample_options(
        p,
        budget.iter().copied().max().unwrap_or(1),
        (0..rows.len()).map(|i| reseed(i, 0)).collect(),
    );
    let written =
        crate::generate::generate_checked(&model.valid(), &prompts, &budget, &options, &checker)?;
    let mut tops = Vec::with_capacity(rows.len());
    for (row, w) in rows.iter_mut().zip(written) {
        row.ids.extend(w.ids);
        tops.push(w.top);
    }
    Ok((rows, (k > 0).then_some(tops), 0))
}

/// Speculative sampling in rounds, for a teacher that checks whole samples: the student writes
/// each row to its end, the teacher checks it, the first token it rejects is replaced, and the
/// student writes that row on in the next round. Returns the grades of each row's last round
/// (which covers it: a grade depends only on the tokens before it).
fn speculative_rounds(
    model: &Model,
    picked: &[&Example],
    p: &OnPolicy,
    seed: u64,
    step: usize,
    micro: usize,
    judge: &mut Judge<'_>,
) -> Result<Speculated> {
    let floor = p.replace_below.ln() as f32;
    let mut rows = prompts_of(picked);
    let budget = budgets(&rows, p);
    // Per row: the teacher's grades so far, and how many completion tokens it has passed (kept
    // or put in itself), which later rounds need not check again.
    let mut grades: Vec<Vec<Vec<TopLogprob>>> = vec![Vec::new(); rows.len()];
    let mut passed = vec![0usize; rows.len()];
    let mut graded = 0usize;
    let mut live: Vec<usize> = (0..rows.len()).collect();
    let mut round = 0usize;
    let inner = model.valid();
    while !live.is_empty() {
        let prompts: Vec<Vec<u32>> = live.iter().map(|&i| rows[i].ids.clone()).collect();
        let left: Vec<usize> = live
            .iter()
            .map(|&i| budget[i] - rows[i].completion_len())
            .collect();
        // Rows of different lengths share a decoder: the longest must still fit.
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let most = left.iter().copied().max().unwrap_or(1);
        let options = sample_options(
            p,
            most.min(p.max_positions.saturating_sub(longest)),
            live.iter()
                .map(|&i| sample_seed(seed, step, micro, i, round))
                .collect(),
        );
        let generated = crate::generate::generate(&inner, &prompts, &options, None)?;
        for ((&i, g), n) in live.iter().zip(generated).zip(&left) {
            rows[i].ids.extend(g.ids.into_iter().take(*n));
        }
        let asked: Vec<Example> = live.iter().map(|&i| rows[i].clone()).collect();
        graded += asked.iter().map(Example::completion_len).sum::<usize>();
        let (checks, tops) = judge.check(&asked)?;
        let mut next = Vec::new();
        for (j, &i) in live.iter().enumerate() {
            let row = &mut rows[i];
            if let Some((at, c)) = checks[j]
                .iter()
                .enumerate()
                .skip(passed[i])
                .find(|(_, c)| c.logprob.is_none_or(|lp| lp < floor))
            {
                row.ids.truncate(row.prompt_len + at + 1);
                row.ids[row.prompt_len + at] = c.best;
            }
            passed[i] = row.completion_len();
            if let Some(tops) = &tops {
                grades[i] = tops[j][..passed[i]].to_vec();
            }
            let ended = row.ids[row.prompt_len..]
                .last()
                .is_some_and(|t| p.eos_ids.contains(t));
            if !ended && passed[i] < budget[i] {
                next.push(i);
            }
        }
        live = next;
        round += 1;
    }
    let finals: usize = rows.iter().map(Example::completion_len).sum();
    let grades = matches!(judge, Judge::Grader(_)).then_some(grades);
    Ok((rows, grades, graded.saturating_sub(finals)))
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            steps: 100,
            batch_size: 16,
            accumulation: 1,
            lr: 1e-3,
            warmup: 10,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            grad_clip: 1.0,
            eval_every: 0,
            patience: 0,
            keep_best: false,
            checkpoint_every: 0,
            seed: 0,
            pause_after: None,
            objective: Objective::CrossEntropy,
            on_policy: None,
        }
    }
}

/// The loop's optimizer: AdamW with this weight decay, computed in one pass per parameter on the
/// CPU (`adamw.rs`), each parameter's gradient first clipped to this L2 norm (burn clips parameter
/// by parameter; none at 0).
pub fn optimizer(weight_decay: f64, grad_clip: f64) -> ModuleOptimizer {
    let optim = ModuleOptimizer::from(adamw::FusedAdamW::new(weight_decay as f32));
    if grad_clip > 0.0 {
        optim.with_grad_clipping(GradientClippingConfig::Norm(grad_clip as f32).init())
    } else {
        optim
    }
}

/// One optimizer step, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// 1-based step.
    pub step: usize,
    /// Epoch the step's last batch came from.
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Training loss (mean over micro-batches).
    pub loss: f64,
    /// Its cross-entropy part.
    pub ce: f64,
    /// Its second part: KD in distillation, DPO in the expert fine-tune (0 without).
    pub kd: f64,
    /// Completion tokens in the step.
    pub tokens: usize,
    /// Of those, the positions the teacher scored during the step (full-distribution KD,
    /// on-policy samples): teacher work beyond the synthetic set's.
    #[serde(default)]
    pub graded: usize,
    /// Seconds the step took.
    pub seconds: f64,
    /// Eval loss, on evaluation steps.
    pub eval_loss: Option<f64>,
    /// Eval exact match, on evaluation steps when the caller measures it.
    pub eval_exact: Option<f64>,
}

/// What the caller's evaluation measured (besides the loss the loop computes).
pub type Evaluate<'a> = &'a mut dyn FnMut(&Model) -> Result<Option<f64>>;

/// The learning rate at `step` (1-based): linear warmup, then cosine to `min_lr_ratio · lr`.
pub fn learning_rate(o: &TrainOptions, step: usize) -> f64 {
    if o.warmup > 0 && step <= o.warmup {
        return o.lr * step as f64 / o.warmup as f64;
    }
    let span = o.steps.saturating_sub(o.warmup).max(1) as f64;
    let progress = ((step - o.warmup.min(step)) as f64 / span).min(1.0);
    let floor = o.lr * o.min_lr_ratio;
    floor + (o.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// The loop's own state, saved in every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LoopState {
    step: usize,
    epoch: usize,
    cursor: usize,
    log: Vec<StepLog>,
    best_eval: Option<f64>,
    bad_evals: usize,
    /// The step of the best weights so far, kept in `best-step-N` beside the checkpoints when
    /// the loop keeps its best weights.
    #[serde(default)]
    best_step: Option<usize>,
    /// With `keep_best`, the best evaluation's (exact match, eval loss).
    #[serde(default)]
    best_kept: Option<(Option<f64>, f64)>,
}

/// Whether an evaluation beats the kept one: higher exact match when it is measured (the
/// stage's purpose; the loss can rise while answers get right), lower eval loss to break ties or
/// without one.
fn beats(exact: Option<f64>, loss: f64, kept: Option<(Option<f64>, f64)>) -> bool {
    let Some((kept_exact, kept_loss)) = kept else {
        return true;
    };
    let key = |e: Option<f64>| e.unwrap_or(f64::NEG_INFINITY);
    match key(exact).total_cmp(&key(kept_exact)) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => loss < kept_loss,
    }
}

/// Saves the best weights so far beside the checkpoints (a resumed run finds them there),
/// replacing the earlier best.
fn write_best(dir: &Path, model: &Model, step: usize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let final_dir = save_complete(dir, &format!("best-step-{step}"), |tmp| {
        checkpoint::save_weights(model, tmp)
    })?;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("best-step-") && e.path() != final_dir {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

/// Gives every parameter an id from its position in the model, so optimizer state saved in one
/// process finds its parameters in another.
struct StableIds(u64);

impl ModuleMapper for StableIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        self.0 += 1;
        Param::from_mapped_value(ParamId::from(0x5747_0000_0000 + self.0), value, mapper)
    }
}

fn stable_ids(model: Model) -> Model {
    model.map(&mut StableIds(0))
}

/// A seeded permutation of `n` items for `epoch`.
fn order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut s = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}

/// The newest complete checkpoint under `dir`, if any.
pub fn latest_checkpoint(dir: &Path) -> Option<(usize, PathBuf)> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("step-")?.parse::<usize>().ok()?;
            e.path().join("COMPLETE").is_file().then(|| (n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
}

/// Writes the directory `dir/name` whole or not at all: `fill` writes into `name.tmp`, which is
/// renamed and then marked `COMPLETE` (what a resumed run looks for).
fn save_complete(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let final_dir = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    fill(&tmp)?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::Write {
        path: final_dir.clone(),
        source: e,
    })?;
    // The rename survives a power cut before the marker says the step is whole.
    datasets::atomic::sync_dir(dir)?;
    datasets::atomic::write_file(final_dir.join("COMPLETE"), b"")?;
    Ok(final_dir)
}

fn write_checkpoint(
    dir: &Path,
    model: &Model,
    optim: &burn::optim::ModuleOptimizer,
    state: &LoopState,
) -> Result<()> {
    save_complete(dir, &format!("step-{}", state.step), |tmp| {
        checkpoint::save_weights(model, tmp)?;
        optim.save(tmp.join("optimizer.bpk")).map_err(|e| {
            Error::invalid(format!(
                "Cannot save the optimizer state in `{}`: {e:?}",
                tmp.display()
            ))
        })?;
        let text = serde_json::to_string_pretty(state).expect("state serialises");
        datasets::atomic::write_file(tmp.join("state.json"), text.as_bytes())?;
        Ok(())
    })?;
    // Keep the two newest.
    let mut steps: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name.strip_prefix("step-")?.parse::<usize>().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    steps.sort();
    if steps.len() > 2 {
        for (_, p) in &steps[..steps.len() - 2] {
            let _ = std::fs::remove_dir_all(p);
        }
    }
    Ok(())
}

/// The mean cross-entropy of `examples` under `model` (no gradients).
pub fn eval_loss(model: &Model, examples: &[Example], batch_size: usize, pad: u32) -> f64 {
    let device = model.device();
    let (mut total, mut tokens) = (0.0, 0usize);
    for chunk in examples.chunks(batch_size.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let b = batch(&refs, pad, &device);
        if b.tokens == 0 {
            continue;
        }
        let logits = model.forward(b.input);
        let ce = loss::cross_entropy(logits, b.targets, b.mask);
        total += scalar(ce) * b.tokens as f64;
        tokens += b.tokens;
    }
    if tokens == 0 {
        f64::NAN
    } else {
        total / tokens as f64
    }
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .try_to_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN) as f64
}

fn diverged(step: usize, what: String) -> Error {
    Error::Diverged {
        step,
        what,
        hint: String::new(),
    }
}

/// Whether every weight of `model` is a finite number (a model that diverged has NaN or
/// infinite weights, and must never be saved or asked for answers).
pub fn weights_are_finite(model: &Model) -> bool {
    struct Finite(bool);
    impl burn::module::ModuleVisitor for Finite {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.0 {
                let total = param.val().abs().sum().into_data().try_to_vec::<f32>();
                self.0 = total.is_ok_and(|v| v.iter().all(|x| x.is_finite()));
            }
        }
    }
    let mut check = Finite(true);
    model.visit(&mut check);
    check.0
}

/// What [`train`] returns.
pub struct Trained {
    /// The model after the last step (or the best eval, with early stopping).
    pub model: Model,
    /// Every step's log, resumed steps included.
    pub log: Vec<StepLog>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// The step whose weights `model` holds, when they are the best evaluation's rather than the
    /// last step's.
    pub kept_step: Option<usize>,
}

/// Trains `model` (on `device`, which must be an autodiff device) on `train`, evaluating on
/// `eval`. With `checkpoints`, writes step checkpoints there and, if `resume`, continues from the
/// newest complete one. `frozen` is a model the loss reads but does not train: a teacher (same
/// vocabulary) turns top-k KD into full-distribution KD; with [`Objective::Preference`] it is
/// the DPO reference, and must be given.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: Model,
    device: &Device,
    options: &TrainOptions,
    train: &[Example],
    eval: &[Example],
    pad: u32,
    frozen: Option<&Model>,
    mut grader: Option<&mut crate::teacher::grade::Grader>,
    checkpoints: Option<&Path>,
    resume: bool,
    evaluate: Evaluate<'_>,
    on_step: &mut dyn FnMut(&StepLog),
) -> Result<Trained> {
    if train.is_empty() {
        return Err(Error::invalid(
            "There is nothing to train on: the training set is empty",
        ));
    }
    let o = options;
    if matches!(o.objective, Objective::Preference { .. }) && frozen.is_none() {
        return Err(Error::invalid(
            "DPO needs its frozen reference model (the distilled student); none was given",
        ));
    }
    let mut model = stable_ids(model.fork(device));
    let mut optim = optimizer(o.weight_decay, o.grad_clip);
    let mut state = LoopState {
        step: 0,
        epoch: 0,
        cursor: 0,
        log: Vec::new(),
        best_eval: None,
        bad_evals: 0,
        best_step: None,
        best_kept: None,
    };
    let track_best = o.keep_best || o.patience > 0;
    let mut best: Option<Model> = None;
    if let (Some(dir), true) = (checkpoints, resume)
        && let Some((_, path)) = latest_checkpoint(dir)
    {
        let loaded = checkpoint::load(&path, device)?;
        model = stable_ids(loaded);
        optim = optim.load(path.join("optimizer.bpk")).map_err(|e| {
            Error::invalid(format!(
                "The optimizer state in `{}` does not load: {e:?}; start over without --resume",
                path.display()
            ))
        })?;
        let text = std::fs::read_to_string(path.join("state.json")).map_err(|e| Error::Read {
            path: path.join("state.json"),
            source: e,
        })?;
        state = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.join("state.json"),
            message: e.to_string(),
        })?;
        for entry in &state.log {
            on_step(entry);
        }
        if let Some(step) = state.best_step.filter(|_| track_best) {
            let path = dir.join(format!("best-step-{step}"));
            if path.join("COMPLETE").is_file() {
                best = Some(checkpoint::load(&path, device)?.valid());
            }
        }
    }
    let mut perm = order(train.len(), o.seed, state.epoch);
    let mut stopped_early = false;
    while state.step < o.steps {
        let t0 = Instant::now();
        let step = state.step + 1;
        let lr = learning_rate(o, step);
        // The step's work runs on a thread of the CPU pool, so its parallel passes start there
        // instead of waking a sleeping caller after each (`backend::on_cpu_pool`).
        let micro = o.accumulation.max(1);
        let stepped = crate::backend::on_cpu_pool(|| -> Result<_> {
            let mut accumulator = GradientsAccumulator::new();
            let (mut loss_sum, mut ce_sum, mut kd_sum, mut tokens) = (0.0, 0.0, 0.0, 0usize);
            let mut graded = 0usize;
            for m in 0..micro {
                let mut picked = Vec::with_capacity(o.batch_size);
                while picked.len() < o.batch_size {
                    if state.cursor >= perm.len() {
                        state.epoch += 1;
                        state.cursor = 0;
                        perm = order(train.len(), o.seed, state.epoch);
                    }
                    picked.push(&train[perm[state.cursor]]);
                    state.cursor += 1;
                }
                let teacher_here = frozen.is_some() || grader.is_some();
                let sampled = match &o.on_policy {
                    Some(p) if teacher_here && on_policy_draw(p, o.seed, step, m) => {
                        let (mut rows, tops) = if p.replace_below > 0.0 {
                            let mut judge = match (grader.as_deref_mut(), frozen) {
                                (Some(g), _) => Judge::Grader(g),
                                (None, Some(t)) => Judge::Frozen(t),
                                (None, None) => unreachable!("teacher_here"),
                            };
                            let (rows, tops, checked) = speculative_completions(
                                &model, &picked, p, o.seed, step, m, &mut judge,
                            )?;
                            graded += checked;
                            (rows, tops)
                        } else {
                            let rows = sample_completions(&model, &picked, p, o.seed, step, m)?;
                            let tops = match grader.as_deref_mut() {
                                Some(g) => Some(g.grade(&rows)?),
                                None => None,
                            };
                            (rows, tops)
                        };
                        if let Some(tops) = tops {
                            for (row, top) in rows.iter_mut().zip(tops) {
                                row.topk = Some(top);
                            }
                        }
                        Some(rows)
                    }
                    _ => None,
                };
                let on_policy = sampled.is_some();
                let sampled_refs: Vec<&Example>;
                let picked = match &sampled {
                    Some(rows) => {
                        sampled_refs = rows.iter().collect();
                        &sampled_refs
                    }
                    None => &picked,
                };
                let b = batch(picked, pad, device);
                tokens += b.tokens;
                if on_policy
                    || (frozen.is_some() && matches!(o.objective, Objective::Distill { .. }))
                {
                    graded += b.tokens;
                }
                let logits = model.forward(b.input.clone());
                let ce = loss::cross_entropy(logits.clone(), b.targets.clone(), b.mask.clone());
                let (total, kd) = match o.objective {
                    Objective::CrossEntropy => (ce.clone(), None),
                    Objective::Distill {
                        alpha,
                        divergence,
                        temperature,
                    } => {
                        let kd = match (frozen, &b.topk) {
                            (Some(t), _) => {
                                let tl = t.forward(b.input.clone()).detach();
                                Some(loss::full_kd(
                                    logits,
                                    tl,
                                    b.mask.clone(),
                                    divergence,
                                    temperature,
                                ))
                            }
                            (None, Some((ids, lp, valid))) => Some(loss::topk_kd_or_reference(
                                logits,
                                b.targets.clone(),
                                ids.clone(),
                                lp.clone(),
                                valid.clone(),
                                b.mask.clone(),
                                divergence,
                                temperature,
                            )),
                            (None, None) => None,
                        };
                        match kd {
                            // The sampled tokens are the student's own, not labels.
                            Some(kd) if on_policy => (kd.clone(), Some(kd)),
                            Some(kd) => (
                                kd.clone().mul_scalar(alpha) + ce.clone().mul_scalar(1.0 - alpha),
                                Some(kd),
                            ),
                            None => (ce.clone(), None),
                        }
                    }
                    Objective::Preference { beta, weight } => {
                        let chosen: Vec<&Example> = picked
                            .iter()
                            .copied()
                            .filter(|e| e.rejected.is_some())
                            .collect();
                        match (frozen, chosen.is_empty()) {
                            (Some(reference), false) => {
                                let rejected: Vec<Example> =
                                    chosen.iter().filter_map(|e| e.rejected_example()).collect();
                                let rejected: Vec<&Example> = rejected.iter().collect();
                                let bc = batch(&chosen, pad, device);
                                let br = batch(&rejected, pad, device);
                                let logps = |m: &Model, b: &data::Batch| {
                                    loss::sequence_logprobs(
                                        m.forward(b.input.clone()),
                                        b.targets.clone(),
                                        b.mask.clone(),
                                    )
                                };
                                let dpo = loss::dpo_sigmoid(
                                    logps(&model, &bc),
                                    logps(&model, &br),
                                    logps(reference, &bc).detach(),
                                    logps(reference, &br).detach(),
                                    beta,
                                );
                                (ce.clone() + dpo.clone().mul_scalar(weight), Some(dpo))
                            }
                            _ => (ce.clone(), None),
                        }
                    }
                };
                let scaled = total.clone().div_scalar(micro as f64);
                let grads = GradientsParams::from_grads(scaled.backward(), &model);
                accumulator.accumulate(&model, grads);
                loss_sum += scalar(total);
                ce_sum += scalar(ce);
                kd_sum += kd.map(scalar).unwrap_or(0.0);
            }
            let model = optim.step(lr, model, accumulator.grads());
            Ok((model, (loss_sum, ce_sum, kd_sum, tokens, graded)))
        });
        let (next, (loss_sum, ce_sum, kd_sum, tokens, graded)) = stepped?;
        model = next;
        state.step = step;
        for (what, value) in [
            ("loss", loss_sum),
            ("cross-entropy", ce_sum),
            ("KD term", kd_sum),
        ] {
            if !value.is_finite() {
                return Err(diverged(
                    step,
                    format!("the {what} is {}", value / micro as f64),
                ));
            }
        }
        let mut entry = StepLog {
            step,
            epoch: state.epoch,
            lr,
            loss: loss_sum / micro as f64,
            ce: ce_sum / micro as f64,
            kd: kd_sum / micro as f64,
            tokens,
            graded,
            seconds: t0.elapsed().as_secs_f64(),
            eval_loss: None,
            eval_exact: None,
        };
        let eval_now = (o.eval_every > 0 && step.is_multiple_of(o.eval_every)) || step == o.steps;
        if eval_now && !eval.is_empty() {
            let inner = model.valid();
            let el = eval_loss(&inner, eval, o.batch_size, pad);
            if !el.is_finite() {
                return Err(diverged(
                    step,
                    format!("the eval loss is {el} (the weights are no longer finite numbers)"),
                ));
            }
            entry.eval_loss = Some(el);
            entry.eval_exact = evaluate(&inner)?;
            let lower = state.best_eval.is_none_or(|b| el < b);
            if lower {
                state.best_eval = Some(el);
                state.bad_evals = 0;
            } else {
                state.bad_evals += 1;
            }
            let better = if o.keep_best {
                beats(entry.eval_exact, el, state.best_kept)
            } else {
                lower && o.patience > 0
            };
            if better {
                if let Some(dir) = checkpoints {
                    write_best(dir, &inner, step)?;
                }
                state.best_step = Some(step);
                state.best_kept = Some((entry.eval_exact, el));
                best = Some(inner);
            }
        }
        on_step(&entry);
        state.log.push(entry);
        if let Some(dir) = checkpoints
            && o.checkpoint_every > 0
            && (step.is_multiple_of(o.checkpoint_every)
                || step == o.steps
                || o.pause_after == Some(step))
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::Write {
                path: dir.to_path_buf(),
                source: e,
            })?;
            write_checkpoint(dir, &model, &optim, &state)?;
        }
        if o.patience > 0 && state.bad_evals >= o.patience {
            stopped_early = true;
            break;
        }
        if o.pause_after == Some(step) {
            break;
        }
    }
    // A paused run hands back its last step, to be resumed.
    let (model, kept_step) = match best {
        Some(b) if stopped_early || (o.keep_best && state.step >= o.steps) => {
            let kept = state.best_step.filter(|s| *s != state.step);
            (b, kept)
        }
        _ => (model.valid(), None),
    };
    if !weights_are_finite(&model) {
        return Err(diverged(
            state.step,
            "the last step left weights that are not finite numbers".into(),
        ));
    }
    Ok(Trained {
        model,
        log: state.log,
        stopped_early,
        kept_step,
    })
}

#[cfg(test)]
mod tests;
