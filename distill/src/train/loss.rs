//! Distillation losses on burn tensors (any backend, autodiff or not).
//!
//! Shapes: student `logits` `[batch, positions, vocab]`, already aligned so position `t` predicts
//! `targets[t]`; `mask` `[batch, positions]` is 1 where a position counts (completion tokens) and 0
//! elsewhere (prompt, padding). Every token-level loss is a mean over counted positions; the
//! preference loss is a mean over pairs.
//!
//! - [`cross_entropy`]: next-token cross-entropy on the teacher's text (sequence-level KD) or on
//!   expert corrections (SFT).
//! - [`sequence_logprobs`]: per row, `log π(y | x)` of its completion, the sum of the counted
//!   positions' `log p(target)` (a sum, not a mean: what DPO compares, as in TRL).
//! - [`dpo_sigmoid`] (and [`dpo_rewards`] for metrics): DPO (Rafailov et al., 2023) on expert
//!   preference pairs, a prompt with the answer the expert chose and the one they rejected. The
//!   frozen reference is the distilled student before the expert feedback, so the policy learns
//!   the experts' preferences while the β-weighted log-ratio to that reference keeps it near what
//!   distillation taught. Conventions are TRL's `loss_type="sigmoid"` with no label smoothing:
//!   with `π` and `ref` the [`sequence_logprobs`] of policy and reference, `logits = β·((π_c −
//!   π_r) − (ref_c − ref_r))`, loss `mean(−log σ(logits))`, implicit rewards `β·(π − ref)`
//!   (detached), so `logits = reward_c − reward_r`. The reference enters without gradient.
//! - [`topk_kd`]: KD on the teacher's stored top-k logprobs. **The tail bucket**: the probability
//!   the teacher left outside its top-k (`1 − Σ top-k`) is one extra outcome, and so is everything
//!   the student puts outside the same k tokens; both distributions then live on k + 1 outcomes and
//!   each is a proper distribution, so every divergence below is exact on that coarsened space (and
//!   equals the full-vocabulary divergence when the tail holds one token). With a temperature T the
//!   teacher's k logprobs and its tail are tempered as if the tail were one token (`p^(1/T)`,
//!   renormalised): the stored top-k does not say how the tail mass is spread, and this choice
//!   keeps T = 1 exact.
//! - [`full_kd`]: KD on the teacher's full distribution, when a local teacher shares the
//!   student's vocabulary.
//!
//! Divergences follow TRL's GKD conventions: forward KL(teacher ‖ student), reverse
//! KL(student ‖ teacher), and the generalised JSD with β, `β·KL(P‖M) + (1−β)·KL(Q‖M)` with
//! `M = β·P + (1−β)·Q` (P teacher, Q student); β = 0 is taken as forward KL and β = 1 as reverse KL,
//! the limits of JSD(β)/β and JSD(β)/(1−β). KD losses are multiplied by T² (Hinton et al., 2015) so
//! their gradients keep their scale as T changes.

use burn::tensor::activation::log_sigmoid;

use crate::model::fused::log_softmax;
use burn::tensor::{IndexingUpdateOp, Int, Tensor};

/// Which divergence KD minimises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Divergence {
    /// KL(teacher ‖ student): mode-covering.
    ForwardKl,
    /// KL(student ‖ teacher): mode-seeking.
    ReverseKl,
    /// Generalised Jensen–Shannon with weight β on the teacher (0 ≤ β ≤ 1).
    Jsd(f64),
}

/// Probabilities below this are treated as this, so logs stay finite.
const TINY: f64 = 1e-12;

/// `log Σ exp` over the last axis, kept `[.., .., 1]`, stable for large logits.
fn log_sum_exp(x: Tensor<3>) -> Tensor<3> {
    let max = x.clone().max_dim(2).detach();
    (x - max.clone()).exp().sum_dim(2).log() + max
}

fn masked_mean(per_position: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    let count = mask.clone().sum().clamp_min(1.0);
    (per_position * mask).sum() / count
}

/// Next-token cross-entropy of `targets` under `logits`, over the positions `mask` counts.
pub fn cross_entropy(logits: Tensor<3>, targets: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<1> {
    masked_mean(cross_entropy_per_position(logits, targets), mask)
}

fn cross_entropy_per_position(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    target_logprobs(logits, targets).neg()
}

/// Per position, `log p(targets[t])` under `logits`, `[batch, positions]` (every position, counted
/// or not, so every target must be a valid token id).
fn target_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    crate::model::fused::target_logprobs(logits, targets)
}

/// Per row of the batch, the log-probability of its counted targets,
/// `Σ_t mask[t]·log p(targets[t])`, shape `[batch]`: `log π(y | x)` of the completion `y` that
/// `mask` covers. Targets at positions the mask leaves out must still be valid token ids (they are
/// computed, then multiplied by 0).
pub fn sequence_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<1> {
    let [b, _] = mask.dims();
    (target_logprobs(logits, targets) * mask)
        .sum_dim(1)
        .reshape([b])
}

