use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::model::ModelConfig;

fn tiny() -> ModelConfig {
    ModelConfig::llama(24, 32, 48, 2, 4, 2, 64, false)
}

/// A copy task: the completion repeats the prompt.
fn examples(n: usize, seed: u64) -> Vec<Example> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            let len = 3 + (s >> 60) as usize % 3;
            let mut prompt = vec![1u32];
            for _ in 0..len {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                prompt.push(3 + (s >> 33) as u32 % 20);
            }
            prompt.push(2);
            let mut ids = prompt.clone();
            ids.extend(&prompt[1..prompt.len() - 1]);
            Example {
                prompt_len: prompt.len(),
                ids,
                topk: None,
                rejected: None,
                weights: None,
            }
        })
        .collect()
}

fn options(steps: usize) -> TrainOptions {
    TrainOptions {
        steps,
        batch_size: 8,
        accumulation: 2,
        lr: 3e-3,
        warmup: 3,
        eval_every: 4,
        checkpoint_every: 4,
        seed: 5,
        ..Default::default()
    }
}

/// Starting weights written once, so runs start equal whatever other tests do with the
/// device's random generator (tests run in parallel threads).
fn initial(dir: &Path) -> PathBuf {
    let path = dir.join("init");
    let device = crate::backend::cpu();
    checkpoint::save_weights(&tiny().init(&device), &path).unwrap();
    path
}

fn run(dir: Option<&Path>, o: &TrainOptions, resume: bool, init: &Path) -> Trained {
    run_on(dir, o, resume, 64, Some(init))
}

fn run_on(
    dir: Option<&Path>,
    o: &TrainOptions,
    resume: bool,
    n: usize,
    init: Option<&Path>,
) -> Trained {
    let device = crate::backend::cpu().autodiff();
    let model = match init {
        Some(p) => checkpoint::load(p, &device).unwrap(),
        None => tiny().init(&device),
    };
    let (train_set, eval_set) = (examples(n, 1), examples(16, 2));
    train(
        model,
        &device,
        o,
        &train_set,
        &eval_set,
        0,
        None,
        None,
        dir,
        resume,
        &mut |_| Ok(None),
        &mut |_| {},
    )
    .unwrap()
}

#[test]
fn the_schedule_warms_up_then_decays_to_the_floor() {
    let o = TrainOptions {
        steps: 100,
        warmup: 10,
        lr: 1.0,
        min_lr_ratio: 0.1,
        ..Default::default()
    };
    assert!((learning_rate(&o, 5) - 0.5).abs() < 1e-12);
    assert!((learning_rate(&o, 10) - 1.0).abs() < 1e-12);
    assert!((learning_rate(&o, 55) - 0.55).abs() < 1e-12);
    assert!((learning_rate(&o, 100) - 0.1).abs() < 1e-12);
}

#[test]
fn the_model_learns_the_copy_task() {
    let mut o = options(80);
    o.lr = 1e-2;
    let t = run_on(None, &o, false, 2000, None);
    let first = t.log[0].loss;
    let last = t.log.last().unwrap();
    // Held-out prompts: what it learned is copying, not these 2,000 rows.
    assert!(last.loss < first * 0.75, "{first} -> {}", last.loss);
    assert!(
        last.eval_loss.unwrap() < first * 0.8,
        "{:?}",
        last.eval_loss
    );
}

#[test]
fn a_paused_run_resumes_on_the_same_loss_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    let whole = run(None, &options(12), false, &init);
    let ckpt = tmp.path().join("checkpoints");
    let mut first = options(12);
    first.pause_after = Some(6);
    let part = run(Some(&ckpt), &first, false, &init);
    assert_eq!(part.log.len(), 6);
    assert_eq!(latest_checkpoint(&ckpt).unwrap().0, 6);
    // The resumed run is handed weights of its own: only the checkpoint puts it on the curve.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let other = initial(&elsewhere);
    let from_other = run(None, &options(12), false, &other);
    assert_ne!(
        from_other.log[0].loss.to_bits(),
        whole.log[0].loss.to_bits(),
        "other weights start elsewhere"
    );
    let rest = run(Some(&ckpt), &options(12), true, &other);
    // Bit for bit: losses, eval losses, the steps read back from the checkpoint's log and the
    // ones trained after it. Anything the resume got wrong (weights, optimizer moments,
    // schedule, data order) would show here.
    assert_eq!(rest.log.len(), whole.log.len());
    for (a, b) in rest.log.iter().zip(&whole.log) {
        assert_eq!(a.step, b.step);
        assert_eq!(
            a.loss.to_bits(),
            b.loss.to_bits(),
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
        assert_eq!(
            a.eval_loss.map(f64::to_bits),
            b.eval_loss.map(f64::to_bits),
            "eval at step {}: {:?} vs {:?}",
            a.step,
            a.eval_loss,
            b.eval_loss
        );
    }
}

