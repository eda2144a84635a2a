//! Kernels of the generation step (`model/decode.rs`) on plain `f32` slices: the projections of a
//! few rows split by column blocks across cores, the gated MLP fused with its activation, and the
//! attention of new tokens over a preallocated key/value cache.
//!
//! A decoding step multiplies a handful of rows (one per sequence in the batch) by every weight
//! of the model, so the work is reading the weights: the column blocks of all the products that
//! do not depend on each other go to the cores in one parallel pass, and every output element is
//! one `gemm` dot product over the full depth, so the result does not depend on the thread count.

use std::sync::Mutex;

use super::super::team::Team;
use super::quant::{QuantMatrix, QuantRows};
use super::{LANES, exp, lane_max, lane_sum, matmul, rope_in_place, swiglu_chunk};

/// Columns of a weight per task: 64 columns of a 256-deep weight are 64 KiB, which stays in a
/// core's L2 cache while every row of the batch is multiplied by it, and give enough tasks to keep
/// both cores busy (measured on the 4M student: 64 beat 32, 128 and 256 at batch 1 and 16).
const COLS: usize = 64;

/// A weight `[k, n]`: `f32` seen through strides (element `(i, j)` is `data[i * rs + j * cs]`, so
/// a weight stored transposed, a tied embedding used as the head, needs no copy), or quantized
/// (see [`QuantMatrix`]).
#[derive(Debug, Clone, Copy)]
pub struct Weight<'a> {
    data: Data<'a>,
    k: usize,
    n: usize,
}

#[derive(Debug, Clone, Copy)]
enum Data<'a> {
    F32 {
        data: &'a [f32],
        rs: usize,
        cs: usize,
    },
    Quant(&'a QuantMatrix),
}

impl<'a> Weight<'a> {
    /// A row-major `[k, n]` weight.
    pub fn rows(data: &'a [f32], k: usize, n: usize) -> Self {
        assert_eq!(data.len(), k * n, "weight: wrong size for [{k}, {n}]");
        Weight {
            data: Data::F32 { data, rs: n, cs: 1 },
            k,
            n,
        }
    }

    /// The `[k, n]` transpose of a row-major `[n, k]` matrix.
    pub fn transposed(data: &'a [f32], k: usize, n: usize) -> Self {
        assert_eq!(data.len(), k * n, "weight: wrong size for [{n}, {k}]");
        Weight {
            data: Data::F32 { data, rs: 1, cs: k },
            k,
            n,
        }
    }

    /// A quantized weight (its rows are the `n` outputs).
    pub fn quantized(q: &'a QuantMatrix) -> Self {
        Weight {
            data: Data::Quant(q),
            k: q.k,
            n: q.n,
        }
    }

    /// `out[m × nb] = x[m × k] · self[:, n0..n0 + nb] (+ bias[n0..n0 + nb])`; a quantized
    /// weight reads `x` rounded to 8 bits, `xq` (see [`rounded`]).
    fn block(
        &self,
        (x, xq): (&[f32], Option<&QuantRows>),
        m: usize,
        n0: usize,
        nb: usize,
        bias: Option<&[f32]>,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; m * nb];
        match self.data {
            Data::F32 { data, rs, cs } => matmul(
                (m, nb, self.k),
                &mut out,
                (nb, false),
                x,
                (self.k, 1),
                &data[n0 * cs..],
                (rs, cs),
                1.0,
            ),
            Data::Quant(q) => q.block(
                xq.expect("the input rounded for a quantized weight"),
                n0,
                nb,
                &mut out,
            ),
        }
        if let Some(b) = bias {
            let b = &b[n0..n0 + nb];
            for row in out.chunks_exact_mut(nb) {
                for (o, b) in row.iter_mut().zip(b) {
                    *o += b;
                }
            }
        }
        out
    }
}

