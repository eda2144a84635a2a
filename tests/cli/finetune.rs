//! `workbench finetune`: the distilled student on the experts' feedback (here the simulated
//! expert's, through the library), the files it leaves, the eval row it adds, re-entrance.

use crate::common::{Sandbox, tiny_config};

#[test]
fn finetune_learns_from_the_feedback_and_adds_the_distilled_expert_row() {
    let sb = Sandbox::new();
    let cfg = tiny_config(
        &sb,
        "ft",
        "[finetune]\nreplay = 0.5\n\n[finetune.train]\nsteps = 6\nbatch_size = 8\n",
    );
    let c = cfg.to_str().unwrap();
    // Before the distilled student exists: a clear refusal.
    let early = sb.run(&["finetune", c]).bad_input();
    assert!(
        early.stderr.contains("no distilled student"),
        "{}",
        early.stderr
    );
    // No decisions yet: `run` evaluates, then stops with the exact command for the expert.
    let first_run = sb.run(&["run", c]).ok();
    assert!(
        first_run.stderr.contains("Expert review next"),
        "{}",
        first_run.stderr
    );
    assert!(
        first_run.stderr.contains("`workbench annotate runs/ft`"),
        "{}",
        first_run.stderr
    );
    assert!(!sb.join("runs/ft/finetuned").exists());
    let nodb = sb.run(&["finetune", c]).bad_input();
    assert!(
        nodb.stderr.contains("workbench annotate"),
        "{}",
        nodb.stderr
    );

    // The simulated expert reviews the synthetic set (references: the eval set's answers are not
    // in it, so it uses the gold set's prompts and references as candidates here).
    let run = sb.join("runs/ft");
    let mut store = ::annotate::Store::open(run.join("annotations.db")).unwrap();
    ::annotate::import::import(&mut store, &run.join("data/gold"), &mut |_| {}).unwrap();
    ::annotate::import::import(&mut store, &run.join("synthetic"), &mut |_| {}).unwrap();
    let same = |a: &str, b: &str| a.trim() == b.trim();
    let report =
        ::annotate::simulated::review(&mut store, ::annotate::QueueOrder::File, 20, &same).unwrap();
    assert!(report.corrected + report.accepted > 0, "{report:?}");
    drop(store);

    let first = sb.run(&["finetune", c]).ok();
    assert!(first.stderr.contains("feedback:"), "{}", first.stderr);
    assert!(first.stderr.contains("finetuned:"), "{}", first.stderr);
    // Under `finetune.min_decisions` (50): said before the fine-tune starts.
    let warned = first.stderr.find("`finetune.min_decisions` is 50");
    let trained = first.stderr.find("finetuned:");
    assert!(warned.is_some() && warned < trained, "{}", first.stderr);
    // Both students scored, and which one is final said either way.
    assert!(
        first
            .stderr
            .contains("the fine-tuned student is the run's final student")
            || first.stderr.contains("NOT the run's final student"),
        "{}",
        first.stderr
    );
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "metrics.parquet",
        "loss.svg",
        "STAGE.json",
    ] {
        assert!(
            run.join("finetuned").join(f).is_file(),
            "finetuned/{f} missing"
        );
    }
    assert!(run.join("feedback/sft/data").is_dir());
    let rows = sb.run(&["eval", c, "--json"]).ok().json();
    let names: Vec<&str> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"distilled+expert"), "{names:?}");

    // Up to date: skipped. A new decision changes the feedback: it trains again.
    let again = sb.run(&["finetune", c]).ok();
    assert!(again.stderr.contains("up to date"), "{}", again.stderr);
    let mut store = ::annotate::Store::open(run.join("annotations.db")).unwrap();
    let item = store
        .queue("someone", ::annotate::QueueOrder::File, 1, 1)
        .unwrap()
        .remove(0);
    let fix = ::annotate::Verdict {
        corrected: Some("1999-09-09".into()),
        ..::annotate::Verdict::of(datasets::Decision::Edit)
    };
    let learned = store
        .decisions()
        .unwrap()
        .iter()
        .filter(|d| d.annotation.decision != datasets::Decision::Skip)
        .count();
    store.decide(&item.id, "someone", &fix).unwrap();
    drop(store);
    // Evaluated before the fine-tune catches up: the row counts what the student learned from,
    // and the report says the store holds more.
    sb.run(&["eval", c]).ok();
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(
        md.contains(&format!("{learned} (simulated expert)")),
        "{md}"
    );
    let outgrown = format!(
        "learned from {learned} expert decisions, and the feedback in the store has changed \
         since ({} in force now)",
        learned + 1
    );
    assert!(md.contains(&outgrown), "{md}");
    assert!(
        md.contains(&format!("`workbench finetune {c}` trains it on")),
        "{md}"
    );
    let third = sb.run(&["finetune", c]).ok();
    assert!(
        third.stderr.contains("settings changed"),
        "{}",
        third.stderr
    );
    sb.run(&["eval", c]).ok();
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains(&format!("| {} (", learned + 1)), "{md}");
    assert!(!md.contains("has changed since"), "{md}");
}