/// Preference pairs: the copy (chosen) against the prompt reversed (rejected). DPO against the
/// frozen starting model makes the copy more likely than the reversal, by far more than the same
/// steps of SFT on the chosen side alone do.
#[test]
fn dpo_widens_the_margin_of_the_chosen_answer_over_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    let pairs: Vec<Example> = examples(64, 3)
        .into_iter()
        .map(|mut e| {
            let mut rejected: Vec<u32> = e.ids[1..e.prompt_len - 1].to_vec();
            rejected.reverse();
            rejected.push(2);
            e.rejected = Some(rejected);
            e
        })
        .collect();
    let margin = |m: &Model| {
        let device = crate::backend::cpu();
        let chosen: Vec<&Example> = pairs.iter().collect();
        let rejected: Vec<Example> = pairs.iter().filter_map(Example::rejected_example).collect();
        let rejected: Vec<&Example> = rejected.iter().collect();
        let (bc, br) = (batch(&chosen, 0, &device), batch(&rejected, 0, &device));
        let lp = |b: &data::Batch| {
            let v = loss::sequence_logprobs(
                m.forward(b.input.clone()),
                b.targets.clone(),
                b.mask.clone(),
            );
            v.into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|&x| x as f64)
                .sum::<f64>()
        };
        (lp(&bc) - lp(&br)) / pairs.len() as f64
    };
    let device = crate::backend::cpu().autodiff();
    let reference = burn::module::Module::no_grad(checkpoint::load(&init, &device).unwrap());
    let before = margin(&checkpoint::load(&init, &crate::backend::cpu()).unwrap());
    let fit = |objective| {
        let o = TrainOptions {
            objective,
            eval_every: 0,
            checkpoint_every: 0,
            ..options(16)
        };
        let model = checkpoint::load(&init, &device).unwrap();
        let t = train(
            model,
            &device,
            &o,
            &pairs,
            &[],
            0,
            Some(&reference),
            None,
            None,
            false,
            &mut |_| Ok(None),
            &mut |_| {},
        )
        .unwrap();
        (margin(&t.model), t.log)
    };
    let (dpo, log) = fit(Objective::Preference {
        beta: 0.5,
        weight: 2.0,
    });
    let (sft, _) = fit(Objective::CrossEntropy);
    assert!(
        log[0].kd > 0.69 && log[0].kd < 0.70,
        "DPO starts at ln 2: {}",
        log[0].kd
    );
    assert!(log.last().unwrap().kd < 0.5, "{:?}", log.last());
    assert!(
        dpo - before > 1.5 * (sft - before).max(0.5),
        "before {before}, dpo {dpo}, sft {sft}"
    );
}

#[test]
fn dpo_without_a_reference_is_refused() {
    let device = crate::backend::cpu().autodiff();
    let o = TrainOptions {
        objective: Objective::Preference {
            beta: 0.1,
            weight: 1.0,
        },
        ..options(2)
    };
    let e = train(
        tiny().init(&device),
        &device,
        &o,
        &examples(4, 1),
        &[],
        0,
        None,
        None,
        None,
        false,
        &mut |_| Ok(None),
        &mut |_| {},
    );
    assert!(e.is_err());
}

#[test]
fn a_run_whose_loss_goes_nan_stops_with_the_step_instead_of_finishing() {
    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    let device = crate::backend::cpu().autodiff();
    let model = checkpoint::load(&init, &device).unwrap();
    // A rate no config accepts: AdamW moves every weight by about 1e30 on the first step, so
    // the second step's logits overflow.
    let o = TrainOptions {
        lr: 1e30,
        warmup: 0,
        grad_clip: 0.0,
        checkpoint_every: 0,
        ..options(6)
    };
    let result = train(
        model,
        &device,
        &o,
        &examples(32, 1),
        &examples(8, 2),
        0,
        None,
        None,
        None,
        false,
        &mut |_| Ok(None),
        &mut |_| {},
    );
    match result {
        Err(Error::Diverged { step, what, .. }) => {
            assert!(step <= 6, "{step}");
            assert!(!what.is_empty());
        }
        Err(e) => panic!("another error: {e}"),
        Ok(t) => panic!(
            "a diverged run finished; its last loss was {:?}",
            t.log.last().map(|s| s.loss)
        ),
    }
}

