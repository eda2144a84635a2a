//! The model's speed: training steps and KV-cache generation, beside PyTorch and transformers.
//!
//! ```text
//! cargo bench --bench model -- train --config benches/configs/student-4m.json [--batch 16] [--seq 128] [--steps 20] [--warmup 3] [--label NAME]
//!   (WORKBENCH_FUSED=0 runs the step on burn's composed operations instead of the fused kernels)
//! cargo bench --bench model -- generate --model DIR|FILE.gguf [--batch 1] [--prompt-len 16] [--new 64] [--reps 3]
//!   [--quantize q8_0|q4_0] [--top-logprobs 20] [--label NAME]
//! cargo bench --bench model -- bandwidth [--mib 1024] [--reps 5]   (memory read bandwidth, 1 and 2 threads)
//! cargo bench --bench model -- init --config CONFIG.json --out DIR     (a random checkpoint both sides load)
//! cargo bench --bench model -- peak [--size 1000 | --shape M,K,N [--lhs-t]] [--reps 20]   (the fp32 matmul peak, for MFU)
//! ```
//!
//! Prints one JSON object per run, like the Python peers `benches/model_train.py` and
//! `benches/generate.py`; `benches/run.sh` runs them side by side and prints the ratios.

/// The workbench binary's allocator and its setting, so the figures are the binary's.
#[path = "../src/allocator.rs"]
mod allocator;

use std::path::PathBuf;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorData;
use distill::generate::{GenerateOptions, generate};
use distill::model::{ModelConfig, checkpoint};
use distill::train::loss::cross_entropy;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn path_arg(args: &[String], name: &str) -> PathBuf {
    let Some(p) = args
        .iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
    else {
        eprintln!("missing {name}");
        std::process::exit(2);
    };
    PathBuf::from(p)
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn random_ids(rng: &mut Lcg, n: usize, vocab: usize) -> Vec<i64> {
    (0..n).map(|_| (rng.next() % vocab as u64) as i64).collect()
}

/// On a thread of the CPU pool, as the training loop runs its steps (`backend::on_cpu_pool`).
fn train(args: &[String]) {
    distill::backend::on_cpu_pool(|| train_here(args))
}

fn train_here(args: &[String]) {
    let config = ModelConfig::from_file(&path_arg(args, "--config")).expect("config");
    let (batch, seq) = (arg(args, "--batch", 16usize), arg(args, "--seq", 128usize));
    let (steps, warmup) = (arg(args, "--steps", 20usize), arg(args, "--warmup", 3usize));
    let label: String = arg(args, "--label", String::new());
    let device = distill::backend::cpu().autodiff();
    device.seed(0);
    let mut model = config.init(&device);
    // The training loop's optimizer (AdamW, fused on the CPU), as PyTorch's side uses its own.
    let mut optim = distill::train::optimizer(0.1, 1.0);
    let mut rng = Lcg(7);
    let mut timed = 0.0;
    let mut last_loss = 0.0;
    // forward (with the loss), backward, optimizer step
    let mut parts = [0.0f64; 3];
    for step in 0..warmup + steps {
        let ids = random_ids(&mut rng, batch * (seq + 1), config.vocab_size);
        let all = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, seq + 1]), &device);
        let input = all.clone().narrow(1, 0, seq);
        let target = all.narrow(1, 1, seq);
        let t = Instant::now();
        // The training loop's cross-entropy, over every position (PyTorch's side: `labels=`).
        let loss = cross_entropy(
            model.forward(input),
            target,
            Tensor::ones([batch, seq], &device),
        );
        let t_fwd = t.elapsed().as_secs_f64();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let t_bwd = t.elapsed().as_secs_f64();
        model = optim.step(1e-3, model, grads);
        last_loss = loss.into_scalar::<f32>();
        if step >= warmup {
            let total = t.elapsed().as_secs_f64();
            timed += total;
            parts[0] += t_fwd;
            parts[1] += t_bwd - t_fwd;
            parts[2] += total - t_bwd;
        }
    }
    let tokens = (batch * seq * steps) as f64;
    // A step's FLOPs per token, as PaLM's MFU counts them: 6 per weight that multiplies (the input
    // embedding only looks rows up) and 12 · layers · heads · head_dim · sequence for attention.
    let c = &config;
    let embedding = (c.vocab_size * c.hidden_size) as u64;
    let attention = 12 * c.num_hidden_layers * c.num_attention_heads * c.head_dim * seq;
    let flops_per_token = 6 * (c.num_params() - embedding) + attention as u64;
    println!(
        "{{\"impl\": \"workbench\", \"phase\": \"train\", \"label\": \"{label}\", \"params\": {}, \"flops_per_token\": {flops_per_token}, \"tokens_per_s\": {:.0}, \"step_ms\": {:.1}, \"threads\": {}, \"loss\": {last_loss:.3}, \"forward_ms\": {:.1}, \"backward_ms\": {:.1}, \"optimizer_ms\": {:.1}}}",
        config.num_params(),
        tokens / timed,
        timed * 1000.0 / steps as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        parts[0] * 1000.0 / steps as f64,
        parts[1] * 1000.0 / steps as f64,
        parts[2] * 1000.0 / steps as f64,
    );
}