#[test]
fn finetune_config_errors_name_the_key() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "ftbad", "");
    for (set, key) in [
        ("finetune.beta=0", "finetune.beta"),
        ("finetune.replay=1.0", "finetune.replay"),
        ("finetune.train.steps=0", "finetune.train.steps"),
    ] {
        let r = sb
            .run(&["config", "check", cfg.to_str().unwrap(), "--set", set])
            .bad_input();
        assert!(r.stderr.contains(key), "{set}: {}", r.stderr);
    }
}

/// The whole loop with the simulated expert: candidates on held-out review prompts, the
/// simulated expert's decisions (named as simulated), the fine-tune and the table with the
/// `distilled+expert` row; a second run redoes nothing and spends no more budget.
#[test]
fn run_with_the_simulated_expert_closes_the_loop() {
    let sb = Sandbox::new();
    let cfg = tiny_config(
        &sb,
        "loop",
        "[annotate]\nsimulated_expert = true\nbudget = 12\n\n[finetune.train]\nsteps = 4\nbatch_size = 8\n",
    );
    let cfg = cfg.to_str().unwrap();
    let cfg_text = std::fs::read_to_string(cfg).unwrap();
    let cfg_text = cfg_text.replace("eval_size = 12\n", "eval_size = 12\nreview_size = 16\n");
    std::fs::write(cfg, cfg_text).unwrap();
    let r = sb.run(&["run", cfg]).ok();
    assert!(r.stderr.contains("data: review 16 rows"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("candidates: 16 review prompts answered (32 rows)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("simulated expert"), "{}", r.stderr);
    assert!(r.stderr.contains("not a person"), "{}", r.stderr);
    assert!(
        r.stderr.contains("12 of the budget of 12 spent"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("| distilled+expert |"), "{}", r.stdout);
    // It says where everything is.
    for place in [
        "report/report.md",
        "runs/loop/synthetic",
        "runs/loop/feedback/sft",
        "runs/loop/finetuned",
    ] {
        assert!(r.stderr.contains(place), "{place}: {}", r.stderr);
    }
    let run = sb.join("runs/loop");
    // The report: the headline table with the expert decisions, said to be simulated; the HTML
    // stands alone (plots inline).
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains("| distilled+expert |"), "{md}");
    assert!(md.contains("12 (simulated expert)"), "{md}");
    assert!(
        !md.contains("has changed since"),
        "trained on the feedback there is: {md}"
    );
    // Provenance from each stage's marker: the data, a training stage, a stage that writes rows.
    for line in [
        "| data: review |",
        "| distilled student: training |",
        "| synthetic set: rows |",
    ] {
        assert!(md.contains(line), "{line}: {md}");
    }
    let html = std::fs::read_to_string(run.join("report/report.html")).unwrap();
    assert!(html.contains("<svg"), "plots inline");
    assert!(html.contains("<strong>simulated expert</strong>"));
    assert!(!html.contains("src=\"http"), "no external files");
    // The exported feedback sets read as a trainer would (pyarrow).
    if let Some(py) = crate::common::python() {
        let printed = crate::common::run_python(
            &py,
            "read_feedback.py",
            &[&run.join("feedback/sft"), &run.join("feedback/preference")],
        );
        let first = printed.lines().next().unwrap_or_default();
        assert_eq!(
            first.matches("'corrected')").count() + first.matches("'accepted')").count(),
            12,
            "{printed}"
        );
    }
    let store = ::annotate::Store::open_existing(run.join("annotations.db")).unwrap();
    let decisions = store.decisions().unwrap();
    assert_eq!(decisions.len(), 12);
    assert!(
        decisions
            .iter()
            .all(|d| d.annotation.annotator == "simulated-expert")
    );
    // Candidate A is the distilled student's answer, B the teacher's (when they differ).
    for d in &decisions {
        let item = store.item(&d.annotation.item_id).unwrap().unwrap();
        assert_eq!(item.a.unwrap().model.as_deref(), Some("distilled"));
        if let Some(b) = item.b {
            assert_eq!(b.model.as_deref(), Some("teacher"));
        }
    }
    drop(store);
    let again = sb.run(&["run", cfg]).ok();
    for stage in ["candidates: up to date", "finetuned: up to date"] {
        assert!(again.stderr.contains(stage), "{stage}: {}", again.stderr);
    }
    assert!(
        again.stderr.contains("0 accepted, 0 corrected, 0 skipped"),
        "{}",
        again.stderr
    );
}

/// `configs/hf-student.toml`'s path at test size: the student is a Hugging Face checkpoint with
/// its own tokenizer (the `llama-gqa` fixture), distilled with sequence-level KD, reviewed by the
/// simulated expert on a review set from a file, fine-tuned, and saved in the HF layout.
#[test]
fn an_hf_checkpoint_student_goes_through_the_whole_loop() {
    let sb = Sandbox::new();
    let fixture = crate::common::root().join("distill/tests/fixtures/models/llama-gqa");
    // Short prompts, so they fit the fixture's 128 positions.
    let lines = crate::common::short_dates_jsonl;
    sb.write("gold.jsonl", lines(0..20, true));
    sb.write("pool.jsonl", lines(20..40, false));
    sb.write("eval.jsonl", lines(40..45, true));
    sb.write("review.jsonl", lines(45..53, true));
    let cfg = sb.write(
        "hf.toml",
        format!(
            "[run]\nname = \"hf\"\nseed = 2\n\n[data]\ndecontaminate = false\ndedup = \"none\"\n\
             gold = {{ path = \"gold.jsonl\", map = {{ prompt = \"q\", reference = \"answer\" }} }}\n\
             prompts = {{ path = \"pool.jsonl\", map = {{ prompt = \"q\" }} }}\n\
             eval = {{ path = \"eval.jsonl\", map = {{ prompt = \"q\", reference = \"answer\" }} }}\n\
             review = {{ path = \"review.jsonl\", map = {{ prompt = \"q\", reference = \"answer\" }} }}\n\
             {}[student]\npath = \"{}\"\n\n[generate]\nmax_new_tokens = 12\ndedup = \"none\"\n\n\
             [distill]\nloss = \"ce\"\n\n[annotate]\nsimulated_expert = true\nbudget = 8\n\n\
             [finetune.train]\nsteps = 3\nbatch_size = 4\n\n[eval]\nmax_new_tokens = 12\n",
            crate::common::TINY_MODELS,
            fixture.display()
        ),
    );
    let r = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("sequence-level KD"), "{}", r.stderr);
    assert!(
        r.stderr.contains("candidates: 8 review prompts"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("8 of the budget of 8 spent"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("| distilled+expert |"), "{}", r.stdout);
    let finetuned = sb.join("runs/hf/finetuned");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(finetuned.join(f).is_file(), "{f}");
    }
    // The fixture's tokenizer went with it (not the run's teacher tokenizer).
    let ours = std::fs::read(finetuned.join("tokenizer.json")).unwrap();
    let theirs = std::fs::read(fixture.join("tokenizer.json")).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&ours).unwrap()["model"]["vocab"],
        serde_json::from_slice::<serde_json::Value>(&theirs).unwrap()["model"]["vocab"]
    );
}

/// The loop with an `openai` teacher (a fake OpenAI-compatible server on loopback, as in
/// `configs/openai-teacher.toml`): no local teacher, so the student learns the server's text
/// (sequence-level KD) over the run's own tokenizer, the review candidates are the student's
/// answers alone, and the simulated expert's corrections reach the fine-tuned student.
#[test]
fn an_openai_teacher_goes_through_the_whole_loop() {
    use crate::common::fake_openai::{FakeServer, State};
    let sb = Sandbox::new();
    let server = FakeServer::start(State::default());
    let cfg = tiny_config(
        &sb,
        "remote-loop",
        &format!(
            "[teacher]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"fake\"\nconcurrency = 2\n\n\
             [generate]\nmin_chars = 0\ndedup = \"none\"\n\n[distill]\nloss = \"ce\"\n\n\
             [annotate]\nsimulated_expert = true\nbudget = 6\n\n[finetune.train]\nsteps = 3\nbatch_size = 4\n",
            server.base_url()
        ),
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("eval_size = 12\n", "eval_size = 12\nreview_size = 6\n"),
    )
    .unwrap();
    let r = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("sequence-level KD"), "{}", r.stderr);
    assert!(
        r.stderr.contains("(6 rows)"),
        "one candidate per prompt: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("6 of the budget of 6 spent"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stdout.contains("| teacher |"),
        "no local teacher to evaluate: {}",
        r.stdout
    );
    assert!(r.stdout.contains("| distilled+expert |"), "{}", r.stdout);
    assert!(server.with(|s| s.answered) > 0);
}