#[test]
fn weights_with_a_nan_are_not_finite() {
    let device = crate::backend::cpu();
    let model = tiny().init(&device);
    assert!(weights_are_finite(&model));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    checkpoint::save_weights(&model, &dir).unwrap();
    // Poison one f32 of the safetensors data (the last four bytes of the file).
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let poisoned = checkpoint::load(&dir, &device).unwrap();
    assert!(!weights_are_finite(&poisoned));
}

/// A copy task's examples with the completion reversed: what the copy task teaches gets these
/// wrong, so their loss first falls (the tokens and lengths are right) and then climbs.
fn reversed(n: usize, seed: u64) -> Vec<Example> {
    examples(n, seed)
        .into_iter()
        .map(|mut e| {
            let p = e.prompt_len;
            e.ids[p..].reverse();
            e
        })
        .collect()
}

fn train_keep_best(dir: Option<&Path>, o: &TrainOptions, resume: bool, init: &Path) -> Trained {
    let device = crate::backend::cpu().autodiff();
    let model = checkpoint::load(init, &device).unwrap();
    train(
        model,
        &device,
        o,
        &examples(256, 1),
        &reversed(16, 2),
        0,
        None,
        None,
        dir,
        resume,
        &mut |_| Ok(None),
        &mut |_| {},
    )
    .unwrap()
}

/// With `keep_best` (and no exact match measured), the loop hands back the weights of its lowest
/// eval loss, not the last step's: here the eval set is one the training makes worse after a
/// while. A paused and resumed run keeps the same step (the best weights are saved beside the
/// checkpoints), and its weights are those weights.
#[test]
fn keep_best_returns_the_lowest_eval_loss_and_survives_a_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    let mut o = options(100);
    o.lr = 1e-2;
    o.eval_every = 10;
    o.checkpoint_every = 10;
    o.keep_best = true;
    let whole = train_keep_best(None, &o, false, &init);
    let evals: Vec<(usize, f64)> = whole
        .log
        .iter()
        .filter_map(|s| s.eval_loss.map(|l| (s.step, l)))
        .collect();
    let (best_step, best_loss) = evals
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert!(best_step < 100, "{evals:?}");
    assert_eq!(whole.kept_step, Some(best_step), "{evals:?}");
    let eval_set = reversed(16, 2);
    let loss = |m: &Model| eval_loss(m, &eval_set, o.batch_size, 0);
    assert_eq!(loss(&whole.model).to_bits(), best_loss.to_bits());

    let ckpt = tmp.path().join("checkpoints");
    let mut first = o.clone();
    first.pause_after = Some(best_step + 10);
    train_keep_best(Some(&ckpt), &first, false, &init);
    let rest = train_keep_best(Some(&ckpt), &o, true, &init);
    assert_eq!(rest.kept_step, Some(best_step));
    assert_eq!(loss(&rest.model).to_bits(), best_loss.to_bits());
    // Only the best weights are kept beside the checkpoints.
    let bests: Vec<String> = std::fs::read_dir(&ckpt)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.starts_with("best-").then_some(name)
        })
        .collect();
    assert_eq!(bests, [format!("best-step-{best_step}")]);
}

/// The kept evaluation: exact match first (the loss can rise while more answers come out
/// right), the loss to break ties, the loss alone when exact match is not measured.
#[test]
fn the_best_evaluation_is_the_highest_exact_match_then_the_lowest_loss() {
    assert!(beats(Some(0.5), 0.9, None));
    assert!(beats(Some(0.7), 0.49, Some((Some(0.45), 0.43))));
    assert!(!beats(Some(0.4), 0.30, Some((Some(0.45), 0.43))));
    assert!(beats(Some(0.45), 0.40, Some((Some(0.45), 0.43))));
    assert!(!beats(Some(0.45), 0.50, Some((Some(0.45), 0.43))));
    assert!(beats(None, 0.40, Some((None, 0.43))));
    assert!(!beats(None, 0.50, Some((None, 0.43))));
}

