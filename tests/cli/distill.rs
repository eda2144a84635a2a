//! `workbench teacher train`, `workbench distill` and `workbench eval`: the learning effect over
//! several seeds, exact resume after a kill, the files each stage leaves, and clear refusals.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{Sandbox, TINY_MODELS, root, short_dates_jsonl, tiny_config};

/// The eval rows of a run, by model name.
fn eval_rows(sb: &Sandbox, cfg: &Path) -> Vec<serde_json::Value> {
    let v = sb
        .run(&["eval", cfg.to_str().unwrap(), "--json"])
        .ok()
        .json();
    v["rows"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [serde_json::Value], model: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["model"] == model)
        .unwrap_or_else(|| panic!("no `{model}` row in {rows:?}"))
}

#[test]
fn the_distilled_student_beats_the_gold_only_student_over_several_seeds() {
    // The teacher stands in for a pretrained model that knows the task: it is trained once, on
    // a larger gold set than the runs below get. Each run (its own seed: its own data, initial
    // weights and data order) then has only 40 gold rows, which is all the gold-only student
    // sees; the distilled student also learns from the teacher's answers (and top-k) on 600
    // prompts. Same student, same initial weights, same steps.
    let sb = Sandbox::new();
    let teacher_cfg = sb.write(
        "teacher.toml",
        "[run]\nname = \"teacher\"\nseed = 1\n\n[data]\ntask = \"dates\"\ngold_size = 800\n\
         prompts_size = 200\neval_size = 50\n\n[teacher]\nvocab_size = 400\n\n\
         [teacher.architecture]\nhidden_size = 96\nlayers = 2\nheads = 3\n\n[teacher.train]\n\
         steps = 500\nbatch_size = 16\nlr = 3e-3\ncheckpoint_every = 0\n\n[eval]\nmax_new_tokens = 14\n",
    );
    sb.run(&["teacher", "train", teacher_cfg.to_str().unwrap()])
        .ok();
    let teacher_dir = sb.join("runs/teacher/teacher");
    let mut margins = Vec::new();
    let (mut em_distilled, mut em_gold) = (0.0, 0.0);
    for seed in [11, 12, 13] {
        let cfg = sb.write(
            &format!("s{seed}.toml"),
            format!(
                "[run]\nname = \"s{seed}\"\nseed = {seed}\n\n[data]\ntask = \"dates\"\n\
                 gold_size = 40\nprompts_size = 600\neval_size = 100\n\n[teacher]\npath = \"{}\"\n\
                 batch_size = 64\n\n[generate]\nmax_new_tokens = 14\ntop_logprobs = 8\n\n\
                 [student.architecture]\nhidden_size = 32\nlayers = 2\nheads = 2\n\n\
                 [distill.train]\nsteps = 400\nbatch_size = 16\nlr = 5e-3\ncheckpoint_every = 0\n\n\
                 [eval]\nmax_new_tokens = 14\n",
                teacher_dir.display()
            ),
        );
        sb.run(&["generate", cfg.to_str().unwrap()]).ok();
        sb.run(&["distill", cfg.to_str().unwrap()]).ok();
        let rows = eval_rows(&sb, &cfg);
        let (d, g, t) = (
            row(&rows, "distilled"),
            row(&rows, "gold-only"),
            row(&rows, "teacher"),
        );
        let (dl, gl) = (d["loss"].as_f64().unwrap(), g["loss"].as_f64().unwrap());
        eprintln!(
            "seed {seed}: teacher EM {:.2} loss {:.3} · distilled EM {:.2} loss {dl:.3} · gold-only EM {:.2} loss {gl:.3}",
            t["exact_match"], t["loss"], d["exact_match"], g["exact_match"]
        );
        assert!(
            t["params"].as_u64().unwrap() >= 5 * d["params"].as_u64().unwrap(),
            "the teacher is at least 5x the student: {rows:?}"
        );
        assert_eq!(d["params"], g["params"], "the same student");
        margins.push(1.0 - dl / gl);
        em_distilled += d["exact_match"].as_f64().unwrap();
        em_gold += g["exact_match"].as_f64().unwrap();
    }
    // On every seed the distilled student's loss on the eval references is lower by a clear
    // margin, at least 10% (at test size both students are tiny and exact match is small, so the
    // loss is the steadier measure); and exact match, summed over seeds, is not worse.
    for (seed, m) in [11, 12, 13].iter().zip(&margins) {
        assert!(
            *m > 0.1,
            "seed {seed}: the distilled student's eval loss is only {:.1}% below the gold-only one ({margins:?})",
            100.0 * m
        );
    }
    assert!(
        em_distilled >= em_gold,
        "exact match: distilled {em_distilled:.2} vs gold-only {em_gold:.2}"
    );
}