/// The loop on the user's own files (gold as `{prompt, completion}` JSONL, prompts, eval and
/// review sets given by path) with the simulated expert, the ranked queue and the learning
/// curve: the same mechanism as on the built-in task.
#[test]
fn the_loop_runs_on_files_with_a_ranked_queue_and_a_learning_curve() {
    let sb = Sandbox::new();
    let line = |i: usize, answer: &str| {
        format!(
            "{{\"prompt\": \"What is {} plus {}?\", \"{answer}\": \"{}\"}}\n",
            i % 7,
            i % 5,
            i % 7 + i % 5
        )
    };
    let rows = |range: std::ops::Range<usize>, answer: &str| -> String {
        range.map(|i| line(i, answer)).collect()
    };
    sb.write("gold.jsonl", rows(0..30, "completion"));
    sb.write(
        "prompts.jsonl",
        (30..60)
            .map(|i| format!("{{\"prompt\": \"What is {} plus {}?\"}}\n", i % 9, i % 4))
            .collect::<String>(),
    );
    sb.write(
        "eval.jsonl",
        rows(60..70, "reference").replace("plus", "and"),
    );
    sb.write(
        "review.jsonl",
        rows(70..88, "reference").replace("plus", "with"),
    );
    let cfg = sb.write(
        "files.toml",
        format!(
            "[run]\nname = \"files\"\nseed = 5\n\n[data]\ndedup = \"none\"\ndecontaminate = false\n\
             gold = {{ path = \"gold.jsonl\" }}\n\
             prompts = {{ path = \"prompts.jsonl\" }}\neval = {{ path = \"eval.jsonl\" }}\n\
             review = {{ path = \"review.jsonl\" }}\n{}\
             [generate]\ndecontaminate = false\n\n\
             [annotate]\nsimulated_expert = true\norder = \"ranked\"\nbudget = 9\ncurve = true\n\n\
             [finetune.train]\nsteps = 3\nbatch_size = 4\n",
            crate::common::TINY_MODELS
        ),
    );
    let r = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    // A gold file in `{prompt, completion}` form is gold: its answers are the completions.
    assert!(
        r.stderr.contains("data: gold 30 rows")
            && r.stderr
                .contains("answers read from its `completion` column"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("9 of the budget of 9 spent"),
        "{}",
        r.stderr
    );
    for point in [
        "curve: ranked order, 3 decisions",
        "curve: ranked order, 9 decisions",
        "curve: random order, 6 decisions",
    ] {
        assert!(r.stderr.contains(point), "{point}: {}", r.stderr);
    }
    let run = sb.join("runs/files");
    let curve: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("curve/curve.json")).unwrap())
            .unwrap();
    let points = curve["points"].as_array().unwrap();
    let seen: Vec<(String, u64)> = points
        .iter()
        .map(|p| {
            (
                p["order"].as_str().unwrap().to_string(),
                p["decisions"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = ["ranked", "random"]
        .iter()
        .flat_map(|o| [0, 3, 6, 9].map(|k| (o.to_string(), k)))
        .collect();
    assert_eq!(seen, want);
    // Zero decisions is the distilled student, for both orders.
    assert_eq!(points[0]["exact_match"], points[4]["exact_match"]);
    // The curve keeps numbers, not models or databases.
    let mut left = sb.entries("runs/files/curve");
    left.sort();
    assert_eq!(left, ["STAGE.json", "curve.json", "curve.md", "curve.svg"]);
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains("## Learning curve"), "{md}");
    assert!(
        md.contains("| decisions | ranked: all | random: all |"),
        "{md}"
    );
    assert!(md.contains("curve.svg"), "{md}");
    // A rerun measures nothing again.
    let again = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    assert!(
        again.stderr.contains("curve: up to date"),
        "{}",
        again.stderr
    );
}

/// The loop with its decisions in a PostgreSQL store (`annotate.store`): the simulated expert's
/// decisions go to the server, not to `annotations.db`; the fine-tune, the report, `annotate
/// stats` and `datasets export` read them there; `annotate import-store` moves them into a
/// SQLite file and adds nothing the second time.
#[test]
fn a_run_keeps_its_decisions_in_a_postgres_store() {
    let Some(pg) = ::annotate::store::testing::postgres("run_store") else {
        return;
    };
    let sb = Sandbox::new();
    let cfg = tiny_config(
        &sb,
        "team",
        &format!(
            "[annotate]\nsimulated_expert = true\nbudget = 6\nstore = \"{}\"\n\n[finetune.train]\nsteps = 2\nbatch_size = 8\n",
            pg.url
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let text = std::fs::read_to_string(cfg).unwrap();
    std::fs::write(
        cfg,
        text.replace("eval_size = 12\n", "eval_size = 12\nreview_size = 8\n"),
    )
    .unwrap();
    let r = sb.run(&["run", cfg]).ok();
    assert!(
        r.stderr.contains("6 of the budget of 6 spent"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("6 decisions in force in `postgres://"),
        "{}",
        r.stderr
    );
    let run = sb.join("runs/team");
    assert!(
        !run.join("annotations.db").exists(),
        "the decisions are on the server"
    );
    let md = std::fs::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains("6 (simulated expert)"), "{md}");
    let store = ::annotate::Store::connect(&pg.url).unwrap();
    assert_eq!(store.decisions().unwrap().len(), 6);
    drop(store);
    let s = sb
        .run(&["annotate", "stats", "runs/team", "--json"])
        .ok()
        .json();
    assert_eq!(s["annotators"][0]["decided"].as_u64(), Some(6), "{s}");
    let s = sb
        .run(&["annotate", "stats", &pg.url, "--json"])
        .ok()
        .json();
    assert_eq!(s["annotators"][0]["decided"].as_u64(), Some(6), "{s}");
    let out = sb
        .run(&[
            "datasets",
            "export",
            "runs/team",
            "--kind",
            "sft",
            "--out",
            "sft",
            "--json",
        ])
        .ok();
    assert!(out.stderr.contains("postgres://"), "{}", out.stderr);
    assert_eq!(out.json()["rows"], 6);
    // Moved into a SQLite file, and again: every event once.
    let first = sb
        .run(&["annotate", "import-store", &pg.url, "copy.db"])
        .ok();
    assert!(first.stderr.contains("6 events (6 new"), "{}", first.stderr);
    let again = sb
        .run(&["annotate", "import-store", &pg.url, "copy.db"])
        .ok();
    assert!(again.stderr.contains("6 events (0 new"), "{}", again.stderr);
    let copy = ::annotate::Store::open_existing(sb.join("copy.db")).unwrap();
    assert_eq!(copy.decisions().unwrap().len(), 6);
    // A password in the URL is refused, and not echoed.
    let bad = sb
        .run(&[
            "annotate",
            "stats",
            "runs/team",
            "--store",
            "postgres://ana:hunter2@127.0.0.1:1/db",
        ])
        .bad_input();
    assert!(bad.stderr.contains("PGPASSWORD"), "{}", bad.stderr);
    assert!(!bad.stderr.contains("hunter2"), "{}", bad.stderr);
    let bad = sb
        .run(&[
            "annotate",
            "import-store",
            "postgres://ana:hunter2@127.0.0.1:1/db",
            "other.db",
        ])
        .bad_input();
    assert!(bad.stderr.contains("PGPASSWORD"), "{}", bad.stderr);
    assert!(!bad.stderr.contains("hunter2"), "{}", bad.stderr);
}