/// A frozen teacher for distillation tests: a model trained on the copy task, loaded on the
/// autodiff device as the distill stage loads it.
fn copy_teacher(dir: &Path, init: &Path) -> Model {
    let mut o = options(60);
    o.lr = 1e-2;
    let trained = run(None, &o, false, init);
    let path = dir.join("teacher");
    checkpoint::save_weights(&trained.model, &path).unwrap();
    let device = crate::backend::cpu().autodiff();
    burn::module::Module::no_grad(checkpoint::load(&path, &device).unwrap())
}

fn distill_run(
    o: &TrainOptions,
    teacher: &Model,
    init: &Path,
    dir: Option<&Path>,
    resume: bool,
) -> Trained {
    distill_with(o, Some(teacher), None, init, dir, resume)
}

/// A distillation run of the copy task from `init`, the teacher a frozen model or a grader.
fn distill_with(
    o: &TrainOptions,
    frozen: Option<&Model>,
    grader: Option<&mut crate::teacher::grade::Grader>,
    init: &Path,
    dir: Option<&Path>,
    resume: bool,
) -> Trained {
    let device = crate::backend::cpu().autodiff();
    let model = checkpoint::load(init, &device).unwrap();
    train(
        model,
        &device,
        o,
        &examples(64, 1),
        &examples(16, 2),
        0,
        frozen,
        grader,
        dir,
        resume,
        &mut |_| Ok(None),
        &mut |_| {},
    )
    .unwrap()
}

fn distill_options(steps: usize, lambda: Option<f64>) -> TrainOptions {
    TrainOptions {
        objective: Objective::Distill {
            alpha: 0.5,
            divergence: loss::Divergence::ReverseKl,
            temperature: 1.0,
        },
        on_policy: lambda.map(|lambda| OnPolicy {
            lambda,
            temperature: 1.0,
            max_new_tokens: 6,
            eos_ids: vec![2],
            max_positions: 64,
            after: 0,
            replace_below: 0.0,
        }),
        ..options(steps)
    }
}

/// λ = 0 is off-policy distillation exactly: the same loss curve, bit for bit, as without the
/// on-policy settings.
#[test]
fn on_policy_at_zero_is_off_policy_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    let teacher = copy_teacher(tmp.path(), &init);
    let off = distill_run(&distill_options(8, None), &teacher, &init, None, false);
    let zero = distill_run(&distill_options(8, Some(0.0)), &teacher, &init, None, false);
    assert_eq!(off.log.len(), zero.log.len());
    for (a, b) in off.log.iter().zip(&zero.log) {
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "step {}", a.step);
        assert_eq!(a.eval_loss.map(f64::to_bits), b.eval_loss.map(f64::to_bits));
    }
}

/// λ = 1: every batch is the student's own samples, graded by the teacher. The loss is the KD
/// term alone (no cross-entropy on sampled tokens), it falls by a third or more, the student's loss on the copy
/// task's references (which it never trains on here) falls, and a paused run resumes on the
/// same curve (the samples are seeded by the step).
#[test]
fn on_policy_learns_from_the_teachers_grades_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    let teacher = copy_teacher(tmp.path(), &init);
    let mut o = distill_options(40, Some(1.0));
    o.lr = 1e-2;
    o.eval_every = 40;
    let whole = distill_run(&o, &teacher, &init, None, false);
    for s in &whole.log {
        assert_eq!(s.loss.to_bits(), s.kd.to_bits(), "step {}: {s:?}", s.step);
    }
    let first: f64 = whole.log[..5].iter().map(|s| s.kd).sum::<f64>() / 5.0;
    let last: f64 = whole.log[35..].iter().map(|s| s.kd).sum::<f64>() / 5.0;
    assert!(last < first * 0.7, "{first} -> {last}");
    let fresh = {
        let device = crate::backend::cpu();
        checkpoint::load(&init, &device).unwrap()
    };
    let eval_set = examples(16, 2);
    let before = eval_loss(&fresh, &eval_set, 8, 0);
    let after = whole.log.last().unwrap().eval_loss.unwrap();
    assert!(after < before, "{before} -> {after}");

    resumed_on_the_same_curve(&o, &teacher, &init, tmp.path(), &whole, 20, 10);
}