fn losses(metrics: &Path) -> Vec<(u64, f64)> {
    datasets::metrics::read(metrics)
        .unwrap()
        .into_iter()
        .map(|r| (r.step, r.loss))
        .collect()
}

fn resume_config(sb: &Sandbox) -> PathBuf {
    sb.write(
        "resume.toml",
        "[run]\nname = \"resume\"\nseed = 5\n\n[data]\ntask = \"dates\"\ngold_size = 200\n\
         prompts_size = 20\neval_size = 20\n\n[teacher.architecture]\nhidden_size = 32\nlayers = 2\n\
         heads = 2\n\n[teacher.train]\nsteps = 120\nbatch_size = 8\ncheckpoint_every = 10\n\
         eval_every = 40\n\n[eval]\nmax_new_tokens = 12\n",
    )
}

#[test]
fn a_killed_teacher_run_resumes_to_the_same_loss_curve() {
    // Uninterrupted.
    let a = Sandbox::new();
    let cfg = resume_config(&a);
    a.run(&["teacher", "train", cfg.to_str().unwrap()]).ok();
    let want = losses(&a.join("runs/resume/teacher/metrics.parquet"));
    assert_eq!(want.len(), 120);

    // Killed once a few checkpoints exist, then resumed.
    let b = Sandbox::new();
    let cfg = resume_config(&b);
    let mut child = b.spawn(&["teacher", "train", cfg.to_str().unwrap()]);
    let marker = b.join("runs/resume/checkpoints/teacher/step-30/COMPLETE");
    let t0 = Instant::now();
    while !marker.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !b.join("runs/resume/teacher/STAGE.json").exists(),
        "a killed stage leaves no teacher"
    );
    let r = b
        .run(&["teacher", "train", cfg.to_str().unwrap(), "--resume"])
        .ok();
    assert!(r.stderr.contains("resumed from step"), "{}", r.stderr);
    let got = losses(&b.join("runs/resume/teacher/metrics.parquet"));
    assert_eq!(got.len(), want.len());
    for ((s, x), (_, y)) in got.iter().zip(&want) {
        // Bit for bit: a resumed run restores every state it holds (see distill/src/train/mod.rs).
        assert!(x == y, "step {s}: {x} resumed vs {y} uninterrupted");
    }
    // The checkpoints are gone once the stage is done.
    assert!(!b.join("runs/resume/checkpoints/teacher").exists());
}

#[test]
fn resume_without_a_checkpoint_is_an_error() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "nothing", "");
    let r = sb
        .run(&["teacher", "train", cfg.to_str().unwrap(), "--resume"])
        .bad_input();
    assert!(
        r.stderr.contains("no complete checkpoint") && r.stderr.contains("without --resume"),
        "{}",
        r.stderr
    );
}

