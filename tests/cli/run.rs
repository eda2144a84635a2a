//! `workbench run`: the run directory, re-entrancy, and refusing another config's directory.

use crate::common::{Sandbox, tiny_config};

#[test]
fn run_writes_the_resolved_config_then_the_data_sets() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "tiny", "");
    let r = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("data: gold 30 rows"), "{}", r.stderr);
    assert!(r.stderr.contains("data: eval 12 rows"), "{}", r.stderr);
    let config = std::fs::read_to_string(sb.join("runs/tiny/config.toml")).unwrap();
    assert!(config.starts_with("# workbench config hash: "), "{config}");
    for set in ["gold", "prompts", "eval"] {
        assert!(
            sb.join(&format!("runs/tiny/data/{set}/README.md")).exists(),
            "{set}"
        );
    }
    let marker: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.join("runs/tiny/data/STAGE.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(marker["stage"], "data");
    // Every file carries the config hash.
    let hash = config
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("# workbench config hash: ");
    let v = sb
        .run(&["datasets", "inspect", "runs/tiny/data/gold", "--json"])
        .ok()
        .json();
    assert_eq!(v["files"][0]["metadata"]["workbench.config_hash"], hash);
    // The eval set's references are there; the prompt pool has none.
    assert!(v["first_rows"][0]["reference"].as_str().unwrap().len() == 10);
}