/// `o` run paused after `pause_after` steps (a checkpoint every `every`), then resumed: the
/// steps follow `whole`'s loss curve bit for bit. Returns the resumed run.
fn resumed_on_the_same_curve(
    o: &TrainOptions,
    teacher: &Model,
    init: &Path,
    dir: &Path,
    whole: &Trained,
    pause_after: usize,
    every: usize,
) -> Trained {
    let ckpt = dir.join("checkpoints");
    let mut o = o.clone();
    o.checkpoint_every = every;
    let mut paused = o.clone();
    paused.pause_after = Some(pause_after);
    distill_run(&paused, teacher, init, Some(&ckpt), false);
    assert_eq!(latest_checkpoint(&ckpt).unwrap().0, pause_after);
    let rest = distill_run(&o, teacher, init, Some(&ckpt), true);
    assert_eq!(rest.log.len(), whole.log.len());
    for (a, b) in rest.log.iter().zip(&whole.log) {
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "step {}", a.step);
    }
    rest
}

fn speculative(replace_below: f64) -> OnPolicy {
    OnPolicy {
        lambda: 1.0,
        temperature: 1.0,
        max_new_tokens: 6,
        eos_ids: vec![2],
        max_positions: 64,
        after: 0,
        replace_below,
    }
}

/// With a threshold near 1 the teacher keeps only the tokens it is sure of, which are its own
/// greedy choices, and writes the rest: the rows are the teacher's greedy answers, whether the
/// frozen teacher or a grader (its top-k) checks them. The grades returned are the final rows'.
#[test]
fn speculative_sampling_near_one_writes_the_teachers_greedy_answers() {
    use crate::teacher::grade::Grader;
    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    let teacher = copy_teacher(tmp.path(), &init).valid();
    let cpu = crate::backend::cpu();
    let student = checkpoint::load(&init, &cpu).unwrap();
    let rows = examples(8, 3);
    let picked: Vec<&Example> = rows.iter().collect();
    let p = speculative(0.999_999);
    let prompts: Vec<Vec<u32>> = rows
        .iter()
        .map(|e| e.ids[..e.prompt_len].to_vec())
        .collect();
    let greedy = crate::generate::generate(
        &teacher,
        &prompts,
        &crate::generate::GenerateOptions {
            max_new_tokens: 6,
            temperature: 0.0,
            eos_ids: vec![2],
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let (by_model, none, checked) =
        speculative_completions(&student, &picked, &p, 5, 1, 0, &mut Judge::Frozen(&teacher))
            .unwrap();
    assert!(none.is_none());
    assert_eq!(checked, 0, "a local teacher checks each token once");
    assert_eq!(by_model.len(), rows.len());
    assert_eq!(greedy.len(), rows.len());
    assert!(
        greedy.iter().all(|g| !g.ids.is_empty()),
        "the teacher writes"
    );
    let own = sample_completions(&student, &picked, &p, 5, 1, 0).unwrap();
    let ids = |r: &[Example]| r.iter().map(|e| e.ids.clone()).collect::<Vec<_>>();
    assert_ne!(
        ids(&own),
        ids(&by_model),
        "an untrained student's tokens were replaced"
    );
    for (row, g) in by_model.iter().zip(&greedy) {
        assert_eq!(row.ids[row.prompt_len..], g.ids[..]);
    }
    // In rounds, as a server checks, the teacher checks rows again after each replacement.
    let (in_rounds, _, rechecked) =
        speculative_rounds(&student, &picked, &p, 5, 1, 0, &mut Judge::Frozen(&teacher)).unwrap();
    assert_eq!(ids(&in_rounds), ids(&by_model));
    assert!(rechecked > 0);
    let mut grader = Grader::Local {
        model: teacher.clone(),
        k: 5,
    };
    let (by_grader, grades, _) = speculative_completions(
        &student,
        &picked,
        &p,
        5,
        1,
        0,
        &mut Judge::Grader(&mut grader),
    )
    .unwrap();
    assert_eq!(ids(&by_grader), ids(&by_model));
    // The grades are the teacher's top-k as it decoded beside the student: a teacher-forced
    // pass over the rows gives them up to float rounding.
    let (grades, again) = (grades.unwrap(), grader.grade(&by_grader).unwrap());
    assert_eq!(grades.len(), rows.len());
    assert_eq!(grades.len(), again.len());
    for (a, b) in grades.iter().zip(&again) {
        assert_eq!(a.len(), b.len());
        assert!(!a.is_empty(), "every row is graded");
    }
    for (a, b) in grades.iter().flatten().zip(again.iter().flatten()) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.id, y.id);
            assert!((x.logprob - y.logprob).abs() < 1e-4, "{x:?} vs {y:?}");
        }
    }
}

