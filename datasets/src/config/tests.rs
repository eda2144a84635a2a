use super::*;

const MINIMAL: &str = r#"
[run]
name = "t"

[data]
task = "dates"
"#;

fn load(text: &str, overrides: &[&str]) -> Result<Config, ConfigError> {
    let overrides: Vec<Override> = overrides
        .iter()
        .map(|o| Override::parse(o).unwrap())
        .collect();
    Config::from_str_with(text, "x.toml", &overrides)
}

#[test]
fn defaults_fill_every_section() {
    let c = load(MINIMAL, &[]).unwrap();
    assert_eq!(c.run.dir, PathBuf::from("runs"));
    assert_eq!(c.data.decontam_ngram, 13);
    assert_eq!(c.export.splits, default_splits());
}

#[test]
fn an_unknown_key_names_line_column_and_key() {
    let e = load("[run]\nname = \"t\"\nnmae = 3\n", &[]).unwrap_err();
    assert_eq!(e.position, Some((3, 1)), "{e}");
    assert_eq!(e.key.as_deref(), Some("run.nmae"), "{e}");
    assert!(e.message.contains("unknown key `nmae`"), "{e}");
    assert!(e.message.contains("expected one of"), "{e}");
    assert!(e.message.ends_with("did you mean `name`?"), "{e}");
}

#[test]
fn a_wrong_type_names_the_key_and_the_expected_type() {
    let e = load(
        "[run]\nname = \"t\"\nseed = \"three\"\n[data]\ntask = \"dates\"\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("run.seed"), "{e}");
    assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
    assert!(e.message.contains("expected a non-negative integer"), "{e}");
    assert!(
        !e.message.contains("u64"),
        "Rust's type name reached the user: {e}"
    );
}

#[test]
fn malformed_toml_names_the_position() {
    let e = load("[run\nname = 1\n", &[]).unwrap_err();
    assert_eq!(e.position.map(|p| p.0), Some(1), "{e}");
}

#[test]
fn overrides_are_typed_and_checked() {
    let c = load(
        MINIMAL,
        &[
            "run.seed=42",
            "data.near_threshold=0.5",
            "export.license=mit",
        ],
    )
    .unwrap();
    assert_eq!(c.run.seed, 42);
    assert_eq!(c.data.near_threshold, 0.5);
    assert_eq!(c.export.license, "mit");

    let e = load(MINIMAL, &["run.sed=1"]).unwrap_err();
    assert_eq!(e.origin, "--set run.sed=1", "{e}");
    assert!(e.message.contains("unknown key `sed`"), "{e}");

    let e = load(MINIMAL, &["run.seed=abc"]).unwrap_err();
    assert_eq!(e.origin, "--set run.seed=abc", "{e}");
    assert_eq!(e.key.as_deref(), Some("run.seed"), "{e}");

    let e = load(MINIMAL, &["run.name.x=1"]).unwrap_err();
    assert!(e.message.contains("not a section"), "{e}");
}

#[test]
fn an_override_can_supply_a_missing_key() {
    let c = load("[data]\ntask = \"dates\"\n[run]\n", &["run.name=from-cli"]).unwrap();
    assert_eq!(c.run.name, "from-cli");
}

#[test]
fn semantic_checks_name_the_key() {
    let e = load(MINIMAL, &["data.near_threshold=1.5"]).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("data.near_threshold"));
    let e = load(MINIMAL, &["run.name=../escape"]).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("run.name"));
    let e = load(MINIMAL, &["export.shard_mib=0"]).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("export.shard_mib"));
    let e = load("[run]\nname = \"t\"\n", &[]).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("data"));
    let e = load(MINIMAL, &["distill.gold_rows=0"]).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("distill.gold_rows"));
    assert!(e.to_string().contains("include_gold = false"), "{e}");
}

#[test]
fn gold_rows_is_optional_and_leaves_other_configs_hashes_alone() {
    let a = load(MINIMAL, &[]).unwrap();
    assert_eq!(a.distill.gold_rows, None);
    assert!(!a.to_toml().contains("gold_rows"), "{}", a.to_toml());
    let b = load(MINIMAL, &["distill.gold_rows=300"]).unwrap();
    assert_eq!(b.distill.gold_rows, Some(300));
    assert_eq!(load(&b.to_toml(), &[]).unwrap(), b);
    assert_ne!(a.stage_hash(&["distill"]), b.stage_hash(&["distill"]));
}

#[test]
fn the_resolved_config_round_trips_and_hashes_stably() {
    let c = load(MINIMAL, &[]).unwrap();
    let again = load(&c.to_toml(), &[]).unwrap();
    assert_eq!(c, again);
    assert_eq!(c.hash(), again.hash());
    let other = load(MINIMAL, &["run.seed=1"]).unwrap();
    assert_ne!(c.hash(), other.hash());
}

