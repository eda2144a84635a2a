//! Fused CPU kernels for training on plain `f32` slices: the dense projection, causal
//! grouped-query attention with rotary embeddings, SwiGLU, log-softmax, the target's
//! log-probability (cross-entropy) and RMSNorm, each with its backward pass.
//!
//! burn composes these from a dozen element-wise operations each, every one a pass over memory
//! with its own buffer, most on one core. Here each is one or two passes, split across cores with
//! rayon in fixed chunks (so the result does not depend on how many threads there are or which
//! thread ran what), the products going to `gemm` and the exponentials to a polynomial that the
//! compiler vectorises. `fused.rs` wires them into burn's autodiff graph; the tests below check each
//! against a plain reference written from the textbook formula.
//!
//! One of the two library modules that use `unsafe` (the other is `model/team.rs`, the decoder's
//! threads; the binary's allocator setting, `src/allocator.rs`, is outside the libraries). Here
//! it is in three places, each with its reason: the calls into `gemm` (raw pointers and strides,
//! checked against the slices first; in [`product`], into a reserved buffer whose length is set
//! after `gemm` has written it), [`par_new`] (each task initialises its part of a reserved buffer
//! before using it) and the calls into the copies of a loop compiled for AVX-512 or AVX2 (made
//! only after the CPU says it has them).
#![allow(unsafe_code)]

use rayon::prelude::*;

/// `exp(x)` for `x <= 88`, within 2 ulp for the inputs softmax and SiLU give it (Cody-Waite
/// reduction to `r` in `[-ln2/2, ln2/2]`, a degree-6 polynomial, then `2^n` built in the exponent
/// bits). Large negative inputs give tiny positive numbers, never zero: callers mask explicitly.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const SHIFT: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to the nearest integer
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + SHIFT) - SHIFT;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    f32::from_bits(((n as i32 + 127) << 23) as u32) * p
}

/// Lanes of the reductions below: sums kept in 16 independent accumulators, so the compiler
/// vectorises them (a single running sum is a chain it must keep in order); the lanes are then
/// added in a fixed order, so the result is the same on every run.
const LANES: usize = 16;

#[inline(always)]
fn lane_sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

