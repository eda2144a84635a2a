//! "Any data": a second task, unit conversion (`tests/common/units.rs`, no code shared with the
//! date task), reaches `workbench run` as a CSV gold set, a JSONL prompt pool and a Parquet eval
//! set, none with our column names, and goes through every stage on the config's column mapping
//! alone: data, the local teacher trained on the gold set, generation, distillation with its
//! gold-only baseline, and evaluation.

use std::collections::BTreeSet;
use std::path::Path;

use datasets::{Sample, Set};

use crate::common::{Sandbox, TINY_MODELS, units};

/// `(prompt, reference)` of every row of a set, sorted.
fn pairs(dir: &Path) -> Vec<(String, Option<String>)> {
    let mut rows: Vec<(String, Option<String>)> = Set::open(dir)
        .unwrap()
        .read_all::<Sample>(None)
        .unwrap()
        .into_iter()
        .map(|s| (s.prompt, s.reference))
        .collect();
    rows.sort();
    rows
}

fn expected(items: &[units::Item], with_answers: bool) -> Vec<(String, Option<String>)> {
    let mut rows: Vec<(String, Option<String>)> = items
        .iter()
        .map(|i| (i.question.clone(), with_answers.then(|| i.answer.clone())))
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_unit_conversion_task_from_mapped_csv_jsonl_and_parquet_runs_end_to_end() {
    let sb = Sandbox::new();
    let sets = units::generate(21, 40, 60, 12);
    units::write_files(&sb.join("data"), &sets);
    // The config sits in its own directory: its data paths are relative to it, not to the
    // directory `workbench` runs in (where `runs/` goes).
    let cfg = sb.write(
        "configs/units.toml",
        format!(
            "[run]\nname = \"units\"\nseed = 21\n\n[data]\n\
             gold = {{ path = \"../data/gold.csv\", map = {{ prompt = \"question\", reference = \"answer\" }} }}\n\
             prompts = {{ path = \"../data/prompts.jsonl\", map = {{ prompt = \"text\" }} }}\n\
             eval = {{ path = \"../data/eval.parquet\", map = {{ reference = \"completion\" }} }}\n\
             {TINY_MODELS}[generate]\nmax_new_tokens = 10\n\n[eval]\nmax_new_tokens = 10\n"
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let r = sb.run(&["run", cfg]).ok().no_panic();

    // The data stage read every row through the mapping, and cleaning dropped none (the
    // generator asks no question twice and none that contains an eval question).
    for (set, n) in [("gold", 40), ("prompts", 60), ("eval", 12)] {
        assert!(
            r.stderr
                .contains(&format!("data: {set} {n} rows (of {n} from files")),
            "{set}:\n{}",
            r.stderr
        );
    }
    let data = sb.join("runs/units/data");
    assert_eq!(pairs(&data.join("gold")), expected(&sets.gold, true));
    assert_eq!(pairs(&data.join("prompts")), expected(&sets.prompts, false));
    assert_eq!(pairs(&data.join("eval")), expected(&sets.eval, true));
    let marker: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("STAGE.json")).unwrap()).unwrap();
    let rows: Vec<(String, u64)> = marker["summary"]["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("eval".into(), 12),
            ("gold".into(), 40),
            ("prompts".into(), 60)
        ],
        "{marker}"
    );

    // The teacher answered the mapped pool: every synthetic row is a pool question.
    let pool: BTreeSet<&str> = sets.prompts.iter().map(|i| i.question.as_str()).collect();
    let synthetic = Set::open(sb.join("runs/units/synthetic"))
        .unwrap()
        .read_all::<Sample>(None)
        .unwrap();
    assert!(!synthetic.is_empty());
    for s in &synthetic {
        assert!(
            pool.contains(s.prompt.as_str()),
            "{:?} is not a pool question",
            s.prompt
        );
        assert!(
            s.completion.is_some() && !s.completion_ids.is_empty(),
            "{s:?}"
        );
    }

    // Every model was measured on the 12 mapped eval rows.
    for model in ["| teacher |", "| gold-only |", "| distilled |"] {
        assert!(r.stdout.contains(model), "{model} in\n{}", r.stdout);
    }
    let v = sb.run(&["eval", cfg, "--json"]).ok().json();
    let rows = v["rows"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["model"] == name)
            .unwrap_or_else(|| panic!("no `{name}` row in {v}"))
    };
    let (teacher, gold_only, distilled) = (row("teacher"), row("gold-only"), row("distilled"));
    for r in [teacher, gold_only, distilled] {
        let em = r["exact_match"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&em), "{r}");
        assert!(r["params"].as_u64().unwrap() > 0, "{r}");
    }
    assert_eq!(distilled["params"], gold_only["params"], "the same student");
    assert!(
        teacher["params"].as_u64().unwrap() > distilled["params"].as_u64().unwrap(),
        "{v}"
    );
    assert!(sb.join("runs/units/report/eval.md").is_file());

    // Nothing date-specific was asked for or used: no built-in task, no date validator.
    let resolved = std::fs::read_to_string(sb.join("runs/units/config.toml")).unwrap();
    for word in ["task", "dates", "iso_date", "validator"] {
        assert!(
            !resolved.contains(word),
            "`{word}` in the resolved config:\n{resolved}"
        );
    }
}

/// A mapping that names a missing column is reported by its config key and file (not as a
/// `--map` flag nobody typed), and an eval set without references is refused by the data stage,
/// before any training, with the key to set.
#[test]
fn mapping_mistakes_are_named_by_their_config_key() {
    let sb = Sandbox::new();
    let sets = units::generate(5, 10, 10, 5);
    units::write_files(&sb.join("data"), &sets);
    let config = |gold_map: &str, eval_map: &str| {
        sb.write(
            "configs/u.toml",
            format!(
                "[run]\nname = \"u\"\n\n[data]\n\
                 gold = {{ path = \"../data/gold.csv\", map = {{ {gold_map} }} }}\n\
                 prompts = {{ path = \"../data/prompts.jsonl\", map = {{ prompt = \"text\" }} }}\n\
                 eval = {{ path = \"../data/eval.parquet\"{eval_map} }}\n{TINY_MODELS}"
            ),
        )
    };
    let cfg = config(
        "prompt = \"questin\", reference = \"answer\"",
        ", map = { reference = \"completion\" }",
    );
    let r = sb
        .run(&["run", cfg.to_str().unwrap(), "--force"])
        .bad_input();
    assert!(
        r.stderr.contains("`data.gold.map.prompt = \"questin\"`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("u.toml"), "{}", r.stderr);
    assert!(!r.stderr.contains("--map"), "{}", r.stderr);
    // An eval set whose answers are in `completion` needs no mapping: the data stage says where
    // it read them.
    let cfg = config("prompt = \"question\", reference = \"answer\"", "");
    let r = sb.run(&["run", cfg.to_str().unwrap(), "--force"]).ok();
    assert!(
        r.stderr.contains("data: eval 5 rows")
            && r.stderr
                .contains("answers read from its `completion` column"),
        "{}",
        r.stderr
    );
}