/// Σ over the last axis of the divergence between two distributions given as log-probabilities
/// `lp` (teacher) and `lq` (student) on the same outcomes; `valid` (same shape, 1/0) drops
/// outcomes that are padding.
fn divergence(lp: Tensor<3>, lq: Tensor<3>, valid: Tensor<3>, d: Divergence) -> Tensor<2> {
    let [b, t, _] = lp.dims();
    let p = lp.clone().exp() * valid.clone();
    let q = lq.clone().exp() * valid.clone();
    let terms = match d {
        Divergence::ForwardKl | Divergence::Jsd(0.0) => p * (lp - lq),
        Divergence::ReverseKl | Divergence::Jsd(1.0) => q * (lq - lp),
        Divergence::Jsd(beta) => {
            let m = p.clone().mul_scalar(beta) + q.clone().mul_scalar(1.0 - beta);
            let lm = m.clamp_min(TINY).log();
            (p * (lp - lm.clone())).mul_scalar(beta) + (q * (lq - lm)).mul_scalar(1.0 - beta)
        }
    };
    (terms * valid).sum_dim(2).reshape([b, t])
}

/// KD on a stored top-k: `top_ids` / `top_logprobs` `[batch, positions, k]` are the teacher's
/// top-k (temperature 1), `top_valid` is 1 for real entries and 0 for padding (rows with fewer
/// than k). See the module docs for the tail bucket. Returns the per-position divergence (times
/// T²) and, per position, 1 where the position has a valid top-k entry and 0 where it has none.
fn topk_kd_per_position(
    logits: Tensor<3>,
    top_ids: Tensor<3, Int>,
    top_logprobs: Tensor<3>,
    top_valid: Tensor<3>,
    divergence_kind: Divergence,
    temperature: f64,
) -> (Tensor<2>, Tensor<2>) {
    let [b, t, _] = logits.dims();
    let device = logits.device();
    let top_valid_any = top_valid.clone();
    // Student at temperature T, on the k tokens and the rest. The rest is a log-sum-exp over the
    // logits outside the k, not `log(1 − Σ q_k)`: once the student is confident that difference
    // cancels to rounding noise in f32, and its gradient (1 / the noise) explodes.
    let z = logits.div_scalar(temperature);
    let lse_z = log_sum_exp(z.clone());
    let lq_all = z.clone() - lse_z.clone();
    let lq_k = lq_all.gather(2, top_ids.clone());
    let in_k = z
        .zeros_like()
        .scatter(2, top_ids, top_valid.clone(), IndexingUpdateOp::Add)
        .clamp_max(1.0);
    let outside = z.clone() - in_k.mul_scalar(1.0e9);
    let lq_tail = log_sum_exp(outside) - lse_z;
    // The teacher's k and its tail, tempered, renormalised over the k + 1 outcomes.
    let p_k_mass = (top_logprobs.clone().exp() * top_valid.clone()).sum_dim(2);
    let tail_logit = p_k_mass
        .neg()
        .add_scalar(1.0)
        .clamp_min(TINY)
        .log()
        .div_scalar(temperature);
    // Padding entries get a very low logit so they carry no mass.
    let pad = top_valid.clone().neg().add_scalar(1.0).mul_scalar(-1.0e9);
    let tempered = top_logprobs.div_scalar(temperature) + pad;
    let logits_p = Tensor::cat(vec![tempered, tail_logit], 2);
    let lp = log_softmax(logits_p);
    let lq = Tensor::cat(vec![lq_k, lq_tail], 2);
    let valid = Tensor::cat(vec![top_valid, Tensor::ones([b, t, 1], &device)], 2);
    let per_position =
        divergence(lp, lq, valid, divergence_kind).mul_scalar(temperature * temperature);
    let has_topk = top_valid_any.sum_dim(2).reshape([b, t]).clamp_max(1.0);
    (per_position, has_topk)
}

/// KD on a stored top-k (see [`topk_kd_per_position`]); positions with no valid entry (rows
/// without a top-k) are left out of the mean.
pub fn topk_kd(
    logits: Tensor<3>,
    top_ids: Tensor<3, Int>,
    top_logprobs: Tensor<3>,
    top_valid: Tensor<3>,
    mask: Tensor<2>,
    divergence_kind: Divergence,
    temperature: f64,
) -> Tensor<1> {
    let (per_position, has_topk) = topk_kd_per_position(
        logits,
        top_ids,
        top_logprobs,
        top_valid,
        divergence_kind,
        temperature,
    );
    masked_mean(per_position, mask * has_topk)
}

/// The KD term of a batch that mixes rows with a stored top-k (synthetic rows) and rows without
/// (gold rows): a row without a top-k has its reference as a one-hot teacher, for which KD is
/// the cross-entropy of `targets`. So every counted position weighs the same, whichever kind of
/// row it is in. (Leaving gold positions out of the KD mean instead halves their weight under
/// `alpha = 0.5`, and measured clearly slower learning on the dates task.)
#[allow(clippy::too_many_arguments)]
pub fn topk_kd_or_reference(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    top_ids: Tensor<3, Int>,
    top_logprobs: Tensor<3>,
    top_valid: Tensor<3>,
    mask: Tensor<2>,
    divergence_kind: Divergence,
    temperature: f64,
) -> Tensor<1> {
    let (kd, has_topk) = topk_kd_per_position(
        logits.clone(),
        top_ids,
        top_logprobs,
        top_valid,
        divergence_kind,
        temperature,
    );
    let ce = cross_entropy_per_position(logits, targets);
    let per_position = kd * has_topk.clone() + ce * has_topk.neg().add_scalar(1.0);
    masked_mean(per_position, mask)
}

