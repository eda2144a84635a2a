//! The generation step on the CPU, outside burn's per-operation dispatch.
//!
//! A decoding step runs a few rows (one token per sequence) through every layer. On burn's
//! composed operations that is some sixty small operations a step, each with its dispatch, its
//! fresh buffer and a thread hand-off, and a key/value cache that is concatenated anew at every
//! step: at batch 16 the step cost several times its arithmetic. Here the weights are read in
//! place from the model's tensors (no copy), the cache is allocated once for the whole
//! generation, and a step is the kernels of `kernels/decode.rs`: the projections that share an
//! input in one parallel pass over column blocks, the gated MLP fused with its activation, and
//! attention over the cache. The numbers are the model's, as `Model::step` computes them (the
//! parity tests check both against transformers); only the order of the sums differs.
//!
//! Used by `generate` on the flex CPU backend with `f32` weights (where the fused training
//! kernels are [`available`](super::fused::available)); other devices keep `Model::step`.

use burn::backend::flex::FlexTensor;
use burn::prelude::*;

use std::sync::Arc;

use super::Model;
use super::fused;
use super::kernels::decode::{self as k, CacheShape, Linear, Weight};
use super::kernels::quant::{QuantKind, QuantMatrix};
use super::kernels::rms_norm_forward;
use super::team::Team;

/// A model's matrices quantized for decoding, each `[outputs, inputs]` in blocks of 32 inputs:
/// per layer q, k, v, o, gate, up, down, then the head (the embedding itself when tied).
#[derive(Debug)]
pub struct QuantWeights {
    pub kind: QuantKind,
    layers: Vec<[QuantMatrix; 7]>,
    head: QuantMatrix,
}

impl QuantWeights {
    /// Quantizes the matrices of `model` as `kind`.
    pub fn of(model: &Model, kind: QuantKind) -> crate::Result<QuantWeights> {
        let host = |t: Tensor<2>| {
            let [k, n] = t.dims();
            let v = Host::of(t);
            (v, k, n)
        };
        let check = |name: &str, k: usize| -> crate::Result<()> {
            if k.is_multiple_of(32) {
                Ok(())
            } else {
                Err(crate::Error::invalid(format!(
                    "cannot quantize the model: `{name}` takes {k} inputs, not a multiple of the \
                     32 a quantized block holds; serve it in f32"
                )))
            }
        };
        // A projection's weight is `[in, out]`; its quantized rows are its outputs.
        let quant = |name: &str, t: Tensor<2>| -> crate::Result<QuantMatrix> {
            let (v, k, n) = host(t);
            check(name, k)?;
            let rows = super::checkpoint::transpose(v.get(), k, n);
            Ok(QuantMatrix::quantize(kind, &rows, n, k))
        };
        let mut layers = Vec::with_capacity(model.layers.len());
        for (i, l) in model.layers.iter().enumerate() {
            let name = |p: &str| format!("model.layers.{i}.{p}");
            layers.push([
                quant(&name("self_attn.q_proj"), l.self_attn.q_proj.weight.val())?,
                quant(&name("self_attn.k_proj"), l.self_attn.k_proj.weight.val())?,
                quant(&name("self_attn.v_proj"), l.self_attn.v_proj.weight.val())?,
                quant(&name("self_attn.o_proj"), l.self_attn.o_proj.weight.val())?,
                quant(&name("mlp.gate_proj"), l.mlp.gate_proj.weight.val())?,
                quant(&name("mlp.up_proj"), l.mlp.up_proj.weight.val())?,
                quant(&name("mlp.down_proj"), l.mlp.down_proj.weight.val())?,
            ]);
        }
        let head = match &model.lm_head {
            Some(w) => quant("lm_head", w.val())?,
            None => {
                // The embedding `[vocab, hidden]` is already one row per output.
                let (v, vocab, hidden) = host(model.embed_tokens.val());
                check("lm_head (the tied embedding)", hidden)?;
                QuantMatrix::quantize(kind, v.get(), vocab, hidden)
            }
        };
        Ok(QuantWeights { kind, layers, head })
    }

