//! The Llama-family decoder: the teacher and the student are this model at two sizes.
//!
//! Number for number the Hugging Face architecture (`LlamaForCausalLM`, `Qwen2ForCausalLM`,
//! `MistralForCausalLM`), so a checkpoint loads from and saves to the Hub layout and gives the
//! same logits as `transformers` (see `checkpoint.rs` and the parity tests).

pub mod checkpoint;
pub mod config;
pub mod decode;
pub mod from_gguf;
pub mod fused;
pub mod gguf;
pub mod kernels;
pub mod layers;
pub mod team;
pub mod to_gguf;

use std::sync::Arc;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::TensorData;

pub use config::{ModelConfig, ModelType, RopeScaling};
use layers::{Attention, Block, LayerCache, Mlp, Proj, RmsNorm, Rope};

/// Standard deviation of initial weights (Hugging Face's `initializer_range`).
const INIT_STD: f64 = 0.02;

/// The decoder.
#[derive(Module, Debug)]
pub struct Model {
    /// `[vocab, hidden]`
    pub embed_tokens: Param<Tensor<2>>,
    pub layers: Vec<Block>,
    pub norm: RmsNorm,
    /// `[hidden, vocab]`; `None` when tied to the embedding.
    pub lm_head: Option<Param<Tensor<2>>>,
    /// The shape; not a parameter.
    #[module(skip)]
    pub config: Arc<ModelConfig>,
    /// `inv_freq` per rotary pair (host side; tables are built per forward for its positions).
    #[module(skip)]
    pub inv_freq: Arc<Vec<f64>>,
    /// The matrices quantized for the CPU decoder ([`Model::quantize`]): a snapshot of the
    /// weights when they were quantized, which generation then reads instead of the f32 ones.
    #[module(skip)]
    pub quantized: Option<Arc<decode::QuantWeights>>,
}

/// Keys and values of every layer for the positions seen so far.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> Self {
        KvCache {
            layers: vec![LayerCache::default(); layers],
            len: 0,
        }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The divisor the config's rope scaling applies to each rotary frequency (1 where it keeps
/// one): what GGUF files store as `rope_freqs.weight` for Llama 3's scaling.
pub fn rope_factors(config: &ModelConfig) -> Vec<f32> {
    let unscaled = ModelConfig {
        rope_scaling: RopeScaling::Default,
        ..config.clone()
    };
    inv_freq(&unscaled)
        .iter()
        .zip(inv_freq(config))
        .map(|(base, scaled)| (base / scaled) as f32)
        .collect()
}