#[test]
fn each_stage_leaves_a_model_metrics_and_plots_and_eval_writes_the_table() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "files", "[generate]\nmax_new_tokens = 12\n");
    sb.run(&["teacher", "train", cfg.to_str().unwrap()]).ok();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.parquet",
        "loss.svg",
        "exact_match.svg",
    ] {
        assert!(
            sb.join(&format!("runs/files/teacher/{f}")).is_file(),
            "teacher/{f}"
        );
    }
    // distill wants the synthetic set first, and says how to make it.
    let r = sb.run(&["distill", cfg.to_str().unwrap()]).bad_input();
    assert!(r.stderr.contains("workbench generate"), "{}", r.stderr);
    sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    let r = sb.run(&["distill", cfg.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("student: 8 steps"), "{}", r.stderr);
    assert!(r.stderr.contains("gold-only: 8 steps"), "{}", r.stderr);
    for stage in ["student", "gold-only"] {
        for f in [
            "final/config.json",
            "final/tokenizer.json",
            "metrics.parquet",
            "loss.svg",
            "STAGE.json",
        ] {
            assert!(
                sb.join(&format!("runs/files/{stage}/{f}")).is_file(),
                "{stage}/{f}"
            );
        }
    }
    // metrics.parquet has one row per step and reads in pyarrow-compatible form.
    let m = datasets::metrics::read(&sb.join("runs/files/student/metrics.parquet")).unwrap();
    assert_eq!(m.len(), 8);
    assert!(
        m.last().unwrap().eval_loss.is_some(),
        "evaluated at the end"
    );
    assert!(
        m.iter().all(|r| r.kd > 0.0),
        "KD on the teacher's top-k: {m:?}"
    );
    // A second distill skips both.
    let r = sb.run(&["distill", cfg.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("student: up to date"), "{}", r.stderr);
    // eval: the names the report and other tools rely on.
    let rows = eval_rows(&sb, &cfg);
    let names: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(names, ["teacher", "gold-only", "distilled"]);
    for r in &rows {
        for key in [
            "exact_match",
            "params",
            "loss",
            "perplexity",
            "tokens_per_s",
        ] {
            assert!(r.get(key).is_some_and(|v| !v.is_null()), "{key} in {r}");
        }
    }
    assert!(row(&rows, "distilled")["agreement"].is_number());
    let md = std::fs::read_to_string(sb.join("runs/files/report/eval.md")).unwrap();
    assert!(md.contains("| distilled |"), "{md}");
    let table = sb.run(&["eval", cfg.to_str().unwrap()]).ok();
    assert!(
        table.stdout.starts_with("| model | exact match |"),
        "{}",
        table.stdout
    );
    // KD on the local teacher's full distribution redoes the student, not the baseline.
    let r = sb
        .run(&[
            "distill",
            cfg.to_str().unwrap(),
            "--set",
            "distill.full_vocab=true",
            "--force",
        ])
        .ok();
    assert!(r.stderr.contains("full vocabulary"), "{}", r.stderr);
    assert!(r.stderr.contains("gold-only: up to date"), "{}", r.stderr);
}

#[test]
fn logit_kd_across_vocabularies_is_refused_and_sequence_level_kd_works() {
    let sb = Sandbox::new();
    let cfg = crate::common::fixture_student_config(&sb);
    sb.run(&["teacher", "train", cfg.to_str().unwrap()]).ok();
    sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    let r = sb.run(&["distill", cfg.to_str().unwrap()]).bad_input();
    assert!(
        r.stderr.contains("share a vocabulary") && r.stderr.contains("distill.loss = \"ce\""),
        "{}",
        r.stderr
    );
    assert!(!sb.join("runs/vocab/student").exists());
    let r = sb
        .run(&[
            "distill",
            cfg.to_str().unwrap(),
            "--set",
            "distill.loss=\"ce\"",
            "--force",
        ])
        .ok();
    assert!(r.stderr.contains("sequence-level KD"), "{}", r.stderr);
    assert!(
        sb.join("runs/vocab/student/final/model.safetensors")
            .is_file()
    );
}

#[test]
fn teacher_train_refuses_a_teacher_it_does_not_own() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "own", "[teacher]\npath = \"somewhere\"\n");
    let r = sb
        .run(&["teacher", "train", cfg.to_str().unwrap()])
        .bad_input();
    assert!(r.stderr.contains("remove `teacher.path`"), "{}", r.stderr);
    let cfg = sb.write(
        "bad.toml",
        "[run]\nname = \"bad\"\n\n[data]\ntask = \"dates\"\n\n[student.architecture]\n\
         hidden_size = 30\nlayers = 1\nheads = 4\n",
    );
    let r = sb
        .run(&["config", "check", cfg.to_str().unwrap()])
        .bad_input();
    assert!(
        r.stderr.contains("student.architecture.heads") && r.stderr.contains("does not divide"),
        "{}",
        r.stderr
    );
    let r = sb
        .run(&[
            "config",
            "check",
            cfg.to_str().unwrap(),
            "--set",
            "student.architecture.heads=3",
            "--set",
            "distill.alpha=2",
        ])
        .bad_input();
    assert!(r.stderr.contains("distill.alpha"), "{}", r.stderr);
}

