//! `workbench config check | schema`, and bad configs.

use crate::common::{Sandbox, root};

#[test]
fn the_demo_config_checks_and_prints_resolved() {
    let sb = Sandbox::new();
    let demo = root().join("configs/demo.toml");
    let r = sb.run(&["config", "check", demo.to_str().unwrap()]).ok();
    assert!(r.stdout.contains("[run]\nname = \"demo\""), "{}", r.stdout);
    // Defaults are filled in.
    assert!(r.stdout.contains("decontam_ngram = 13"), "{}", r.stdout);
    assert!(r.stderr.contains("is valid"), "{}", r.stderr);
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\(config hash [0-9a-f]+\)", "(config hash [HASH])");
    settings.add_filter(r"resolved from `[^`]+`", "resolved from `[CONFIG]`");
    settings.bind(|| insta::assert_snapshot!("demo_resolved", r.stdout));
}

#[test]
fn config_check_json_is_the_same_config() {
    let sb = Sandbox::new();
    let demo = root().join("configs/demo.toml");
    let r = sb
        .run(&["config", "check", demo.to_str().unwrap(), "--json"])
        .ok();
    let v = r.json();
    assert_eq!(v["config"]["run"]["name"], "demo");
    assert_eq!(v["config"]["data"]["task"], "dates");
    // The built-in task has no files to open.
    assert_eq!(v["files"], serde_json::json!([]));
}