/// A teacher that replaces nothing leaves the student's samples exactly as plain on-policy
/// sampling draws them, and checks each row once.
#[test]
fn speculative_sampling_that_replaces_nothing_is_plain_on_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    let teacher = copy_teacher(tmp.path(), &init).valid();
    let cpu = crate::backend::cpu();
    let student = checkpoint::load(&init, &cpu)
        .unwrap()
        .fork(&cpu.clone().autodiff());
    let rows = examples(8, 3);
    let picked: Vec<&Example> = rows.iter().collect();
    let p = speculative(1e-30);
    let plain = sample_completions(&student, &picked, &p, 5, 3, 1).unwrap();
    let (spec, _, checked) =
        speculative_completions(&student, &picked, &p, 5, 3, 1, &mut Judge::Frozen(&teacher))
            .unwrap();
    let (in_rounds, _, rechecked) =
        speculative_rounds(&student, &picked, &p, 5, 3, 1, &mut Judge::Frozen(&teacher)).unwrap();
    assert_eq!((checked, rechecked), (0, 0));
    assert_eq!(plain.len(), rows.len());
    assert_eq!((spec.len(), in_rounds.len()), (plain.len(), plain.len()));
    assert!(
        plain.iter().all(|e| e.ids.len() > e.prompt_len),
        "every row samples"
    );
    for ((a, b), c) in spec.iter().zip(&plain).zip(&in_rounds) {
        assert_eq!(a.ids, b.ids);
        assert_eq!(c.ids, b.ids);
    }
}

/// Speculative on-policy training with a local teacher grades each written token once (so every
/// step's graded tokens are its tokens, all on-policy here), trains on other rows than plain
/// on-policy, and a paused run resumes on the same curve.
#[test]
fn speculative_on_policy_counts_its_checks_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    let teacher = copy_teacher(tmp.path(), &init);
    let mut o = distill_options(12, Some(1.0));
    o.lr = 1e-2;
    let plain = distill_run(&o, &teacher, &init, None, false);
    if let Some(p) = o.on_policy.as_mut() {
        p.replace_below = 0.3;
    }
    let whole = distill_run(&o, &teacher, &init, None, false);
    assert!(whole.log.iter().all(|s| s.graded == s.tokens));
    assert!(
        whole
            .log
            .iter()
            .zip(&plain.log)
            .any(|(a, b)| a.loss != b.loss),
        "the teacher's replacements change what the student trains on"
    );
    let rest = resumed_on_the_same_curve(&o, &teacher, &init, tmp.path(), &whole, 6, 3);
    for (a, b) in rest.log.iter().zip(&whole.log) {
        assert_eq!(a.graded, b.graded, "step {}", a.step);
    }
}

/// A distillation run graded by `grader` instead of a frozen model.
fn graded_run(
    o: &TrainOptions,
    grader: &mut crate::teacher::grade::Grader,
    init: &Path,
) -> Trained {
    distill_with(o, None, Some(grader), init, None, false)
}