#[test]
fn stage_hashes_only_move_with_their_sections() {
    let a = load(MINIMAL, &[]).unwrap();
    let b = load(MINIMAL, &["export.license=mit"]).unwrap();
    assert_eq!(a.stage_hash(&["data"]), b.stage_hash(&["data"]));
    assert_ne!(a.stage_hash(&["export"]), b.stage_hash(&["export"]));
    // The GGUF export comes after every stage: asking for it redoes none.
    let g = load(MINIMAL, &["export.gguf=\"q8_0\""]).unwrap();
    assert_eq!(a.stage_hash(&["export"]), g.stage_hash(&["export"]));
    // Spelling out the default tokenizer split keeps every hash.
    let d = load(MINIMAL, &["teacher.tokenizer_split=\"digits\""]).unwrap();
    assert_eq!(a.hash(), d.hash());
    let w = load(MINIMAL, &["teacher.tokenizer_split=\"words\""]).unwrap();
    assert_ne!(a.stage_hash(&["teacher"]), w.stage_hash(&["teacher"]));
}

#[test]
fn the_json_schema_describes_every_section() {
    let schema = Config::json_schema();
    let text = schema.to_string();
    for section in ["run", "data", "teacher", "export"] {
        assert!(text.contains(&format!("\"{section}\"")), "{section}");
    }
}

/// Regression: `--set finetune.train.lr=…` on a config without `[finetune.train]` failed with
/// "missing key `steps`"; a partial `[*.train]` table now keeps its own section's defaults.
#[test]
fn a_partial_train_table_keeps_its_sections_defaults() {
    let c = load(MINIMAL, &["finetune.train.lr=1e-4"]).unwrap();
    let d = FinetuneConfig::default().train;
    assert_eq!(c.finetune.train.lr, 1e-4);
    assert_eq!(
        (c.finetune.train.steps, c.finetune.train.warmup),
        (d.steps, d.warmup)
    );
    let c = load(
        &format!("{MINIMAL}\n[distill.train]\nbatch_size = 8\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.distill.train.steps, DistillConfig::default().train.steps);
    assert_eq!(c.distill.train.batch_size, 8);
    let c = load(MINIMAL, &["teacher.train.lr=5e-4"]).unwrap();
    assert_eq!(c.teacher.train.steps, TeacherConfig::default().train.steps);
    let e = load(&format!("{MINIMAL}\n[distill.train]\nlrr = 1\n"), &[]).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("distill.train.lrr"), "{e}");
}

/// `[export] splits` took shares that do not add up to 1 (and normalised them silently).
#[test]
fn export_splits_must_add_up_to_one() {
    let e = load(
        &format!("{MINIMAL}\n[export]\nsplits = {{ train = 0.9, test = 0.3 }}\n"),
        &[],
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("export.splits"), "{e}");
    assert!(e.message.contains("add up to 1"), "{e}");
    let e = load(MINIMAL, &["export.splits.train=0.5"]).unwrap_err();
    assert!(e.message.contains("add up to 1"), "{e}");
    load(
        &format!("{MINIMAL}\n[export]\nsplits = {{ train = 0.9, test = 0.1 }}\n"),
        &[],
    )
    .unwrap();
}

/// serde's words for Rust's types reached the user (`expected u64`, `expected a sequence`,
/// `unknown variant`); TOML has integers, numbers, lists and tables.
#[test]
fn type_errors_speak_toml_not_rust() {
    for (set, want) in [
        ("run.seed=\"x\"", "expected a non-negative integer"),
        ("distill.alpha=\"x\"", "expected a number"),
        ("eval.normalize=\"x\"", "expected a list"),
        ("export.splits=3", "expected a table"),
        ("annotate.order=\"zz\"", "unknown value `zz`"),
    ] {
        let e = load(MINIMAL, &[set]).unwrap_err();
        assert!(e.message.contains(want), "{set}: {e}");
        for rust in [
            "u64", "f64", "usize", "sequence", "map", "variant", "Partial",
        ] {
            assert!(!e.message.contains(rust), "{set}: {e}");
        }
    }
}

/// `last_number` grades an answer on its result, the way GSM8K graders read one: the last
/// number, one spelling of it, whatever came before.
#[test]
fn last_number_keeps_the_result_alone() {
    let c = load(MINIMAL, &["eval.normalize=[\"trim\", \"last_number\"]"]).unwrap();
    let n = |t: &str| Normalize::apply(&c.eval.normalize, t);
    assert_eq!(n("31 + 18 = 49, 49 + 25 = 74, so the sum is 74"), "74");
    assert_eq!(n("74"), n("18 + 31 = 49, 49 + 25 = 74, so the sum is 74."));
    assert_eq!(n("The answer is 1,234."), "1234");
    assert_eq!(n("it is -0,012.50 degrees"), "-12.5");
    assert_eq!(n("-0.0"), "0");
    assert_eq!(n("3.4.5"), "4.5");
    assert_eq!(n("it fell to -4."), "-4");
    assert_eq!(n("5-3"), "3", "a minus between numbers is not a sign");
    assert_eq!(
        n("2021-03-03"),
        "3",
        "a date is not one number: grade dates on `trim`"
    );
    assert_eq!(
        n("the digits 7,2,8"),
        "8",
        "a comma before one digit is a list's"
    );
    assert_eq!(n("12,345,678 and 1,234,5"), "5");
    assert_eq!(n("007"), "7");
    assert_eq!(n("  no number here "), "no number here");
    assert_ne!(n("so the sum is 75"), n("so the sum is 74"));
    assert_eq!(
        Normalize::describe(&c.eval.normalize),
        "after trimming surrounding spaces and keeping the last number"
    );
}