/// Runs `$body` compiled for AVX-512 or AVX2+FMA when the CPU has them (chosen at run time),
/// else for the baseline: the element-wise loops below are written to vectorise.
macro_rules! simd {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `v4` is compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `v3` is compiled for.
                    return unsafe { v3($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// How many elements a `rows × cols` operand at row stride `rs` and column stride `cs` spans.
fn reach(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// One matrix product through `gemm`, on one thread (the callers split work across threads):
/// `dst[m×n] (+)= alpha · lhs[m×k] · rhs[k×n]`, each operand given by its row and column strides
/// in elements, so transposed and strided views need no copy. Panics (before touching memory) if
/// a stride would reach outside its slice.
#[allow(clippy::too_many_arguments)]
fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    (dst_rs, accumulate): (usize, bool),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    alpha: f32,
) {
    assert!(reach(m, n, dst_rs, 1) <= dst.len(), "matmul: dst too short");
    assert!(
        reach(m, k, lhs_rs, lhs_cs) <= lhs.len(),
        "matmul: lhs too short"
    );
    assert!(
        reach(k, n, rhs_rs, rhs_cs) <= rhs.len(),
        "matmul: rhs too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every index gemm forms inside its slice; `dst` is borrowed
    // mutably and does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Products below this many multiply-adds run on one thread: splitting them costs more than it
/// saves (the same threshold as burn-flex's).
const PARALLEL_PRODUCT: usize = 192 * 192 * 192;

/// `lhs[m×k] · rhs[k×n]` into a new row-major `m×n` buffer, each operand given by its row and
/// column strides (so transposed views need no copy), split across rayon's threads by `gemm`.
///
/// The buffer is never zeroed or copied first: `gemm` writes each element once (with `read_dst`
/// off it does not read the destination). burn-flex's product zeroes a byte buffer and copies it
/// to an aligned one before multiplying, two passes on one core while the other waits; for the
/// training step's 30-odd products that was about 7% of the step. Each element's sum runs over
/// `k` in the same order whatever the thread count (`gemm` splits rows and columns, not depth).
pub fn product(
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) -> Vec<f32> {
    assert!(
        reach(m, k, lhs_rs, lhs_cs) <= lhs.len(),
        "product: lhs too short"
    );
    assert!(
        reach(k, n, rhs_rs, rhs_cs) <= rhs.len(),
        "product: rhs too short"
    );
    let len = m.checked_mul(n).expect("product: size overflows");
    if k == 0 || len == 0 {
        return vec![0.0; len];
    }
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_PRODUCT {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let mut out = Vec::<f32>::with_capacity(len);
    // SAFETY: the asserts above keep every index gemm forms inside the input slices; the output
    // pointer addresses `len` reserved elements, written (never read, `read_dst` is false) at
    // row stride `n`, column stride 1; only then is the length set, so no uninitialised value is
    // ever visible (a panic inside gemm leaves the vector empty).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(len);
    }
    out
}

/// `x[rows×d_in] · w[d_in×d_out]`, row-major.
pub fn linear_forward(x: &[f32], w: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    assert!(
        d_in > 0 && x.len().is_multiple_of(d_in) && w.len() == d_in * d_out,
        "linear: x is not [rows, {d_in}] or w is not [{d_in}, {d_out}]"
    );
    product((x.len() / d_in, d_out, d_in), x, (d_in, 1), w, (d_out, 1))
}

/// The gradients of [`linear_forward`] from the output's gradient `dy[rows×d_out]`:
/// `dx = dy · wᵀ` and `dw = xᵀ · dy`, each only when asked for.
pub fn linear_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    (d_in, d_out): (usize, usize),
    (want_dx, want_dw): (bool, bool),
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let rows = x.len() / d_in.max(1);
    assert_eq!(dy.len(), rows * d_out, "linear: dy has the wrong size");
    let dx = want_dx.then(|| product((rows, d_in, d_out), dy, (d_out, 1), w, (1, d_out)));
    let dw = want_dw.then(|| product((d_in, d_out, rows), x, (1, d_in), dy, (d_out, 1)));
    (dx, dw)
}

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    fn q_row(&self) -> usize {
        self.heads * self.head_dim
    }
    fn kv_row(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// One packed row of the projections: `q`, then `k`, then `v`.
    fn row(&self) -> usize {
        self.q_row() + 2 * self.kv_row()
    }

    /// Panics unless the inputs have this shape's sizes.
    fn check(&self, qkv: &[f32], cos: &[f32], sin: &[f32]) {
        let (rows, table) = (self.batch * self.seq, self.seq * self.head_dim);
        assert!(
            self.kv_heads > 0 && self.heads.is_multiple_of(self.kv_heads),
            "attention: heads must be a multiple of kv_heads"
        );
        assert_eq!(
            qkv.len(),
            rows * self.row(),
            "attention: qkv has the wrong size"
        );
        assert_eq!(cos.len(), table, "attention: cos has the wrong size");
        assert_eq!(sin.len(), table, "attention: sin has the wrong size");
    }
}

/// `x · cos + rotate_half(x) · sin` for one row of `d` values (Hugging Face's pairing), in place.
#[inline(always)]
fn rope_in_place(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at_mut(half);
    for i in 0..half {
        let (a, b) = (x1[i], x2[i]);
        x1[i] = a * cos[i] - b * sin[i];
        x2[i] = b * cos[i + half] + a * sin[i + half];
    }
}

/// [`rope_in_place`] of `x` into `out`.
#[inline(always)]
fn rope_row(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    out.copy_from_slice(x);
    rope_in_place(out, cos, sin);
}

/// The transpose of [`rope_row`], added into `out`: the gradient of the input from that of the
/// output.
#[inline(always)]
fn rope_row_backward(dy: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = dy.len() / 2;
    for i in 0..half {
        out[i] += dy[i] * cos[i] + dy[i + half] * sin[i + half];
        out[i + half] += dy[i + half] * cos[i + half] - dy[i] * sin[i];
    }
}

/// One head's `[seq, d]` slab out of `[seq, row]`, rotated.
fn gather_rope(x: &[f32], row: usize, off: usize, cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let d = out.len() / (x.len() / row);
    for t in 0..x.len() / row {
        rope_row(
            &x[t * row + off..t * row + off + d],
            &cos[t * d..(t + 1) * d],
            &sin[t * d..(t + 1) * d],
            &mut out[t * d..(t + 1) * d],
        );
    }
}

simd! {
    /// Row `t` of causal softmax in place: `p[j] = softmax(scale · s[0..=t])`, `p[j > t] = 0`.
    fn softmax_causal_rows(p: &mut [f32], seq: usize, scale: f32) {
        for t in 0..seq {
            let row = &mut p[t * seq..(t + 1) * seq];
            let (live, dead) = row.split_at_mut(t + 1);
            let max = lane_max(live);
            for v in live.iter_mut() {
                *v = exp((*v - max) * scale);
            }
            let inv = 1.0 / lane_sum(live);
            for v in live.iter_mut() {
                *v *= inv;
            }
            dead.fill(0.0);
        }
    }
}

simd! {
    /// `ds = p · (dp - rowsum(p · dp)) · scale` over the causal rows, in place in `dp`.
    fn softmax_causal_backward_rows(p: &[f32], dp: &mut [f32], seq: usize, scale: f32) {
        for t in 0..seq {
            let pr = &p[t * seq..t * seq + t + 1];
            let dr = &mut dp[t * seq..(t + 1) * seq];
            let dot = lane_dot(pr, &dr[..=t]);
            for j in 0..=t {
                dr[j] = pr[j] * (dr[j] - dot) * scale;
            }
            dr[t + 1..].fill(0.0);
        }
    }
}

/// Causal grouped-query attention with rotary embeddings, forward.
///
/// `qkv: [b, s, (h + 2·kvh)·d]` is the packed output of one projection, each row `q` (`h·d`
/// values), then `k` and `v` (`kvh·d` each), before the rotation; `cos, sin: [s, d]`. Each head
/// is read from its columns by row stride, so the packed tensor is never split or copied. Returns
/// the output `[b, s, h·d]` (ready for the output projection) and, with `keep_probs`, the
/// attention probabilities `[b, h, s, s]` the backward pass needs; without, each task reuses one
/// `[s, s]` buffer.
pub fn attention_forward(
    qkv: &[f32],
    (cos, sin): (&[f32], &[f32]),
    shape: AttnShape,
    scale: f32,
    keep_probs: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    shape.check(qkv, cos, sin);
    let AttnShape {
        batch,
        seq,
        heads,
        kv_heads,
        head_dim: d,
    } = shape;
    let (qr, r) = (shape.q_row(), shape.row());
    let (k_at, v_at) = (qr, qr + shape.kv_row());
    let group = heads / kv_heads;
    // One batch row: `probs` is either its `[h, s, s]` share of the kept probabilities or one
    // `[s, s]` scratch buffer that every head overwrites.
    let attend = |b: usize, out: &mut [f32], probs: &mut [f32]| {
        let per_head = if keep_probs { seq * seq } else { 0 };
        let x = &qkv[b * seq * r..(b + 1) * seq * r];
        let mut qh = vec![0.0f32; seq * d];
        let mut kh = vec![0.0f32; seq * d];
        for kv in 0..kv_heads {
            gather_rope(x, r, k_at + kv * d, cos, sin, &mut kh);
            for g in 0..group {
                let h = kv * group + g;
                gather_rope(x, r, h * d, cos, sin, &mut qh);
                let p = &mut probs[h * per_head..h * per_head + seq * seq];
                // s = q kᵀ (scaled inside the softmax)
                matmul(
                    (seq, seq, d),
                    p,
                    (seq, false),
                    &qh,
                    (d, 1),
                    &kh,
                    (1, d),
                    1.0,
                );
                softmax_causal_rows(p, seq, scale);
                // out_h = p v, written straight into its columns of `out`
                matmul(
                    (seq, d, seq),
                    &mut out[h * d..],
                    (qr, false),
                    p,
                    (seq, 1),
                    &x[v_at + kv * d..],
                    (r, 1),
                    1.0,
                );
            }
        }
    };
    let len = batch * seq * qr;
    if keep_probs {
        let (out, probs) = par_new2(
            (len, seq * qr),
            (batch * heads * seq * seq, heads * seq * seq),
            attend,
        );
        (out, Some(probs))
    } else {
        let out = par_new(len, seq * qr, |b, out| {
            attend(b, out, &mut vec![0.0f32; seq * seq])
        });
        (out, None)
    }
}

/// The gradient of [`attention_forward`]'s packed input, `dqkv` (laid out as `qkv`), from the
/// output's `dout`.
pub fn attention_backward(
    qkv: &[f32],
    (cos, sin): (&[f32], &[f32]),
    probs: &[f32],
    dout: &[f32],
    shape: AttnShape,
    scale: f32,
) -> Vec<f32> {
    shape.check(qkv, cos, sin);
    let AttnShape {
        batch,
        seq,
        heads,
        kv_heads,
        head_dim: d,
    } = shape;
    let (qr, r) = (shape.q_row(), shape.row());
    let (k_at, v_at) = (qr, qr + shape.kv_row());
    assert_eq!(
        dout.len(),
        batch * seq * qr,
        "attention backward: dout has the wrong size"
    );
    assert_eq!(
        probs.len(),
        batch * heads * seq * seq,
        "attention backward: probs have the wrong size"
    );
    let group = heads / kv_heads;
    let mut dqkv = vec![0.0f32; qkv.len()];
    dqkv.par_chunks_mut(seq * r)
        .enumerate()
        .for_each(|(b, dx)| {
            let x = &qkv[b * seq * r..(b + 1) * seq * r];
            let dout = &dout[b * seq * qr..(b + 1) * seq * qr];
            let probs = &probs[b * heads * seq * seq..(b + 1) * heads * seq * seq];
            let mut qh = vec![0.0f32; seq * d];
            let mut kh = vec![0.0f32; seq * d];
            let mut dqh = vec![0.0f32; seq * d];
            let mut dkh = vec![0.0f32; seq * d];
            let mut ds = vec![0.0f32; seq * seq];
            for kv in 0..kv_heads {
                gather_rope(x, r, k_at + kv * d, cos, sin, &mut kh);
                for g in 0..group {
                    let h = kv * group + g;
                    let first = g == 0;
                    gather_rope(x, r, h * d, cos, sin, &mut qh);
                    let p = &probs[h * seq * seq..(h + 1) * seq * seq];
                    let dout_h = &dout[h * d..];
                    // dv += pᵀ dout
                    matmul(
                        (seq, d, seq),
                        &mut dx[v_at + kv * d..],
                        (r, !first),
                        p,
                        (1, seq),
                        dout_h,
                        (qr, 1),
                        1.0,
                    );
                    // dp = dout vᵀ, then ds = p (dp - rowsum(p dp)) scale
                    matmul(
                        (seq, seq, d),
                        &mut ds,
                        (seq, false),
                        dout_h,
                        (qr, 1),
                        &x[v_at + kv * d..],
                        (1, r),
                        1.0,
                    );
                    softmax_causal_backward_rows(p, &mut ds, seq, scale);
                    // dq (rotated) = ds k ; dk (rotated) += dsᵀ q
                    matmul(
                        (seq, d, seq),
                        &mut dqh,
                        (d, false),
                        &ds,
                        (seq, 1),
                        &kh,
                        (d, 1),
                        1.0,
                    );
                    matmul(
                        (seq, d, seq),
                        &mut dkh,
                        (d, !first),
                        &ds,
                        (1, seq),
                        &qh,
                        (d, 1),
                        1.0,
                    );
                    for t in 0..seq {
                        rope_row_backward(
                            &dqh[t * d..(t + 1) * d],
                            &cos[t * d..(t + 1) * d],
                            &sin[t * d..(t + 1) * d],
                            &mut dx[t * r + h * d..t * r + (h + 1) * d],
                        );
                    }
                }
                let at = k_at + kv * d;
                for t in 0..seq {
                    rope_row_backward(
                        &dkh[t * d..(t + 1) * d],
                        &cos[t * d..(t + 1) * d],
                        &sin[t * d..(t + 1) * d],
                        &mut dx[t * r + at..t * r + at + d],
                    );
                }
            }
        });
    dqkv
}

/// Rows per rayon task in the element-wise kernels: enough work to amortise the split, and a
/// fixed split so results do not depend on the thread count.
const CHUNK: usize = 16 * 1024;

simd! {
    fn swiglu_chunk(gate: &[f32], up: &[f32], out: &mut [f32]) {
        for i in 0..out.len() {
            let g = gate[i];
            out[i] = g / (1.0 + exp(-g)) * up[i];
        }
    }
}

simd! {
    fn swiglu_backward_chunk(gate: &[f32], up: &[f32], dout: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
        for i in 0..dout.len() {
            let g = gate[i];
            let sig = 1.0 / (1.0 + exp(-g));
            let silu = g * sig;
            dup[i] = dout[i] * silu;
            dgate[i] = dout[i] * up[i] * sig * (1.0 + g * (1.0 - sig));
        }
    }
}

/// `silu(gate) · up`, element by element.
pub fn swiglu_forward(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "swiglu: gate and up differ in size");
    par_new(gate.len(), CHUNK, |i, o| {
        let r = i * CHUNK..i * CHUNK + o.len();
        swiglu_chunk(&gate[r.clone()], &up[r], o)
    })
}

/// The gradients `(dgate, dup)` of [`swiglu_forward`].
pub fn swiglu_backward(gate: &[f32], up: &[f32], dout: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = gate.len();
    assert!(
        up.len() == n && dout.len() == n,
        "swiglu: gate, up and the gradient differ in size"
    );
    par_new2((n, CHUNK), (n, CHUNK), |i, dg, du| {
        let r = i * CHUNK..i * CHUNK + dg.len();
        swiglu_backward_chunk(&gate[r.clone()], &up[r.clone()], &dout[r], dg, du)
    })
}

simd! {
    fn log_softmax_rows(x: &[f32], out: &mut [f32], n: usize) {
        for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let max = lane_max(xr);
            for (o, &v) in or.iter_mut().zip(xr) {
                *o = exp(v - max);
            }
            let lse = max + lane_sum(or).ln();
            for (o, &v) in or.iter_mut().zip(xr) {
                *o = v - lse;
            }
        }
    }
}

simd! {
    fn log_softmax_backward_rows(y: &[f32], dy: &[f32], dx: &mut [f32], n: usize) {
        for ((yr, dyr), dxr) in y.chunks_exact(n).zip(dy.chunks_exact(n)).zip(dx.chunks_exact_mut(n)) {
            let sum = lane_sum(dyr);
            for i in 0..n {
                dxr[i] = dyr[i] - exp(yr[i]) * sum;
            }
        }
    }
}

fn rows_per_task(n: usize) -> usize {
    CHUNK.div_ceil(n.max(1)).max(1)
}

/// `log_softmax` over the last dimension of length `n`.
pub fn log_softmax_forward(x: &[f32], n: usize) -> Vec<f32> {
    assert!(
        n > 0 && x.len().is_multiple_of(n),
        "log_softmax: bad row length"
    );
    let mut out = vec![0.0f32; x.len()];
    let rows = rows_per_task(n) * n;
    out.par_chunks_mut(rows)
        .zip(x.par_chunks(rows))
        .for_each(|(o, x)| log_softmax_rows(x, o, n));
    out
}

/// The gradient of [`log_softmax_forward`] from its output `y` and the output's gradient `dy`:
/// `dx = dy - softmax(x) · Σ dy`.
pub fn log_softmax_backward(y: &[f32], dy: &[f32], n: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; y.len()];
    let rows = rows_per_task(n) * n;
    dx.par_chunks_mut(rows)
        .zip(y.par_chunks(rows).zip(dy.par_chunks(rows)))
        .for_each(|(dx, (y, dy))| log_softmax_backward_rows(y, dy, dx, n));
    dx
}

/// A new buffer of `len` values written by `fill(index, chunk)` on rayon's threads, chunk by chunk
/// (`chunk` values each, the last shorter). Each task zeroes its own chunk just before `fill` runs,
/// while it is in cache, instead of one core zeroing the whole buffer first.
fn par_new(len: usize, chunk: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| fill(i, zeroed(c)));
    // SAFETY: the chunks cover `0..len` and each was initialised above (had a task panicked,
    // rayon would have re-raised the panic before this line and the vector would drop empty).
    unsafe { out.set_len(len) };
    out
}