/// `x` rounded to Q8_0 blocks once for all the tasks of a pass, when a quantized weight reads it.
fn rounded(x: &[f32], m: usize, weights: &[&Weight<'_>]) -> Option<QuantRows> {
    weights
        .iter()
        .find(|w| matches!(w.data, Data::Quant(_)))
        .map(|w| QuantRows::of(x, m, w.k))
}

/// A projection: its weight and optional bias `[n]`.
pub type Linear<'a> = (Weight<'a>, Option<&'a [f32]>);

/// Column blocks `(which, first column, columns)` of every weight.
fn blocks(ns: impl Iterator<Item = usize>) -> Vec<(usize, usize, usize)> {
    ns.enumerate()
        .flat_map(|(i, n)| {
            (0..n)
                .step_by(COLS)
                .map(move |n0| (i, n0, COLS.min(n - n0)))
        })
        .collect()
}

/// Copies each block `[m × nb]` into its columns of its output `[m × n]`.
fn scatter(m: usize, tasks: &[(usize, usize, usize)], parts: Vec<Vec<f32>>, outs: &mut [Vec<f32>]) {
    for (&(i, n0, nb), part) in tasks.iter().zip(parts) {
        let n = outs[i].len() / m;
        for r in 0..m {
            outs[i][r * n + n0..r * n + n0 + nb].copy_from_slice(&part[r * nb..(r + 1) * nb]);
        }
    }
}

/// Rows of an `f32` weight per task when a few rows are multiplied by it (see
/// [`by_depth`]): 64 rows of a 576-wide weight are 144 KiB read front to back.
const DEPTH: usize = 64;

/// Whether `w` is multiplied by slices of its depth: a row-major `f32` weight times at most 4
/// rows. Column blocks of such a weight are short runs at a stride of its width, which the
/// memory system streams far worse than whole rows; a slice of the depth is one contiguous run.
fn by_depth(w: &Weight<'_>, m: usize) -> bool {
    m <= 4 && w.k >= 2 * DEPTH && matches!(w.data, Data::F32 { cs: 1, .. })
}

/// [`linears`] by slices of the depth: every projection's slices of `DEPTH` rows in one parallel
/// pass, each task's partial product `[m × n]` then added in slice order (so the sums do not
/// depend on the thread count either).
fn linears_by_depth(
    team: &mut Team,
    x: &[f32],
    m: usize,
    projections: &[Linear<'_>],
) -> Vec<Vec<f32>> {
    let tasks: Vec<(usize, usize, usize)> = projections
        .iter()
        .enumerate()
        .flat_map(|(i, (w, _))| {
            (0..w.k)
                .step_by(DEPTH)
                .map(move |k0| (i, k0, DEPTH.min(w.k - k0)))
        })
        .collect();
    let parts: Vec<Vec<f32>> = team.map(tasks.len(), |t| {
        let (i, k0, kb) = tasks[t];
        let w = &projections[i].0;
        let Data::F32 { data, rs, .. } = w.data else {
            unreachable!("by_depth admits f32 weights only")
        };
        let mut out = vec![0.0f32; m * w.n];
        matmul(
            (m, w.n, kb),
            &mut out,
            (w.n, false),
            &x[k0..],
            (w.k, 1),
            &data[k0 * rs..],
            (rs, 1),
            1.0,
        );
        out
    });
    let mut outs: Vec<Vec<f32>> = projections
        .iter()
        .map(|(w, b)| match b {
            Some(b) => (0..m).flat_map(|_| b.iter().copied()).collect(),
            None => vec![0.0f32; m * w.n],
        })
        .collect();
    for (&(i, _, _), part) in tasks.iter().zip(parts) {
        for (o, p) in outs[i].iter_mut().zip(part) {
            *o += p;
        }
    }
    outs
}

/// `x[m × k] · w + b` for every projection at once (they share the input), the column blocks of
/// all of them in one parallel pass. Returns one `[m × n]` output per projection.
pub fn linears(team: &mut Team, x: &[f32], m: usize, projections: &[Linear<'_>]) -> Vec<Vec<f32>> {
    for (w, b) in projections {
        assert_eq!(x.len(), m * w.k, "linear: input is not [{m}, {}]", w.k);
        assert!(b.is_none_or(|b| b.len() == w.n), "linear: bias size");
    }
    if projections.iter().all(|(w, _)| by_depth(w, m)) {
        return linears_by_depth(team, x, m, projections);
    }
    let tasks = blocks(projections.iter().map(|(w, _)| w.n));
    let weights: Vec<&Weight<'_>> = projections.iter().map(|(w, _)| w).collect();
    let xq = rounded(x, m, &weights);
    let parts: Vec<Vec<f32>> = team.map(tasks.len(), |t| {
        let (i, n0, nb) = tasks[t];
        projections[i]
            .0
            .block((x, xq.as_ref()), m, n0, nb, projections[i].1)
    });
    let mut outs: Vec<Vec<f32>> = projections
        .iter()
        .map(|(w, _)| vec![0.0f32; m * w.n])
        .collect();
    scatter(m, &tasks, parts, &mut outs);
    outs
}

/// `silu(x · gate) · (x · up)`, `[m × n]`, each column block's two products and activation in
/// one task.
pub fn gated(team: &mut Team, x: &[f32], m: usize, gate: Linear<'_>, up: Linear<'_>) -> Vec<f32> {
    assert_eq!(
        (gate.0.k, gate.0.n),
        (up.0.k, up.0.n),
        "gated: gate and up differ in shape"
    );
    assert_eq!(x.len(), m * gate.0.k, "gated: input size");
    if by_depth(&gate.0, m) && by_depth(&up.0, m) {
        let mut gu = linears_by_depth(team, x, m, &[gate, up]).into_iter();
        let (g, u) = (gu.next().unwrap_or_default(), gu.next().unwrap_or_default());
        let mut out = vec![0.0f32; m * gate.0.n];
        swiglu_chunk(&g, &u, &mut out);
        return out;
    }
    let tasks = blocks(std::iter::once(gate.0.n));
    let xq = rounded(x, m, &[&gate.0, &up.0]);
    let parts: Vec<Vec<f32>> = team.map(tasks.len(), |t| {
        let (_, n0, nb) = tasks[t];
        let g = gate.0.block((x, xq.as_ref()), m, n0, nb, gate.1);
        let u = up.0.block((x, xq.as_ref()), m, n0, nb, up.1);
        let mut out = vec![0.0f32; m * nb];
        swiglu_chunk(&g, &u, &mut out);
        out
    });
    let mut out = vec![vec![0.0f32; m * gate.0.n]];
    scatter(m, &tasks, parts, &mut out);
    out.pop().unwrap_or_default()
}

simd! {
    /// `out = log_softmax(x)`; returns the entropy `-Σ p log p` (nats) of the distribution. The
    /// sums are kept in sixteen lanes added in a fixed order.
    pub fn log_softmax_entropy(x: &[f32], out: &mut [f32]) -> f32 {
        assert_eq!(x.len(), out.len(), "log_softmax: sizes");
        if x.is_empty() {
            return 0.0;
        }
        let max = lane_max(x);
        for (o, &v) in out.iter_mut().zip(x) {
            *o = exp(v - max);
        }
        let sum = lane_sum(out);
        // With p = e / Σe and lse = max + ln Σe: log p = x - lse, entropy = lse - Σ p x.
        let mut acc = [0.0f32; LANES];
        let (ce, cx) = (out.chunks_exact(LANES), x.chunks_exact(LANES));
        let tail: f32 = ce.remainder().iter().zip(cx.remainder()).map(|(e, v)| e * (v - max)).sum();
        for (e, v) in ce.zip(cx) {
            for l in 0..LANES {
                acc[l] += e[l] * (v[l] - max);
            }
        }
        let dot = (acc.iter().sum::<f32>() + tail) / sum;
        let log_sum = sum.ln();
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v - max - log_sum;
        }
        (log_sum - dot).max(0.0)
    }
}

/// `x · cos + rotate_half(x) · sin` of one head's `d` values, in place.
pub fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    assert!(
        cos.len() == x.len() && sin.len() == x.len(),
        "rotate: sizes"
    );
    rope_in_place(x, cos, sin);
}

/// The sizes of a key/value cache, per layer: keys `[batch, kv_heads, head_dim, capacity]`
/// (transposed, so the scores of one query against every key are one pass along contiguous
/// keys) and values `[batch, kv_heads, capacity, head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub capacity: usize,
}

