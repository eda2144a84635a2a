//! Matrix–vector products with 8-bit and 4-bit weights, as llama.cpp computes them on the CPU:
//! the weights in blocks of 32 with one scale each (Q8_0: signed bytes; Q4_0: nibbles offset by
//! 8), the activations rounded to the same Q8_0 blocks before each product, and each block's
//! product an integer dot product scaled by the two blocks' scales.
//!
//! Decoding reads every weight once per step, so at batch 1 its speed is memory bandwidth: 8-bit
//! weights move a quarter of f32's bytes and 4-bit ones an eighth. The integer dot products are
//! chosen at run time: AVX-512 VNNI or AVX-VNNI (`vpdpbusd`, one instruction per 32 products)
//! where the CPU has either, else AVX2 (`vpmaddubsw` then `vpmaddwd`), else plain Rust. All of
//! them give the same integers; the SIMD ones sum them in the same order, so they give the same
//! floats, and the plain one differs from them only in float rounding.
//!
//! Scales are kept as f32 beside the quantized values (rather than f16 inside each block, as
//! GGUF stores them): the values are the same, and the inner loop converts nothing.

use half::f16;

/// Values per block.
pub const BLOCK: usize = 32;

/// How a quantized weight stores its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantKind {
    /// One signed byte per value.
    Q8_0,
    /// One nibble per value, offset by 8: the low nibbles of a block's 16 bytes are its first
    /// 16 values, the high nibbles the rest.
    Q4_0,
}

/// A weight `[n, k]` (one row per output, as llama.cpp lays out matrices) in blocks of 32 along
/// `k`.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    pub kind: QuantKind,
    pub k: usize,
    pub n: usize,
    /// One scale per block, row by row: `n × k / 32`.
    scales: Vec<f32>,
    /// The values: `n × k` bytes (Q8_0) or `n × k / 2` (Q4_0).
    values: Vec<u8>,
}