/// On-policy distillation against `workbench serve` (the teacher behind it, scored over HTTP with
/// `prompt_logprobs`) trains the student that grading by the same checkpoint loaded here does:
/// the loss curves agree to float tolerance. A second run with the same response cache asks the
/// server nothing and follows the same curve, and a run paused and resumed follows it too.
#[test]
fn on_policy_over_http_equals_the_local_teacher() {
    use crate::teacher::Teacher as _;
    use crate::teacher::cache::ResponseCache;
    use crate::teacher::grade::Grader;
    use crate::teacher::openai::OpenAiTeacher;

    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    copy_teacher(tmp.path(), &init);
    let teacher_dir = tmp.path().join("teacher");
    let cpu = crate::backend::cpu();
    let addr = serve_copy_teacher(&teacher_dir);
    let config = copy_teacher_at(addr);
    let (mut o, k) = (http_options(), 5);
    let mut local = Grader::Local {
        model: checkpoint::load(&teacher_dir, &cpu).unwrap(),
        k,
    };
    let here = graded_run(&o, &mut local, &init);
    let cache_path = tmp.path().join("cache.jsonl");
    let remote = |o: &TrainOptions| {
        let mut g = Grader::Remote {
            teacher: Box::new(OpenAiTeacher::new(&config, None).unwrap()),
            cache: ResponseCache::open(&cache_path).unwrap(),
            k,
        };
        let trained = graded_run(o, &mut g, &init);
        let Grader::Remote { teacher, .. } = g else {
            unreachable!()
        };
        (trained, teacher.stats().requests)
    };
    let (there, asked) = remote(&o);
    assert!(asked > 0);
    same_curve(&here, &there);
    assert!(here.log.iter().all(|s| s.graded > 0));
    let (again, asked) = remote(&o);
    assert_eq!(asked, 0, "every score came from the cache");
    for (a, b) in there.log.iter().zip(&again.log) {
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "step {}", a.step);
    }
    // Paused and resumed, with a cache of its own (the server grades the resumed steps again):
    // the same samples and grades, so the uninterrupted run's curve bit for bit.
    let ckpt = tmp.path().join("checkpoints");
    let mut resumable = o.clone();
    resumable.checkpoint_every = 3;
    let mut paused = resumable.clone();
    paused.pause_after = Some(6);
    let fresh_cache = tmp.path().join("resume-cache.jsonl");
    let graded_over_http = |o: &TrainOptions, resume: bool| {
        let mut g = Grader::Remote {
            teacher: Box::new(OpenAiTeacher::new(&config, None).unwrap()),
            cache: ResponseCache::open(&fresh_cache).unwrap(),
            k,
        };
        distill_with(o, None, Some(&mut g), &init, Some(&ckpt), resume)
    };
    graded_over_http(&paused, false);
    assert_eq!(latest_checkpoint(&ckpt).unwrap().0, 6);
    let rest = graded_over_http(&resumable, true);
    assert_eq!(rest.log.len(), there.log.len());
    for (a, b) in rest.log.iter().zip(&there.log) {
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "step {}", a.step);
        assert_eq!(a.graded, b.graded, "step {}", a.step);
    }
    // Speculative sampling over HTTP replaces the tokens the local teacher replaces: the same
    // rows, so the same loss curve. The server checks whole samples, each again after a
    // replacement, where the local teacher checks each token once as it is written.
    if let Some(p) = o.on_policy.as_mut() {
        p.replace_below = 0.3;
    }
    let here = graded_run(&o, &mut local, &init);
    let (there, asked) = remote(&o);
    assert!(asked > 0);
    same_losses(&here, &there);
    for (a, b) in here.log.iter().zip(&there.log) {
        assert_eq!(a.tokens, b.tokens, "step {}", a.step);
        assert_eq!(a.graded, a.tokens, "step {}", a.step);
        assert!(b.graded >= b.tokens, "step {}", b.step);
    }
    let graded = |t: &Trained| t.log.iter().map(|s| s.graded).sum::<usize>();
    assert!(graded(&there) > graded(&here));
}

