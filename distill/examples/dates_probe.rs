//! How fast a model learns the built-in dates task from gold alone: its eval loss and exact match
//! as it trains, then sample answers. Sizes and settings come from the environment (`GOLD`,
//! `VOCAB`, `HIDDEN`, `LAYERS`, `STEPS`, `BATCH`, `LR`, `WARMUP`, `EVAL`).
//!
//! `GOLD=3000 cargo run --release -p workbench-distill --example dates_probe`

use datasets::config::BuiltinTask;
use distill::model::ModelConfig;
use distill::recipe;
use distill::train::{self, TrainOptions};

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let gold_n = env("GOLD", 400);
    let sets = datasets::tasks::generate(
        BuiltinTask::Dates,
        17,
        datasets::tasks::Sizes {
            gold: gold_n,
            prompts: 2000,
            eval: 200,
            review: 0,
            slice_share: 0.0,
        },
    );
    let texts: Vec<String> = sets
        .gold
        .iter()
        .chain(&sets.prompts)
        .map(|s| s.prompt.clone())
        .chain(sets.gold.iter().filter_map(|s| s.reference.clone()))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tok = recipe::train_tokenizer(
        &refs,
        env("VOCAB", 512),
        distill::data::tokenizer::BpeSplit::Digits,
    )
    .unwrap();
    let ex = |s: &datasets::Sample| {
        recipe::example(&tok, &s.prompt, s.reference.as_deref().unwrap(), None).unwrap()
    };
    let train_set: Vec<_> = sets.gold.iter().map(ex).collect();
    let eval_set: Vec<_> = sets.eval.iter().map(ex).collect();
    let lens: Vec<usize> = train_set.iter().map(|e| e.ids.len()).collect();
    println!(
        "vocab {} · mean length {:.1} tokens (prompt {:.1})",
        tok.vocab_size(),
        lens.iter().sum::<usize>() as f64 / lens.len() as f64,
        train_set.iter().map(|e| e.prompt_len).sum::<usize>() as f64 / lens.len() as f64
    );
    let (h, l) = (env("HIDDEN", 128), env("LAYERS", 4));
    let config = ModelConfig::llama(tok.vocab_size(), h, h * 8 / 3, l, h / 32, h / 64, 128, true);
    println!("params {}", config.num_params());
    let device = distill::backend::cpu().autodiff();
    device.seed(1);
    let model = config.init(&device);
    let prompts: Vec<String> = sets.eval.iter().map(|s| s.prompt.clone()).collect();
    let answers_ref: Vec<String> = sets
        .eval
        .iter()
        .map(|s| s.reference.clone().unwrap())
        .collect();
    let steps = env("STEPS", 600);
    let o = TrainOptions {
        steps,
        batch_size: env("BATCH", 32),
        lr: std::env::var("LR")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3e-3),
        warmup: env("WARMUP", 30),
        eval_every: env("EVAL", 100),
        weight_decay: 0.1,
        seed: 3,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let pad = tok.pad_id().unwrap();
    let trained = train::train(
        model,
        &device,
        &o,
        &train_set,
        &eval_set,
        pad,
        None,
        None,
        None,
        false,
        &mut |m| {
            let a = recipe::answers(m, &tok, &prompts, 14, 50)?;
            Ok(Some(recipe::exact_match(
                &a,
                &answers_ref,
                &[datasets::config::Normalize::Trim],
            )))
        },
        &mut |s| {
            if s.eval_loss.is_some() || s.step % 50 == 0 {
                println!(
                    "step {:4} loss {:.3} eval {:?} em {:?} · {:.0}s",
                    s.step,
                    s.loss,
                    s.eval_loss,
                    s.eval_exact,
                    t0.elapsed().as_secs_f64()
                );
            }
        },
    )
    .unwrap();
    for b in [1, 8, 50] {
        let a = recipe::answers(&trained.model, &tok, &prompts, 14, b).unwrap();
        println!(
            "batch {b}: em {}",
            recipe::exact_match(&a, &answers_ref, &[datasets::config::Normalize::Trim])
        );
    }
    let a = recipe::answers(&trained.model, &tok, &prompts[..40], 14, 8).unwrap();
    for (p, (got, want)) in prompts.iter().zip(a.iter().zip(&answers_ref)) {
        println!(
            "{} {:?} -> {got:?} (want {want})",
            got.trim() == want.trim(),
            p.lines().last().unwrap()
        );
    }
}