/// KD on the teacher's full distribution (same vocabulary): `teacher_logits` `[batch, positions,
/// vocab]`, not differentiated.
pub fn full_kd(
    logits: Tensor<3>,
    teacher_logits: Tensor<3>,
    mask: Tensor<2>,
    divergence_kind: Divergence,
    temperature: f64,
) -> Tensor<1> {
    let lq = log_softmax(logits.div_scalar(temperature));
    let lp = log_softmax(teacher_logits.div_scalar(temperature));
    let valid = lp.ones_like();
    let per_position = divergence(lp, lq, valid, divergence_kind);
    masked_mean(per_position, mask).mul_scalar(temperature * temperature)
}

/// DPO's per-pair logits, `β·((π_c − π_r) − (ref_c − ref_r))`; the reference is detached.
fn dpo_logits(
    policy_chosen: Tensor<1>,
    policy_rejected: Tensor<1>,
    reference_chosen: Tensor<1>,
    reference_rejected: Tensor<1>,
    beta: f64,
) -> Tensor<1> {
    let reference = (reference_chosen - reference_rejected).detach();
    (policy_chosen - policy_rejected - reference).mul_scalar(beta)
}

/// The DPO loss in its sigmoid form (see the module docs): the mean over pairs of
/// `−log σ(β·((π_c − π_r) − (ref_c − ref_r)))`, a 1-element tensor. Inputs are per-pair sequence
/// log-probabilities `[pairs]` ([`sequence_logprobs`]) of the chosen and rejected completions
/// under the policy being trained and the frozen reference; the reference gets no gradient.
/// `−log σ(x)` is computed as a stable softplus(−x), finite for any finite `x`: ≈ 0 for large
/// positive `x`, ≈ `−x` for large negative `x`.
pub fn dpo_sigmoid(
    policy_chosen: Tensor<1>,
    policy_rejected: Tensor<1>,
    reference_chosen: Tensor<1>,
    reference_rejected: Tensor<1>,
    beta: f64,
) -> Tensor<1> {
    let logits = dpo_logits(
        policy_chosen,
        policy_rejected,
        reference_chosen,
        reference_rejected,
        beta,
    );
    log_sigmoid(logits).neg().mean()
}

