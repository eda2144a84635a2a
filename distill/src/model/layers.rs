//! The building blocks of the decoder, each exactly as Hugging Face computes it: RMSNorm,
//! rotary embeddings (the `rotate_half` convention), grouped-query attention with a KV cache, and
//! the SwiGLU MLP.

use burn::module::Param;
use burn::prelude::*;

use super::fused;
use burn::tensor::module::{attention, linear};
use burn::tensor::ops::AttentionModuleOptions;

/// A dense projection `y = x W + b`; `W` is stored `[d_in, d_out]` (transposed from PyTorch's
/// `[out, in]` at load and save).
#[derive(Module, Debug)]
pub struct Proj {
    /// `[d_in, d_out]`
    pub weight: Param<Tensor<2>>,
    /// `[d_out]`
    pub bias: Option<Param<Tensor<1>>>,
}

impl Proj {
    /// A projection initialised like Hugging Face's Llama: normal(0, `std`), zero bias.
    pub fn init(d_in: usize, d_out: usize, bias: bool, std: f64, device: &Device) -> Proj {
        Proj {
            weight: Param::from_tensor(Tensor::random(
                [d_in, d_out],
                burn::tensor::Distribution::Normal(0.0, std),
                device,
            )),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device))),
        }
    }

    /// `[..., d_in]` → `[..., d_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear_2d(x, self.weight.val(), self.bias.as_ref().map(Param::val))
    }
}

/// `x W + b` with every leading dimension of `x` folded into the rows first, so the product
/// is one matrix multiplication (split across cores) instead of a batch of small ones, and the
/// weight's gradient one product instead of a batch of them summed. Without a bias, on the CPU,
/// the fused product (`fused::linear`: no zeroed and copied output buffers).
pub fn linear_2d<const D: usize>(x: Tensor<D>, w: Tensor<2>, b: Option<Tensor<1>>) -> Tensor<D> {
    let dims = x.dims();
    let d_out = w.dims()[1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let x = x.reshape([rows, dims[D - 1]]);
    let y = match b {
        None if fused::available(&x.device(), x.dtype()) => fused::linear(x, w),
        b => linear(x, w, b),
    };
    let mut out = dims;
    out[D - 1] = d_out;
    y.reshape(out)
}

/// Root-mean-square normalisation with a learned gain.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// `[d]`
    pub weight: Param<Tensor<1>>,
    /// Added to the mean square.
    #[module(skip)]
    pub eps: f64,
}

impl RmsNorm {
    /// Unit gain.
    pub fn init(d: usize, eps: f64, device: &Device) -> RmsNorm {
        RmsNorm {
            weight: Param::from_tensor(Tensor::ones([d], device)),
            eps,
        }
    }

    /// `[b, s, d]` → `[b, s, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if fused::available(&x.device(), x.dtype()) {
            return fused::rms_norm(x, self.weight.val(), self.eps);
        }
        let ms = x.clone().powi_scalar(2).mean_dim(2);
        let inv = (ms + self.eps).sqrt().recip();
        x * inv * self.weight.val().unsqueeze::<3>()
    }
}

/// Rotary position tables for the positions of one forward pass.
#[derive(Debug, Clone)]
pub struct Rope {
    /// `[b or 1, 1, s, head_dim]`
    pub cos: Tensor<4>,
    /// `[b or 1, 1, s, head_dim]`
    pub sin: Tensor<4>,
}

/// `cat(-x2, x1)` on the last dimension: Hugging Face's pairing of rotary dimensions.
fn rotate_half(x: Tensor<4>) -> Tensor<4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d / 2);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

impl Rope {
    /// `[b, h, s, d]` rotated by position.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        x.clone() * self.cos.clone() + rotate_half(x) * self.sin.clone()
    }
}

/// Keys and values of earlier positions, per layer.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// `[b, kv_heads, t, head_dim]`
    pub k: Option<Tensor<4>>,
    /// `[b, kv_heads, t, head_dim]`
    pub v: Option<Tensor<4>>,
}

/// Grouped-query self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    /// `[hidden, heads * head_dim]`
    pub q_proj: Proj,
    /// `[hidden, kv_heads * head_dim]`
    pub k_proj: Proj,
    /// `[hidden, kv_heads * head_dim]`
    pub v_proj: Proj,
    /// `[heads * head_dim, hidden]`
    pub o_proj: Proj,
    #[module(skip)]
    pub heads: usize,
    #[module(skip)]
    pub kv_heads: usize,
    #[module(skip)]
    pub head_dim: usize,
}