/// The f16 rounding GGUF applies to every block scale.
fn f16_round(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

impl QuantMatrix {
    /// Quantizes `rows` (`n` rows of `k` values, `k` a multiple of 32) as llama.cpp's reference
    /// quantizers do (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`), scales rounded to f16.
    pub fn quantize(kind: QuantKind, rows: &[f32], n: usize, k: usize) -> QuantMatrix {
        assert!(
            k.is_multiple_of(BLOCK),
            "quantize: {k} is not a multiple of {BLOCK}"
        );
        assert_eq!(rows.len(), n * k, "quantize: not [{n}, {k}]");
        let blocks = n * k / BLOCK;
        let mut scales = Vec::with_capacity(blocks);
        let mut values = Vec::with_capacity(match kind {
            QuantKind::Q8_0 => n * k,
            QuantKind::Q4_0 => n * k / 2,
        });
        for block in rows.chunks_exact(BLOCK) {
            match kind {
                QuantKind::Q8_0 => {
                    let amax = block.iter().fold(0.0f32, |a, x| a.max(x.abs()));
                    let d = amax / 127.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    scales.push(f16_round(d));
                    values.extend(block.iter().map(|x| (x * id).round() as i8 as u8));
                }
                QuantKind::Q4_0 => {
                    let (mut amax, mut max) = (0.0f32, 0.0f32);
                    for &x in block {
                        if x.abs() > amax {
                            amax = x.abs();
                            max = x;
                        }
                    }
                    let d = max / -8.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    scales.push(f16_round(d));
                    let q = |x: f32| ((x * id + 8.5) as i8).min(15) as u8;
                    values.extend((0..16).map(|j| q(block[j]) | (q(block[j + 16]) << 4)));
                }
            }
        }
        QuantMatrix {
            kind,
            k,
            n,
            scales,
            values,
        }
    }

    /// The blocks as GGUF stores them: each block's scale as f16, then its values.
    pub fn gguf_blocks(&self) -> Vec<u8> {
        let per = match self.kind {
            QuantKind::Q8_0 => BLOCK,
            QuantKind::Q4_0 => BLOCK / 2,
        };
        let mut out = Vec::with_capacity(self.scales.len() * (per + 2));
        for (d, v) in self.scales.iter().zip(self.values.chunks_exact(per)) {
            out.extend(f16::from_f32(*d).to_le_bytes());
            out.extend(v);
        }
        out
    }

    /// Bytes the weight occupies (what a decoding step reads).
    pub fn bytes(&self) -> usize {
        self.scales.len() * 4 + self.values.len()
    }

    /// Row `j` dequantized (for tests and for reading embeddings).
    pub fn row(&self, j: usize) -> Vec<f32> {
        let nb = self.k / BLOCK;
        let mut out = Vec::with_capacity(self.k);
        for b in j * nb..(j + 1) * nb {
            let d = self.scales[b];
            match self.kind {
                QuantKind::Q8_0 => out.extend(
                    self.values[b * BLOCK..(b + 1) * BLOCK]
                        .iter()
                        .map(|&q| d * q as i8 as f32),
                ),
                QuantKind::Q4_0 => {
                    let v = &self.values[b * 16..(b + 1) * 16];
                    out.extend(v.iter().map(|&q| d * ((q & 0x0F) as i32 - 8) as f32));
                    out.extend(v.iter().map(|&q| d * ((q >> 4) as i32 - 8) as f32));
                }
            }
        }
        out
    }

    /// `out[r × nb + (j - n0)] = x_r · row j` for `j` in `n0..n0 + nb`, every row `r` of the
    /// quantized activations `x`.
    pub fn block(&self, x: &QuantRows, n0: usize, nb: usize, out: &mut [f32]) {
        self.block_with(isa(), x, n0, nb, out)
    }

    /// `block` with the integer dot product of `isa`, which the CPU must have.
    fn block_with(&self, isa: Isa, x: &QuantRows, n0: usize, nb: usize, out: &mut [f32]) {
        assert_eq!(x.k, self.k, "quant block: depth");
        assert_eq!(out.len(), x.m * nb, "quant block: output size");
        debug_assert!(
            available().contains(&isa),
            "quant block: {isa:?} on this CPU"
        );
        assert!(
            n0 + nb <= self.n,
            "quant block: rows {n0}..{} of {}",
            n0 + nb,
            self.n
        );
        let nbk = self.k / BLOCK;
        let per_row = match self.kind {
            QuantKind::Q8_0 => self.k,
            QuantKind::Q4_0 => self.k / 2,
        };
        for j in n0..n0 + nb {
            let scales = &self.scales[j * nbk..(j + 1) * nbk];
            let wq = &self.values[j * per_row..(j + 1) * per_row];
            let row = |r: usize| {
                (
                    &x.scales[r * nbk..(r + 1) * nbk],
                    &x.values[r * self.k..(r + 1) * self.k],
                )
            };
            let mut r = 0;
            // Four activation rows against each weight block while it is in registers.
            #[cfg(target_arch = "x86_64")]
            if isa != Isa::Portable {
                while r + 4 <= x.m {
                    let rows = [row(r), row(r + 1), row(r + 2), row(r + 3)];
                    // SAFETY: the CPU has `isa` (checked at run time); every slice holds `nbk`
                    // whole blocks.
                    let dots = unsafe {
                        match isa {
                            Isa::Avx512Vnni => x86_avx512vnni::dot4(self.kind, scales, wq, rows),
                            Isa::AvxVnni => x86_avxvnni::dot4(self.kind, scales, wq, rows),
                            _ => x86_avx2::dot4(self.kind, scales, wq, rows),
                        }
                    };
                    for (i, d) in dots.into_iter().enumerate() {
                        out[(r + i) * nb + j - n0] = d;
                    }
                    r += 4;
                }
            }
            for r in r..x.m {
                let (xs, xq) = row(r);
                out[r * nb + j - n0] = dot(isa, self.kind, scales, wq, xs, xq);
            }
        }
    }
}

/// Rows of activations rounded to Q8_0 blocks, as llama.cpp rounds the input of a quantized
/// product (`quantize_row_q8_0`: scale `max|x| / 127` stored as f16, values rounded half to
/// even).
#[derive(Debug, Clone)]
pub struct QuantRows {
    pub m: usize,
    pub k: usize,
    scales: Vec<f32>,
    values: Vec<i8>,
}

impl QuantRows {
    /// `x` `[m × k]`, `k` a multiple of 32.
    pub fn of(x: &[f32], m: usize, k: usize) -> QuantRows {
        assert!(
            k.is_multiple_of(BLOCK),
            "quantize rows: {k} is not a multiple of {BLOCK}"
        );
        assert_eq!(x.len(), m * k, "quantize rows: not [{m}, {k}]");
        let mut scales = Vec::with_capacity(m * k / BLOCK);
        let mut values = Vec::with_capacity(m * k);
        for block in x.chunks_exact(BLOCK) {
            let amax = block.iter().fold(0.0f32, |a, x| a.max(x.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            scales.push(f16_round(d));
            values.extend(block.iter().map(|x| (x * id).round_ties_even() as i8));
        }
        QuantRows {
            m,
            k,
            scales,
            values,
        }
    }
}

/// The integer dot product a CPU runs, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Isa {
    /// `vpdpbusd` on 256-bit registers, EVEX-encoded (AVX-512 VNNI with AVX-512 VL).
    Avx512Vnni,
    /// `vpdpbusd` on 256-bit registers, VEX-encoded (AVX-VNNI, on CPUs without AVX-512).
    AvxVnni,
    /// `vpmaddubsw` then `vpmaddwd`.
    Avx2,
    /// Plain Rust.
    Portable,
}

/// Every integer dot product this CPU can run, best first (`Portable` last, always there).
fn available() -> Vec<Isa> {
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            if has!("avx512vnni") && has!("avx512vl") {
                found.push(Isa::Avx512Vnni);
            }
            if has!("avxvnni") {
                found.push(Isa::AvxVnni);
            }
            found.push(Isa::Avx2);
        }
    }
    found.push(Isa::Portable);
    found
}