/// DPO's implicit rewards, `(β·(π_c − ref_c), β·(π_r − ref_r))`, each `[pairs]` and detached
/// (metrics, not a loss): reward accuracy is the share of pairs with `chosen > rejected`, the
/// margin is `chosen − rejected`, which equals the pair's DPO logits.
pub fn dpo_rewards(
    policy_chosen: Tensor<1>,
    policy_rejected: Tensor<1>,
    reference_chosen: Tensor<1>,
    reference_rejected: Tensor<1>,
    beta: f64,
) -> (Tensor<1>, Tensor<1>) {
    (
        (policy_chosen - reference_chosen).mul_scalar(beta).detach(),
        (policy_rejected - reference_rejected)
            .mul_scalar(beta)
            .detach(),
    )
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::backend;

    fn t3(v: &[f32], shape: [usize; 3]) -> Tensor<3> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), &backend::cpu())
    }

    fn ids(v: &[i64], shape: [usize; 3]) -> Tensor<3, Int> {
        Tensor::from_data(TensorData::new(v.to_vec(), shape), &backend::cpu())
    }

    fn ones2(b: usize, t: usize) -> Tensor<2> {
        Tensor::ones([b, t], &backend::cpu())
    }

    fn scalar(x: Tensor<1>) -> f64 {
        x.into_data().try_to_vec::<f32>().unwrap()[0] as f64
    }

    fn ln(v: &[f64]) -> Vec<f32> {
        v.iter().map(|x| x.ln() as f32).collect()
    }

    fn kl(p: &[f64], q: &[f64]) -> f64 {
        p.iter().zip(q).map(|(a, b)| a * (a / b).ln()).sum()
    }

    fn soft(v: &[f64], t: f64) -> Vec<f64> {
        let e: Vec<f64> = v.iter().map(|x| (x / t).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    const P: [f64; 3] = [0.5, 0.25, 0.25];
    const Q: [f64; 3] = [0.25, 0.5, 0.25];

    #[test]
    fn forward_and_reverse_kl_of_known_distributions() {
        let (s, te) = (t3(&ln(&Q), [1, 1, 3]), t3(&ln(&P), [1, 1, 3]));
        let fwd = scalar(full_kd(
            s.clone(),
            te.clone(),
            ones2(1, 1),
            Divergence::ForwardKl,
            1.0,
        ));
        // 0.5 ln 2 + 0.25 ln 0.5 = 0.25 ln 2.
        assert!((fwd - 0.25 * 2f64.ln()).abs() < 1e-6, "{fwd}");
        let rev = scalar(full_kd(s, te, ones2(1, 1), Divergence::ReverseKl, 1.0));
        assert!((rev - kl(&Q, &P)).abs() < 1e-6, "{rev}");
    }

    #[test]
    fn temperature_scales_by_t_squared() {
        let (s, te) = ([0.3, -1.0, 2.0], [1.0, 0.5, -0.5]);
        let got = scalar(full_kd(
            t3(&s.map(|x| x as f32), [1, 1, 3]),
            t3(&te.map(|x| x as f32), [1, 1, 3]),
            ones2(1, 1),
            Divergence::ForwardKl,
            2.0,
        ));
        let want = 4.0 * kl(&soft(&te, 2.0), &soft(&s, 2.0));
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn the_tail_bucket_is_exact_when_it_holds_one_token_and_lumps_otherwise() {
        // Teacher top-2 of a 3-token vocabulary: the tail is token 2, so top-k KD = full KD.
        let student = t3(&ln(&Q), [1, 1, 3]);
        let got = scalar(topk_kd(
            student.clone(),
            ids(&[0, 1], [1, 1, 2]),
            t3(&ln(&P[..2]), [1, 1, 2]),
            t3(&[1.0, 1.0], [1, 1, 2]),
            ones2(1, 1),
            Divergence::ForwardKl,
            1.0,
        ));
        assert!((got - kl(&P, &Q)).abs() < 1e-6, "{got}");
        // Four tokens, top-2 {0, 1}: tails 0.25 (teacher) and 0.5 (student) are one outcome each.
        let q4 = [0.2, 0.3, 0.1, 0.4];
        let got = scalar(topk_kd(
            t3(&ln(&q4), [1, 1, 4]),
            ids(&[0, 1], [1, 1, 2]),
            t3(&ln(&[0.5, 0.25]), [1, 1, 2]),
            t3(&[1.0, 1.0], [1, 1, 2]),
            ones2(1, 1),
            Divergence::ForwardKl,
            1.0,
        ));
        let want = kl(&[0.5, 0.25, 0.25], &[0.2, 0.3, 0.5]);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn padding_in_the_topk_changes_nothing() {
        let student = t3(&ln(&[0.2, 0.3, 0.1, 0.4]), [1, 1, 4]);
        let run = |ids_v: &[i64], lps: &[f32], valid: &[f32], k: usize| {
            scalar(topk_kd(
                student.clone(),
                ids(ids_v, [1, 1, k]),
                t3(lps, [1, 1, k]),
                t3(valid, [1, 1, k]),
                ones2(1, 1),
                Divergence::Jsd(0.3),
                1.5,
            ))
        };
        let lp = ln(&[0.5, 0.25]);
        let a = run(&[0, 1], &lp, &[1.0, 1.0], 2);
        let b = run(&[0, 1, 0], &[lp[0], lp[1], -3.0], &[1.0, 1.0, 0.0], 3);
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }

    #[test]
    fn positions_without_a_topk_are_left_out_of_the_mean() {
        // Two positions: the first has the teacher's top-2, the second (a gold row) none. The
        // mean is the first position's divergence, not half of it.
        let q = [0.2, 0.3, 0.1, 0.4];
        let mut student = ln(&q);
        student.extend(ln(&q));
        let lp = ln(&[0.5, 0.25]);
        let got = scalar(topk_kd(
            t3(&student, [1, 2, 4]),
            ids(&[0, 1, 0, 0], [1, 2, 2]),
            t3(&[lp[0], lp[1], 0.0, 0.0], [1, 2, 2]),
            t3(&[1.0, 1.0, 0.0, 0.0], [1, 2, 2]),
            ones2(1, 2),
            Divergence::ForwardKl,
            1.0,
        ));
        let want = kl(&[0.5, 0.25, 0.25], &[0.2, 0.3, 0.5]);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn jsd_limits_at_beta_zero_and_one() {
        let (s, te) = (t3(&ln(&Q), [1, 1, 3]), t3(&ln(&P), [1, 1, 3]));
        let jsd = |beta| {
            scalar(full_kd(
                s.clone(),
                te.clone(),
                ones2(1, 1),
                Divergence::Jsd(beta),
                1.0,
            ))
        };
        assert!((jsd(0.0) - kl(&P, &Q)).abs() < 1e-6);
        assert!((jsd(1.0) - kl(&Q, &P)).abs() < 1e-6);
        // JSD(β)/β → KL(P‖Q) as β → 0, JSD(β)/(1−β) → KL(Q‖P) as β → 1.
        let eps = 1e-3;
        assert!(
            (jsd(eps) / eps - kl(&P, &Q)).abs() < 5e-3,
            "{}",
            jsd(eps) / eps
        );
        assert!(
            (jsd(1.0 - eps) / eps - kl(&Q, &P)).abs() < 5e-3,
            "{}",
            jsd(1.0 - eps) / eps
        );
        // JSD(½) is the symmetric Jensen–Shannon divergence, below ln 2.
        let m: Vec<f64> = P.iter().zip(Q).map(|(a, b)| 0.5 * (a + b)).collect();
        let want = 0.5 * kl(&P, &m) + 0.5 * kl(&Q, &m);
        assert!((jsd(0.5) - want).abs() < 1e-6);
        assert!(jsd(0.5) < 2f64.ln());
    }

    #[test]
    fn cross_entropy_counts_only_masked_positions() {
        // Two positions; the second is masked out.
        let logits = t3(&[ln(&P), ln(&Q)].concat(), [1, 2, 3]);
        let targets =
            Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 0], [1, 2]), &backend::cpu());
        let mask =
            Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &backend::cpu());
        let ce = scalar(cross_entropy(logits, targets, mask));
        assert!((ce - 4f64.ln()).abs() < 1e-6, "{ce}");
    }

    #[test]
    fn gradients_flow_to_the_student_logits() {
        // d KL(p ‖ softmax(z)) / dz = softmax(z) − p, for one counted position.
        let device = backend::cpu().autodiff();
        let z =
            Tensor::<3>::from_data(TensorData::new(vec![0.3f32, -1.0, 2.0], [1, 1, 3]), &device)
                .require_grad();
        let teacher = Tensor::<3>::from_data(TensorData::new(ln(&P), [1, 1, 3]), &device);
        let mask = Tensor::<2>::ones([1, 1], &device);
        let loss = full_kd(z.clone(), teacher, mask, Divergence::ForwardKl, 1.0);
        let grads = loss.backward();
        let g = z
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let q = soft(&[0.3, -1.0, 2.0], 1.0);
        for i in 0..3 {
            assert!((g[i] as f64 - (q[i] - P[i])).abs() < 1e-5, "{g:?}");
        }
    }

    #[test]
    fn a_confident_student_gets_the_true_topk_gradient_not_rounding_noise() {
        // The student puts all but ~e^-30 of its mass on token 0 (in f32, 1 − Σ q_k is then
        // pure rounding); the teacher leaves 1e-3 outside its top-2. The gradient on the logits
        // must be the exact one, softmax(z) − p on the k + 1 outcomes: about −1e-3 on the tail
        // tokens together, never a blow-up.
        let device = backend::cpu().autodiff();
        let z = Tensor::<3>::from_data(
            TensorData::new(vec![30.0f32, 0.0, 0.0, 0.0], [1, 1, 4]),
            &device,
        )
        .require_grad();
        let loss = topk_kd(
            z.clone(),
            Tensor::from_data(TensorData::new(vec![0i64, 1], [1, 1, 2]), &device),
            Tensor::from_data(TensorData::new(ln(&[0.998, 0.001]), [1, 1, 2]), &device),
            Tensor::ones([1, 1, 2], &device),
            Tensor::ones([1, 1], &device),
            Divergence::ForwardKl,
            1.0,
        );
        let g = z
            .grad(&loss.backward())
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(g.iter().all(|x| x.is_finite() && x.abs() < 0.01), "{g:?}");
        // Token 0: q ≈ 1, p = 0.998.
        assert!((g[0] - 0.002).abs() < 1e-4, "{g:?}");
        // The two tail tokens share the teacher's 1e-3 of tail mass.
        assert!(((g[2] + g[3]) + 0.001).abs() < 1e-4, "{g:?}");
    }

    /// A divergence on the k + 1 outcomes (the teacher's top-k and the tail), in f64 by hand.
    fn by_hand(z: &[f64], top: &[usize], lp: &[f64], d: Divergence) -> f64 {
        let q = soft(z, 1.0);
        let mut p: Vec<f64> = lp.iter().map(|l| l.exp()).collect();
        p.push(1.0 - p.iter().sum::<f64>());
        let mut q_k: Vec<f64> = top.iter().map(|&i| q[i]).collect();
        q_k.push(1.0 - q_k.iter().sum::<f64>());
        match d {
            Divergence::ForwardKl => kl(&p, &q_k),
            Divergence::ReverseKl => kl(&q_k, &p),
            Divergence::Jsd(beta) => {
                let m: Vec<f64> = p
                    .iter()
                    .zip(&q_k)
                    .map(|(a, b)| beta * a + (1.0 - beta) * b)
                    .collect();
                beta * kl(&p, &m) + (1.0 - beta) * kl(&q_k, &m)
            }
        }
    }

    /// The top-k loss and its gradient, for every divergence (reverse KL is what on-policy
    /// batches learn from at the student's sampled tokens), against the same divergence computed
    /// by hand in f64 and differentiated numerically.
    #[test]
    fn the_topk_loss_and_gradient_match_finite_differences_for_every_divergence() {
        let z0 = [0.4f64, -1.2, 2.1, 0.3, -0.5, 1.0];
        let (top, lp) = ([2usize, 5, 0], [-0.3f64, -2.0, -3.0]);
        for d in [
            Divergence::ForwardKl,
            Divergence::ReverseKl,
            Divergence::Jsd(0.3),
        ] {
            let device = backend::cpu().autodiff();
            let z = Tensor::<3>::from_data(
                TensorData::new(z0.iter().map(|&x| x as f32).collect::<Vec<_>>(), [1, 1, 6]),
                &device,
            )
            .require_grad();
            let loss = topk_kd(
                z.clone(),
                Tensor::from_data(
                    TensorData::new(top.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, 1, 3]),
                    &device,
                ),
                Tensor::from_data(
                    TensorData::new(lp.iter().map(|&l| l as f32).collect::<Vec<_>>(), [1, 1, 3]),
                    &device,
                ),
                Tensor::ones([1, 1, 3], &device),
                Tensor::ones([1, 1], &device),
                d,
                1.0,
            );
            let value = loss.clone().into_data().try_to_vec::<f32>().unwrap()[0] as f64;
            let want = by_hand(&z0, &top, &lp, d);
            assert!((value - want).abs() < 1e-5, "{d:?}: {value} vs {want}");
            let g = z
                .grad(&loss.backward())
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            for i in 0..6 {
                let h = 1e-5;
                let (mut up, mut down) = (z0, z0);
                up[i] += h;
                down[i] -= h;
                let numeric =
                    (by_hand(&up, &top, &lp, d) - by_hand(&down, &top, &lp, d)) / (2.0 * h);
                assert!(
                    (g[i] as f64 - numeric).abs() < 1e-4,
                    "{d:?}, logit {i}: {} vs {numeric}",
                    g[i]
                );
            }
            // A step against the gradient brings the student closer to its teacher.
            let stepped: Vec<f64> = z0
                .iter()
                .zip(&g)
                .map(|(z, g)| z - 0.1 * *g as f64)
                .collect();
            assert!(by_hand(&stepped, &top, &lp, d) < want, "{d:?}");
        }
    }

    /// An on-policy batch: each row a prompt, the student's sampled tokens and padding. Only the
    /// sampled positions count: the mean is theirs alone, whatever the teacher's top-k and the
    /// student's logits hold at the prompt and the padding.
    #[test]
    fn the_kd_mean_counts_only_the_sampled_positions() {
        let z: [[f64; 4]; 4] = [
            [5.0, -3.0, 0.0, 9.0], // prompt
            [0.4, -1.2, 2.1, 0.3], // sampled
            [1.0, 1.0, -2.0, 0.5], // sampled
            [-7.0, 4.0, 4.0, 0.0], // padding
        ];
        let top = [[3usize, 0], [2, 0], [1, 3], [0, 1]];
        let lp = [[-0.01f64, -6.0], [-0.3, -2.0], [-1.0, -0.7], [-0.1, -3.0]];
        let mask = [0.0f32, 1.0, 1.0, 0.0];
        for d in [Divergence::ReverseKl, Divergence::ForwardKl] {
            let got = scalar(topk_kd(
                t3(
                    &z.iter().flatten().map(|&x| x as f32).collect::<Vec<_>>(),
                    [1, 4, 4],
                ),
                ids(
                    &top.iter().flatten().map(|&i| i as i64).collect::<Vec<_>>(),
                    [1, 4, 2],
                ),
                t3(
                    &lp.iter().flatten().map(|&l| l as f32).collect::<Vec<_>>(),
                    [1, 4, 2],
                ),
                Tensor::ones([1, 4, 2], &backend::cpu()),
                Tensor::from_data(TensorData::new(mask.to_vec(), [1, 4]), &backend::cpu()),
                d,
                1.0,
            ));
            let want =
                (by_hand(&z[1], &top[1], &lp[1], d) + by_hand(&z[2], &top[2], &lp[2], d)) / 2.0;
            assert!((got - want).abs() < 1e-5, "{d:?}: {got} vs {want}");
        }
    }

    #[test]
    fn a_row_without_a_topk_counts_its_reference_as_a_one_hot_teacher() {
        // Position 1 has the teacher's top-2, position 2 (a gold row) none: the KD term is the
        // mean of position 1's KL and position 2's cross-entropy of its target.
        let q = [0.2, 0.3, 0.1, 0.4];
        let mut student = ln(&q);
        student.extend(ln(&q));
        let lp = ln(&[0.5, 0.25]);
        let targets =
            Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 3], [1, 2]), &backend::cpu());
        let got = scalar(topk_kd_or_reference(
            t3(&student, [1, 2, 4]),
            targets,
            ids(&[0, 1, 0, 0], [1, 2, 2]),
            t3(&[lp[0], lp[1], 0.0, 0.0], [1, 2, 2]),
            t3(&[1.0, 1.0, 0.0, 0.0], [1, 2, 2]),
            ones2(1, 2),
            Divergence::ForwardKl,
            1.0,
        ));
        let want = 0.5 * (kl(&[0.5, 0.25, 0.25], &[0.2, 0.3, 0.5]) - 0.4f64.ln());
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    fn v1(v: &[f64], device: &burn::tensor::Device) -> Tensor<1> {
        let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        let n = v.len();
        Tensor::from_data(TensorData::new(v, [n]), device)
    }

    /// Every value of a tensor, in order, as f64.
    fn vec1<const D: usize>(x: Tensor<D>) -> Vec<f64> {
        let v = x.into_data().try_to_vec::<f32>().unwrap();
        v.into_iter().map(f64::from).collect()
    }

    /// `dpo_sigmoid` on plain numbers, β last, on the CPU.
    fn dpo(pc: &[f64], pr: &[f64], rc: &[f64], rr: &[f64], beta: f64) -> f64 {
        let d = backend::cpu();
        scalar(dpo_sigmoid(
            v1(pc, &d),
            v1(pr, &d),
            v1(rc, &d),
            v1(rr, &d),
            beta,
        ))
    }

    /// `ln(1 + e^x)` in f64.
    fn softplus(x: f64) -> f64 {
        x.max(0.0) + (-x.abs()).exp().ln_1p()
    }

    fn sigma(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Log-softmax of one row, in f64.
    fn log_soft(z: &[f64]) -> Vec<f64> {
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        z.iter().map(|x| x - lse).collect()
    }

    #[test]
    fn sequence_logprobs_sums_the_counted_positions_of_each_row() {
        // Two rows of three positions over a 4-token vocabulary.
        let z: [[f64; 4]; 6] = [
            [0.5, -1.0, 2.0, 0.0],
            [1.5, 0.2, -0.3, 0.7],
            [-2.0, 3.0, 0.1, 0.4],
            [0.0, 0.0, 0.0, 0.0],
            [4.0, -4.0, 1.0, 2.5],
            [0.3, 0.9, -1.2, 1.1],
        ];
        let targets = [2usize, 0, 1, 3, 1, 2];
        // Row 0 counts positions 1 and 2 (position 0 is prompt); row 1 counts 0 and 1 (2 is
        // padding).
        let mask = [0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let flat: Vec<f32> = z.iter().flatten().map(|&x| x as f32).collect();
        let d = backend::cpu();
        let got = vec1(sequence_logprobs(
            t3(&flat, [2, 3, 4]),
            Tensor::from_data(
                TensorData::new(targets.iter().map(|&i| i as i64).collect(), [2, 3]),
                &d,
            ),
            Tensor::from_data(
                TensorData::new(mask.iter().map(|&m| m as f32).collect(), [2, 3]),
                &d,
            ),
        ));
        let want: Vec<f64> = (0..2)
            .map(|row| {
                (0..3)
                    .map(|t| {
                        let i = 3 * row + t;
                        mask[i] * log_soft(&z[i])[targets[i]]
                    })
                    .sum()
            })
            .collect();
        // By hand: row 0 = log softmax(z1)[0] + log softmax(z2)[1] = −0.635073 − 0.127544,
        // row 1 = log softmax(z3)[3] + log softmax(z4)[1] = −ln 4 − 8.241575.
        assert!(
            (want[0] - -0.762_616_771_005_172_6).abs() < 1e-12,
            "{want:?}"
        );
        assert!((want[1] - -9.627_869_161_502_588).abs() < 1e-12, "{want:?}");
        assert_eq!(got.len(), 2);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn sequence_logprobs_agree_with_cross_entropy() {
        // Cross-entropy is minus the counted log-probabilities over the count.
        let logits = t3(
            &[
                0.1, 0.7, -0.4, 1.2, -0.5, 0.3, 2.0, 0.0, 0.6, -1.0, 0.8, 0.2,
            ],
            [2, 2, 3],
        );
        let d = backend::cpu();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![2i64, 0, 1, 1], [2, 2]), &d);
        let mask = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0, 1.0], [2, 2]), &d);
        let seq = vec1(sequence_logprobs(
            logits.clone(),
            targets.clone(),
            mask.clone(),
        ));
        let ce = scalar(cross_entropy(logits, targets, mask));
        assert!(
            (ce + (seq[0] + seq[1]) / 3.0).abs() < 1e-6,
            "{ce} vs {seq:?}"
        );
    }

    #[test]
    fn dpo_is_ln_2_when_policy_and_reference_agree() {
        let x = [-3.5];
        let got = dpo(&x, &x, &x, &x, 0.1);
        assert!((got - 2f64.ln()).abs() < 1e-6, "{got}");
        // Any pair whose policy log-ratio equals the reference's: logits 0.
        let got = dpo(
            &[-1.0, -7.0],
            &[-4.0, -2.0],
            &[-2.0, -9.0],
            &[-5.0, -4.0],
            0.5,
        );
        assert!((got - 2f64.ln()).abs() < 1e-6, "{got}");
    }

    #[test]
    fn dpo_matches_a_hand_computed_pair() {
        // logits = 0.1·((−1 + 3) − (−2 + 2)) = 0.2; loss = ln(1 + e^−0.2).
        let got = dpo(&[-1.0], &[-3.0], &[-2.0], &[-2.0], 0.1);
        assert!((softplus(-0.2) - 0.598_138_869_381_591_8).abs() < 1e-12);
        assert!((got - 0.598_138_869_381_591_8).abs() < 1e-6, "{got}");
    }

    #[test]
    fn dpo_is_the_mean_over_pairs() {
        // Pair 1: logits 0.2 (above); pair 2: 0.1·((−4 + 1) − (−3 + 1)) = −0.1.
        let got = dpo(
            &[-1.0, -4.0],
            &[-3.0, -1.0],
            &[-2.0, -3.0],
            &[-2.0, -1.0],
            0.1,
        );
        let want = 0.5 * (softplus(-0.2) + softplus(0.1));
        assert!((want - 0.671_267_764_727_581_3).abs() < 1e-12);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn dpo_stays_finite_at_huge_margins() {
        // β = 10, policy margin ±100 against a flat reference: logits ±1000, where a naive
        // log(1 + e^−x) overflows. −log σ(1000) ≈ e^−1000 ≈ 0, −log σ(−1000) ≈ 1000.
        let won = dpo(&[-1.0], &[-101.0], &[-50.0], &[-50.0], 10.0);
        let lost = dpo(&[-101.0], &[-1.0], &[-50.0], &[-50.0], 10.0);
        assert!(won.is_finite() && won.abs() < 1e-6, "{won}");
        assert!(lost.is_finite() && (lost - 1000.0).abs() < 1e-3, "{lost}");
        // The gradient saturates too, instead of turning into NaN: 0 on the won pair and −β/n
        // on the lost one.
        let device = backend::cpu().autodiff();
        let pc = v1(&[-1.0, -101.0], &device).require_grad();
        let loss = dpo_sigmoid(
            pc.clone(),
            v1(&[-101.0, -1.0], &device),
            v1(&[-50.0, -50.0], &device),
            v1(&[-50.0, -50.0], &device),
            10.0,
        );
        let mean = scalar(loss.clone());
        assert!((mean - 500.0).abs() < 1e-3, "{mean}");
        let g = vec1(pc.grad(&loss.backward()).unwrap());
        assert!(g[0].abs() < 1e-6 && (g[1] + 5.0).abs() < 1e-5, "{g:?}");
    }

    #[test]
    fn dpo_gradient_on_the_policy_is_minus_beta_sigma_over_n() {
        // d/dπ_c mean_i softplus(−z_i) = −β·σ(−z_i)/n, and +β·σ(−z_i)/n for π_r; the reference
        // gets nothing. Logits 0.2 and −0.1 (the pairs above), β = 0.1, n = 2.
        let device = backend::cpu().autodiff();
        let pc = v1(&[-1.0, -4.0], &device).require_grad();
        let pr = v1(&[-3.0, -1.0], &device).require_grad();
        let rc = v1(&[-2.0, -3.0], &device).require_grad();
        let rr = v1(&[-2.0, -1.0], &device).require_grad();
        let loss = dpo_sigmoid(pc.clone(), pr.clone(), rc.clone(), rr.clone(), 0.1);
        let grads = loss.backward();
        let (gc, gr) = (
            vec1(pc.grad(&grads).unwrap()),
            vec1(pr.grad(&grads).unwrap()),
        );
        let want = [-0.1 * sigma(-0.2) / 2.0, -0.1 * sigma(0.1) / 2.0];
        assert!((want[0] - -0.022_508_300_134_376_11).abs() < 1e-12);
        assert!((want[1] - -0.026_248_959_373_947).abs() < 1e-12);
        for i in 0..2 {
            assert!((gc[i] - want[i]).abs() < 1e-7, "{gc:?} vs {want:?}");
            assert!((gr[i] + want[i]).abs() < 1e-7, "{gr:?} vs {want:?}");
        }
        for r in [rc, rr] {
            let none = r
                .grad(&grads)
                .is_none_or(|g| vec1(g).iter().all(|&x| x == 0.0));
            assert!(none, "the reference got a gradient");
        }
    }

    #[test]
    fn doubling_beta_on_half_the_margin_changes_nothing() {
        // β·margin = 0.1·2 = 0.2·1.
        let a = dpo(&[-1.0], &[-3.0], &[-2.0], &[-2.0], 0.1);
        let b = dpo(&[-1.5], &[-2.5], &[-2.0], &[-2.0], 0.2);
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        assert!((a - softplus(-0.2)).abs() < 1e-6, "{a}");
    }

    #[test]
    fn dpo_rewards_are_beta_times_the_log_ratios_and_their_margin_is_the_logits() {
        let d = backend::cpu();
        let (pc, pr, rc, rr) = ([-1.0, -4.0], [-3.0, -1.0], [-2.0, -3.0], [-2.0, -1.0]);
        let (chosen, rejected) =
            dpo_rewards(v1(&pc, &d), v1(&pr, &d), v1(&rc, &d), v1(&rr, &d), 0.1);
        let (chosen, rejected) = (vec1(chosen), vec1(rejected));
        // β·(π − ref): chosen 0.1, −0.1; rejected −0.1, 0.
        for (got, want) in [(&chosen, [0.1, -0.1]), (&rejected, [-0.1, 0.0])] {
            for i in 0..2 {
                assert!((got[i] - want[i]).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        }
        // The loss is mean softplus(−(reward_c − reward_r)).
        let from_rewards = 0.5
            * (0..2)
                .map(|i| softplus(rejected[i] - chosen[i]))
                .sum::<f64>();
        let loss = dpo(&pc, &pr, &rc, &rr, 0.1);
        assert!(
            (loss - from_rewards).abs() < 1e-6,
            "{loss} vs {from_rewards}"
        );
    }

    #[test]
    fn dpo_through_sequence_logprobs_pushes_the_chosen_tokens_up() {
        // Policy = reference, so σ(−0) = ½ and dL/dπ_c = −β/2 (one pair); through
        // sequence_logprobs, d π_c / d z_t = mask_t·(onehot(y_t) − softmax(z_t)).
        let beta = 0.3;
        let z0 = [[0.4, -0.2, 1.0], [0.0, 0.9, -0.6]];
        let (targets, mask) = ([2i64, 1], [1.0f32, 0.0]);
        let device = backend::cpu().autodiff();
        let flat: Vec<f32> = z0.iter().flatten().map(|&x| x as f32).collect();
        let chosen_logits =
            Tensor::<3>::from_data(TensorData::new(flat.clone(), [1, 2, 3]), &device)
                .require_grad();
        let ids =
            || Tensor::<2, Int>::from_data(TensorData::new(targets.to_vec(), [1, 2]), &device);
        let m = || Tensor::<2>::from_data(TensorData::new(mask.to_vec(), [1, 2]), &device);
        let pc = sequence_logprobs(chosen_logits.clone(), ids(), m());
        let reference_c = pc.clone().detach();
        let rejected = v1(&[-5.0], &device);
        let loss = dpo_sigmoid(pc, rejected.clone(), reference_c, rejected, beta);
        assert!((scalar(loss.clone()) - 2f64.ln()).abs() < 1e-6);
        let g = vec1(chosen_logits.grad(&loss.backward()).unwrap());
        for t in 0..2 {
            let q: Vec<f64> = log_soft(&z0[t]).iter().map(|l| l.exp()).collect();
            for v in 0..3 {
                let onehot = if v as i64 == targets[t] { 1.0 } else { 0.0 };
                let want = -beta / 2.0 * f64::from(mask[t]) * (onehot - q[v]);
                assert!(
                    (g[3 * t + v] - want).abs() < 1e-6,
                    "{g:?} at {t},{v}: {want}"
                );
            }
        }
    }
}