impl CacheShape {
    /// Values in one layer's keys (or values).
    pub fn len(&self) -> usize {
        self.batch * self.kv_heads * self.capacity * self.head_dim
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes one position's key and value of row `r`, key/value head `g`.
    pub fn write(
        &self,
        (k, v): (&mut [f32], &mut [f32]),
        (r, g, position): (usize, usize, usize),
        (key, value): (&[f32], &[f32]),
    ) {
        let (d, cap) = (self.head_dim, self.capacity);
        assert!(
            position < cap,
            "cache: position {position} past its capacity {cap}"
        );
        debug_assert!(cap.is_multiple_of(KEY_BLOCK));
        let slab = (r * self.kv_heads + g) * d * cap;
        for (e, &x) in key.iter().enumerate() {
            k[slab + e * cap + position] = x;
        }
        v[slab + position * d..slab + (position + 1) * d].copy_from_slice(value);
    }
}

/// The new tokens of a step, for [`cached_attention`] to rotate and write into the cache: keys and
/// values `[b, s, kv_heads·d]` as projected, and each token's rotary tables `(cos, sin)` of
/// `head_dim` values, in token order (`b · s` of them).
pub struct Fresh<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub rope: &'a [(&'a [f32], &'a [f32])],
}

/// Attention of `s` new tokens per row over the cache, after `past` earlier positions.
///
/// `q: [b, s, h·d]`; `k, v`: the cache; `bias: [b, past + s]` (0 for a real key, a large negative
/// number for padding) or `None`. With `fresh`, each row's task first rotates its queries and
/// keys and writes its keys and values into the cache (rows own disjoint parts of it); without,
/// `q` is rotated and the cache holds the new tokens already. New token `i` sees keys
/// `0..=past + i` (causal). Returns `[b, s, h·d]`, ready for the output projection.
#[allow(clippy::too_many_arguments)]
pub fn cached_attention(
    team: &mut Team,
    q: &[f32],
    (k, v): (&mut [f32], &mut [f32]),
    fresh: Option<Fresh<'_>>,
    shape: CacheShape,
    s: usize,
    past: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let CacheShape {
        batch,
        heads,
        kv_heads,
        head_dim: d,
        capacity,
    } = shape;
    let t = past + s;
    let row = heads * d;
    assert!(
        kv_heads > 0 && heads.is_multiple_of(kv_heads),
        "attention: heads must be a multiple of kv_heads"
    );
    assert!(
        t <= capacity,
        "attention: more positions than the cache holds"
    );
    assert!(
        capacity.is_multiple_of(KEY_BLOCK),
        "attention: the capacity must be a multiple of {KEY_BLOCK}"
    );
    assert_eq!(q.len(), batch * s * row, "attention: q has the wrong size");
    assert!(
        k.len() == shape.len() && v.len() == k.len(),
        "attention: the cache has the wrong size"
    );
    assert!(
        bias.is_none_or(|b| b.len() == batch * t),
        "attention: bias has the wrong size"
    );
    if let Some(f) = &fresh {
        let new = batch * s * kv_heads * d;
        assert!(
            f.k.len() == new && f.v.len() == new && f.rope.len() == batch * s,
            "attention: the new keys, values or rotary tables have the wrong size"
        );
    }
    let slab = kv_heads * capacity * d;
    let scale = 1.0 / (d as f32).sqrt();
    // Each row's task takes its own part of the cache (uncontended: one task per row).
    let slabs: Vec<Mutex<(&mut [f32], &mut [f32])>> = k
        .chunks_exact_mut(slab)
        .zip(v.chunks_exact_mut(slab))
        .map(Mutex::new)
        .collect();
    let one = CacheShape { batch: 1, ..shape };
    let rows = team.map(batch, |r| {
        let mut cache = slabs[r].lock().unwrap_or_else(|e| e.into_inner());
        let (kr, vr) = &mut *cache;
        let mut qr = q[r * s * row..(r + 1) * s * row].to_vec();
        if let Some(f) = &fresh {
            let mut key = vec![0.0f32; d];
            for i in 0..s {
                let tok = r * s + i;
                let (cos, sin) = f.rope[tok];
                for head in qr[i * row..(i + 1) * row].chunks_exact_mut(d) {
                    rotate(head, cos, sin);
                }
                for g in 0..kv_heads {
                    let from = (tok * kv_heads + g) * d;
                    key.copy_from_slice(&f.k[from..from + d]);
                    rotate(&mut key, cos, sin);
                    one.write((kr, vr), (0, g, past + i), (&key, &f.v[from..from + d]));
                }
            }
        }
        let keys = Keys {
            k: kr,
            v: vr,
            bias: bias.map(|b| &b[r * t..(r + 1) * t]),
            capacity,
            d,
            group: heads / kv_heads,
            row,
        };
        let mut out = vec![0.0f32; s * row];
        attend_row(&qr, &keys, past, scale, &mut out);
        out
    });
    rows.concat()
}