/// Llama 3's rope scaling from the divisors it applies (`rope_freqs.weight`), or `None` when
/// no such scaling gives them. The divisors fix only the ratios of its parameters, so
/// `low_freq_factor` is taken as 1 (as every Llama 3 model has it); the result is checked by
/// computing the divisors again (to 1e-3: some files store them in f16).
pub fn llama3_from_factors(config: &ModelConfig, factors: &[f32]) -> Option<RopeScaling> {
    let d = config.head_dim;
    if factors.len() != d / 2 || factors.iter().any(|f| !f.is_finite() || *f <= 0.0) {
        return None;
    }
    let factor = factors.iter().copied().fold(1.0f32, f32::max) as f64;
    if factor <= 1.0 {
        return Some(RopeScaling::Default);
    }
    let wavelen =
        |i: usize| 2.0 * std::f64::consts::PI * config.rope_theta.powf((2 * i) as f64 / d as f64);
    // Between the kept and the fully scaled frequencies, `smooth` falls linearly in
    // 1 / wavelength: smooth = original / wavelength / (high - low) - low / (high - low).
    let tol = 1e-4;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (i, &f) in factors.iter().enumerate() {
        let f = f as f64;
        if f > 1.0 + tol && f < factor * (1.0 - tol) {
            xs.push(1.0 / wavelen(i));
            ys.push((1.0 / f - 1.0 / factor) / (1.0 - 1.0 / factor));
        }
    }
    let (a, b) = if xs.len() >= 2 {
        let n = xs.len() as f64;
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        let a = sxy / sxx;
        (a, my - a * mx)
    } else {
        // Too few frequencies in between to fit: with low = 1, `original` is the border of the
        // fully scaled wavelengths, put between the last not fully scaled one and the first
        // fully scaled one; `high` comes from the one frequency in between, or else from the
        // border of the kept ones, put between likewise.
        let (mut kept, mut not_kept, mut not_full, mut full) =
            (0.0f64, f64::INFINITY, 0.0f64, f64::INFINITY);
        for (i, &f) in factors.iter().enumerate() {
            let (f, w) = (f as f64, wavelen(i));
            if f < 1.0 + tol {
                kept = kept.max(w);
            } else {
                not_kept = not_kept.min(w);
            }
            if f > factor * (1.0 - tol) {
                full = full.min(w);
            } else {
                not_full = not_full.max(w);
            }
        }
        if !full.is_finite() || !not_kept.is_finite() {
            return None;
        }
        // With no frequency in between the two gaps are the same: the kept border goes a third
        // of the way, the fully scaled one two thirds.
        let (original, high) = match (xs.first(), ys.first()) {
            // The kept border halfway to the one in between, whose smoothing then fixes
            // `original`: y = (original x - 1) / (original / border - 1).
            (Some(&x), Some(&y)) => {
                let border = (kept + not_kept) / 2.0;
                let original = (1.0 - y) / (x - y / border);
                (original, original / border)
            }
            _ => {
                let original = not_full + (full - not_full) * 2.0 / 3.0;
                (original, original / (kept + (not_kept - kept) / 3.0))
            }
        };
        if !(high > 1.0 && original.is_finite()) {
            return None;
        }
        (original / (high - 1.0), -1.0 / (high - 1.0))
    };
    if !(a > 0.0 && b < 0.0) {
        return None;
    }
    let original = (-a / b).round();
    if !(original >= 1.0 && original < usize::MAX as f64) {
        return None;
    }
    // `original` is a whole number of positions: `high` again from the frequencies in between,
    // with it rounded (smooth = (original x - 1) / (high - 1)).
    let high = if xs.is_empty() {
        1.0 - 1.0 / b
    } else {
        let n = xs.len() as f64;
        1.0 + xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| (original * x - 1.0) / y)
            .sum::<f64>()
            / n
    };
    // The parameters as a config would write them (the fit carries float32 noise), else as fit.
    let round = |x: f64| (x * 1e3).round() / 1e3;
    [(round(factor), round(high)), (factor, high)]
        .into_iter()
        .map(|(factor, high_freq_factor)| RopeScaling::Llama3 {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor,
            original_max_position_embeddings: original as usize,
        })
        .find(|scaling| {
            let again = rope_factors(&ModelConfig {
                rope_scaling: scaling.clone(),
                ..config.clone()
            });
            again
                .iter()
                .zip(factors)
                // Files may store the divisors in f16: half a unit in its last place.
                .all(|(x, y)| ((x - y) / y).abs() <= 1e-3)
        })
}