/// A slice of the built-in task: `eval --json` reports exact match on the slice and on the rest
/// next to the whole, and the table gains a column for each.
#[test]
fn eval_reports_exact_match_by_slice() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "sliced", "[eval]\nmax_new_tokens = 12\n");
    let cfg = cfg.to_str().unwrap();
    let slice = ["--set", "data.slice_share=0.5"];
    sb.run(&[&["teacher", "train", cfg][..], &slice[..]].concat())
        .ok();
    let v = sb
        .run(&[&["eval", cfg, "--json"][..], &slice[..]].concat())
        .ok()
        .json();
    let teacher = row(v["rows"].as_array().unwrap(), "teacher");
    let by_slice = teacher["exact_match_by_slice"].as_object().unwrap();
    let names: Vec<&str> = by_slice.keys().map(String::as_str).collect();
    assert_eq!(names, ["en-GB", "rest"], "{teacher}");
    for em in by_slice.values() {
        assert!((0.0..=1.0).contains(&em.as_f64().unwrap()), "{teacher}");
    }
    let table = sb.run(&[&["eval", cfg][..], &slice[..]].concat()).ok();
    assert!(
        table
            .stdout
            .contains("| exact match (en-GB) | exact match (rest) |"),
        "{}",
        table.stdout
    );
    // Without a slice, the rows carry an empty object and the table no extra column.
    let plain = tiny_config(&sb, "plain", "[eval]\nmax_new_tokens = 12\n");
    let plain = plain.to_str().unwrap();
    sb.run(&["teacher", "train", plain]).ok();
    let v = sb.run(&["eval", plain, "--json"]).ok().json();
    let teacher = row(v["rows"].as_array().unwrap(), "teacher");
    assert_eq!(teacher["exact_match_by_slice"], serde_json::json!({}));
}

/// A validation share holds part of the eval set out, by a seeded draw: the data stage says so,
/// the two sets split the eval rows between them, the same way on every run of the config, and
/// `eval` measures on the eval rows alone.
#[test]
fn a_validation_share_holds_part_of_the_eval_set_out() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "held", "[eval]\nmax_new_tokens = 12\n");
    let cfg = cfg.to_str().unwrap();
    let share = [
        "--set",
        "data.validation_share=0.25",
        "--set",
        "data.eval_size=40",
    ];
    let r = sb
        .run(&[&["teacher", "train", cfg][..], &share[..]].concat())
        .ok();
    assert!(r.stderr.contains("data: validation"), "{}", r.stderr);
    assert!(
        r.stderr.contains("held out of the 40 cleaned eval rows"),
        "{}",
        r.stderr
    );
    let ids = |set: &str| -> Vec<String> {
        let dir = sb.join(&format!("runs/held/data/{set}"));
        let rows: Vec<datasets::Sample> =
            datasets::Set::open(&dir).unwrap().read_all(None).unwrap();
        rows.into_iter().map(|s| s.id).collect()
    };
    let (eval, validation) = (ids("eval"), ids("validation"));
    assert_eq!(eval.len() + validation.len(), 40);
    assert!((3..=18).contains(&validation.len()), "{}", validation.len());
    assert!(eval.iter().all(|id| !validation.contains(id)));
    for id in &validation {
        assert!(datasets::prepare::in_validation(3, id, 0.25));
    }
    let v = sb
        .run(&[&["eval", cfg, "--json"][..], &share[..]].concat())
        .ok()
        .json();
    let teacher = row(v["rows"].as_array().unwrap(), "teacher");
    assert_eq!(
        teacher["rows"].as_u64(),
        Some(eval.len() as u64),
        "{teacher}"
    );
}

/// A teacher no better than the gold-only student is said to be so, in the log and the report
/// (here both are a few steps old, and neither gets a date right).
#[test]
fn a_teacher_no_better_than_the_gold_only_student_is_flagged() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "weak", "[eval]\nmax_new_tokens = 12\n");
    let r = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    assert!(
        r.stderr.contains("WARNING: the teacher (")
            && r.stderr
                .contains("is not clearly better than the gold-only student"),
        "{}",
        r.stderr
    );
    let md = std::fs::read_to_string(sb.join("runs/weak/report/report.md")).unwrap();
    assert!(md.contains("**Warning:** the teacher ("), "{md}");
}