    /// Bytes of all the quantized matrices.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .chain(std::iter::once(&self.head))
            .map(QuantMatrix::bytes)
            .sum()
    }
}

/// A weight as the decoder reads it: the model's own buffer when it is a contiguous `f32` flex
/// tensor (no copy), else a contiguous copy.
struct Host(FlexTensor);

impl Host {
    fn of<const D: usize>(t: Tensor<D>) -> Host {
        Host(
            fused::host_f32(&t)
                .unwrap_or_else(|| FlexTensor::from_data(t.into_data().convert::<f32>())),
        )
    }

    fn get(&self) -> &[f32] {
        self.0
            .as_slice::<f32>()
            .expect("a contiguous f32 tensor, made so in Host::of")
    }
}

struct Proj {
    weight: Host,
    bias: Option<Host>,
    k: usize,
    n: usize,
}

impl Proj {
    fn of(p: &super::layers::Proj) -> Proj {
        let [k, n] = p.weight.val().dims();
        Proj {
            weight: Host::of(p.weight.val()),
            bias: p.bias.as_ref().map(|b| Host::of(b.val())),
            k,
            n,
        }
    }

    fn linear(&self) -> Linear<'_> {
        (
            Weight::rows(self.weight.get(), self.k, self.n),
            self.bias.as_ref().map(Host::get),
        )
    }
}

struct Layer {
    input_norm: Host,
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    post_norm: Host,
    gate: Proj,
    up: Proj,
    down: Proj,
}

/// One layer's cache, laid out as [`CacheShape`] says.
struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// A model's weights and a key/value cache for one batch of sequences.
pub struct Decoder {
    embed: Host,
    layers: Vec<Layer>,
    norm: Host,
    /// `None`: the head is the embedding, transposed.
    head: Option<Host>,
    eps: f32,
    hidden: usize,
    vocab: usize,
    shape: CacheShape,
    cache: Vec<LayerCache>,
    /// Positions cached so far.
    past: usize,
    inv_freq: Vec<f64>,
    /// Rotary tables `[position, head_dim]`, grown as positions are asked for.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// The threads of the parallel passes.
    team: Team,
    /// Quantized matrices, read instead of the f32 ones when present.
    quant: Option<Arc<QuantWeights>>,
}

impl Decoder {
    /// A decoder for `batch` sequences of at most `capacity` positions each, or `None` when the
    /// model's tensors are not on the flex CPU backend in `f32` (then `Model::step` serves).
    pub fn new(model: &Model, batch: usize, capacity: usize) -> Option<Decoder> {
        let embed = model.embed_tokens.val();
        if !fused::available(&embed.device(), embed.dtype()) {
            return None;
        }
        let c = model.config();
        let layers = model
            .layers
            .iter()
            .map(|l| Layer {
                input_norm: Host::of(l.input_layernorm.weight.val()),
                q: Proj::of(&l.self_attn.q_proj),
                k: Proj::of(&l.self_attn.k_proj),
                v: Proj::of(&l.self_attn.v_proj),
                o: Proj::of(&l.self_attn.o_proj),
                post_norm: Host::of(l.post_attention_layernorm.weight.val()),
                gate: Proj::of(&l.mlp.gate_proj),
                up: Proj::of(&l.mlp.up_proj),
                down: Proj::of(&l.mlp.down_proj),
            })
            .collect::<Vec<_>>();
        let shape = CacheShape {
            batch,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            // Whole blocks of keys (the attention kernel scores a block at a time).
            capacity: capacity.div_ceil(k::KEY_BLOCK) * k::KEY_BLOCK,
        };
        let slab = shape.len();
        Some(Decoder {
            embed: Host::of(embed),
            cache: (0..layers.len())
                .map(|_| LayerCache {
                    k: vec![0.0; slab],
                    v: vec![0.0; slab],
                })
                .collect(),
            layers,
            norm: Host::of(model.norm.weight.val()),
            head: model.lm_head.as_ref().map(|w| Host::of(w.val())),
            eps: c.rms_norm_eps as f32,
            hidden: c.hidden_size,
            vocab: c.vocab_size,
            shape,
            past: 0,
            inv_freq: model.inv_freq.to_vec(),
            cos: Vec::new(),
            sin: Vec::new(),
            team: Team::of_pool(),
            quant: model.quantized.clone(),
        })
    }