/// The rotary inverse frequencies, with the config's scaling applied.
fn inv_freq(config: &ModelConfig) -> Vec<f64> {
    let d = config.head_dim;
    let base: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / config.rope_theta.powf((2 * i) as f64 / d as f64))
        .collect();
    match &config.rope_scaling {
        RopeScaling::Default => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let old = *original_max_position_embeddings as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

impl ModelConfig {
    /// A freshly initialised model of this shape (normal(0, 0.02) weights, unit norms), seeded by
    /// the device's seed.
    pub fn init(&self, device: &Device) -> Model {
        let c = self;
        let layers = (0..c.num_hidden_layers)
            .map(|_| Block {
                input_layernorm: RmsNorm::init(c.hidden_size, c.rms_norm_eps, device),
                self_attn: Attention {
                    q_proj: Proj::init(
                        c.hidden_size,
                        c.num_attention_heads * c.head_dim,
                        c.qkv_bias,
                        INIT_STD,
                        device,
                    ),
                    k_proj: Proj::init(
                        c.hidden_size,
                        c.num_key_value_heads * c.head_dim,
                        c.qkv_bias,
                        INIT_STD,
                        device,
                    ),
                    v_proj: Proj::init(
                        c.hidden_size,
                        c.num_key_value_heads * c.head_dim,
                        c.qkv_bias,
                        INIT_STD,
                        device,
                    ),
                    o_proj: Proj::init(
                        c.num_attention_heads * c.head_dim,
                        c.hidden_size,
                        c.o_bias,
                        INIT_STD,
                        device,
                    ),
                    heads: c.num_attention_heads,
                    kv_heads: c.num_key_value_heads,
                    head_dim: c.head_dim,
                },
                post_attention_layernorm: RmsNorm::init(c.hidden_size, c.rms_norm_eps, device),
                mlp: Mlp {
                    gate_proj: Proj::init(
                        c.hidden_size,
                        c.intermediate_size,
                        c.mlp_bias,
                        INIT_STD,
                        device,
                    ),
                    up_proj: Proj::init(
                        c.hidden_size,
                        c.intermediate_size,
                        c.mlp_bias,
                        INIT_STD,
                        device,
                    ),
                    down_proj: Proj::init(
                        c.intermediate_size,
                        c.hidden_size,
                        c.mlp_bias,
                        INIT_STD,
                        device,
                    ),
                },
            })
            .collect();
        let normal = burn::tensor::Distribution::Normal(0.0, INIT_STD);
        Model {
            embed_tokens: Param::from_tensor(Tensor::random(
                [c.vocab_size, c.hidden_size],
                normal,
                device,
            )),
            layers,
            norm: RmsNorm::init(c.hidden_size, c.rms_norm_eps, device),
            lm_head: (!c.tie_word_embeddings).then(|| {
                Param::from_tensor(Tensor::random(
                    [c.hidden_size, c.vocab_size],
                    normal,
                    device,
                ))
            }),
            inv_freq: Arc::new(inv_freq(c)),
            config: Arc::new(c.clone()),
            quantized: None,
        }
    }
}

impl Model {
    /// The model's shape.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed_tokens.val().device()
    }

    /// Rotary tables for per-row positions (`positions[b][s]`).
    fn rope(&self, positions: &[Vec<usize>], device: &Device) -> Rope {
        let b = positions.len();
        let s = positions.first().map_or(0, Vec::len);
        let d = self.config.head_dim;
        let half = d / 2;
        let mut cos = Vec::with_capacity(b * s * d);
        let mut sin = Vec::with_capacity(b * s * d);
        for row in positions {
            for &p in row {
                // emb = cat(freqs, freqs), as Hugging Face builds it.
                for _ in 0..2 {
                    for f in self.inv_freq.iter().take(half) {
                        let angle = p as f64 * f;
                        cos.push(angle.cos() as f32);
                        sin.push(angle.sin() as f32);
                    }
                }
            }
        }
        Rope {
            cos: Tensor::from_data(TensorData::new(cos, [b, 1, s, d]), device),
            sin: Tensor::from_data(TensorData::new(sin, [b, 1, s, d]), device),
        }
    }

    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        burn::tensor::module::embedding(self.embed_tokens.val(), ids)
    }

    /// Hidden states to logits: `[b, s, hidden]` → `[b, s, vocab]`.
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(w) => layers::linear_2d(hidden, w.val(), None),
            None => layers::linear_2d(hidden, self.embed_tokens.val().transpose(), None),
        }
    }

    /// Final hidden states of a batch of equal-length sequences starting at position 0
    /// (training: right padding needs no mask in a causal model). `[b, s]` → `[b, s, hidden]`.
    pub fn forward_hidden(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, s] = ids.dims();
        let device = ids.device();
        let positions = vec![(0..s).collect::<Vec<_>>(); 1];
        let rope = self.rope(&positions, &device);
        let mut x = self.embed(ids);
        for layer in &self.layers {
            x = layer.forward(x, &rope, None, None);
        }
        self.norm.forward(x)
    }

    /// Logits of every position. `[b, s]` → `[b, s, vocab]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.head(self.forward_hidden(ids))
    }

    /// One incremental step: `ids` `[b, s]` at `positions[b][s]`, attending to everything in
    /// `cache` plus themselves, with `key_bias` `[b, t_total]` (0 for a real key, a large
    /// negative number for padding). Returns the logits of the last position only, `[b, vocab]`.
    pub fn step(
        &self,
        ids: Tensor<2, Int>,
        positions: &[Vec<usize>],
        key_bias: Option<&[Vec<f32>]>,
        cache: &mut KvCache,
    ) -> Tensor<2> {
        let [b, s] = ids.dims();
        let device = ids.device();
        let rope = self.rope(positions, &device);
        let t = cache.len + s;
        let bias = key_bias.map(|rows| {
            let h = self.config.num_attention_heads;
            let mut flat = Vec::with_capacity(b * t);
            for row in rows {
                debug_assert_eq!(row.len(), t);
                flat.extend_from_slice(row);
            }
            Tensor::<4>::from_data(TensorData::new(flat, [b, 1, 1, t]), &device)
                .expand([b, h, s, t])
        });
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![LayerCache::default(); self.layers.len()];
        }
        let mut x = self.embed(ids);
        for (layer, lc) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward(x, &rope, bias.clone(), Some(lc));
        }
        cache.len = t;
        let last = self.norm.forward(x.narrow(1, s - 1, 1));
        self.head(last).reshape([b, self.config.vocab_size])
    }

    /// Number of parameters.
    pub fn num_params(&self) -> u64 {
        self.config.num_params()
    }

    /// This model with only the layers at `keep`, in that order: the embeddings, final norm and
    /// head as they are (depth pruning). `None` when `keep` is empty or names a layer it lacks.
    pub fn cut(&self, keep: &[usize]) -> Option<Model> {
        if keep.is_empty() || keep.iter().any(|&i| i >= self.layers.len()) {
            return None;
        }
        let mut config = (*self.config).clone();
        config.num_hidden_layers = keep.len();
        Some(Model {
            embed_tokens: self.embed_tokens.clone(),
            layers: keep.iter().map(|&i| self.layers[i].clone()).collect(),
            norm: self.norm.clone(),
            lm_head: self.lm_head.clone(),
            config: Arc::new(config),
            inv_freq: self.inv_freq.clone(),
            quantized: None,
        })
    }

    /// This model with each layer's MLP narrowed to `width` channels: per layer, the channels
    /// with the largest `‖gate[:, j]‖ · ‖up[:, j]‖ · ‖down[j, :]‖` (how much a channel can move the
    /// output), kept in their order, the rest dropped. `None` when `width` is 0 or wider than the
    /// MLP. Dropping a channel removes exactly its term from the down projection's sum.
    pub fn narrow_mlp(&self, width: usize) -> Option<Model> {
        let inter = self.config.intermediate_size;
        if width == 0 || width > inter {
            return None;
        }
        let host = |t: Tensor<2>| -> Vec<f32> {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 data")
        };
        let device = self.device();
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let h = self.config.hidden_size;
                let (g, u, d) = (
                    host(l.mlp.gate_proj.weight.val()),
                    host(l.mlp.up_proj.weight.val()),
                    host(l.mlp.down_proj.weight.val()),
                );
                // gate and up are `[hidden, inter]` (channel j a column), down `[inter, hidden]`.
                let column =
                    |w: &[f32], j: usize| (0..h).map(|i| w[i * inter + j].powi(2)).sum::<f32>();
                let row =
                    |w: &[f32], j: usize| w[j * h..(j + 1) * h].iter().map(|x| x * x).sum::<f32>();
                let mut order: Vec<usize> = (0..inter).collect();
                let score = |j: usize| (column(&g, j) * column(&u, j) * row(&d, j)).sqrt();
                order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
                let mut keep = order[..width].to_vec();
                keep.sort_unstable();
                let idx = Tensor::<1, Int>::from_data(
                    TensorData::new(keep.iter().map(|&j| j as i64).collect::<Vec<_>>(), [width]),
                    &device,
                );
                // Detached: new leaves of their own, which training can track.
                let cols = |p: &Proj| Proj {
                    weight: Param::from_tensor(p.weight.val().select(1, idx.clone()).detach()),
                    bias: p
                        .bias
                        .as_ref()
                        .map(|b| Param::from_tensor(b.val().select(0, idx.clone()).detach())),
                };
                let mut block = l.clone();
                block.mlp = Mlp {
                    gate_proj: cols(&l.mlp.gate_proj),
                    up_proj: cols(&l.mlp.up_proj),
                    down_proj: Proj {
                        weight: Param::from_tensor(
                            l.mlp.down_proj.weight.val().select(0, idx.clone()).detach(),
                        ),
                        bias: l.mlp.down_proj.bias.clone(),
                    },
                };
                block
            })
            .collect();
        let mut config = (*self.config).clone();
        config.intermediate_size = width;
        Some(Model {
            embed_tokens: self.embed_tokens.clone(),
            layers,
            norm: self.norm.clone(),
            lm_head: self.lm_head.clone(),
            config: Arc::new(config),
            inv_freq: self.inv_freq.clone(),
            quantized: None,
        })
    }

    /// Makes generation on the CPU read 8-bit (`Q8_0`) or 4-bit (`Q4_0`) copies of the matrices,
    /// with integer dot products (see `kernels/quant.rs`); `None` goes back to f32. Training and
    /// `forward` keep the f32 weights. Fails, naming it, when a matrix's input width is not a
    /// multiple of 32.
    pub fn quantize(&mut self, kind: Option<kernels::quant::QuantKind>) -> crate::Result<()> {
        self.quantized = match kind {
            None => None,
            Some(kind) => Some(Arc::new(decode::QuantWeights::of(self, kind)?)),
        };
        Ok(())
    }
}