/// The best integer dot product of this CPU, detected once.
fn isa() -> Isa {
    static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *BEST.get_or_init(|| available()[0])
}

/// One weight row against one activation row: `Σ_blocks ws·xs·Σ w·xq`, with the integer dot
/// product of `isa`.
fn dot(isa: Isa, kind: QuantKind, ws: &[f32], wq: &[u8], xs: &[f32], xq: &[i8]) -> f32 {
    // SAFETY (every arm): the CPU has `isa` (checked at run time); the slices hold whole blocks.
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512Vnni => return unsafe { x86_avx512vnni::dot(kind, ws, wq, xs, xq) },
        Isa::AvxVnni => return unsafe { x86_avxvnni::dot(kind, ws, wq, xs, xq) },
        Isa::Avx2 => return unsafe { x86_avx2::dot(kind, ws, wq, xs, xq) },
        Isa::Portable => {}
    }
    let _ = isa;
    match kind {
        QuantKind::Q8_0 => dot_q8_0(ws, wq, xs, xq),
        QuantKind::Q4_0 => dot_q4_0(ws, wq, xs, xq),
    }
}

/// `Σ_blocks ws·xs·Σ wq·xq` for Q8_0 weights, in plain Rust.
fn dot_q8_0(ws: &[f32], wq: &[u8], xs: &[f32], xq: &[i8]) -> f32 {
    let mut acc = 0.0f32;
    for (b, (&w, &x)) in ws.iter().zip(xs).enumerate() {
        let sum: i32 = wq[b * BLOCK..(b + 1) * BLOCK]
            .iter()
            .zip(&xq[b * BLOCK..(b + 1) * BLOCK])
            .map(|(&w, &x)| w as i8 as i32 * x as i32)
            .sum();
        acc += w * x * sum as f32;
    }
    acc
}