    /// The threads of the decoder's parallel passes, for the caller's own passes between steps
    /// (while they wait for the next step).
    pub fn team(&mut self) -> &mut Team {
        &mut self.team
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.past
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.past == 0
    }

    /// Rotary tables up to position `last`, built as `Model::rope` builds them.
    fn rope_to(&mut self, last: usize) {
        let d = self.shape.head_dim;
        let half = d / 2;
        let mut p = self.cos.len() / d.max(1);
        while p <= last {
            for _ in 0..2 {
                for f in self.inv_freq.iter().take(half) {
                    let angle = p as f64 * f;
                    self.cos.push(angle.cos() as f32);
                    self.sin.push(angle.sin() as f32);
                }
            }
            p += 1;
        }
    }

    /// One step, as `Model::step`: `ids` `[batch × s]` (row-major) at `positions[row][i]`,
    /// attending to the cache plus themselves, with `key_bias[row]` over all `len() + s` keys
    /// (0 for a real key, a large negative number for padding) or `None`. Returns the logits of
    /// each row's last position, `[batch × vocab]`.
    ///
    /// The parallel passes run on the decoder's [`Team`], whose threads wait for them spinning.
    pub fn step(
        &mut self,
        ids: &[u32],
        positions: &[Vec<usize>],
        key_bias: Option<&[Vec<f32>]>,
    ) -> Vec<f32> {
        let CacheShape {
            batch: b,
            head_dim: d,
            capacity,
            ..
        } = self.shape;
        let s = ids.len() / b.max(1);
        assert_eq!(ids.len(), b * s, "decode: ids are not [batch, s]");
        assert!(s > 0, "decode: no new tokens");
        assert!(
            positions.len() == b && positions.iter().all(|r| r.len() == s),
            "decode: one position per new token of every sequence"
        );
        let (past, t) = (self.past, self.past + s);
        assert!(
            t <= capacity,
            "decode: the cache holds {capacity} positions"
        );
        let last = positions.iter().flatten().copied().max().unwrap_or(0);
        self.rope_to(last);
        let bias: Option<Vec<f32>> = key_bias.map(|rows| {
            assert_eq!(rows.len(), b, "decode: one bias row per sequence");
            rows.iter()
                .flat_map(|r| {
                    assert_eq!(r.len(), t, "decode: a bias row covers every key");
                    r.iter().copied()
                })
                .collect()
        });
        let hd = self.hidden;
        let m = b * s;
        let embed = self.embed.get();
        let mut x = Vec::with_capacity(m * hd);
        for &id in ids {
            x.extend_from_slice(&embed[id as usize * hd..(id as usize + 1) * hd]);
        }
        // Each new token's rotary tables.
        let rope: Vec<(&[f32], &[f32])> = positions
            .iter()
            .flatten()
            .map(|&p| (&self.cos[p * d..(p + 1) * d], &self.sin[p * d..(p + 1) * d]))
            .collect();
        let quant = self.quant.clone();
        for (i, (layer, cache)) in self.layers.iter().zip(self.cache.iter_mut()).enumerate() {
            // Projection `j` of this layer (q, k, v, o, gate, up, down), quantized if the model is.
            let q = quant.as_ref().map(|q| &q.layers[i]);
            let lin = |j: usize, p| linear(q, j, p);
            let normed = rms_norm(&x, layer.input_norm.get(), self.eps);
            let mut qkv = k::linears(
                &mut self.team,
                &normed,
                m,
                &[lin(0, &layer.q), lin(1, &layer.k), lin(2, &layer.v)],
            )
            .into_iter();
            let (q, kn, vn) = (
                qkv.next().unwrap_or_default(),
                qkv.next().unwrap_or_default(),
                qkv.next().unwrap_or_default(),
            );
            // The attention pass rotates the new queries and keys and writes the keys and values
            // into the cache, each row in its own task.
            let attn = k::cached_attention(
                &mut self.team,
                &q,
                (&mut cache.k, &mut cache.v),
                Some(k::Fresh {
                    k: &kn,
                    v: &vn,
                    rope: &rope,
                }),
                self.shape,
                s,
                past,
                bias.as_deref(),
            );
            let o = k::linears(&mut self.team, &attn, m, &[lin(3, &layer.o)]);
            add(&mut x, &o[0]);
            let normed = rms_norm(&x, layer.post_norm.get(), self.eps);
            let act = k::gated(
                &mut self.team,
                &normed,
                m,
                lin(4, &layer.gate),
                lin(5, &layer.up),
            );
            let down = k::linears(&mut self.team, &act, m, &[lin(6, &layer.down)]);
            add(&mut x, &down[0]);
        }
        self.past = t;
        // The last position of each row: the final norm, then the head.
        let mut lasts = Vec::with_capacity(b * hd);
        for r in 0..b {
            let tok = r * s + s - 1;
            lasts.extend_from_slice(&x[tok * hd..(tok + 1) * hd]);
        }
        let normed = rms_norm(&lasts, self.norm.get(), self.eps);
        let head = match (&quant, &self.head) {
            (Some(q), _) => Weight::quantized(&q.head),
            (None, Some(w)) => Weight::rows(w.get(), hd, self.vocab),
            (None, None) => Weight::transposed(self.embed.get(), hd, self.vocab),
        };
        k::linears(&mut self.team, &normed, b, &[(head, None)])
            .pop()
            .unwrap_or_default()
    }
}