/// The machine's fp32 matrix-product peak, the denominator of MFU: the best of `--reps` square
/// products of `--size` (1000 by default: large enough that packing and the split across threads
/// cost little, and not a power of two, whose strides collide in the caches) through the training
/// step's own product on all of the pool's threads.
///
/// `--shape M,K,N` measures one `[M, K] · [K, N]` product instead (a shape of the training step,
/// to compare with `benches/matmul.py` on the same shape).
fn peak(args: &[String]) {
    let (n, reps) = (arg(args, "--size", 1000usize), arg(args, "--reps", 20usize));
    let shape = arg(args, "--shape", format!("{n},{n},{n}"));
    let shape: Vec<usize> = shape
        .split(',')
        .map(|v| v.parse().expect("--shape takes M,K,N"))
        .collect();
    let [m, k, n] = shape[..] else {
        panic!("--shape takes M,K,N")
    };
    // `--lhs-t`: the left operand stored as [K, M] and read transposed, as a weight gradient
    // (xᵀ · dy) reads it.
    let lhs_t = args.iter().any(|a| a == "--lhs-t");
    let lhs_strides = if lhs_t { (1, m) } else { (k, 1) };
    let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut best = f64::MAX;
    let mut check = 0.0f32;
    for _ in 0..reps + 1 {
        let t = Instant::now();
        let c = distill::backend::on_cpu_pool(|| {
            distill::model::kernels::product((m, n, k), &a, lhs_strides, &b, (n, 1))
        });
        best = best.min(t.elapsed().as_secs_f64());
        check += c[m * n / 2];
    }
    let gflops = 2.0 * (m * n * k) as f64 / best / 1e9;
    println!(
        "{{\"impl\": \"workbench\", \"phase\": \"peak\", \"size\": {}, \"shape\": \"{m}x{k}x{n}{}\", \"gflops\": {gflops:.1}, \"threads\": {}, \"check\": {check:.3}}}",
        if m == k && k == n { m } else { 0 },
        if lhs_t { "-t" } else { "" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
}

/// Read bandwidth of main memory: the best of `reps` passes summing a buffer far larger than
/// the caches, on one thread and on every core (each summing its own part), in GB/s.
fn bandwidth(args: &[String]) {
    let (mib, reps) = (arg(args, "--mib", 1024usize), arg(args, "--reps", 5usize));
    let data: Vec<f32> = (0..mib << 18).map(|i| (i % 7) as f32).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sum = |part: &[f32]| -> f32 {
        // Sixteen lanes so the adds pipeline; the total checks the pass was not skipped.
        let mut acc = [0.0f32; 16];
        for c in part.chunks_exact(16) {
            for l in 0..16 {
                acc[l] += c[l];
            }
        }
        acc.iter().sum()
    };
    let mut results = Vec::new();
    for t in [1, threads] {
        let mut best = f64::MAX;
        let mut check = 0.0f32;
        for _ in 0..reps {
            let start = Instant::now();
            check += std::thread::scope(|s| {
                let parts: Vec<_> = data
                    .chunks(data.len().div_ceil(t))
                    .map(|p| s.spawn(move || sum(p)))
                    .collect();
                parts.into_iter().map(|h| h.join().unwrap()).sum::<f32>()
            });
            best = best.min(start.elapsed().as_secs_f64());
        }
        results.push(format!(
            "\"gb_per_s_{t}_threads\": {:.2}",
            (data.len() * 4) as f64 / best / 1e9
        ));
        assert!(check > 0.0);
    }
    println!(
        "{{\"impl\": \"workbench\", \"phase\": \"bandwidth\", \"mib\": {mib}, {}}}",
        results.join(", ")
    );
}

fn init(args: &[String]) {
    let config = ModelConfig::from_file(&path_arg(args, "--config")).expect("config");
    let device = distill::backend::cpu();
    device.seed(0);
    let model = config.init(&device);
    checkpoint::save_weights(&model, &path_arg(args, "--out")).expect("save");
}

fn bench_generate(args: &[String]) {
    let dir = path_arg(args, "--model");
    let (batch, prompt_len) = (
        arg(args, "--batch", 1usize),
        arg(args, "--prompt-len", 16usize),
    );
    let (new, reps) = (arg(args, "--new", 64usize), arg(args, "--reps", 3usize));
    let top = arg(args, "--top-logprobs", 20usize);
    let label = arg(args, "--label", String::new());
    let mut model = checkpoint::load(&dir, &distill::backend::cpu()).expect("load");
    let quantize = arg(args, "--quantize", String::from("f32"));
    let kind = match quantize.as_str() {
        "f32" => None,
        "q8_0" => Some(distill::model::kernels::quant::QuantKind::Q8_0),
        "q4_0" => Some(distill::model::kernels::quant::QuantKind::Q4_0),
        other => panic!("--quantize {other}: expected f32, q8_0 or q4_0"),
    };
    model.quantize(kind).expect("quantize");
    // What one decoding step reads: every matrix (quantized or f32) and the norms; the
    // embedding rows a step looks up are negligible.
    let weight_bytes = match &model.quantized {
        Some(q) => q.bytes() as f64,
        None => {
            let c = model.config();
            4.0 * (c.num_params() as f64
                - if c.tie_word_embeddings {
                    0.0
                } else {
                    (c.vocab_size * c.hidden_size) as f64
                })
        }
    };
    let vocab = model.config().vocab_size;
    let mut rng = Lcg(11);
    let prompts: Vec<Vec<u32>> = (0..batch)
        .map(|_| {
            random_ids(&mut rng, prompt_len, vocab)
                .into_iter()
                .map(|x| x as u32)
                .collect()
        })
        .collect();
    let options = GenerateOptions {
        max_new_tokens: new,
        logprobs: top,
        eos_ids: Vec::new(),
        ..Default::default()
    };
    // One warm-up, then the best of `reps`.
    let _ = generate(&model, &prompts, &options, None).expect("generate");
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let out = generate(&model, &prompts, &options, None).expect("generate");
        best = best.min(t.elapsed().as_secs_f64());
        assert!(out.iter().all(|g| g.ids.len() == new));
    }
    // Steps per second times the bytes a step reads: the bandwidth decoding reaches.
    let steps_per_s = new as f64 / best;
    println!(
        "{{\"impl\": \"workbench\", \"phase\": \"generate\", \"label\": \"{label}\", \"batch\": {batch}, \"weights\": \"{quantize}\", \"new_tokens_per_s\": {:.1}, \"seconds\": {best:.3}, \"top_logprobs\": {top}, \"weight_mib\": {:.1}, \"weight_gb_per_s\": {:.2}}}",
        (batch * new) as f64 / best,
        weight_bytes / (1 << 20) as f64,
        weight_bytes * steps_per_s / 1e9,
    );
}

fn main() {
    allocator::configure();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("train") => train(&args),
        Some("generate") => bench_generate(&args),
        Some("init") => init(&args),
        Some("peak") => peak(&args),
        Some("bandwidth") => bandwidth(&args),
        _ => {
            eprintln!(
                "usage: model (train --config FILE | generate --model DIR | init --config FILE --out DIR | peak | bandwidth) [options]"
            );
            std::process::exit(2);
        }
    }
}