/// Zeroes a chunk of reserved memory and hands it out as values.
fn zeroed(c: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    c.fill(std::mem::MaybeUninit::new(0.0));
    // SAFETY: every element of `c` was initialised on the line above, and `MaybeUninit<f32>` has
    // the layout of `f32`.
    unsafe { &mut *(c as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
}

/// [`par_new`] for two buffers written together: task `i` gets chunk `i` of each (`(len, chunk)`
/// per buffer; both must split into the same number of chunks).
fn par_new2(
    (len_a, chunk_a): (usize, usize),
    (len_b, chunk_b): (usize, usize),
    fill: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let (chunk_a, chunk_b) = (chunk_a.max(1), chunk_b.max(1));
    assert_eq!(
        len_a.div_ceil(chunk_a),
        len_b.div_ceil(chunk_b),
        "par_new2: the buffers split into different numbers of chunks"
    );
    let (mut a, mut b) = (
        Vec::<f32>::with_capacity(len_a),
        Vec::<f32>::with_capacity(len_b),
    );
    a.spare_capacity_mut()[..len_a]
        .par_chunks_mut(chunk_a)
        .zip(b.spare_capacity_mut()[..len_b].par_chunks_mut(chunk_b))
        .enumerate()
        .for_each(|(i, (ca, cb))| fill(i, zeroed(ca), zeroed(cb)));
    // SAFETY: as in `par_new`: the zipped chunks cover both buffers (same number of chunks, checked
    // above), and each chunk was initialised by `zeroed`.
    unsafe {
        a.set_len(len_a);
        b.set_len(len_b);
    }
    (a, b)
}

simd! {
    fn target_logprob_rows(x: &[f32], targets: &[u32], n: usize, out: &mut [f32], lse: &mut [f32], scratch: &mut [f32]) {
        for (((xr, &t), o), l) in x.chunks_exact(n).zip(targets).zip(out.iter_mut()).zip(lse.iter_mut()) {
            let max = lane_max(xr);
            for (e, &v) in scratch.iter_mut().zip(xr) {
                *e = exp(v - max);
            }
            *l = max + lane_sum(scratch).ln();
            *o = xr[t as usize] - *l;
        }
    }
}

simd! {
    fn target_logprob_backward_rows(x: &[f32], targets: &[u32], lse: &[f32], g: &[f32], n: usize, dx: &mut [f32]) {
        for ((((xr, &t), &l), &g), dr) in x.chunks_exact(n).zip(targets).zip(lse).zip(g).zip(dx.chunks_exact_mut(n)) {
            for i in 0..n {
                dr[i] = -g * exp(xr[i] - l);
            }
            dr[t as usize] += g;
        }
    }
}

/// Per row of `x[rows×n]`, `log softmax(row)[target]`, and each row's log-sum-exp (for the
/// backward pass). Cross-entropy without the `rows×n` log-probabilities: the loss needs one value
/// per row, and its gradient is `softmax − one-hot`, made from the logits and the log-sum-exp.
/// Panics if a target is not below `n`.
pub fn target_logprobs_forward(x: &[f32], targets: &[u32], n: usize) -> (Vec<f32>, Vec<f32>) {
    assert!(
        n > 0 && x.len() == targets.len() * n,
        "target log-probabilities: x is not [rows, n] for one target per row"
    );
    assert!(
        targets.iter().all(|&t| (t as usize) < n),
        "target log-probabilities: a target is not below the vocabulary size {n}"
    );
    let rows = rows_per_task(n);
    let mut out = vec![0.0f32; targets.len()];
    let mut lse = vec![0.0f32; targets.len()];
    out.par_chunks_mut(rows)
        .zip(lse.par_chunks_mut(rows))
        .zip(x.par_chunks(rows * n).zip(targets.par_chunks(rows)))
        .for_each(|((o, l), (x, t))| {
            let mut scratch = vec![0.0f32; n];
            target_logprob_rows(x, t, n, o, l, &mut scratch)
        });
    (out, lse)
}

/// The gradient of [`target_logprobs_forward`] from each row's output gradient `g`:
/// `dx = g · (one-hot(target) − softmax(x))`.
pub fn target_logprobs_backward(
    x: &[f32],
    targets: &[u32],
    lse: &[f32],
    g: &[f32],
    n: usize,
) -> Vec<f32> {
    assert!(
        x.len() == targets.len() * n && lse.len() == targets.len() && g.len() == targets.len(),
        "target log-probabilities: backward sizes differ"
    );
    let rows = rows_per_task(n);
    par_new(x.len(), rows * n, |i, dx| {
        let r = i * rows..i * rows + dx.len() / n;
        target_logprob_backward_rows(
            &x[r.start * n..r.end * n],
            &targets[r.clone()],
            &lse[r.clone()],
            &g[r],
            n,
            dx,
        )
    })
}

simd! {
    fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], inv: &mut [f32]) {
        let n = w.len();
        for ((xr, or), r) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)).zip(inv.iter_mut()) {
            let ss = lane_dot(xr, xr);
            let rr = 1.0 / (ss / n as f32 + eps).sqrt();
            *r = rr;
            for i in 0..n {
                or[i] = xr[i] * rr * w[i];
            }
        }
    }
}