/// On-policy distillation through `run`, beside the off-policy student (`[[distill.compare]]`):
/// the student samples, the local teacher grades, the stage says so, and the rest of the loop
/// (baseline, eval, report) runs with a row for each mode and the teacher tokens each took.
#[test]
fn run_distils_on_policy_with_a_local_teacher() {
    let sb = Sandbox::new();
    let cfg = tiny_config(
        &sb,
        "onpol",
        "[[distill.compare]]\nname = \"on-policy\"\non_policy = 1.0\ndivergence = \"reverse_kl\"\n\
         max_new_tokens = 8\n\n[[distill.compare]]\nname = \"speculative\"\non_policy = 1.0\n\
         replace_below = 0.3\nmax_new_tokens = 8\n\n[eval]\nmax_new_tokens = 12\n",
    );
    let r = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    assert!(
        r.stderr.contains("reverse KL, top-20")
            && r.stderr
                .contains("on-policy 1 at T=1, graded by the local teacher's top-k")
            && r.stderr
                .contains("the tokens it gives under 0.3 replaced by its own"),
        "{}",
        r.stderr
    );
    for model in [
        "| teacher |",
        "| gold-only |",
        "| distilled |",
        "| distilled (on-policy) |",
        "| distilled (speculative) |",
    ] {
        assert!(r.stdout.contains(model), "{model}: {}", r.stdout);
    }
    // Every on-policy step's loss is the KD term alone; the off-policy student's is not.
    let rows =
        datasets::metrics::read(&sb.join("runs/onpol/student-on-policy/metrics.parquet")).unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.loss.to_bits() == r.kd.to_bits()));
    let rows = datasets::metrics::read(&sb.join("runs/onpol/student/metrics.parquet")).unwrap();
    assert!(rows.iter().any(|r| r.loss.to_bits() != r.kd.to_bits()));
    let fit = |stage: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sb.join(&format!("runs/onpol/{stage}/STAGE.json"))).unwrap(),
        )
        .unwrap();
        v["summary"].clone()
    };
    assert_eq!(fit("student")["teacher_tokens"], 0);
    let graded = fit("student-on-policy")["teacher_tokens"].as_u64().unwrap();
    assert!(graded > 0);
    assert!(
        fit("student-speculative")["teacher_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    // The report's comparison: a row per mode, each with the tokens its own stage had graded.
    let report = std::fs::read_to_string(sb.join("runs/onpol/report/report.md")).unwrap();
    let table = report
        .split("Distillation modes")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("{report}"));
    let modes: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| distilled"))
        .collect();
    assert_eq!(modes.len(), 3, "{table}");
    for (row, (name, stage)) in modes.iter().zip([
        ("distilled", "student"),
        ("distilled (on-policy)", "student-on-policy"),
        ("distilled (speculative)", "student-speculative"),
    ]) {
        let tokens = fit(stage)["teacher_tokens"].as_u64().unwrap();
        assert!(row.starts_with(&format!("| {name} |")), "{row}");
        assert!(
            row.contains(&format!("+ {} graded)", datasets::text::thousands(tokens))),
            "{row}"
        );
        assert!(row.contains('%') && row.contains(" s |"), "{row}");
    }
}

