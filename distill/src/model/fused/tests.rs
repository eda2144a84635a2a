//! The fused operations inside burn's autodiff graph against burn's own composed operations:
//! same values forward, same gradients backward.

use burn::tensor::Distribution;

use super::*;
use crate::model::layers::{self, Rope};

fn device() -> Device {
    crate::backend::cpu().autodiff()
}

fn random<const D: usize>(dims: [usize; D], seed: u64) -> Tensor<D> {
    let device = device();
    device.seed(seed);
    Tensor::random(dims, Distribution::Normal(0.0, 1.0), &device).require_grad()
}

fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, what: &str) {
    let (a, b) = (
        a.into_data().try_to_vec::<f32>().unwrap(),
        b.into_data().try_to_vec::<f32>().unwrap(),
    );
    assert_eq!(a.len(), b.len(), "{what}: sizes");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{what}[{i}]: fused {x}, composed {y}"
        );
    }
}

#[test]
fn the_fused_kernels_serve_the_cpu_device() {
    assert!(available(&device(), DType::F32));
    assert!(!available(&device(), DType::F64));
}

#[test]
fn attention_matches_burns_composed_attention_and_gradients() {
    let (b, s, h, kvh, d) = (2, 9, 4, 2, 8);
    let (q, k, v) = (
        random([b, s, h * d], 1),
        random([b, s, kvh * d], 2),
        random([b, s, kvh * d], 3),
    );
    let w = random([b, s, h * d], 4).detach();
    let (cos, sin): (Vec<f32>, Vec<f32>) = (0..s)
        .flat_map(|t| (0..d).map(move |i| (t * (i % (d / 2) + 1)) as f32 * 0.1))
        .map(|a| (a.cos(), a.sin()))
        .unzip();
    let table = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [s, d]), &device());
    let (cos, sin) = (table(cos), table(sin));

    // The packed projections, as one product gives them; the cat's backward hands each of q, k
    // and v its columns of the packed gradient.
    let fused = attention(
        Tensor::cat(vec![q.clone(), k.clone(), v.clone()], 2),
        cos.clone(),
        sin.clone(),
        h,
        kvh,
    );
    let grads_fused = (fused.clone() * w.clone()).sum().backward();

    let rope = Rope {
        cos: cos.reshape([1, 1, s, d]),
        sin: sin.reshape([1, 1, s, d]),
    };
    let heads = |x: Tensor<3>, n: usize| x.reshape([b, s, n, d]).swap_dims(1, 2);
    let g = h / kvh;
    let repeat = |x: Tensor<4>| {
        x.unsqueeze_dim::<5>(2)
            .expand([b, kvh, g, s, d])
            .reshape([b, h, s, d])
    };
    let composed = burn::tensor::module::attention(
        rope.apply(heads(q.clone(), h)),
        repeat(rope.apply(heads(k.clone(), kvh))),
        repeat(heads(v.clone(), kvh)),
        None,
        None,
        burn::tensor::ops::AttentionModuleOptions {
            scale: Some(1.0 / (d as f64).sqrt()),
            softcap: None,
            is_causal: true,
        },
    )
    .swap_dims(1, 2)
    .reshape([b, s, h * d]);
    let grads_composed = (composed.clone() * w).sum().backward();

    assert_close(fused, composed, "output");
    for (x, name) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
        assert_close(
            x.grad(&grads_fused).unwrap(),
            x.grad(&grads_composed).unwrap(),
            name,
        );
    }
}

#[test]
fn swiglu_log_softmax_and_rms_norm_match_burn() {
    let (gate, up) = (random([3, 5, 40], 5), random([3, 5, 40], 6));
    let w = random([3, 5, 40], 7).detach();
    let f = swiglu(gate.clone(), up.clone());
    let gf = (f.clone() * w.clone()).sum().backward();
    let c = burn::tensor::activation::silu(gate.clone()) * up.clone();
    let gc = (c.clone() * w.clone()).sum().backward();
    assert_close(f, c, "swiglu");
    assert_close(gate.grad(&gf).unwrap(), gate.grad(&gc).unwrap(), "dgate");
    assert_close(up.grad(&gf).unwrap(), up.grad(&gc).unwrap(), "dup");

    let x = random([3, 5, 40], 8);
    let f = log_softmax(x.clone());
    let gf = (f.clone() * w.clone()).sum().backward();
    let c = burn::tensor::activation::log_softmax(x.clone(), 2);
    let gc = (c.clone() * w.clone()).sum().backward();
    assert_close(f, c, "log_softmax");
    assert_close(x.grad(&gf).unwrap(), x.grad(&gc).unwrap(), "dx");

    let gain = random([40], 9);
    let f = rms_norm(x.clone(), gain.clone(), 1e-6);
    let gf = (f.clone() * w.clone()).sum().backward();
    let inv = (x.clone().powi_scalar(2).mean_dim(2) + 1e-6).sqrt().recip();
    let c = x.clone() * inv * gain.clone().unsqueeze::<3>();
    let gc = (c.clone() * w).sum().backward();
    assert_close(f, c, "rms_norm");
    assert_close(x.grad(&gf).unwrap(), x.grad(&gc).unwrap(), "rms dx");
    assert_close(gain.grad(&gf).unwrap(), gain.grad(&gc).unwrap(), "rms dw");
}