simd! {
    fn rms_norm_backward_rows(x: &[f32], w: &[f32], inv: &[f32], dy: &[f32], dx: &mut [f32], dw: &mut [f32]) {
        let n = w.len();
        for (((xr, dyr), dxr), &r) in x.chunks_exact(n).zip(dy.chunks_exact(n)).zip(dx.chunks_exact_mut(n)).zip(inv) {
            for i in 0..n {
                dw[i] += dyr[i] * xr[i] * r;
            }
            let mut acc = [0.0f32; LANES];
            let full = n - n % LANES;
            for c in (0..full).step_by(LANES) {
                for i in 0..LANES {
                    acc[i] += dyr[c + i] * w[c + i] * xr[c + i];
                }
            }
            let tail: f32 = (full..n).map(|i| dyr[i] * w[i] * xr[i]).sum();
            let dot = acc.iter().sum::<f32>() + tail;
            let c = r * r * r * dot / n as f32;
            for i in 0..n {
                dxr[i] = r * dyr[i] * w[i] - c * xr[i];
            }
        }
    }
}

/// RMSNorm over rows of `w.len()`: returns the output and each row's `1 / rms`.
pub fn rms_norm_forward(x: &[f32], w: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let n = w.len();
    assert!(
        n > 0 && x.len().is_multiple_of(n),
        "rms_norm: bad row length"
    );
    let rows = rows_per_task(n);
    par_new2((x.len(), rows * n), (x.len() / n, rows), |i, o, r| {
        let at = i * rows * n;
        rms_norm_rows(&x[at..at + o.len()], w, eps, o, r)
    })
}

/// The gradients `(dx, dw)` of [`rms_norm_forward`]. The weight's gradient is summed per task
/// and the partial sums added in task order, so it is the same on any number of threads.
pub fn rms_norm_backward(x: &[f32], w: &[f32], inv: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = w.len();
    let rows = rows_per_task(n);
    let tasks = x.len().div_ceil(rows * n);
    // Each task's partial weight gradient in its own `n` values of `partial`.
    let (dx, partial) = par_new2((x.len(), rows * n), (tasks * n, n), |i, dx, dw| {
        let (at, len) = (i * rows * n, dx.len());
        let r = i * rows..i * rows + len / n;
        rms_norm_backward_rows(&x[at..at + len], w, &inv[r], &dy[at..at + len], dx, dw)
    });
    let mut dw = vec![0.0f32; n];
    for p in partial.chunks_exact(n) {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    (dx, dw)
}

pub mod decode;
pub mod quant;

#[cfg(test)]
mod tests;