/// A server that refuses vLLM's `prompt_logprobs` (as OpenAI's API refuses a field it does not
/// know) is asked once in that shape, then scores in the OpenAI shape, `echo` with `logprobs`:
/// the student trains as against the local teacher. A proxy in front of `workbench serve` refuses
/// that one field with OpenAI's error and passes everything else through.
#[test]
fn on_policy_falls_back_to_echo_where_prompt_logprobs_is_refused() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::teacher::Teacher as _;
    use crate::teacher::cache::ResponseCache;
    use crate::teacher::grade::Grader;
    use crate::teacher::openai::OpenAiTeacher;

    let tmp = tempfile::tempdir().unwrap();
    let init = initial(tmp.path());
    copy_teacher(tmp.path(), &init);
    let teacher_dir = tmp.path().join("teacher");
    let cpu = crate::backend::cpu();
    let upstream = format!("http://{}/v1/completions", serve_copy_teacher(&teacher_dir));

    #[derive(Clone)]
    struct Proxy {
        upstream: String,
        refused: Arc<AtomicUsize>,
        echoed: Arc<AtomicUsize>,
    }
    async fn completions(
        axum::extract::State(p): axum::extract::State<Proxy>,
        axum::Json(body): axum::Json<serde_json::Value>,
    ) -> (axum::http::StatusCode, String) {
        if body.get("prompt_logprobs").is_some() {
            p.refused.fetch_add(1, Ordering::SeqCst);
            let e = r#"{"error": {"message": "Unrecognized request argument supplied: prompt_logprobs", "type": "invalid_request_error"}}"#;
            return (axum::http::StatusCode::BAD_REQUEST, e.into());
        }
        if body.get("echo") == Some(&serde_json::json!(true)) {
            p.echoed.fetch_add(1, Ordering::SeqCst);
        }
        let answer = reqwest::Client::new()
            .post(&p.upstream)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = axum::http::StatusCode::from_u16(answer.status().as_u16()).unwrap();
        (status, answer.text().await.unwrap())
    }
    let proxy = Proxy {
        upstream,
        refused: Arc::new(AtomicUsize::new(0)),
        echoed: Arc::new(AtomicUsize::new(0)),
    };
    let app = axum::Router::new()
        .route("/v1/completions", axum::routing::post(completions))
        .with_state(proxy.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });

    let config = copy_teacher_at(addr);
    let (o, k) = (http_options(), 5);
    let mut local = Grader::Local {
        model: checkpoint::load(&teacher_dir, &cpu).unwrap(),
        k,
    };
    let here = graded_run(&o, &mut local, &init);
    let mut remote = Grader::Remote {
        teacher: Box::new(OpenAiTeacher::new(&config, None).unwrap()),
        cache: ResponseCache::open(&tmp.path().join("cache.jsonl")).unwrap(),
        k,
    };
    let there = graded_run(&o, &mut remote, &init);
    same_curve(&here, &there);
    assert!(here.log.iter().all(|s| s.graded > 0));
    // The refusal is learned once (a few requests may be in flight before it lands); every
    // score then comes from `echo`.
    let refused = proxy.refused.load(Ordering::SeqCst);
    let echoed = proxy.echoed.load(Ordering::SeqCst);
    let Grader::Remote { teacher, .. } = remote else {
        unreachable!()
    };
    assert!(refused >= 1, "the proxy refused nothing");
    assert!(
        refused <= 16,
        "{refused} requests refused: the shape was not learned"
    );
    assert_eq!(echoed as u64, teacher.stats().requests - refused as u64);
    assert!(
        echoed > refused,
        "{echoed} scored by `echo`, {refused} refused"
    );
}

/// An `openai` teacher: the copy teacher served at `addr`.
fn copy_teacher_at(addr: std::net::SocketAddr) -> datasets::config::TeacherConfig {
    datasets::config::TeacherConfig {
        kind: datasets::config::TeacherKind::Openai,
        base_url: Some(datasets::config::OneOrMany::One(format!(
            "http://{addr}/v1"
        ))),
        model: Some("copy".into()),
        ..Default::default()
    }
}

/// On-policy distillation for the runs graded over HTTP: 12 steps, every batch sampled.
fn http_options() -> TrainOptions {
    let mut o = distill_options(12, Some(1.0));
    o.lr = 1e-2;
    o
}

/// `workbench serve` on loopback with the copy teacher in `dir`, as `copy`; its address.
fn serve_copy_teacher(dir: &Path) -> std::net::SocketAddr {
    let served = checkpoint::load(dir, &crate::backend::cpu()).unwrap();
    let tokenizer = crate::data::tokenizer::Tokenizer::train_bpe(
        ["the copy task"],
        260,
        &[],
        crate::data::tokenizer::BpeSplit::Words,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let options = crate::serve::ServeOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        model_name: "copy".into(),
        max_tokens: 64,
        max_body_bytes: 1 << 20,
        timeout: None,
        model_dir: dir.to_path_buf(),
    };
    std::thread::spawn(move || {
        crate::serve::serve(served, tokenizer, options, |addr| tx.send(addr).unwrap())
    });
    rx.recv().unwrap()
}

/// Two runs graded by the same teacher, here and over HTTP: the same tokens graded at every
/// step, and losses equal to float tolerance.
fn same_curve(here: &Trained, there: &Trained) {
    for (a, b) in here.log.iter().zip(&there.log) {
        assert_eq!(a.graded, b.graded, "step {}", a.step);
    }
    same_losses(here, there);
}

/// Two runs' losses, equal to float tolerance at every step.
fn same_losses(here: &Trained, there: &Trained) {
    assert_eq!(here.log.len(), there.log.len());
    for (a, b) in here.log.iter().zip(&there.log) {
        let tol = 1e-4 * a.loss.abs().max(1.0);
        assert!(
            (a.loss - b.loss).abs() <= tol,
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
    }
}