/// Projection `j` (q, k, v, o, gate, up, down) of a layer: its quantized matrix when the layer
/// has them, else its f32 weight; the bias stays f32.
fn linear<'a>(quant: Option<&'a [QuantMatrix; 7]>, j: usize, p: &'a Proj) -> Linear<'a> {
    match quant {
        Some(q) => (Weight::quantized(&q[j]), p.bias.as_ref().map(Host::get)),
        None => p.linear(),
    }
}

/// RMSNorm of each row (the training kernel's forward, without the statistics it keeps).
fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    rms_norm_forward(x, w, eps).0
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KvCache, ModelConfig};
    use burn::tensor::TensorData;

    fn config() -> ModelConfig {
        let mut c = ModelConfig::llama(96, 48, 80, 2, 6, 2, 64, false);
        c.qkv_bias = true;
        c.o_bias = true;
        c.mlp_bias = true;
        c
    }

    /// The decoder and `Model::step` give the same logits through a prefill with left padding
    /// and three decode steps, with the head untied and tied; the wider model's decode steps
    /// (three rows, depth 128 and more) take the depth-sliced products.
    #[test]
    fn the_decoder_computes_the_models_step() {
        let device = crate::backend::cpu();
        let mut wide = ModelConfig::llama(96, 128, 256, 2, 4, 2, 64, false);
        wide.qkv_bias = true;
        for (c, tied) in [(config(), false), (config(), true), (wide, false)] {
            let mut c = c;
            c.tie_word_embeddings = tied;
            let model = c.init(&device);
            let (b, s) = (3, 5);
            let pad = [2usize, 0, 4];
            let ids: Vec<u32> = (0..b * s).map(|i| (i * 37 % 96) as u32).collect();
            let positions: Vec<Vec<usize>> = pad
                .iter()
                .map(|&p| (0..s).map(|j: usize| j.saturating_sub(p)).collect())
                .collect();
            let mut bias: Vec<Vec<f32>> = pad
                .iter()
                .map(|&p| (0..s).map(|j| if j < p { -1.0e9 } else { 0.0 }).collect())
                .collect();
            let mut decoder = Decoder::new(&model, b, s + 3).expect("the CPU device");
            let mut cache = KvCache::new(c.num_hidden_layers);
            let mut ours = decoder.step(&ids, &positions, Some(&bias));
            let burn_ids = |ids: &[u32], s: usize| {
                Tensor::<2, Int>::from_data(
                    TensorData::new(ids.iter().map(|&t| t as i64).collect::<Vec<_>>(), [b, s]),
                    &device,
                )
            };
            let mut theirs = model.step(burn_ids(&ids, s), &positions, Some(&bias), &mut cache);
            let mut next: Vec<usize> = positions.iter().map(|p| p[s - 1] + 1).collect();
            for step in 0..4 {
                let want: Vec<f32> = theirs.into_data().try_to_vec().unwrap();
                assert_eq!(ours.len(), want.len());
                let diff = ours
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    diff < 1e-4,
                    "tied {tied}, step {step}: max |Δlogit| = {diff}"
                );
                if step == 3 {
                    break;
                }
                let new: Vec<u32> = (0..b).map(|r| ((r + step) * 11 % 96) as u32).collect();
                let pos: Vec<Vec<usize>> = next.iter().map(|&p| vec![p]).collect();
                next.iter_mut().for_each(|p| *p += 1);
                bias.iter_mut().for_each(|r| r.push(0.0));
                ours = decoder.step(&new, &pos, Some(&bias));
                theirs = model.step(burn_ids(&new, 1), &pos, Some(&bias), &mut cache);
            }
            assert_eq!(decoder.len(), s + 3);
        }
    }

    /// With quantized matrices the decoder computes what f32 arithmetic computes on the
    /// dequantized weights, up to the rounding of the activations to 8 bits: the logits of a
    /// model whose weights are exactly representable in Q8_0 (or Q4_0) stay within a few percent
    /// of the f32 decoder's, and a matrix too narrow for blocks of 32 is refused by name.
    #[test]
    fn quantized_matrices_compute_the_dequantized_model() {
        let device = crate::backend::cpu();
        let mut c = ModelConfig::llama(96, 64, 96, 2, 4, 2, 64, false);
        c.qkv_bias = true;
        for (kind, file_kind, tolerance) in [
            (QuantKind::Q8_0, crate::model::to_gguf::GgufType::Q8_0, 0.03),
            (QuantKind::Q4_0, crate::model::to_gguf::GgufType::Q4_0, 0.06),
        ] {
            for tied in [false, true] {
                c.tie_word_embeddings = tied;
                let model = c.init(&device);
                // Round the weights through the GGUF writer and reader: the model then holds
                // values its own quantization reproduces exactly.
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("m.gguf");
                let bytes =
                    crate::model::to_gguf::gguf_bytes(&model, None, "m", file_kind).unwrap();
                std::fs::write(&path, bytes).unwrap();
                let mut model = crate::model::checkpoint::load(&path, &device).unwrap();
                let ids: Vec<u32> = (0..6).map(|i| (i * 29 % 96) as u32).collect();
                let positions = vec![(0..6).collect::<Vec<usize>>()];
                let want = Decoder::new(&model, 1, 8)
                    .unwrap()
                    .step(&ids, &positions, None);
                model.quantize(Some(kind)).unwrap();
                let got = Decoder::new(&model, 1, 8)
                    .unwrap()
                    .step(&ids, &positions, None);
                let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let diff = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    diff <= tolerance * scale,
                    "{kind:?} tied {tied}: max |Δlogit| = {diff} of {scale}"
                );
                assert!(diff > 0.0, "{kind:?}: the quantized path was not taken");
                model.quantize(None).unwrap();
                let back = Decoder::new(&model, 1, 8)
                    .unwrap()
                    .step(&ids, &positions, None);
                assert_eq!(back, want);
            }
        }
        let mut narrow = ModelConfig::llama(96, 48, 80, 1, 6, 2, 64, false);
        narrow.head_dim = 8;
        let mut model = narrow.init(&device);
        let e = model
            .quantize(Some(QuantKind::Q8_0))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model.layers.0.self_attn.q_proj") && e.contains("48"),
            "{e}"
        );
    }
}