#[cfg(test)]
mod cut_tests {
    use super::*;

    /// A cut model's logits are the teacher's embeddings run through the kept layers alone, in
    /// order, then its final norm and head, computed here layer by layer.
    #[test]
    fn a_cut_model_runs_the_kept_layers_of_its_teacher() {
        let device = crate::backend::cpu();
        device.seed(11);
        let teacher = ModelConfig::llama(40, 32, 48, 4, 4, 2, 64, false).init(&device);
        let keep = datasets::config::kept_layers(4, 2);
        assert_eq!(keep, [0, 3]);
        assert_eq!(datasets::config::kept_layers(4, 3), [0, 2, 3]);
        assert_eq!(datasets::config::kept_layers(4, 1), [0]);
        let student = teacher.cut(&keep).unwrap();
        assert_eq!(student.config().num_hidden_layers, 2);
        assert!(student.num_params() < teacher.num_params());
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 5, 9, 13, 2, 7], [1, 6]),
            &device,
        );
        let rope = teacher.rope(&[(0..6).collect()], &device);
        let mut x = teacher.embed(ids.clone());
        for &i in &keep {
            x = teacher.layers[i].forward(x, &rope, None, None);
        }
        let reference: Vec<f32> = teacher
            .head(teacher.norm.forward(x))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let got: Vec<f32> = student
            .forward(ids.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(reference.len(), got.len());
        for (a, b) in reference.iter().zip(&got) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
        // Not the whole teacher: the dropped layers mattered.
        let whole: Vec<f32> = teacher
            .forward(ids)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(whole.iter().zip(&got).any(|(a, b)| (a - b).abs() > 1e-4));
        assert!(teacher.cut(&[]).is_none() && teacher.cut(&[4]).is_none());
    }

    /// For each column of the narrowed `[32, 20]` projection, the column of the full `[32, 48]`
    /// one it came from.
    fn kept_channels(full: &Proj, narrow: &Proj) -> Vec<usize> {
        let host = |p: &Proj| -> Vec<f32> { p.weight.val().into_data().try_to_vec().unwrap() };
        let (f, n) = (host(full), host(narrow));
        (0..20)
            .map(|js| {
                (0..48)
                    .find(|&jt| (0..32).all(|i| f[i * 48 + jt] == n[i * 20 + js]))
                    .unwrap()
            })
            .collect()
    }

    /// A narrowed MLP computes what the full one computes with the dropped channels' rows of
    /// the down projection zeroed, and keeps the channels of largest weight.
    #[test]
    fn a_narrowed_mlp_drops_exactly_the_weakest_channels() {
        let device = crate::backend::cpu();
        device.seed(12);
        let mut c = ModelConfig::llama(40, 32, 48, 2, 4, 2, 64, false);
        c.mlp_bias = true;
        let mut teacher = c.init(&device);
        // Channel 5 of layer 0 made the strongest by far, channel 7 nearly silent.
        let scale = |t: Tensor<2>, dim: usize, j: usize, by: f32| {
            let [r, k] = t.dims();
            let mut v: Vec<f32> = t.into_data().try_to_vec().unwrap();
            for i in 0..if dim == 1 { r } else { k } {
                let at = if dim == 1 { i * k + j } else { j * k + i };
                v[at] *= by;
            }
            Param::from_tensor(Tensor::from_data(TensorData::new(v, [r, k]), &device))
        };
        let m = &mut teacher.layers[0].mlp;
        m.gate_proj.weight = scale(m.gate_proj.weight.val(), 1, 5, 10.0);
        m.down_proj.weight = scale(m.down_proj.weight.val(), 0, 7, 1e-3);
        let student = teacher.narrow_mlp(20).unwrap();
        assert_eq!(student.config().intermediate_size, 20);
        assert!(teacher.narrow_mlp(0).is_none() && teacher.narrow_mlp(49).is_none());
        // Which channels survived: those whose gate column reappears in the student.
        let kept = kept_channels(
            &teacher.layers[0].mlp.gate_proj,
            &student.layers[0].mlp.gate_proj,
        );
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "in order: {kept:?}");
        assert!(kept.contains(&5) && !kept.contains(&7), "{kept:?}");
        // The reference: the teacher with the dropped channels' down rows zeroed, per layer.
        let mut reference = teacher.clone();
        for (l, layer) in reference.layers.iter_mut().enumerate() {
            let kept = kept_channels(&layer.mlp.up_proj, &student.layers[l].mlp.up_proj);
            let w = layer.mlp.down_proj.weight.val();
            let mut v: Vec<f32> = w.into_data().try_to_vec().unwrap();
            for j in (0..48).filter(|j| !kept.contains(j)) {
                v[j * 32..(j + 1) * 32].iter_mut().for_each(|x| *x = 0.0);
            }
            layer.mlp.down_proj.weight =
                Param::from_tensor(Tensor::from_data(TensorData::new(v, [48, 32]), &device));
        }
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 5, 9, 13, 2, 7], [1, 6]),
            &device,
        );
        let want: Vec<f32> = reference
            .forward(ids.clone())
            .into_data()
            .try_to_vec()
            .unwrap();
        let got: Vec<f32> = student.forward(ids).into_data().try_to_vec().unwrap();
        for (a, b) in want.iter().zip(&got) {
            assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
        }
    }
}
