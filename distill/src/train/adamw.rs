//! AdamW in one pass over each parameter on the CPU.
//!
//! burn's `AdamW` updates a parameter with about a dozen tensor operations (the two moments, their
//! bias corrections, the square root, the division, the decay, the step), each a pass over memory
//! with its own buffer: 19 ms of the 4M student's 343 ms training step. Here the same arithmetic,
//! operation for operation in the same order and precision, is one pass that reads the parameter,
//! its gradient and both moments and writes the new three, split across cores in fixed chunks. The
//! state is burn's own [`AdamWState`], so checkpoints are the same files, and a test checks that
//! the results are bit-identical to burn's.
//!
//! Used where the fused kernels are [`available`](crate::model::fused::available) (the flex CPU
//! backend, `f32`); elsewhere, and for AMSGrad states, burn's `AdamW` does the step.

use burn::backend::flex::FlexTensor;
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::prelude::*;
use burn::tensor::TensorData;
use rayon::prelude::*;

use crate::model::fused::{self, host_f32};

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// burn's `AdamWConfig` defaults, which the training loop keeps.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

/// AdamW (decoupled weight decay) as burn computes it, one pass per parameter; see the module's
/// doc.
#[derive(Clone)]
pub struct FusedAdamW {
    burn: AdamW,
    weight_decay: f32,
}

impl FusedAdamW {
    /// AdamW with burn's default betas and epsilon and this weight decay.
    pub fn new(weight_decay: f32) -> FusedAdamW {
        FusedAdamW {
            burn: AdamWConfig::new().with_weight_decay(weight_decay).build(),
            weight_decay,
        }
    }

    /// The step in one pass, or `None` where it does not serve (not the flex CPU backend in
    /// `f32`, `WORKBENCH_FUSED=0`, or an AMSGrad state).
    fn fused_step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&AdamWState<D>>,
    ) -> Option<(Tensor<D>, AdamWState<D>)> {
        let device = tensor.device();
        if !fused::available(&device, tensor.dtype())
            || state.is_some_and(|s| s.momentum.max_moment_2.is_some())
        {
            return None;
        }
        let moments = match state {
            Some(s) => Some((
                host_f32(&s.momentum.moment_1)?,
                host_f32(&s.momentum.moment_2)?,
            )),
            None => None,
        };
        let (p, g) = (host_f32(tensor)?, host_f32(grad)?);
        let time = state.map_or(1, |s| s.momentum.time + 1);
        let decay = lr * self.weight_decay as f64;
        let s = Scalars {
            correct_1: 1f32 - BETA_1.powi(time as i32),
            correct_2: 1f32 - BETA_2.powi(time as i32),
            keep: (decay != 0.0).then_some((1.0 - decay) as f32),
            lr: lr as f32,
        };
        let (pv, gv) = (values(&p), values(&g));
        assert_eq!(
            pv.len(),
            gv.len(),
            "adamw: parameter and gradient differ in size"
        );
        let n = pv.len();
        let (mut p_out, mut m_out, mut v_out) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        let mv = moments.as_ref().map(|(m, v)| (values(m), values(v)));
        p_out
            .par_chunks_mut(CHUNK)
            .zip(m_out.par_chunks_mut(CHUNK))
            .zip(v_out.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, ((po, mo), vo))| {
                let r = c * CHUNK..(c * CHUNK + CHUNK).min(n);
                update(
                    s,
                    (&pv[r.clone()], &gv[r.clone()]),
                    mv.map(|(m, v)| (&m[r.clone()], &v[r.clone()])),
                    (po, mo, vo),
                );
            });
        let shape = tensor.shape();
        let make = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, shape.clone()), &device);
        let state = AdamWState::new(AdaptiveMomentumState::new(time, make(m_out), make(v_out)));
        Some((make(p_out), state))
    }
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor, made so by fused::host_f32")
}

/// The scalars of one step, as burn's operations round them.
#[derive(Clone, Copy)]
struct Scalars {
    /// `1 - β₁ᵗ` and `1 - β₂ᵗ`.
    correct_1: f32,
    correct_2: f32,
    /// `1 - lr · weight_decay`, or `None` without decay.
    keep: Option<f32>,
    lr: f32,
}

/// One chunk: `p, g` and the moments `m, v` (`None` on the first step) into `p', m', v'`.
fn update(
    s: Scalars,
    (p, g): (&[f32], &[f32]),
    moments: Option<(&[f32], &[f32])>,
    (p_out, m_out, v_out): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (f1, f2) = (1.0 - BETA_1, 1.0 - BETA_2);
    for i in 0..p.len() {
        let gi = g[i];
        let (m, v) = match moments {
            Some((m, v)) => (m[i] * BETA_1 + gi * f1, v[i] * BETA_2 + (gi * gi) * f2),
            None => (gi * f1, (gi * gi) * f2),
        };
        m_out[i] = m;
        v_out[i] = v;
        let delta = (m / s.correct_1) / ((v / s.correct_2).sqrt() + EPSILON);
        let decayed = match s.keep {
            Some(keep) => p[i] * keep,
            None => p[i],
        };
        p_out[i] = decayed - delta * s.lr;
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        match self.fused_step(lr, &tensor, &grad, state.as_ref()) {
            Some((tensor, state)) => (tensor, Some(state)),
            None => self.burn.step(lr, tensor, grad, state),
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: Vec<f32>, device: &Device) -> Tensor<2> {
        let n = values.len();
        Tensor::from_data(TensorData::new(values, [n / 8, 8]), device)
    }

    fn bits(t: &Tensor<2>) -> Vec<u32> {
        let v: Vec<f32> = t.clone().into_data().try_to_vec().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Five steps, with and without decay, over more than one chunk: the parameter and both
    /// moments are bit-identical to burn's AdamW.
    #[test]
    fn the_fused_step_is_burns_adamw_bit_for_bit() {
        let device = crate::backend::cpu();
        let n = CHUNK + 8 * 37;
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut random = |scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
                })
                .collect()
        };
        for wd in [0.0f32, 0.1] {
            let ours = FusedAdamW::new(wd);
            let theirs = AdamWConfig::new().with_weight_decay(wd).build();
            let mut p_ours = tensor(random(2.0), &device);
            let mut p_theirs = p_ours.clone();
            let (mut s_ours, mut s_theirs) = (None, None);
            for step in 0..5 {
                let g = tensor(random(0.1 * (step + 1) as f32), &device);
                let lr = 1e-3 * (step + 1) as f64;
                let (p, s) = ours
                    .fused_step(lr, &p_ours, &g, s_ours.as_ref())
                    .expect("the fused step serves f32 tensors on the CPU");
                (p_ours, s_ours) = (p, Some(s));
                (p_theirs, s_theirs) = theirs.step(lr, p_theirs, g, s_theirs);
                let (a, b) = (s_ours.as_ref().unwrap(), s_theirs.as_ref().unwrap());
                assert_eq!(a.momentum.time, b.momentum.time);
                assert!(
                    bits(&p_ours) == bits(&p_theirs),
                    "wd {wd}, step {step}: parameter"
                );
                assert!(
                    bits(&a.momentum.moment_1) == bits(&b.momentum.moment_1),
                    "wd {wd}, step {step}: first moment"
                );
                assert!(
                    bits(&a.momentum.moment_2) == bits(&b.momentum.moment_2),
                    "wd {wd}, step {step}: second moment"
                );
            }
        }
    }
}