/// On-policy distillation against `workbench serve` (the teacher's checkpoint behind it, its
/// grades over HTTP) trains the student that the same checkpoint as a local teacher does: the
/// loss curves agree to float tolerance, and the server scored every sampled token.
#[test]
fn on_policy_against_workbench_serve_trains_the_local_teachers_student() {
    let sb = Sandbox::new();
    let fixture = root().join("distill/tests/fixtures/models/llama-gqa");
    let server = crate::model::Server::start(&fixture);
    sb.write("gold.jsonl", short_dates_jsonl(0..20, true));
    sb.write("pool.jsonl", short_dates_jsonl(7..27, false));
    sb.write("eval.jsonl", short_dates_jsonl(3..8, true));
    let config = |name: &str, teacher: String| {
        sb.write(
            &format!("{name}.toml"),
            format!(
                "[run]\nname = \"{name}\"\nseed = 3\n\n[data]\ndecontaminate = false\n\
                 max_removed_share = 1.0\n\
                 gold = {{ path = \"gold.jsonl\", map = {{ prompt = \"q\", reference = \"answer\" }} }}\n\
                 prompts = {{ path = \"pool.jsonl\", map = {{ prompt = \"q\" }} }}\n\
                 eval = {{ path = \"eval.jsonl\", map = {{ prompt = \"q\", reference = \"answer\" }} }}\n\
                 {TINY_MODELS}[teacher]\n{teacher}\n\n[generate]\nmax_new_tokens = 6\n\
                 top_logprobs = 5\nmin_chars = 0\ndedup = \"none\"\ncheck_teacher = false\n\n\
                 [distill]\non_policy = 1.0\nmax_new_tokens = 5\nbaseline = false\n\n\
                 [eval]\nmax_new_tokens = 8\n"
            ),
        )
    };
    let remote = config(
        "remote",
        format!(
            "kind = \"openai\"\nbase_url = \"http://{}/v1\"\nmodel = \"llama-gqa\"\n\
             tokenizer = \"{}\"",
            server.addr,
            fixture.display()
        ),
    );
    let local = config("local", format!("path = \"{}\"", fixture.display()));
    for cfg in [&remote, &local] {
        sb.run(&["generate", cfg.to_str().unwrap()]).ok();
    }
    let r = sb.run(&["distill", remote.to_str().unwrap()]).ok();
    assert!(
        r.stderr.contains("graded by the server's top-k"),
        "{}",
        r.stderr
    );
    let l = sb.run(&["distill", local.to_str().unwrap()]).ok();
    assert!(
        l.stderr.contains("graded by the local teacher's top-k"),
        "{}",
        l.stderr
    );
    let curve = |run: &str| {
        datasets::metrics::read(&sb.join(&format!("runs/{run}/student/metrics.parquet"))).unwrap()
    };
    let (a, b) = (curve("remote"), curve("local"));
    assert_eq!(a.len(), 8);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.loss - y.loss).abs() <= 1e-4 * x.loss.abs().max(1.0),
            "step {}: {} over HTTP, {} here",
            x.step,
            x.loss,
            y.loss
        );
    }
    // The server graded every sampled token, as the local teacher did.
    let graded = |run: &str| {
        let stage: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sb.join(&format!("runs/{run}/student/STAGE.json"))).unwrap(),
        )
        .unwrap();
        stage["summary"]["teacher_tokens"].as_u64().unwrap()
    };
    assert!(graded("remote") > 0);
    assert_eq!(graded("remote"), graded("local"));
}

/// A student cut from its teacher (`student.from_teacher`): half the teacher's layers, the rest
/// of it as it is, so its parameters are the teacher's less one layer's; the gold-only baseline
/// starts from the same cut, and the run goes through. With `intermediate_size` its MLPs are
/// narrowed too.
#[test]
fn a_student_cut_from_its_teacher_keeps_the_teachers_width_and_vocabulary() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "cut", "[student]\nfrom_teacher = { layers = 1 }\n");
    sb.run(&[
        "run",
        cfg.to_str().unwrap(),
        "--set",
        "teacher.architecture.layers=2",
    ])
    .ok();
    let params = |stage: &str| -> u64 {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sb.join(&format!("runs/cut/{stage}/STAGE.json"))).unwrap(),
        )
        .unwrap();
        v["summary"]["params"].as_u64().unwrap()
    };
    let (teacher, student) = (params("teacher"), params("student"));
    assert_eq!(params("gold-only"), student);
    let config = |dir: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(sb.join(&format!("runs/cut/{dir}/config.json"))).unwrap(),
        )
        .unwrap()
    };
    let (t, s) = (config("teacher"), config("student/final"));
    assert_eq!(s["num_hidden_layers"], 1);
    assert_eq!(s["hidden_size"], t["hidden_size"]);
    assert_eq!(s["vocab_size"], t["vocab_size"]);
    assert!(
        student < teacher && student > teacher / 2,
        "{student} of {teacher}"
    );
    // Narrower MLPs too (width pruning): the student's config says so, and it has fewer
    // parameters; wider than the teacher's MLP is refused with both widths.
    let inter = t["intermediate_size"].as_u64().unwrap();
    let half = format!("student.from_teacher.intermediate_size={}", inter / 2);
    let distill = |set: &str| {
        sb.run(&[
            "distill",
            cfg.to_str().unwrap(),
            "--set",
            "teacher.architecture.layers=2",
            "--set",
            set,
            "--force",
        ])
    };
    distill(&half).ok();
    let narrow = config("student/final");
    assert_eq!(narrow["intermediate_size"].as_u64(), Some(inter / 2));
    assert_eq!(narrow["num_hidden_layers"], 1);
    assert!(params("student") < student);
    let wide = format!("student.from_teacher.intermediate_size={}", inter + 1);
    let r = distill(&wide).bad_input();
    assert!(
        r.stderr.contains("student.from_teacher.intermediate_size")
            && r.stderr.contains(&format!("{inter} MLP channels")),
        "{}",
        r.stderr
    );
}