impl Attention {
    /// The q, k and v projections side by side, `[hidden, (h + 2·kvh)·d]` (and their biases),
    /// so that one product (and, backward, one product per gradient) serves all three: the
    /// narrow k and v products alone run well below the machine's peak. `None` when some of the
    /// three have a bias and some do not.
    fn packed(&self) -> Option<(Tensor<2>, Option<Tensor<1>>)> {
        let projs = [&self.q_proj, &self.k_proj, &self.v_proj];
        let bias = match projs.map(|p| p.bias.as_ref().map(Param::val)) {
            [Some(q), Some(k), Some(v)] => Some(Tensor::cat(vec![q, k, v], 0)),
            [None, None, None] => None,
            _ => return None,
        };
        let weight = Tensor::cat(projs.map(|p| p.weight.val()).to_vec(), 1);
        Some((weight, bias))
    }

    /// `x: [b, s, hidden]`, `bias: [b, heads, s, t]` (additive; 0 or a large negative) →
    /// `[b, s, hidden]`. With a cache, the new keys and values are appended to it and attention
    /// covers all `t` positions so far.
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        bias: Option<Tensor<4>>,
        cache: Option<&mut LayerCache>,
    ) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (h, kvh, d) = (self.heads, self.kv_heads, self.head_dim);
        if cache.is_none()
            && bias.is_none()
            && rope.cos.dims()[0] == 1
            && fused::available(&x.device(), x.dtype())
            && let Some((w, b)) = self.packed()
        {
            // Training and whole-sequence passes: one product for the three projections, then
            // one fused kernel for the rotation, the causal softmax and both products, reading
            // q, k and v out of the packed rows as they are.
            let out = fused::attention(
                linear_2d(x, w, b),
                rope.cos.clone().reshape([s, d]),
                rope.sin.clone().reshape([s, d]),
                h,
                kvh,
            );
            return self.o_proj.forward(out);
        }
        let q = self
            .q_proj
            .forward(x.clone())
            .reshape([b, s, h, d])
            .swap_dims(1, 2);
        let k = self
            .k_proj
            .forward(x.clone())
            .reshape([b, s, kvh, d])
            .swap_dims(1, 2);
        let v = self
            .v_proj
            .forward(x)
            .reshape([b, s, kvh, d])
            .swap_dims(1, 2);
        let q = rope.apply(q);
        let mut k = rope.apply(k);
        let mut v = v;
        if let Some(cache) = cache {
            if let (Some(pk), Some(pv)) = (cache.k.take(), cache.v.take()) {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            cache.k = Some(k.clone());
            cache.v = Some(v.clone());
        }
        let t = k.dims()[2];
        // Each key/value head serves `h / kvh` query heads. The fused attention kernel takes the
        // grouped heads as they are; the autodiff path (composed matmuls) needs them repeated.
        let (k, v) = if kvh == h || !k.is_autodiff() {
            (k, v)
        } else {
            let g = h / kvh;
            (
                k.unsqueeze_dim::<5>(2)
                    .expand([b, kvh, g, t, d])
                    .reshape([b, h, t, d]),
                v.unsqueeze_dim::<5>(2)
                    .expand([b, kvh, g, t, d])
                    .reshape([b, h, t, d]),
            )
        };
        let options = AttentionModuleOptions {
            scale: Some(1.0 / (d as f64).sqrt()),
            softcap: None,
            is_causal: true,
        };
        let out = attention(q, k, v, None, bias, options);
        self.o_proj
            .forward(out.swap_dims(1, 2).reshape([b, s, h * d]))
    }
}

/// The SwiGLU MLP: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[hidden, intermediate]`
    pub gate_proj: Proj,
    /// `[hidden, intermediate]`
    pub up_proj: Proj,
    /// `[intermediate, hidden]`
    pub down_proj: Proj,
}

impl Mlp {
    /// `[b, s, hidden]` → `[b, s, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = self.gate_proj.forward(x.clone());
        self.down_proj
            .forward(fused::swiglu(gate, self.up_proj.forward(x)))
    }
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct Block {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl Block {
    /// `[b, s, hidden]` → `[b, s, hidden]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        bias: Option<Tensor<4>>,
        cache: Option<&mut LayerCache>,
    ) -> Tensor<3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, bias, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}