/// `Σ_blocks ws·xs·Σ (wq - 8)·xq` for Q4_0 weights, in plain Rust.
fn dot_q4_0(ws: &[f32], wq: &[u8], xs: &[f32], xq: &[i8]) -> f32 {
    let mut acc = 0.0f32;
    for (b, (&w, &x)) in ws.iter().zip(xs).enumerate() {
        let (v, q) = (&wq[b * 16..(b + 1) * 16], &xq[b * BLOCK..(b + 1) * BLOCK]);
        let mut sum = 0i32;
        for i in 0..16 {
            sum += ((v[i] & 0x0F) as i32 - 8) * q[i] as i32;
            sum += ((v[i] >> 4) as i32 - 8) * q[i + 16] as i32;
        }
        acc += w * x * sum as f32;
    }
    acc
}

/// The SIMD kernels, once per instruction set: `$features` is what they are compiled for, and
/// `$dot` turns 32 unsigned bytes `$ax` and 32 signed bytes `$sw` into eight i32 lanes, each the
/// sum of four consecutive products.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_kernels {
    ($name:ident, $features:literal, |$ax:ident, $sw:ident| $dot:expr) => {
        mod $name {
            use std::arch::x86_64::*;

            use super::{BLOCK, QuantKind};

            /// The eight lanes of `v` added.
            #[target_feature(enable = $features)]
            fn hsum(v: __m256) -> f32 {
                let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_movehdup_ps(s));
                _mm_cvtss_f32(s)
            }

            /// The 32 products `w·x` of one block, summed in fours as eight i32 lanes, as floats.
            /// The byte products take unsigned × signed bytes, so `x`'s sign moves onto `w`.
            #[target_feature(enable = $features)]
            fn block_dot(w: __m256i, x: __m256i) -> __m256 {
                let $ax = _mm256_sign_epi8(x, x);
                let $sw = _mm256_sign_epi8(w, x);
                _mm256_cvtepi32_ps($dot)
            }

            /// The 32 weights of block `b` as signed bytes (Q4_0's nibbles unpacked and offset).
            #[target_feature(enable = $features)]
            unsafe fn weights(kind: QuantKind, wq: &[u8], b: usize) -> __m256i {
                match kind {
                    // SAFETY (both arms): block `b` lies inside `wq`, as the callers check.
                    QuantKind::Q8_0 => unsafe {
                        _mm256_loadu_si256(wq.as_ptr().add(b * BLOCK) as *const __m256i)
                    },
                    QuantKind::Q4_0 => {
                        let raw =
                            unsafe { _mm_loadu_si128(wq.as_ptr().add(b * 16) as *const __m128i) };
                        let low = _mm_set1_epi8(0x0F);
                        let lo = _mm_and_si128(raw, low);
                        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low);
                        _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8))
                    }
                }
            }

            /// One weight row against four activation rows.
            #[target_feature(enable = $features)]
            pub unsafe fn dot4(
                kind: QuantKind,
                ws: &[f32],
                wq: &[u8],
                rows: [(&[f32], &[i8]); 4],
            ) -> [f32; 4] {
                let mut acc = [_mm256_setzero_ps(); 4];
                for b in 0..ws.len() {
                    // SAFETY: block `b` lies inside every slice.
                    let w = unsafe { weights(kind, wq, b) };
                    for (i, (xs, xq)) in rows.iter().enumerate() {
                        let x = unsafe {
                            _mm256_loadu_si256(xq.as_ptr().add(b * BLOCK) as *const __m256i)
                        };
                        let d = _mm256_set1_ps(ws[b] * xs[b]);
                        acc[i] = _mm256_fmadd_ps(d, block_dot(w, x), acc[i]);
                    }
                }
                acc.map(|a| hsum(a))
            }

            /// One weight row against one activation row.
            #[target_feature(enable = $features)]
            pub unsafe fn dot(
                kind: QuantKind,
                ws: &[f32],
                wq: &[u8],
                xs: &[f32],
                xq: &[i8],
            ) -> f32 {
                // SAFETY: as the caller's.
                match kind {
                    QuantKind::Q8_0 => unsafe { dot_q8_0(ws, wq, xs, xq) },
                    QuantKind::Q4_0 => unsafe { dot_q4_0(ws, wq, xs, xq) },
                }
            }

            #[target_feature(enable = $features)]
            unsafe fn dot_q8_0(ws: &[f32], wq: &[u8], xs: &[f32], xq: &[i8]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                for b in 0..ws.len() {
                    // SAFETY: block `b` lies inside both slices (32 bytes each).
                    let (w, x) = unsafe {
                        (
                            _mm256_loadu_si256(wq.as_ptr().add(b * BLOCK) as *const __m256i),
                            _mm256_loadu_si256(xq.as_ptr().add(b * BLOCK) as *const __m256i),
                        )
                    };
                    let d = _mm256_set1_ps(ws[b] * xs[b]);
                    acc = _mm256_fmadd_ps(d, block_dot(w, x), acc);
                }
                hsum(acc)
            }

            #[target_feature(enable = $features)]
            unsafe fn dot_q4_0(ws: &[f32], wq: &[u8], xs: &[f32], xq: &[i8]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let low = _mm_set1_epi8(0x0F);
                let eight = _mm256_set1_epi8(8);
                for b in 0..ws.len() {
                    // SAFETY: block `b` lies inside both slices (16 and 32 bytes).
                    let (raw, x) = unsafe {
                        (
                            _mm_loadu_si128(wq.as_ptr().add(b * 16) as *const __m128i),
                            _mm256_loadu_si256(xq.as_ptr().add(b * BLOCK) as *const __m256i),
                        )
                    };
                    let lo = _mm_and_si128(raw, low);
                    let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low);
                    let w = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), eight);
                    let d = _mm256_set1_ps(ws[b] * xs[b]);
                    acc = _mm256_fmadd_ps(d, block_dot(w, x), acc);
                }
                hsum(acc)
            }
        }
    };
}