/// `config check` opens every data file the config names: a missing file, a malformed row or a
/// missing mapped column is found by the check, not by the run; a good set of files is
/// reported with its rows, columns and where its answers come from.
#[test]
fn config_check_opens_the_data_files() {
    let sb = Sandbox::new();
    sb.write(
        "gold.jsonl",
        "{\"prompt\": \"a\", \"completion\": \"b\", \"id2\": 1}\n{\"prompt\": \"c\", \"completion\": \"d\", \"id2\": 2}\n",
    );
    sb.write("prompts.jsonl", "{\"text\": \"e\"}\n");
    sb.write("eval.jsonl", "{\"prompt\": \"f\", \"answer\": \"g\"}\n");
    let cfg = |name: &str, data: &str| {
        sb.write(
            &format!("{name}.toml"),
            format!("[run]\nname = \"{name}\"\n\n[data]\nprompts = {{ path = \"prompts.jsonl\", map = {{ prompt = \"text\" }} }}\n{data}"),
        )
    };
    let good = cfg(
        "good",
        "gold = { path = \"gold.jsonl\" }\neval = { path = \"eval.jsonl\" }\n",
    );
    let r = sb.run(&["config", "check", good.to_str().unwrap()]).ok();
    for needle in [
        "data.gold: `",
        "(JSON Lines), 2 rows; columns prompt, completion, id2; answers from `completion`; not read: id2",
        "data.prompts: `",
        "1 row; columns text",
        "data.eval: `",
        "answers from `answer`",
    ] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    let v = sb
        .run(&["config", "check", good.to_str().unwrap(), "--json"])
        .ok()
        .json();
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["key"], "data.gold");
    assert_eq!(files[0]["rows"], 2);
    assert_eq!(files[0]["answers_from"], "completion");
    assert_eq!(files[2]["answers_from"], "answer");
    assert_eq!(files[0]["take"], 2);
    // A file with its own `reference` column says so, and is not taken for a conversation.
    sb.write("ref.jsonl", "{\"prompt\": \"h\", \"reference\": \"i\"}\n");
    let with_ref = cfg("withref", "gold = { path = \"ref.jsonl\" }\n");
    let r = sb
        .run(&["config", "check", with_ref.to_str().unwrap()])
        .ok();
    assert!(
        r.stderr.contains("answers from `reference`"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("assistant turn"), "{}", r.stderr);
    // A size with a file takes its first rows, and the check says so; one larger than the
    // file, one for a set without a file, and 0 are refused, naming the key.
    let first = cfg(
        "first",
        "gold_size = 1
gold = { path = \"gold.jsonl\" }
eval = { path = \"eval.jsonl\" }
",
    );
    let r = sb.run(&["config", "check", first.to_str().unwrap()]).ok();
    assert!(
        r.stderr
            .contains("2 rows, of which the first 1 are taken (`data.gold_size`)"),
        "{}",
        r.stderr
    );
    for (name, data, needles) in [
        (
            "over",
            "gold_size = 5\ngold = { path = \"gold.jsonl\" }\n",
            &[
                "`data.gold_size` is 5",
                "gold.jsonl` has 2 rows",
                "at most 2",
            ][..],
        ),
        (
            "nofile",
            "eval_size = 5\ngold = { path = \"gold.jsonl\" }\n",
            &["`data.eval_size`", "no `data.eval` file"][..],
        ),
        (
            "zero",
            "gold_size = 0\ngold = { path = \"gold.jsonl\" }\n",
            &["`data.gold_size`", "is 0"][..],
        ),
    ] {
        let c = cfg(name, data);
        let r = sb
            .run(&["config", "check", c.to_str().unwrap()])
            .bad_input();
        for needle in needles {
            assert!(r.stderr.contains(needle), "{name}: {needle}: {}", r.stderr);
        }
    }
    // A missing file, a mapped column the file lacks, a malformed row: each found by the check.
    let missing = cfg("missing", "gold = { path = \"nope.jsonl\" }\n");
    let r = sb
        .run(&["config", "check", missing.to_str().unwrap()])
        .bad_input();
    assert!(
        r.stderr.contains("`data.gold`") && r.stderr.contains("nope.jsonl"),
        "{}",
        r.stderr
    );
    let unmapped = cfg(
        "unmapped",
        "gold = { path = \"gold.jsonl\", map = { reference = \"answer\" } }\n",
    );
    let r = sb
        .run(&["config", "check", unmapped.to_str().unwrap()])
        .bad_input();
    assert!(
        r.stderr.contains("data.gold.map.reference = \"answer\""),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("has no column `answer`"), "{}", r.stderr);
    sb.write("broken.jsonl", "{\"prompt\": \"a\"}\n{oops\n");
    let broken = cfg("broken", "gold = { path = \"broken.jsonl\" }\n");
    let r = sb
        .run(&["config", "check", broken.to_str().unwrap()])
        .bad_input();
    assert!(r.stderr.contains("broken.jsonl` line 2"), "{}", r.stderr);
    assert!(!sb.join("runs").exists(), "the check runs nothing");
}

#[test]
fn the_schema_is_json_schema_with_every_section() {
    let sb = Sandbox::new();
    let v = sb.run(&["config", "schema"]).ok().json();
    assert!(v["$schema"].as_str().unwrap().contains("json-schema.org"));
    for section in [
        "run", "data", "teacher", "student", "generate", "distill", "annotate", "finetune", "eval",
        "export",
    ] {
        assert!(v["properties"][section].is_object(), "{section} missing");
    }
}

fn check(sb: &Sandbox, text: &str, extra: &[&str]) -> crate::common::Run {
    let path = sb.write("c.toml", text);
    let mut args = vec!["config", "check", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    sb.run(&args)
}

#[test]
fn malformed_toml_names_line_and_column() {
    let sb = Sandbox::new();
    let r = check(&sb, "[run]\nname = \"x\n", &[]).bad_input();
    assert!(r.stderr.contains("c.toml` at line 2"), "{}", r.stderr);
}

#[test]
fn an_unknown_key_names_the_key_and_what_is_expected() {
    let sb = Sandbox::new();
    let r = check(
        &sb,
        "[run]\nname = \"x\"\n[data]\ntask = \"dates\"\ngold_sise = 3\n",
        &[],
    )
    .bad_input();
    insta::assert_snapshot!(
        "unknown_key",
        r.stderr.replace(sb.path().to_str().unwrap(), "[TMP]")
    );
}

#[test]
fn a_wrong_type_names_the_key() {
    let sb = Sandbox::new();
    let r = check(
        &sb,
        "[run]\nname = \"x\"\n[data]\ntask = \"dates\"\ngold_size = \"many\"\n",
        &[],
    )
    .bad_input();
    assert!(
        r.stderr.contains("line 5") && r.stderr.contains("key `data.gold_size`"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_unknown_builtin_task_lists_the_known_ones() {
    let sb = Sandbox::new();
    let r = check(&sb, "[run]\nname = \"x\"\n[data]\ntask = \"poems\"\n", &[]).bad_input();
    assert!(r.stderr.contains("`dates`"), "{}", r.stderr);
}

#[test]
fn overrides_are_checked_like_the_file() {
    let sb = Sandbox::new();
    let ok = "[run]\nname = \"x\"\n[data]\ntask = \"dates\"\n";
    let r = check(&sb, ok, &["--set", "run.seed=5"]).ok();
    assert!(r.stdout.contains("seed = 5"), "{}", r.stdout);
    let r = check(&sb, ok, &["--set", "run.sede=5"]).bad_input();
    assert!(
        r.stderr.contains("--set run.sede=5") && r.stderr.contains("unknown key `sede`"),
        "{}",
        r.stderr
    );
    let r = check(&sb, ok, &["--set", "data.gold_size=-1"]).bad_input();
    assert!(r.stderr.contains("data.gold_size"), "{}", r.stderr);
    let r = check(&sb, ok, &["--set", "nonsense"]).bad_input();
    assert!(r.stderr.contains("section.key=value"), "{}", r.stderr);
}

#[test]
fn zero_sizes_are_refused_with_the_key() {
    let sb = Sandbox::new();
    let r = check(
        &sb,
        "[run]\nname = \"x\"\n[data]\ntask = \"dates\"\neval_size = 0\n",
        &[],
    )
    .bad_input();
    assert!(r.stderr.contains("data.eval_size"), "{}", r.stderr);
}

#[test]
fn a_missing_config_or_a_directory_is_bad_input() {
    let sb = Sandbox::new();
    let r = sb.run(&["config", "check", "nope.toml"]).bad_input();
    assert!(r.stderr.contains("nope.toml"), "{}", r.stderr);
    std::fs::create_dir(sb.join("adir")).unwrap();
    let r = sb.run(&["config", "check", "adir"]).bad_input();
    assert!(r.stderr.contains("is a directory"), "{}", r.stderr);
}

#[test]
fn an_empty_or_binary_config_is_bad_input() {
    let sb = Sandbox::new();
    sb.write("empty.toml", "");
    let r = sb.run(&["config", "check", "empty.toml"]).bad_input();
    assert!(
        r.stderr.contains("empty.toml") && r.stderr.contains("the file is empty"),
        "{}",
        r.stderr
    );
    sb.write("bin.toml", b"\xff\xfe\x00[run]");
    let r = sb.run(&["config", "check", "bin.toml"]).bad_input();
    assert!(r.stderr.contains("UTF-8"), "{}", r.stderr);
}

#[test]
fn unknown_subcommands_and_flags_exit_2() {
    let sb = Sandbox::new();
    sb.run(&["frobnicate"]).bad_input();
    sb.run(&["config", "check"]).bad_input();
    let r = sb.run(&["--help"]).ok();
    assert!(r.stdout.contains("datasets"), "{}", r.stdout);
}

#[test]
fn every_shipped_config_checks() {
    let sb = Sandbox::new();
    for entry in std::fs::read_dir(root().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            sb.run(&["config", "check", path.to_str().unwrap()]).ok();
        }
    }
}