#[test]
fn a_second_run_skips_finished_stages() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "tiny", "");
    sb.run(&["run", cfg.to_str().unwrap()]).ok();
    let before = std::fs::metadata(sb.join("runs/tiny/data/STAGE.json"))
        .unwrap()
        .modified()
        .unwrap();
    let r = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("data: up to date"), "{}", r.stderr);
    let after = std::fs::metadata(sb.join("runs/tiny/data/STAGE.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn another_config_is_refused_unless_forced_and_then_redoes_what_changed() {
    let sb = Sandbox::new();
    let cfg = tiny_config(&sb, "tiny", "");
    sb.run(&["run", cfg.to_str().unwrap()]).ok();
    let r = sb
        .run(&["run", cfg.to_str().unwrap(), "--set", "data.gold_size=20"])
        .bad_input();
    assert!(
        r.stderr.contains("made by a different config") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    let r = sb
        .run(&[
            "run",
            cfg.to_str().unwrap(),
            "--set",
            "data.gold_size=20",
            "--force",
        ])
        .ok();
    assert!(
        r.stderr.contains("settings changed") && r.stderr.contains("data: gold 20 rows"),
        "{}",
        r.stderr
    );
    // A change in a section the data stage does not read does not redo it.
    let r = sb
        .run(&[
            "run",
            cfg.to_str().unwrap(),
            "--set",
            "data.gold_size=20",
            "--set",
            "run.dir=\"runs\"",
            "--force",
        ])
        .ok();
    assert!(r.stderr.contains("up to date"), "{}", r.stderr);
}

#[test]
fn data_can_come_from_files_with_a_column_mapping() {
    let sb = Sandbox::new();
    sb.write(
        "gold.csv",
        "question,answer\nWhat is 2+2?,4\nWhat is 3+3?,6\nCapital of Peru?,Lima\n",
    );
    sb.write(
        "eval.jsonl",
        "{\"q\": \"What is 2+2?\", \"a\": \"4\"}\n{\"q\": \"What is 5+5?\", \"a\": \"10\"}\n",
    );
    sb.write(
        "prompts.jsonl",
        "{\"text\": \"What is 4+4?\"}\n{\"text\": \"Capital of Chile?\"}\n",
    );
    let cfg = sb.write(
        "files.toml",
        format!("[run]\nname = \"files\"\n\n[data]\nmax_removed_share = 0.5\ngold = {{ path = \"gold.csv\", map = {{ prompt = \"question\", reference = \"answer\" }} }}\nprompts = {{ path = \"prompts.jsonl\", map = {{ prompt = \"text\" }} }}\neval = {{ path = \"eval.jsonl\", map = {{ prompt = \"q\", reference = \"a\" }} }}\n{}", crate::common::TINY_MODELS),
    );
    let r = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    // "What is 2+2?" is in the eval set: decontamination drops it from gold.
    assert!(r.stderr.contains("data: gold 2 rows (of 3"), "{}", r.stderr);
    assert!(r.stderr.contains("decontamination"), "{}", r.stderr);
}

/// TRL's conversational sets: a gold file of `messages` ending with the assistant is gold, its
/// answers the last assistant turns; an eval file of `{prompt, completion}` has references.
#[test]
fn conversations_and_completions_are_answers() {
    let sb = Sandbox::new();
    let gold: String = (0..12)
        .map(|i| {
            format!(
                "{{\"messages\": [{{\"role\": \"user\", \"content\": \"Double {i}\"}}, \
                 {{\"role\": \"assistant\", \"content\": \"{}\"}}]}}\n",
                2 * i
            )
        })
        .collect();
    sb.write("gold.jsonl", &gold);
    sb.write(
        "eval.jsonl",
        "{\"prompt\": \"Double 50\", \"completion\": \"100\"}\n",
    );
    let cfg = sb.write(
        "conv.toml",
        format!(
            "[run]\nname = \"conv\"\n\n[data]\ngold = {{ path = \"gold.jsonl\" }}\n\
             eval = {{ path = \"eval.jsonl\" }}\n{}",
            crate::common::TINY_MODELS
        ),
    );
    // Without a prompt pool the teacher would be trained for nothing: refused before it starts.
    let r = sb.run(&["run", cfg.to_str().unwrap()]).bad_input();
    assert!(r.stderr.contains("`data.prompts`"), "{}", r.stderr);
    assert!(!sb.join("runs/conv").exists());
    sb.write("prompts.jsonl", "{\"prompt\": \"Double 70\"}\n");
    let text = std::fs::read_to_string(&cfg).unwrap();
    sb.write(
        "conv.toml",
        text.replace(
            "[data]\n",
            "[data]\nprompts = { path = \"prompts.jsonl\" }\n",
        ),
    );
    let r = sb.run(&["config", "check", cfg.to_str().unwrap()]).ok();
    assert!(
        r.stderr
            .contains("answers from the last assistant turn of `messages`"),
        "{}",
        r.stderr
    );
    let r = sb.run(&["run", cfg.to_str().unwrap()]).ok();
    for needle in [
        "answers read from the last assistant turn of its `messages` conversations",
        "answers read from its `completion` column",
        "data: gold 12 rows",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    let v = sb
        .run(&[
            "datasets",
            "inspect",
            "runs/conv/data/gold",
            "--json",
            "--head",
            "3",
        ])
        .ok()
        .json();
    assert_eq!(v["first_rows"][2]["prompt"], "Double 2");
    assert_eq!(v["first_rows"][2]["reference"], "4");
}

/// The user's own files, where decontamination used to wipe out a set: one-word eval items
/// ("Lima") no longer flag every row that mentions them, and a filter that would remove most of
/// a set stops the run, naming the filter, the counts and the setting, before any teacher call.
#[test]
fn decontamination_flags_contamination_not_a_shared_word() {
    let sb = Sandbox::new();
    let cities = ["Lima", "Quito", "Bogota", "Santiago", "Caracas"];
    let gold: String = (0..40)
        .map(|i| {
            let c = cities[i % 5];
            format!(
                "{{\"prompt\": \"Name a river near {c}, number {i}\", \"reference\": \"r{i}\"}}\n"
            )
        })
        .collect();
    sb.write("gold.jsonl", &gold);
    sb.write("prompts.jsonl", gold.replace("Name a river", "Name a hill"));
    let eval: String = cities
        .iter()
        .map(|c| format!("{{\"prompt\": \"{c}\", \"reference\": \"x\"}}\n"))
        .collect();
    sb.write("eval.jsonl", &eval);
    let cfg = |name: &str| {
        sb.write(
            &format!("{name}.toml"),
            format!(
                "[run]\nname = \"{name}\"\n\n[data]\ngold = {{ path = \"gold.jsonl\" }}\n\
                 prompts = {{ path = \"prompts.jsonl\" }}\neval = {{ path = \"eval.jsonl\" }}\n{}",
                crate::common::TINY_MODELS
            ),
        )
    };
    let ok = cfg("rivers");
    let r = sb.run(&["run", ok.to_str().unwrap()]).ok();
    assert!(
        r.stderr.contains("data: gold 40 rows (of 40"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("data: prompts 40 rows (of 40"),
        "{}",
        r.stderr
    );
    // A size with a file takes the file's first rows.
    let r = sb
        .run(&[
            "run",
            ok.to_str().unwrap(),
            "--set",
            "run.name=first",
            "--set",
            "data.gold_size=25",
        ])
        .ok();
    assert!(
        r.stderr.contains("data: gold 25 rows (of 25"),
        "{}",
        r.stderr
    );
    let taken = sb
        .run(&[
            "datasets",
            "inspect",
            "runs/first/data/gold",
            "--json",
            "--head",
            "30",
        ])
        .ok()
        .json();
    assert_eq!(taken["rows"], 25);
    assert_eq!(
        taken["first_rows"][24]["prompt"],
        "Name a river near Caracas, number 24"
    );
    // An eval set that is the training set: contamination, and most of the set would go.
    sb.write("eval.jsonl", &gold);
    let bad = cfg("copied");
    let r = sb.run(&["run", bad.to_str().unwrap()]).bad_input();
    for needle in [
        "decontamination",
        "removed 40 of the 40 gold rows (100%)",
        "`data.max_removed_share` (20%)",
        "before any teacher is asked",
        "data.decontaminate = false",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    assert!(!sb.join("runs/copied/data").exists());
    assert!(!sb.join("runs/copied/teacher").exists());
}

#[test]
fn a_bad_data_file_stops_the_run_with_nothing_half_written() {
    let sb = Sandbox::new();
    sb.write("gold.jsonl", "{\"prompt\": \"a\"}\n{oops\n");
    let cfg = sb.write(
        "bad.toml",
        "[run]\nname = \"bad\"\n\n[data]\ngold = { path = \"gold.jsonl\" }\n\
         prompts = { path = \"gold.jsonl\" }\n",
    );
    let r = sb.run(&["run", cfg.to_str().unwrap()]).bad_input();
    assert!(r.stderr.contains("gold.jsonl` line 2"), "{}", r.stderr);
    assert!(!sb.join("runs/bad/data").exists());
    assert_eq!(sb.entries("runs/bad"), ["config.toml"]);
}

#[test]
fn the_readme_first_command_runs_the_demo() {
    let sb = Sandbox::new();
    // The validator would (rightly) drop every answer of a 4-step teacher, leaving nothing to
    // distil; this test is about the stages running, so it goes.
    let text = std::fs::read_to_string(crate::common::root().join("configs/demo.toml")).unwrap();
    assert!(text.contains("validator = \"iso_date\"\n"));
    let demo = sb.write("demo.toml", text.replace("validator = \"iso_date\"\n", ""));
    // The demo as shipped, shrunk by overrides so the test takes seconds; the full-size run is
    // in the README (and `benches/`).
    let r = sb
        .run(&[
            "run",
            demo.to_str().unwrap(),
            "--set",
            "data.gold_size=40",
            "--set",
            "data.prompts_size=40",
            "--set",
            "data.eval_size=10",
            "--set",
            "teacher.train.steps=4",
            "--set",
            "distill.train.steps=4",
            "--set",
            "data.review_size=8",
            "--set",
            "annotate.budget=8",
            "--set",
            "finetune.train.steps=4",
        ])
        .ok();
    assert!(r.stderr.contains("data: eval"), "{}", r.stderr);
    // The demo closes the loop with the simulated expert, and says it is simulated.
    assert!(r.stderr.contains("review prompts answered"), "{}", r.stderr);
    assert!(r.stderr.contains("simulated expert"), "{}", r.stderr);
    assert!(r.stderr.contains("not a person"), "{}", r.stderr);
    for model in [
        "| teacher |",
        "| gold-only |",
        "| distilled |",
        "| distilled+expert |",
    ] {
        assert!(r.stdout.contains(model), "{model} in\n{}", r.stdout);
    }
}

/// `configs/own-files.toml` as shipped, with its files beside it, shrunk by overrides (the first
/// rows of each file, tiny models): every file shape is read as documented, the weak teacher is
/// flagged, and the run stops for review with the command to run.
#[test]
fn the_own_files_example_runs_as_shipped() {
    let sb = Sandbox::new();
    let root = crate::common::root();
    let cfg = sb.write(
        "own-files.toml",
        std::fs::read_to_string(root.join("configs/own-files.toml")).unwrap(),
    );
    for name in ["gold", "prompts", "eval", "review"] {
        sb.write(
            &format!("own-files/{name}.jsonl"),
            std::fs::read(root.join(format!("configs/own-files/{name}.jsonl"))).unwrap(),
        );
    }
    let mut args = vec!["run", cfg.to_str().unwrap()];
    let overrides = [
        "data.gold_size=40",
        "data.prompts_size=40",
        "data.eval_size=16",
        "data.review_size=8",
        "teacher.architecture.hidden_size=32",
        "teacher.architecture.layers=1",
        "teacher.train.steps=6",
        "teacher.train.eval_every=3",
        "student.architecture.hidden_size=16",
        "student.architecture.layers=1",
        "distill.train.steps=4",
        "distill.train.eval_every=0",
        // A six-step teacher is unsure of everything; the filter has its own test.
        "generate.min_logprob_mean=-100",
    ];
    for o in &overrides {
        args.extend(["--set", o]);
    }
    let r = sb.run(&args).ok();
    for needle in [
        "data: gold 40 rows (of 40",
        "answers read from the last assistant turn of its `messages` conversations",
        "answers read from its `answer` column",
        "answers read from its `completion` column",
        "WARNING: the teacher (",
        "Expert review next",
        "workbench annotate runs/own-files",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    assert!(r.stdout.contains("| gold-only |"), "{}", r.stdout);
}

/// The review step as `run` prints it: the config in its own folder with guidelines beside it,
/// `--set` on the command line, and the printed commands run as printed from where `run` was.
#[test]
fn the_commands_run_prints_work_as_printed() {
    let sb = Sandbox::new();
    let tiny = std::fs::read_to_string(tiny_config(&sb, "human", "")).unwrap();
    sb.write(
        "proj/human.toml",
        format!("{tiny}\n[annotate]\nsimulated_expert = false\nguidelines = \"guide.md\"\n"),
    );
    sb.write("proj/guide.md", "# Dates\n\nAnswer in ISO 8601.\n");
    let first = sb
        .run(&["run", "proj/human.toml", "--set", "run.name=walked"])
        .ok();
    let printed: Vec<&str> = first.stderr.split('`').skip(1).step_by(2).collect();
    let annotate = printed
        .iter()
        .find(|c| c.starts_with("workbench annotate"))
        .unwrap_or_else(|| panic!("no annotate command in:\n{}", first.stderr));
    let rerun = printed
        .iter()
        .find(|c| c.starts_with("workbench run"))
        .unwrap_or_else(|| panic!("no rerun command in:\n{}", first.stderr));
    assert_eq!(
        *annotate, "workbench annotate runs/walked",
        "{}",
        first.stderr
    );
    assert_eq!(
        *rerun, "workbench run proj/human.toml --set run.name=walked",
        "{}",
        first.stderr
    );
    // Without a terminal the app refuses to start, but only after it found the guidelines
    // beside the config that made the run.
    let words: Vec<&str> = annotate.split(' ').skip(1).collect();
    let app = sb.run(&words);
    assert!(app.stderr.contains("needs a terminal"), "{}", app.stderr);
    assert!(!app.stderr.contains("guidelines"), "{}", app.stderr);
    // `annotate --set` is taken for a run directory.
    let set = sb.run(&[
        "annotate",
        "runs/walked",
        "--set",
        "annotate.guidelines=\"missing.md\"",
    ]);
    assert!(set.stderr.contains("missing.md"), "{}", set.stderr);
    // The rerun continues the same run directory (no decisions yet: it stops at the review again).
    let words: Vec<&str> = rerun.split(' ').skip(1).collect();
    let again = sb.run(&words).ok();
    assert!(
        again.stderr.contains("Expert review next"),
        "{}",
        again.stderr
    );
    assert!(!sb.join("runs/human").exists());
}

/// `export.gguf`: a run whose student is pretrained ends with the student as a GGUF file, which
/// reads back with the student's own logits; a run whose student would use the tokenizer the run
/// trains (which llama.cpp cannot run) is refused before anything is made.
#[test]
fn a_run_writes_its_student_as_gguf_when_asked() {
    let sb = Sandbox::new();
    let cfg = crate::common::fixture_student_config(&sb);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\n[export]\ngguf = \"f32\"\n")).unwrap();
    let r = sb
        .run(&["run", cfg.to_str().unwrap(), "--set", "distill.loss=\"ce\""])
        .ok();
    let gguf = sb.join("runs/vocab/vocab.f32.gguf");
    assert!(
        r.stderr.contains("as GGUF (f32)") && r.stderr.contains("llama-server -m"),
        "{}",
        r.stderr
    );
    let ids = [1, 17, 42, 99, 3];
    let ours = sb.logits(&sb.join("runs/vocab/student/final"), &ids);
    let back = sb.logits(&gguf, &ids);
    for (a, b) in ours.iter().flatten().zip(back.iter().flatten()) {
        assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
    }
    // Asked for 8 bits, the run redoes its export only: the file `model convert` writes byte
    // for byte (the name in its metadata is the file's).
    let r = sb
        .run(&[
            "run",
            cfg.to_str().unwrap(),
            "--set",
            "distill.loss=\"ce\"",
            "--set",
            "export.gguf=\"q8_0\"",
            "--force",
        ])
        .ok();
    assert!(r.stderr.contains("as GGUF (q8_0)"), "{}", r.stderr);
    let q8 = sb.join("runs/vocab/vocab.q8_0.gguf");
    sb.run(&[
        "model",
        "convert",
        "--model",
        sb.join("runs/vocab/student/final").to_str().unwrap(),
        "--out",
        "by-hand/vocab.q8_0.gguf",
        "--quantize",
        "q8_0",
    ])
    .ok();
    let by_hand = sb.join("by-hand/vocab.q8_0.gguf");
    assert!(std::fs::read(&q8).unwrap() == std::fs::read(by_hand).unwrap());
    // A student on the run's own tokenizer: refused before the run directory exists.
    let own = tiny_config(&sb, "own", "[export]\ngguf = \"q8_0\"\n");
    let r = sb.run(&["run", own.to_str().unwrap()]).bad_input();
    assert!(
        r.stderr.contains("`export.gguf`")
            && r.stderr.contains("the tokenizer this run trains")
            && r.stderr.contains("student.path"),
        "{}",
        r.stderr
    );
    assert!(!sb.join("runs/own").exists());
}