// `vpmaddubsw` adds byte products in pairs to i16 (at most 2·127·127, so it never saturates),
// `vpmaddwd` the pairs to i32.
#[cfg(target_arch = "x86_64")]
x86_kernels!(x86_avx2, "avx2,fma", |ax, sw| _mm256_madd_epi16(
    _mm256_maddubs_epi16(ax, sw),
    _mm256_set1_epi16(1)
));
#[cfg(target_arch = "x86_64")]
x86_kernels!(x86_avx512vnni, "avx2,fma,avx512vnni,avx512vl", |ax, sw| {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sw)
});
#[cfg(target_arch = "x86_64")]
x86_kernels!(x86_avxvnni, "avx2,fma,avxvnni", |ax, sw| {
    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), ax, sw)
});

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn quantized_products_equal_the_dequantized_ones() {
        // Six rows: one group of four on the AVX2 path, two alone.
        let (n, k, m) = (5, 96, 6);
        let w = values(n * k, 1);
        let x = values(m * k, 2);
        let xq = QuantRows::of(&x, m, k);
        for kind in [QuantKind::Q8_0, QuantKind::Q4_0] {
            let q = QuantMatrix::quantize(kind, &w, n, k);
            let mut out = vec![0.0; m * 3];
            q.block(&xq, 1, 3, &mut out);
            let mut scalar = vec![0.0; m * 3];
            // The portable path: the same integers, so the same sums up to float order.
            for j in 1..4 {
                for r in 0..m {
                    let nbk = k / BLOCK;
                    let (xs, xv) = (
                        &xq.scales[r * nbk..(r + 1) * nbk],
                        &xq.values[r * k..(r + 1) * k],
                    );
                    let ws = &q.scales[j * nbk..(j + 1) * nbk];
                    scalar[r * 3 + j - 1] = match kind {
                        QuantKind::Q8_0 => dot_q8_0(ws, &q.values[j * k..(j + 1) * k], xs, xv),
                        QuantKind::Q4_0 => {
                            dot_q4_0(ws, &q.values[j * k / 2..(j + 1) * k / 2], xs, xv)
                        }
                    };
                }
            }
            for (r, j) in (0..m).flat_map(|r| (1..4).map(move |j| (r, j))) {
                // Against f32 arithmetic on the dequantized weight and activations.
                let wr = q.row(j);
                let mut xr = Vec::new();
                for b in 0..k / BLOCK {
                    let d = xq.scales[r * (k / BLOCK) + b];
                    xr.extend(
                        xq.values[r * k + b * BLOCK..r * k + (b + 1) * BLOCK]
                            .iter()
                            .map(|&v| d * v as f32),
                    );
                }
                let want: f32 = wr.iter().zip(&xr).map(|(a, b)| a * b).sum();
                let (got, portable) = (out[r * 3 + j - 1], scalar[r * 3 + j - 1]);
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{kind:?} ({r}, {j}): {got} vs {want}"
                );
                assert!(
                    (got - portable).abs() <= 1e-5 * want.abs().max(1.0),
                    "{kind:?}: {got} vs {portable}"
                );
                // And the rounding stays within what 8 and 4 bits allow.
                let exact: f32 = w[j * k..(j + 1) * k]
                    .iter()
                    .zip(&x[r * k..(r + 1) * k])
                    .map(|(a, b)| a * b)
                    .sum();
                let bound = match kind {
                    QuantKind::Q8_0 => 0.05,
                    QuantKind::Q4_0 => 0.6,
                };
                assert!(
                    (got - exact).abs() <= bound,
                    "{kind:?}: {got} vs exact {exact}"
                );
            }
        }
    }

    /// Every integer dot product the CPU has gives the same floats as AVX2 (the same i32 lanes,
    /// scaled and added in the same order), and the portable path's up to float rounding. Which
    /// ones ran is printed: a CPU without AVX-512 VNNI or AVX-VNNI checks only the others.
    #[test]
    fn every_instruction_set_gives_the_same_products() {
        // Seven rows: one group of four on the SIMD paths, three alone; blocks with the
        // extremes a Q8_0 value takes (±127), where a saturating byte product would show.
        let (n, k, m) = (6, 160, 7);
        let mut w = values(n * k, 4);
        let mut x = values(m * k, 5);
        for i in (0..w.len()).step_by(7) {
            w[i] = if i % 2 == 0 { 1.0 } else { -1.0 };
        }
        for i in (0..x.len()).step_by(5) {
            x[i] = if i % 3 == 0 { -1.0 } else { 1.0 };
        }
        let xq = QuantRows::of(&x, m, k);
        let isas = available();
        eprintln!(
            "integer dot products on this CPU: {isas:?}{}",
            if isas.contains(&Isa::Avx512Vnni) || isas.contains(&Isa::AvxVnni) {
                ""
            } else {
                " (no VNNI here: the VNNI kernels are checked on CPUs that have it)"
            }
        );
        for kind in [QuantKind::Q8_0, QuantKind::Q4_0] {
            let q = QuantMatrix::quantize(kind, &w, n, k);
            let run = |isa| {
                let mut out = vec![0.0; m * n];
                q.block_with(isa, &xq, 0, n, &mut out);
                out
            };
            let portable = run(Isa::Portable);
            let simd: Vec<(Isa, Vec<f32>)> = isas
                .iter()
                .filter(|&&i| i != Isa::Portable)
                .map(|&i| (i, run(i)))
                .collect();
            for (isa, out) in &simd {
                for (i, (a, b)) in out.iter().zip(&portable).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{kind:?} {isa:?} [{i}]: {a} vs portable {b}"
                    );
                }
                assert_eq!(out, &simd[0].1, "{kind:?}: {isa:?} against {:?}", simd[0].0);
            }
        }
    }

    #[test]
    fn gguf_blocks_put_each_scale_before_its_values() {
        let w = values(2 * 64, 3);
        let q8 = QuantMatrix::quantize(QuantKind::Q8_0, &w, 2, 64);
        let file = q8.gguf_blocks();
        assert_eq!(file.len(), 4 * 34);
        for b in 0..4 {
            let d = half::f16::from_le_bytes([file[b * 34], file[b * 34 + 1]]).to_f32();
            assert_eq!(q8.scales[b], d);
            assert_eq!(
                &q8.values[b * 32..(b + 1) * 32],
                &file[b * 34 + 2..(b + 1) * 34]
            );
        }
        assert_eq!(q8.bytes(), 4 * 4 + 128);
        let q4 = QuantMatrix::quantize(QuantKind::Q4_0, &w, 2, 64);
        assert_eq!(q4.gguf_blocks().len(), 4 * 18);
    }
}
