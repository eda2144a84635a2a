//! Top-k KD against full-vocabulary KD on a run's data: both losses, their gradients on the
//! student's logits, and the stored top-k logprobs against the teacher's own forward.
//!
//! `cargo run --release -p workbench-distill --example kd_probe -- runs/demo`

use distill::model::checkpoint;
use distill::recipe;
use distill::train::data::batch;
use distill::train::loss::{self, Divergence};

fn main() {
    let Some(run) = std::env::args_os().nth(1) else {
        eprintln!(
            "kd_probe needs a run directory with a teacher and a synthetic set\n\nhint: \
             `cargo run --release -p workbench-distill --example kd_probe -- runs/demo`"
        );
        std::process::exit(2);
    };
    let run = std::path::PathBuf::from(run);
    let device = distill::backend::cpu();
    let teacher = checkpoint::load(&run.join("teacher"), &device).unwrap();
    let tok = distill::data::tokenizer::Tokenizer::from_dir(&run.join("teacher")).unwrap();
    let rows = datasets::Set::open(run.join("synthetic"))
        .unwrap()
        .read_all::<datasets::Sample>(None)
        .unwrap();
    let examples: Vec<_> = rows[..8]
        .iter()
        .map(|s| {
            recipe::example(
                &tok,
                &s.prompt,
                s.completion.as_deref().unwrap(),
                Some((&s.completion_ids, &s.teacher_topk)),
            )
            .unwrap()
        })
        .collect();
    let refs: Vec<_> = examples.iter().collect();
    let b = batch(&refs, 0, &device);
    let student = distill::train::job::model_config(
        &datasets::config::StudentConfig::default().architecture,
        tok.vocab_size(),
    )
    .init(&device);
    for (name, logits) in [
        ("teacher as student", teacher.forward(b.input.clone())),
        ("fresh student", student.forward(b.input.clone())),
    ] {
        let tl = teacher.forward(b.input.clone());
        let full = loss::full_kd(
            logits.clone(),
            tl,
            b.mask.clone(),
            Divergence::ForwardKl,
            1.0,
        );
        let (ids, lp, valid) = b.topk.clone().unwrap();
        let top = loss::topk_kd(
            logits.clone(),
            ids,
            lp,
            valid,
            b.mask.clone(),
            Divergence::ForwardKl,
            1.0,
        );
        let ce = loss::cross_entropy(logits, b.targets.clone(), b.mask.clone());
        let v = |t: burn::tensor::Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap()[0];
        println!(
            "{name}: full KD {:.5} · top-k KD {:.5} · CE {:.5}",
            v(full),
            v(top),
            v(ce)
        );
    }
    // Gradients on the student's logits: top-k KD against full KD.
    let ad = distill::backend::cpu().autodiff();
    let logits0 = student.forward(b.input.clone()).into_data();
    let tl0 = teacher.forward(b.input.clone()).into_data();
    let grad = |topk: bool| {
        let z = burn::tensor::Tensor::<3>::from_data(logits0.clone(), &ad).require_grad();
        let bb = batch(&refs, 0, &ad);
        let l = if topk {
            let (ids, lp, valid) = bb.topk.unwrap();
            loss::topk_kd(
                z.clone(),
                ids,
                lp,
                valid,
                bb.mask,
                Divergence::ForwardKl,
                1.0,
            )
        } else {
            let tl = burn::tensor::Tensor::<3>::from_data(tl0.clone(), &ad);
            loss::full_kd(z.clone(), tl, bb.mask, Divergence::ForwardKl, 1.0)
        };
        z.grad(&l.backward())
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let (gt, gf) = (grad(true), grad(false));
    let norm = |g: &[f32]| g.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let diff: Vec<f32> = gt.iter().zip(&gf).map(|(a, b)| a - b).collect();
    println!(
        "grad norms: top-k {:.5} · full {:.5} · difference {:.5}",
        norm(&gt),
        norm(&gf),
        norm(&diff)
    );
    // Stored logprobs against the teacher's own forward at the same positions.
    let tl = burn::tensor::activation::log_softmax(teacher.forward(b.input.clone()), 2);
    let s = &examples[0];
    let data = tl.into_data().try_to_vec::<f32>().unwrap();
    let v = tok.vocab_size();
    for j in 0..3 {
        let t = s.prompt_len - 1 + j;
        let top = &s.topk.as_ref().unwrap()[j];
        let row = &data[t * v..(t + 1) * v];
        println!(
            "completion token {j}: stored {:?} · forward {:?}",
            top.iter()
                .take(3)
                .map(|e| (e.id, e.logprob))
                .collect::<Vec<_>>(),
            top.iter()
                .take(3)
                .map(|e| (e.id, row[e.id as usize]))
                .collect::<Vec<_>>()
        );
    }
}
