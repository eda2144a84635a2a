//! Each kernel against a plain reference written from the textbook formula, in f64.

use super::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

fn close(a: &[f32], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let err = (x as f64 - y).abs();
        assert!(
            err <= tol * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y} (error {err})"
        );
    }
}

#[test]
fn exp_matches_std_to_a_few_ulp() {
    let mut worst = 0.0f64;
    let mut x = -87.0f32;
    while x < 88.0 {
        let (got, want) = (exp(x) as f64, (x as f64).exp());
        worst = worst.max((got - want).abs() / want);
        x += 0.0137;
    }
    assert!(worst < 4e-7, "relative error {worst}");
    assert_eq!(exp(0.0), 1.0);
    assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
}

/// Tables for positions `0..seq` as the model builds them.
fn rope_tables(seq: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::new();
    let mut sin = Vec::new();
    for t in 0..seq {
        for _ in 0..2 {
            for i in 0..d / 2 {
                let f = 1.0 / 10000f64.powf((2 * i) as f64 / d as f64);
                cos.push((t as f64 * f).cos() as f32);
                sin.push((t as f64 * f).sin() as f32);
            }
        }
    }
    (cos, sin)
}

/// Rotary, causal softmax attention with grouped heads, in f64, written out directly.
fn attention_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    cos: &[f32],
    sin: &[f32],
    s: AttnShape,
    scale: f64,
) -> Vec<f64> {
    let AttnShape {
        batch,
        seq,
        heads,
        kv_heads,
        head_dim: d,
    } = s;
    let rot = |x: &[f32], t: usize| -> Vec<f64> {
        (0..d)
            .map(|i| {
                let other = if i < d / 2 {
                    -(x[i + d / 2] as f64)
                } else {
                    x[i - d / 2] as f64
                };
                x[i] as f64 * cos[t * d + i] as f64 + other * sin[t * d + i] as f64
            })
            .collect()
    };
    let mut out = vec![0.0; batch * seq * heads * d];
    for b in 0..batch {
        for h in 0..heads {
            let kv = h / (heads / kv_heads);
            for t in 0..seq {
                let qo = (b * seq + t) * heads * d + h * d;
                let qt = rot(&q[qo..qo + d], t);
                let scores: Vec<f64> = (0..=t)
                    .map(|j| {
                        let ko = (b * seq + j) * kv_heads * d + kv * d;
                        let kj = rot(&k[ko..ko + d], j);
                        qt.iter().zip(&kj).map(|(a, b)| a * b).sum::<f64>() * scale
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, w) in e.iter().enumerate() {
                    let vo = (b * seq + j) * kv_heads * d + kv * d;
                    for i in 0..d {
                        out[qo + i] += w / z * v[vo + i] as f64;
                    }
                }
            }
        }
    }
    out
}

fn shape() -> AttnShape {
    AttnShape {
        batch: 2,
        seq: 7,
        heads: 4,
        kv_heads: 2,
        head_dim: 8,
    }
}

/// The packed rows `[q | k | v]` split into the three projections.
fn split(qkv: &[f32], s: AttnShape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (qr, kr) = (s.q_row(), s.kv_row());
    let (mut q, mut k, mut v) = (vec![], vec![], vec![]);
    for row in qkv.chunks(s.row()) {
        q.extend_from_slice(&row[..qr]);
        k.extend_from_slice(&row[qr..qr + kr]);
        v.extend_from_slice(&row[qr + kr..]);
    }
    (q, k, v)
}

#[test]
fn attention_forward_matches_reference() {
    let s = shape();
    let mut rng = Rng(1);
    let qkv = rng.vec(s.batch * s.seq * s.row(), 1.0);
    let (cos, sin) = rope_tables(s.seq, s.head_dim);
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let (out, probs) = attention_forward(&qkv, (&cos, &sin), s, scale, true);
    let probs = probs.unwrap();
    // Without keeping the probabilities, the same output.
    assert_eq!(
        attention_forward(&qkv, (&cos, &sin), s, scale, false),
        (out.clone(), None)
    );
    let (q, k, v) = split(&qkv, s);
    close(
        &out,
        &attention_reference(&q, &k, &v, &cos, &sin, s, scale as f64),
        1e-5,
        "out",
    );
    // Each probability row sums to one and is zero above the diagonal.
    for (r, row) in probs.chunks(s.seq).enumerate() {
        let t = r % s.seq;
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(row[t + 1..].iter().all(|&p| p == 0.0));
    }
}

/// The gradient of `Σ out · w` by central differences of the f64 reference.
fn numeric_grad(x: &mut [f32], f: &dyn Fn(&[f32]) -> f64) -> Vec<f64> {
    let h = 1e-3f32;
    (0..x.len())
        .map(|i| {
            let keep = x[i];
            x[i] = keep + h;
            let up = f(x);
            x[i] = keep - h;
            let down = f(x);
            x[i] = keep;
            (up - down) / (2.0 * h as f64)
        })
        .collect()
}

#[test]
fn attention_backward_matches_finite_differences() {
    let s = shape();
    let mut rng = Rng(2);
    let mut qkv = rng.vec(s.batch * s.seq * s.row(), 1.0);
    let w = rng.vec(s.batch * s.seq * s.q_row(), 1.0);
    let (cos, sin) = rope_tables(s.seq, s.head_dim);
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let probs = attention_forward(&qkv, (&cos, &sin), s, scale, true)
        .1
        .unwrap();
    let dqkv = attention_backward(&qkv, (&cos, &sin), &probs, &w, s, scale);
    let loss = |qkv: &[f32]| -> f64 {
        let (q, k, v) = split(qkv, s);
        attention_reference(&q, &k, &v, &cos, &sin, s, scale as f64)
            .iter()
            .zip(&w)
            .map(|(o, &w)| o * w as f64)
            .sum()
    };
    // q, k and v each get their own columns of the packed gradient.
    close(&dqkv, &numeric_grad(&mut qkv, &loss), 2e-3, "dqkv");
}

#[test]
fn swiglu_and_its_gradient() {
    let mut rng = Rng(3);
    let n = 40_000; // more than one chunk
    let gate = rng.vec(n, 8.0);
    let up = rng.vec(n, 2.0);
    let dout = rng.vec(n, 1.0);
    let out = swiglu_forward(&gate, &up);
    let sig = |g: f64| 1.0 / (1.0 + (-g).exp());
    let want: Vec<f64> = gate
        .iter()
        .zip(&up)
        .map(|(&g, &u)| g as f64 * sig(g as f64) * u as f64)
        .collect();
    close(&out, &want, 1e-6, "swiglu");
    let (dg, du) = swiglu_backward(&gate, &up, &dout);
    let h = 1e-4;
    let f = |g: f64| g * sig(g);
    let want_dg: Vec<f64> = (0..n)
        .map(|i| {
            let g = gate[i] as f64;
            (f(g + h) - f(g - h)) / (2.0 * h) * up[i] as f64 * dout[i] as f64
        })
        .collect();
    let want_du: Vec<f64> = (0..n).map(|i| f(gate[i] as f64) * dout[i] as f64).collect();
    close(&dg, &want_dg, 1e-5, "dgate");
    close(&du, &want_du, 1e-6, "dup");
}

#[test]
fn log_softmax_and_its_gradient() {
    let mut rng = Rng(4);
    let (rows, n) = (37, 1000);
    let x = rng.vec(rows * n, 20.0);
    let dy = rng.vec(rows * n, 1.0);
    let y = log_softmax_forward(&x, n);
    let mut want = Vec::new();
    let mut want_dx = Vec::new();
    for (xr, dyr) in x.chunks(n).zip(dy.chunks(n)) {
        let max = xr.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let lse = max + xr.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        let sum: f64 = dyr.iter().map(|&g| g as f64).sum();
        for (&v, &g) in xr.iter().zip(dyr) {
            want.push(v as f64 - lse);
            want_dx.push(g as f64 - (v as f64 - lse).exp() * sum);
        }
    }
    close(&y, &want, 1e-6, "log_softmax");
    close(&log_softmax_backward(&y, &dy, n), &want_dx, 1e-5, "dx");
}

#[test]
fn rms_norm_and_its_gradient() {
    let mut rng = Rng(5);
    let (rows, n) = (300, 64);
    let x = rng.vec(rows * n, 3.0);
    let w = rng.vec(n, 1.0);
    let dy = rng.vec(rows * n, 1.0);
    let eps = 1e-6;
    let (y, inv) = rms_norm_forward(&x, &w, eps);
    let norm = |x: &[f32], w: &[f32]| -> Vec<f64> {
        x.chunks(n)
            .flat_map(|r| {
                let rms = (r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64
                    + eps as f64)
                    .sqrt();
                r.iter()
                    .zip(w)
                    .map(move |(&v, &w)| v as f64 / rms * w as f64)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    close(&y, &norm(&x, &w), 1e-5, "rms_norm");
    let (dx, dw) = rms_norm_backward(&x, &w, &inv, &dy);
    let loss = |x: &[f32], w: &[f32]| -> f64 {
        norm(x, w).iter().zip(&dy).map(|(a, &b)| a * b as f64).sum()
    };
    let (mut xs, mut ws) = (x.clone(), w.clone());
    // A sample of rows for dx (the numeric gradient is quadratic in the size).
    let first_rows = &mut xs[..3 * n];
    let rest = x[3 * n..].to_vec();
    let num_dx = numeric_grad(first_rows, &|head| {
        let mut all = head.to_vec();
        all.extend_from_slice(&rest);
        loss(&all, &w)
    });
    close(&dx[..3 * n], &num_dx, 2e-3, "dx");
    close(&dw, &numeric_grad(&mut ws, &|w| loss(&x, w)), 2e-3, "dw");
}

#[test]
fn the_product_matches_a_plain_loop_for_every_layout() {
    let mut rng = Rng(21);
    // Small (one thread) and large enough to split across threads.
    for (m, n, k) in [(3, 4, 5), (1, 1, 1), (4, 3, 0), (260, 200, 190)] {
        let a = rng.vec(m * k, 1.0);
        let b = rng.vec(k * n, 1.0);
        let want: Vec<f64> = (0..m * n)
            .map(|e| {
                let (i, j) = (e / n, e % n);
                (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum()
            })
            .collect();
        let got = product((m, n, k), &a, (k, 1), &b, (n, 1));
        close(&got, &want, 1e-5, "row-major");
        // The same operands stored transposed, read through their strides.
        let at: Vec<f32> = (0..k * m).map(|e| a[(e % m) * k + e / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|e| b[(e % k) * n + e / k]).collect();
        let got = product((m, n, k), &at, (1, m), &bt, (1, k));
        close(&got, &want, 1e-5, "transposed");
    }
    let (x, w) = (rng.vec(6 * 4, 1.0), rng.vec(4 * 3, 1.0));
    let dy = rng.vec(6 * 3, 1.0);
    let (dx, dw) = linear_backward(&x, &w, &dy, (4, 3), (true, true));
    let want_dx: Vec<f64> = (0..6 * 4)
        .map(|e| {
            (0..3)
                .map(|j| dy[(e / 4) * 3 + j] as f64 * w[(e % 4) * 3 + j] as f64)
                .sum()
        })
        .collect();
    let want_dw: Vec<f64> = (0..4 * 3)
        .map(|e| {
            (0..6)
                .map(|r| x[r * 4 + e / 3] as f64 * dy[r * 3 + e % 3] as f64)
                .sum()
        })
        .collect();
    close(&dx.unwrap(), &want_dx, 1e-5, "dx");
    close(&dw.unwrap(), &want_dw, 1e-5, "dw");
    assert_eq!(
        linear_backward(&x, &w, &dy, (4, 3), (false, false)),
        (None, None)
    );
}

#[test]
#[should_panic(expected = "product: rhs too short")]
fn a_product_with_a_short_operand_panics_before_touching_memory() {
    product((2, 2, 2), &[0.0; 4], (2, 1), &[0.0; 3], (2, 1));
}

#[test]
fn target_logprobs_and_their_gradient_match_the_formula() {
    let mut rng = Rng(22);
    // More rows than one task takes, so the split and `par_new`'s chunks are exercised.
    let (rows, n) = (rows_per_task(40) * 2 + 3, 40);
    let x = rng.vec(rows * n, 8.0);
    let targets: Vec<u32> = (0..rows).map(|r| (r * 13 % n) as u32).collect();
    let g = rng.vec(rows, 1.0);
    let (out, lse) = target_logprobs_forward(&x, &targets, n);
    let dx = target_logprobs_backward(&x, &targets, &lse, &g, n);
    let (mut want, mut want_dx) = (vec![], vec![]);
    for r in 0..rows {
        let row = &x[r * n..(r + 1) * n];
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let z: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        let l = max + z.ln();
        want.push(row[targets[r] as usize] as f64 - l);
        for (i, &v) in row.iter().enumerate() {
            let onehot = if i == targets[r] as usize { 1.0 } else { 0.0 };
            want_dx.push(g[r] as f64 * (onehot - (v as f64 - l).exp()));
        }
    }
    close(&out, &want, 1e-5, "log p(target)");
    close(&dx, &want_dx, 1e-5, "dx");
}