/// One batch row's cache.
struct Keys<'a> {
    /// `[kv_heads, d, capacity]`
    k: &'a [f32],
    /// `[kv_heads, capacity, d]`
    v: &'a [f32],
    bias: Option<&'a [f32]>,
    capacity: usize,
    d: usize,
    /// Query heads per key/value head.
    group: usize,
    /// Values of one token's queries: heads · d.
    row: usize,
}

/// Keys scored together: one vector register of accumulators. The cache's capacity is a multiple
/// of it, so a block never reads past its row.
pub const KEY_BLOCK: usize = 16;

simd! {
    fn attend_row(q: &[f32], keys: &Keys<'_>, past: usize, scale: f32, out: &mut [f32]) {
        let (d, cap) = (keys.d, keys.capacity);
        let mut p = vec![0.0f32; cap];
        for (i, (qi, oi)) in q.chunks_exact(keys.row).zip(out.chunks_exact_mut(keys.row)).enumerate() {
            let n = past + i + 1;
            let blocks = n.div_ceil(KEY_BLOCK);
            for (h, (qh, oh)) in qi.chunks_exact(d).zip(oi.chunks_exact_mut(d)).enumerate() {
                let base = (h / keys.group) * cap * d;
                let (kh, vh) = (&keys.k[base..base + d * cap], &keys.v[base..base + n * d]);
                // Scores of a block of keys in registers: acc += (q[e] · scale) · k[e, block], in
                // four independent sums (e mod 4) so the additions do not wait on each other.
                // Keys past `n` in the last block are computed and ignored.
                for (b, pb) in p.chunks_exact_mut(KEY_BLOCK).take(blocks).enumerate() {
                    let key = |e: usize| &kh[e * cap + b * KEY_BLOCK..e * cap + (b + 1) * KEY_BLOCK];
                    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; KEY_BLOCK], [0.0f32; KEY_BLOCK], [0.0f32; KEY_BLOCK], [0.0f32; KEY_BLOCK]);
                    let mut e = 0;
                    while e + 4 <= d {
                        let (q0, q1, q2, q3) = (qh[e] * scale, qh[e + 1] * scale, qh[e + 2] * scale, qh[e + 3] * scale);
                        let (k0, k1, k2, k3) = (key(e), key(e + 1), key(e + 2), key(e + 3));
                        for l in 0..KEY_BLOCK {
                            a0[l] += q0 * k0[l];
                            a1[l] += q1 * k1[l];
                            a2[l] += q2 * k2[l];
                            a3[l] += q3 * k3[l];
                        }
                        e += 4;
                    }
                    for (e, &qe) in qh.iter().enumerate().skip(e) {
                        let (qe, kr) = (qe * scale, key(e));
                        for l in 0..KEY_BLOCK {
                            a0[l] += qe * kr[l];
                        }
                    }
                    for l in 0..KEY_BLOCK {
                        pb[l] = (a0[l] + a1[l]) + (a2[l] + a3[l]);
                    }
                }
                let p = &mut p[..n];
                if let Some(b) = keys.bias {
                    for (pj, bj) in p.iter_mut().zip(b) {
                        *pj += bj;
                    }
                }
                let max = lane_max(p);
                for pj in p.iter_mut() {
                    *pj = exp(*pj - max);
                }
                let inv = 1.0 / lane_sum(p);
                // out = Σ p[j] v[j] / Σ p, sixteen dimensions at a time in registers, in four
                // independent sums (j mod 4).
                let mut c = 0;
                while c + LANES <= d {
                    let value = |j: usize| &vh[j * d + c..j * d + c + LANES];
                    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
                    let mut j = 0;
                    while j + 4 <= n {
                        let (v0, v1, v2, v3) = (value(j), value(j + 1), value(j + 2), value(j + 3));
                        for l in 0..LANES {
                            a0[l] += p[j] * v0[l];
                            a1[l] += p[j + 1] * v1[l];
                            a2[l] += p[j + 2] * v2[l];
                            a3[l] += p[j + 3] * v3[l];
                        }
                        j += 4;
                    }
                    for (j, &pj) in p.iter().enumerate().skip(j) {
                        let vr = value(j);
                        for l in 0..LANES {
                            a0[l] += pj * vr[l];
                        }
                    }
                    for l in 0..LANES {
                        oh[c + l] = ((a0[l] + a1[l]) + (a2[l] + a3[l])) * inv;
                    }
                    c += LANES;
                }
                if c < d {
                    oh[c..].fill(0.0);
                    for (&pj, vj) in p.iter().zip(vh.chunks_exact(d)) {
                        for (o, &x) in oh[c..].iter_mut().zip(&vj[c..]) {
                            *o += pj * x;
                        }
                    }
                    for o in &mut oh[c..] {
                        *o *= inv;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn reference_product(x: &[f32], m: usize, w: &[f32], k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for r in 0..m {
            for j in 0..n {
                out[r * n + j] = (0..k)
                    .map(|i| x[r * k + i] as f64 * w[i * n + j] as f64)
                    .sum();
            }
        }
        out
    }

    fn close(a: &[f32], b: &[f64], tol: f64, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: sizes");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (*x as f64 - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn products_by_column_blocks_match_the_reference() {
        // 300 columns: whole blocks and a ragged one; one and five rows.
        let (k, n) = (40, 300);
        let w = random(k * n, 1);
        let wt: Vec<f32> = (0..n * k).map(|idx| w[(idx % k) * n + idx / k]).collect();
        let bias = random(n, 2);
        for m in [1, 5] {
            let x = random(m * k, 3 + m as u64);
            let mut want = reference_product(&x, m, &w, k, n);
            let out = linears(
                &mut Team::new(2),
                &x,
                m,
                &[
                    (Weight::rows(&w, k, n), None),
                    (Weight::transposed(&wt, k, n), None),
                    (Weight::rows(&w, k, n), Some(&bias)),
                ],
            );
            close(&out[0], &want, 1e-5, "rows");
            close(&out[1], &want, 1e-5, "transposed");
            for (i, y) in want.iter_mut().enumerate() {
                *y += bias[i % n] as f64;
            }
            close(&out[2], &want, 1e-5, "with bias");
        }
        // A deep weight times one to four rows goes by slices of its depth (a ragged last one).
        let (k, n) = (300, 150);
        let w = random(k * n, 7);
        let bias = random(n, 8);
        for m in [1, 4] {
            let x = random(m * k, 9 + m as u64);
            let mut want = reference_product(&x, m, &w, k, n);
            let out = linears(
                &mut Team::new(2),
                &x,
                m,
                &[
                    (Weight::rows(&w, k, n), None),
                    (Weight::rows(&w, k, n), Some(&bias)),
                ],
            );
            close(&out[0], &want, 1e-5, "by depth");
            for (i, y) in want.iter_mut().enumerate() {
                *y += bias[i % n] as f64;
            }
            close(&out[1], &want, 1e-5, "by depth, with bias");
            // The same sums whatever the thread count.
            let one = linears(&mut Team::new(1), &x, m, &[(Weight::rows(&w, k, n), None)]);
            assert_eq!(one[0], out[0]);
        }
    }

    #[test]
    fn log_softmax_and_entropy_match_the_formula() {
        for n in [1, 7, 16, 2051] {
            let x: Vec<f32> = random(n, 10 + n as u64).iter().map(|v| v * 12.0).collect();
            let mut out = vec![0.0f32; n];
            let entropy = log_softmax_entropy(&x, &mut out);
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            let want: Vec<f64> = x.iter().map(|&v| v as f64 - lse).collect();
            close(&out, &want, 1e-5, "log_softmax");
            let h: f64 = -want.iter().map(|lp| lp.exp() * lp).sum::<f64>();
            close(&[entropy], &[h], 1e-4, "entropy");
        }
    }

    #[test]
    fn the_gated_product_is_silu_times_up() {
        for (m, k, n) in [(3, 24, 200), (2, 200, 96)] {
            gated_case(m, k, n);
        }
    }

    fn gated_case(m: usize, k: usize, n: usize) {
        let (x, wg, wu) = (random(m * k, 4), random(k * n, 5), random(k * n, 6));
        let g = reference_product(&x, m, &wg, k, n);
        let u = reference_product(&x, m, &wu, k, n);
        let want: Vec<f64> = g
            .iter()
            .zip(&u)
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        let out = gated(
            &mut Team::new(2),
            &x,
            m,
            (Weight::rows(&wg, k, n), None),
            (Weight::rows(&wu, k, n), None),
        );
        close(&out, &want, 1e-5, "gated");
    }

    #[test]
    fn cached_attention_is_causal_grouped_and_masked() {
        // Head sizes below, at and between multiples of the sixteen register lanes.
        for head_dim in [8, 32, 40] {
            attention_case(head_dim);
        }
    }

    fn attention_case(head_dim: usize) {
        let shape = CacheShape {
            batch: 2,
            heads: 4,
            kv_heads: 2,
            head_dim,
            capacity: 16,
        };
        let (past, s) = (3, 2);
        let t = past + s;
        let d = shape.head_dim;
        let q = random(shape.batch * s * shape.heads * d, 7);
        let slab = shape.kv_heads * shape.capacity * d;
        let k = random(shape.batch * slab, 8);
        let v = random(shape.batch * slab, 9);
        // Row 1's first key is padding.
        let mut bias = vec![0.0f32; shape.batch * t];
        bias[t] = -1.0e9;
        let out = cached_attention(
            &mut Team::new(2),
            &q,
            (&mut k.clone(), &mut v.clone()),
            None,
            shape,
            s,
            past,
            Some(&bias),
        );
        let mut want = vec![0.0f64; out.len()];
        for r in 0..shape.batch {
            for i in 0..s {
                for h in 0..shape.heads {
                    let g = h / (shape.heads / shape.kv_heads);
                    let qh = &q[((r * s + i) * shape.heads + h) * d..][..d];
                    let slab_of = r * slab + g * shape.capacity * d;
                    let key = |j: usize, e: usize| slab_of + e * shape.capacity + j;
                    let value = |j: usize, e: usize| slab_of + j * d + e;
                    let seen: Vec<usize> =
                        (0..=past + i).filter(|&j| bias[r * t + j] == 0.0).collect();
                    let scores: Vec<f64> = seen
                        .iter()
                        .map(|&j| {
                            (0..d)
                                .map(|e| qh[e] as f64 * k[key(j, e)] as f64)
                                .sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let total: f64 = scores.iter().map(|x| (x - max).exp()).sum();
                    for e in 0..d {
                        want[((r * s + i) * shape.heads + h) * d + e] = seen
                            .iter()
                            .zip(&scores)
                            .map(|(&j, x)| (x - max).exp() / total * v[value(j, e)] as f64)
                            .sum();
                    }
                }
            }
        }
        close(
            &out,
            &want,
            1e-5,
            &format!("attention, head_dim {head_dim}"),
        );
    }
}