#[test]
fn linear_matches_burns_product_and_gradients() {
    // Sizes on both sides of the threshold where the product splits across threads, and a
    // weight reached through a transpose (the tied head's), which is not contiguous.
    for (rows, d_in, d_out) in [(7, 5, 3), (300, 200, 180)] {
        let x = random([rows, d_in], 10);
        let r = random([rows, d_out], 13).detach();
        let plain = random([d_in, d_out], 11);
        let stored = random([d_out, d_in], 12);
        // Each graph gets its own view of the weight: a backward pass consumes its nodes.
        let weights: [(&Tensor<2>, &dyn Fn() -> Tensor<2>, &str); 2] = [
            (&plain, &|| plain.clone(), "plain"),
            (&stored, &|| stored.clone().transpose(), "transposed"),
        ];
        for (leaf, w, what) in weights {
            let f = linear(x.clone(), w());
            let gf = (f.clone() * r.clone()).sum().backward();
            let c = x.clone().matmul(w());
            let gc = (c.clone() * r.clone()).sum().backward();
            assert_close(f, c, what);
            assert_close(x.grad(&gf).unwrap(), x.grad(&gc).unwrap(), what);
            assert_close(leaf.grad(&gf).unwrap(), leaf.grad(&gc).unwrap(), what);
        }
    }
}

#[test]
fn target_logprobs_match_burns_log_softmax_and_gather() {
    let (b, t, n) = (3, 70, 50);
    let x = random([b, t, n], 14);
    let ids: Vec<i64> = (0..b * t).map(|i| (i * 7 % n) as i64).collect();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, t]), &device());
    let w = random([b, t], 15).detach();
    let f = target_logprobs(x.clone(), targets.clone());
    let gf = (f.clone() * w.clone()).sum().backward();
    let c = burn::tensor::activation::log_softmax(x.clone(), 2)
        .gather(2, targets.unsqueeze_dim::<3>(2))
        .reshape([b, t]);
    let gc = (c.clone() * w).sum().backward();
    assert_close(f, c, "log p(target)");
    assert_close(x.grad(&gf).unwrap(), x.grad(&gc).unwrap(), "dlogits");
}

#[test]
#[should_panic(expected = "a target is not below the vocabulary size 5")]
fn a_target_outside_the_vocabulary_panics() {
    let x = random([1, 2, 5], 16);
    let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 5], [1, 2]), &device());
    let _ = target_logprobs(x, targets);
}

/// A projection with random weights and, when asked, a bias: random, or zero.
fn proj(d_in: usize, d_out: usize, bias: Option<bool>, seed: u64) -> layers::Proj {
    use burn::module::Param;
    layers::Proj {
        weight: Param::from_tensor(random([d_in, d_out], seed)),
        bias: bias.map(|random_bias| {
            Param::from_tensor(if random_bias {
                random([d_out], seed + 100)
            } else {
                Tensor::zeros([d_out], &device()).require_grad()
            })
        }),
    }
}

#[test]
fn attention_with_only_some_projection_biases_matches_the_packed_path() {
    let (b, s, hidden, h, kvh) = (2, 6, 32, 4, 2);
    let d = hidden / h;
    let x = random([b, s, hidden], 30);
    let w = random([b, s, hidden], 31).detach();
    let (cos, sin): (Vec<f32>, Vec<f32>) = (0..s)
        .flat_map(|t| (0..d).map(move |i| (t * (i % (d / 2) + 1)) as f32 * 0.1))
        .map(|a| (a.cos(), a.sin()))
        .unzip();
    let table = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, s, d]), &device());
    let rope = Rope {
        cos: table(cos),
        sin: table(sin),
    };
    // Only q and v have a bias, so the projections take burn's composed path; with k given a
    // zero bias the three are packed into one product. Both must give the same values and the
    // same gradient of the input.
    let attention = |k_bias: Option<bool>| layers::Attention {
        q_proj: proj(hidden, h * d, Some(true), 32),
        k_proj: proj(hidden, kvh * d, k_bias, 33),
        v_proj: proj(hidden, kvh * d, Some(true), 34),
        o_proj: proj(h * d, hidden, None, 35),
        heads: h,
        kv_heads: kvh,
        head_dim: d,
    };
    let run = |k_bias: Option<bool>| {
        let out = attention(k_bias).forward(x.clone(), &rope, None, None);
        let grads = (out.clone() * w.clone()).sum().backward();
        (out, x.grad(&grads).unwrap())
    };
    let ((mixed, dx_mixed), (packed, dx_packed)) = (run(None), run(Some(false)));
    assert_close(mixed, packed, "attention");
    assert_close(dx_mixed, dx_packed, "attention dx");
}
