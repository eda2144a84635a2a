//! `workbench datasets import | export | inspect`, with good and bad input.

use std::path::Path;

use crate::common::{Run, Sandbox};

const ALPACA_LIKE: &str = r#"{"instruction": "Give three tips for staying healthy.", "output": "Eat well, sleep, move.", "category": "health"}
{"instruction": "What is the capital of France?", "output": "Paris.", "category": "geo"}

{"instruction": "Translate 'hello' to German.", "output": "Hallo.", "category": "lang"}
"#;

fn import(sb: &Sandbox, input: &str, out: &str, extra: &[&str]) -> Run {
    let mut args = vec!["datasets", "import", input, "--out", out];
    args.extend_from_slice(extra);
    sb.run(&args)
}

fn inspect(sb: &Sandbox, path: &str) -> serde_json::Value {
    sb.run(&["datasets", "inspect", path, "--json", "--head", "100"])
        .ok()
        .json()
}

fn parquet_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn jsonl_imports_with_a_mapping_into_the_hf_layout() {
    let sb = Sandbox::new();
    sb.write("a.jsonl", ALPACA_LIKE);
    let r = import(
        &sb,
        "a.jsonl",
        "set",
        &["--map", "prompt=instruction,completion=output"],
    )
    .ok();
    assert!(r.stderr.contains("3 rows of sample"), "{}", r.stderr);
    assert!(
        r.stderr.contains("Columns not read: category"),
        "{}",
        r.stderr
    );
    assert_eq!(
        parquet_files(&sb.join("set")),
        ["train-00000-of-00001.parquet"]
    );
    let card = std::fs::read_to_string(sb.join("set/README.md")).unwrap();
    for needle in [
        "configs:",
        "data_files:",
        "path: data/train-*",
        "dataset_info:",
        "features:",
        "license: unknown",
        "size_categories:\n- n<1K",
    ] {
        assert!(card.contains(needle), "card lacks {needle}:\n{card}");
    }
    let v = inspect(&sb, "set");
    assert_eq!(v["rows"], 3);
    let first = &v["first_rows"][0];
    assert_eq!(first["prompt"], "Give three tips for staying healthy.");
    assert_eq!(first["completion"], "Eat well, sleep, move.");
    assert_eq!(first["messages"][0]["role"], "user");
    assert_eq!(v["files"][0]["metadata"]["workbench.kind"], "sample");
    assert_eq!(v["files"][0]["metadata"]["workbench.schema_version"], "3");
}

#[test]
fn splits_follow_a_seeded_hash_of_the_id_and_never_move() {
    let sb = Sandbox::new();
    let rows: String = (0..400)
        .map(|i| format!("{{\"prompt\": \"question {i}\"}}\n"))
        .collect();
    sb.write("q.jsonl", &rows);
    import(
        &sb,
        "q.jsonl",
        "a",
        &["--split", "train=0.75,test=0.25", "--split-seed", "4"],
    )
    .ok();
    let v = inspect(&sb, "a");
    let test_rows: u64 = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["split"] == "test")
        .map(|f| f["rows"].as_u64().unwrap())
        .sum();
    assert!((60..140).contains(&test_rows), "{test_rows}");
    // More data: every old row keeps its split.
    let more: String = (0..600)
        .map(|i| format!("{{\"prompt\": \"question {i}\"}}\n"))
        .collect();
    sb.write("q2.jsonl", &more);
    import(
        &sb,
        "q2.jsonl",
        "b",
        &["--split", "train=0.75,test=0.25", "--split-seed", "4"],
    )
    .ok();
    let ids = |set: &str, split: &str| -> std::collections::BTreeSet<String> {
        let v = sb
            .run(&[
                "datasets",
                "inspect",
                &format!("{set}/data/{split}-00000-of-00001.parquet"),
                "--json",
                "--head",
                "10000",
            ])
            .ok()
            .json();
        v["first_rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (a_test, b_test, b_train) = (ids("a", "test"), ids("b", "test"), ids("b", "train"));
    assert!(a_test.is_subset(&b_test));
    assert!(a_test.is_disjoint(&b_train));
}

#[test]
fn json_arrays_csv_and_parquet_import_the_same_rows() {
    let sb = Sandbox::new();
    sb.write(
        "a.json",
        r#"[{"prompt": "p1", "reference": "r1"}, {"prompt": "p2, with a comma", "reference": "r2"}]"#,
    );
    sb.write(
        "a.csv",
        "prompt,reference\np1,r1\n\"p2, with a comma\",r2\n",
    );
    import(&sb, "a.json", "from-json", &[]).ok();
    import(&sb, "a.csv", "from-csv", &[]).ok();
    // Our own Parquet imports too.
    import(
        &sb,
        "from-json/data/train-00000-of-00001.parquet",
        "from-parquet",
        &[],
    )
    .ok();
    import(&sb, "from-json", "from-set", &[]).ok();
    let ids = |set: &str| -> Vec<String> {
        let v = inspect(&sb, set);
        let mut ids: Vec<String> = v["first_rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let expected = ids("from-json");
    assert_eq!(expected.len(), 2);
    assert_eq!(ids("from-csv"), expected);
    assert_eq!(ids("from-parquet"), expected);
    assert_eq!(ids("from-set"), expected);
}

#[test]
fn chosen_and_rejected_make_a_preference_set() {
    let sb = Sandbox::new();
    sb.write(
        "p.jsonl",
        "{\"prompt\": \"2+2?\", \"chosen\": \"4\", \"rejected\": \"5\"}\n{\"prompt\": \"capital of Italy?\", \"chosen\": [{\"role\": \"assistant\", \"content\": \"Rome\"}], \"rejected\": [{\"role\": \"assistant\", \"content\": \"Milan\"}]}\n",
    );
    let r = import(&sb, "p.jsonl", "pref", &[]).ok();
    assert!(r.stderr.contains("2 rows of preference"), "{}", r.stderr);
    let v = inspect(&sb, "pref");
    let cols: Vec<&str> = v["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["id", "prompt", "chosen", "rejected", "source"]);
    assert_eq!(v["first_rows"][1]["chosen"], "Rome");
}

#[test]
fn trl_conversations_import_as_prompt_and_completion() {
    let sb = Sandbox::new();
    sb.write(
        "c.jsonl",
        r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}"#,
    );
    import(&sb, "c.jsonl", "conv", &[]).ok();
    let row = &inspect(&sb, "conv")["first_rows"][0];
    assert_eq!(row["prompt"], "Hi?");
    assert_eq!(row["completion"], "Hello.");
    assert_eq!(row["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn exact_and_near_duplicates_and_eval_overlap_are_removed_and_reported() {
    let sb = Sandbox::new();
    let long = "summarise the following paragraph about the history of the printing press in europe and its effect on literacy";
    sb.write(
        "d.jsonl",
        format!(
            "{{\"prompt\": \"{long}\"}}\n{{\"prompt\": \"{}!!\"}}\n{{\"prompt\": \"{long} and science\"}}\n{{\"prompt\": \"a different question entirely\"}}\n{{\"prompt\": \"what is the boiling point of water at sea level in degrees celsius please answer briefly\"}}\n",
            long.to_uppercase()
        ),
    );
    sb.write(
        "eval.jsonl",
        "{\"prompt\": \"What is the boiling point of water at sea level in degrees Celsius?\"}\n",
    );
    let r = import(
        &sb,
        "d.jsonl",
        "clean",
        &["--dedup", "near", "--decontaminate", "eval.jsonl"],
    )
    .ok();
    assert!(
        r.stderr.contains("dedup (exact): removed 1 of"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("dedup (near, Jaccard ≥ 0.8): removed 1 of"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("decontamination (13-gram overlap with eval): removed 1 of 5"),
        "{}",
        r.stderr
    );
    assert_eq!(inspect(&sb, "clean")["rows"], 2);
    let card = std::fs::read_to_string(sb.join("clean/README.md")).unwrap();
    assert!(card.contains("dedup (exact): removed 1 of"), "{card}");
}

#[test]
fn an_existing_output_needs_force() {
    let sb = Sandbox::new();
    sb.write("a.jsonl", "{\"prompt\": \"x\"}\n");
    import(&sb, "a.jsonl", "out", &[]).ok();
    let r = import(&sb, "a.jsonl", "out", &[]).bad_input();
    assert!(
        r.stderr.contains("already exists") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    import(&sb, "a.jsonl", "out", &["--force"]).ok();
}

/// Every bad input: exit 2, one message naming the thing, no output directory left behind.
#[track_caller]
fn refused(sb: &Sandbox, input: &str, extra: &[&str], needles: &[&str]) {
    let r = import(sb, input, "out", extra).bad_input();
    for n in needles {
        assert!(r.stderr.contains(n), "stderr lacks {n:?}:\n{}", r.stderr);
    }
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    assert!(!sb.join("out").exists(), "output left behind");
    assert!(
        !sb.entries("").iter().any(|e| e.starts_with(".out")),
        "temporaries left: {:?}",
        sb.entries("")
    );
}

#[test]
fn bad_inputs_are_refused_cleanly() {
    let sb = Sandbox::new();
    refused(&sb, "missing.jsonl", &[], &["missing.jsonl"]);
    sb.write("empty.jsonl", "");
    refused(&sb, "empty.jsonl", &[], &["empty.jsonl", "is empty"]);
    sb.write("blank.jsonl", "\n\n");
    refused(&sb, "blank.jsonl", &[], &["blank.jsonl", "no rows"]);
    sb.write("bad.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n");
    refused(
        &sb,
        "bad.jsonl",
        &[],
        &["bad.jsonl` line 2", "not valid JSON"],
    );
    sb.write(
        "latin1.jsonl",
        b"{\"prompt\": \"a\"}\n{\"prompt\": \"caf\xe9\"}\n",
    );
    refused(&sb, "latin1.jsonl", &[], &["latin1.jsonl` line 2", "UTF-8"]);
    sb.write(
        "noprompt.jsonl",
        "{\"prompt\": \"a\"}\n{\"question\": \"b\"}\n",
    );
    refused(
        &sb,
        "noprompt.jsonl",
        &[],
        &["noprompt.jsonl` line 2", "prompt"],
    );
    sb.write("ragged.csv", "prompt,reference\na,b\nc,d,e\n");
    refused(&sb, "ragged.csv", &[], &["ragged.csv` line 3", "3 fields"]);
    sb.write("arr.json", "[{\"prompt\": \"a\"}, 3]");
    refused(&sb, "arr.json", &[], &["arr.json` element 1", "a number"]);
    sb.write("trunc.json", "[{\"prompt\": \"a\"}, {\"prompt\": ");
    refused(&sb, "trunc.json", &[], &["trunc.json", "truncated"]);
    sb.write(
        "notparquet.parquet",
        "this is text, not parquet at all, but long enough",
    );
    refused(
        &sb,
        "notparquet.parquet",
        &[],
        &["notparquet.parquet", "not a Parquet file"],
    );
    sb.write("x.xlsx", "zip");
    refused(&sb, "x.xlsx", &[], &["unknown file type `.xlsx`"]);
    std::fs::create_dir(sb.join("emptydir")).unwrap();
    refused(&sb, "emptydir", &[], &["emptydir", "without Parquet files"]);
    sb.write("ok.jsonl", "{\"question\": \"a\"}\n");
    refused(
        &sb,
        "ok.jsonl",
        &["--map", "prompt=q"],
        &["has no column `q`", "question"],
    );
    refused(
        &sb,
        "ok.jsonl",
        &["--map", "promt=question"],
        &["`promt` is not a column"],
    );
    refused(
        &sb,
        "ok.jsonl",
        &["--map", "prompt=question", "--split", "train=x"],
        &["not a number"],
    );
    refused(
        &sb,
        "ok.jsonl",
        &["--map", "prompt=question", "--shard-mib", "0"],
        &["--shard-mib"],
    );
}

#[test]
fn a_truncated_parquet_file_is_refused_cleanly() {
    let sb = Sandbox::new();
    let rows: String = (0..50)
        .map(|i| format!("{{\"prompt\": \"question number {i}\"}}\n"))
        .collect();
    sb.write("a.jsonl", &rows);
    import(&sb, "a.jsonl", "good", &[]).ok();
    let bytes = std::fs::read(sb.join("good/data/train-00000-of-00001.parquet")).unwrap();
    sb.write("cut.parquet", &bytes[..bytes.len() / 2]);
    refused(&sb, "cut.parquet", &[], &["cut.parquet", "Parquet"]);
    // The same length, its first third overwritten: bad input, named, and nothing written.
    let mut holed = bytes.clone();
    for b in &mut holed[4..bytes.len() / 3] {
        *b = 0xAA;
    }
    sb.write("holed.parquet", &holed);
    let r = import(&sb, "holed.parquet", "out", &[]).bad_input();
    assert!(
        r.stderr
            .contains("Failed to read Parquet file `holed.parquet`"),
        "{}",
        r.stderr
    );
    assert!(!sb.join("out").exists());
}

#[test]
fn parquet_with_the_wrong_schema_names_the_column() {
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let sb = Sandbox::new();
    // `completion_ids` as text: the file is valid Parquet, its schema is not a set's.
    let schema = Arc::new(Schema::new(vec![
        Field::new("prompt", DataType::Utf8, false),
        Field::new("completion_ids", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(StringArray::from(vec!["[1, 2]", "[3]"])),
        ],
    )
    .unwrap();
    let f = std::fs::File::create(sb.join("n.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    refused(&sb, "n.parquet", &[], &["n.parquet", "completion_ids"]);
}

#[test]
fn csv_with_a_value_of_the_wrong_type_names_line_and_column() {
    let sb = Sandbox::new();
    sb.write(
        "n.csv",
        "prompt,completion_ids\nhello,\"[1, 2, \"\"x\"\"]\"\n",
    );
    refused(&sb, "n.csv", &[], &["n.csv` line 2", "completion_ids"]);
}

#[test]
fn export_writes_trl_layouts() {
    let sb = Sandbox::new();
    sb.write(
        "g.jsonl",
        "{\"prompt\": \"q1\", \"reference\": \"a1\"}\n{\"prompt\": \"q2\", \"completion\": \"c2\"}\n{\"prompt\": \"q3\"}\n",
    );
    import(&sb, "g.jsonl", "gold", &[]).ok();
    let r = sb
        .run(&[
            "datasets", "export", "gold", "--kind", "sft", "--out", "sft", "--json",
        ])
        .ok();
    let report = r.json();
    assert_eq!(report["skipped"], 1);
    assert!(
        r.stderr
            .contains("Left out 1 row: no completion and no reference"),
        "{}",
        r.stderr
    );
    let v = inspect(&sb, "sft");
    let cols: Vec<&str> = v["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["id", "messages", "prompt", "completion", "source"]);
    let rows = v["first_rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let msgs = row["messages"].as_array().unwrap();
        assert_eq!(msgs.last().unwrap()["role"], "assistant");
        assert_eq!(msgs.last().unwrap()["content"], row["completion"]);
    }
    // An SFT set re-exports unchanged.
    sb.run(&[
        "datasets", "export", "sft", "--kind", "sft", "--out", "sft2",
    ])
    .ok();
    let (first, again) = (inspect(&sb, "sft"), inspect(&sb, "sft2"));
    assert_eq!(again["rows"], 2);
    assert_eq!(again["first_rows"], first["first_rows"]);
    // No preference pairs in a sample set: a clear error.
    let r = sb
        .run(&[
            "datasets",
            "export",
            "gold",
            "--kind",
            "preference",
            "--out",
            "p",
        ])
        .bad_input();
    assert!(
        r.stderr.contains("no `chosen` / `rejected`"),
        "{}",
        r.stderr
    );
    assert!(!sb.join("p").exists());
}

#[test]
fn inspect_shows_schema_rows_and_metadata() {
    let sb = Sandbox::new();
    sb.write(
        "a.jsonl",
        "{\"prompt\": \"hello \\u001b]52;c;ZXZpbA==\\u0007 there\"}\n",
    );
    import(&sb, "a.jsonl", "s", &[]).ok();
    let r = sb.run(&["datasets", "inspect", "s"]).ok();
    for needle in [
        "set `s`: 1 row,",
        "teacher_topk",
        "list<list<struct<id: uint32, logprob: float32>>>",
        "workbench.schema_version: 3",
        "first 1 row:",
    ] {
        assert!(r.stdout.contains(needle), "lacks {needle}:\n{}", r.stdout);
    }
    // The escape sequence in the data is shown, not obeyed.
    assert!(!r.stdout.contains('\u{1b}'), "raw ESC reached the terminal");
    let r = sb.run(&["datasets", "inspect", "nothing-here"]).bad_input();
    assert!(r.stderr.contains("nothing-here"), "{}", r.stderr);
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let sb = Sandbox::new();
    let rows: String = (0..200)
        .map(|i| format!("{{\"prompt\": \"question {i}\"}}\n"))
        .collect();
    sb.write("a.jsonl", &rows);
    import(&sb, "a.jsonl", "s", &[]).ok();
    let bin = env!("CARGO_BIN_EXE_workbench");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; '{bin}' datasets inspect s --json --head 200 | head -c 10 >/dev/null; echo rc=$?"))
        .current_dir(sb.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("error") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(stdout.contains("rc=0"), "{stdout}");
}

/// `datasets import --out DIR --force` deleted a folder that was not a set, and a user's
/// `important.txt` with it. `--force` replaces only the workbench's own output.
#[test]
fn force_never_deletes_a_folder_the_workbench_did_not_make() {
    let sb = Sandbox::new();
    sb.write("a.jsonl", ALPACA_LIKE);
    sb.write("mine/important.txt", "the only copy");
    let r = import(
        &sb,
        "a.jsonl",
        "mine",
        &["--map", "prompt=instruction", "--force"],
    )
    .bad_input();
    assert!(
        r.stderr.contains("important.txt") && r.stderr.contains("nothing was deleted"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(sb.join("mine/important.txt")).unwrap(),
        "the only copy"
    );
    assert_eq!(sb.entries("mine"), vec!["important.txt".to_string()]);

    // A set it wrote, and an empty directory, are replaced.
    import(&sb, "a.jsonl", "set", &["--map", "prompt=instruction"]).ok();
    import(
        &sb,
        "a.jsonl",
        "set",
        &[
            "--map",
            "prompt=instruction",
            "--force",
            "--split",
            "train=0.5,test=0.5",
        ],
    )
    .ok();
    std::fs::create_dir(sb.join("empty")).unwrap();
    import(
        &sb,
        "a.jsonl",
        "empty",
        &["--map", "prompt=instruction", "--force"],
    )
    .ok();
    assert!(sb.join("empty/README.md").is_file());

    // Expert decisions kept in a set are never replaced with it.
    sb.write("set/annotations.db", "");
    let r = import(
        &sb,
        "a.jsonl",
        "set",
        &["--map", "prompt=instruction", "--force"],
    )
    .bad_input();
    assert!(r.stderr.contains("expert decisions"), "{}", r.stderr);
    assert!(sb.join("set/annotations.db").is_file());
}

/// The import summary said `1 rows` and named the format as Rust prints it (`(Jsonl)`).
#[test]
fn the_import_summary_counts_in_words() {
    let sb = Sandbox::new();
    sb.write("one.jsonl", "{\"prompt\": \"a\"}\n");
    let r = import(&sb, "one.jsonl", "out", &[]).ok();
    assert!(
        r.stderr.contains("(JSON Lines)") && r.stderr.contains(": 1 row of sample (train 1)"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("Jsonl") && !r.stderr.contains("1 rows"),
        "{}",
        r.stderr
    );
}

/// A run whose teacher has written its synthetic set (tiny models: seconds). Returns the config.
pub fn run_with_synthetic_set(sb: &Sandbox, name: &str) -> std::path::PathBuf {
    let cfg = crate::common::tiny_config(sb, name, "");
    let c = cfg.to_str().unwrap();
    sb.run(&["teacher", "train", c]).ok();
    sb.run(&["generate", c]).ok();
    cfg
}

/// Exported from a run directory, a set takes the run's `[export]` splits and licence unless the
/// flags say otherwise; the sets inside the run keep one split.
#[test]
fn an_export_from_a_run_takes_its_splits_and_licence() {
    let sb = Sandbox::new();
    let cfg = crate::common::tiny_config(
        &sb,
        "split",
        "[export]\nsplits = { train = 0.5, test = 0.5 }\nlicense = \"cc-by-4.0\"\n",
    );
    let c = cfg.to_str().unwrap();
    sb.run(&["teacher", "train", c]).ok();
    sb.run(&["generate", c]).ok();
    assert!(
        parquet_files(&sb.join("runs/split/synthetic"))
            .iter()
            .all(|f| f.starts_with("train-")),
        "{:?}",
        parquet_files(&sb.join("runs/split/synthetic"))
    );
    let shared = [
        "datasets",
        "export",
        "runs/split",
        "--kind",
        "samples",
        "--out",
    ];
    let r = sb.run(&[&shared[..], &["from-run"]].concat()).ok();
    assert!(
        r.stderr.contains("(test ") && r.stderr.contains(", train "),
        "{}",
        r.stderr
    );
    let files = parquet_files(&sb.join("from-run"));
    assert!(files.iter().any(|f| f.starts_with("test-")), "{files:?}");
    let card = std::fs::read_to_string(sb.join("from-run/README.md")).unwrap();
    assert!(card.contains("license: cc-by-4.0"), "{card}");
    // The flags win.
    sb.run(
        &[
            &shared[..],
            &["flags", "--split", "train=1", "--license", "other"],
        ]
        .concat(),
    )
    .ok();
    assert!(
        parquet_files(&sb.join("flags"))
            .iter()
            .all(|f| f.starts_with("train-"))
    );
    let card = std::fs::read_to_string(sb.join("flags/README.md")).unwrap();
    assert!(card.contains("license: other"), "{card}");
}

/// A KD export for Axolotl: one row per sample, each laid against the end of the conversation
/// as the teacher's chat template tokenizes it, the teacher's own top-k where it graded the next
/// token. From the run (its local teacher's tokenizer) and from the set with `--tokenizer`, the
/// same rows. For DistillKit, the same conversations packed into rows of one length.
#[test]
fn a_kd_export_lays_the_teachers_next_token_rows_for_axolotl_and_distillkit() {
    let sb = Sandbox::new();
    run_with_synthetic_set(&sb, "kd");
    let r = sb
        .run(&[
            "datasets", "export", "runs/kd", "--kind", "kd", "--format", "axolotl", "--out", "kd",
            "--json",
        ])
        .ok();
    assert!(
        r.stderr
            .contains("Exported the teacher logprobs of `runs/kd/synthetic` for Axolotl"),
        "{}",
        r.stderr
    );
    let report = r.json();
    assert_eq!(report["kind"], "kd-axolotl");
    let samples: Vec<datasets::Sample> = datasets::Set::open(sb.join("runs/kd/synthetic"))
        .unwrap()
        .read_all(None)
        .unwrap();
    let rows: Vec<datasets::KdAxolotlRow> = datasets::Set::open(sb.join("kd"))
        .unwrap()
        .read_all(None)
        .unwrap();
    assert_eq!(report["rows_read"].as_u64().unwrap(), samples.len() as u64);
    assert_eq!(
        rows.len() as u64 + report["skipped"].as_u64().unwrap(),
        samples.len() as u64
    );
    assert!(rows.len() * 2 > samples.len(), "most samples fit: {report}");
    let tok = distill::data::tokenizer::Tokenizer::from_dir(&sb.join("runs/kd/teacher")).unwrap();
    let eos = tok.eos_id().unwrap() as i64;
    for row in &rows {
        let s = samples.iter().find(|s| s.id == row.id).unwrap();
        let n = s.completion_ids.len();
        let last = row.messages.last().unwrap();
        assert_eq!(
            (last.role.as_str(), Some(&last.content)),
            ("assistant", s.completion.as_ref())
        );
        // The plain template closes the answer with EOS: the teacher's rows, then one for the
        // last position, or two when the answer was cut short of EOS.
        let ended = s.completion_ids.last().map(|&i| i as i64) == Some(eos);
        assert_eq!(
            row.logprobs.len(),
            n + if ended { 1 } else { 2 },
            "{}",
            row.id
        );
        for (j, top) in s.teacher_topk.iter().enumerate() {
            let mut top = top.clone();
            top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
            let ids: Vec<i64> = top.iter().map(|t| t.id as i64).collect();
            assert_eq!(row.target_token_ids[j], ids, "{} position {j}", row.id);
            assert_eq!(row.logprobs[j][0], top[0].logprob.max(-80.0));
        }
        let end = row.target_token_ids.last().unwrap();
        assert_eq!((end[0], row.logprobs.last().unwrap()[0]), (eos, 0.0));
    }
    // The set itself, with the teacher's tokenizer named: the same rows.
    sb.run(&[
        "datasets",
        "export",
        "runs/kd/synthetic",
        "--kind",
        "kd",
        "--tokenizer",
        "runs/kd/teacher",
        "--out",
        "kd2",
    ])
    .ok();
    let again: Vec<datasets::KdAxolotlRow> = datasets::Set::open(sb.join("kd2"))
        .unwrap()
        .read_all(None)
        .unwrap();
    assert_eq!(again, rows);

    // DistillKit: conversations packed into rows of one length, labels on the answers only.
    let r = sb
        .run(&[
            "datasets",
            "export",
            "runs/kd",
            "--kind",
            "kd",
            "--format",
            "distillkit",
            "--sequence-len",
            "256",
            "--out",
            "dk",
        ])
        .ok();
    assert!(r.stderr.contains("for DistillKit"), "{}", r.stderr);
    let packed: Vec<datasets::KdDistillKitRow> = datasets::Set::open(sb.join("dk"))
        .unwrap()
        .read_all(None)
        .unwrap();
    assert!(packed.len() < rows.len(), "several conversations per row");
    // Labels on each assistant turn: the answer, and the EOS the template adds to one cut short.
    let turns: usize = rows
        .iter()
        .map(|r| {
            let s = samples.iter().find(|s| s.id == r.id).unwrap();
            let ended = s.completion_ids.last().map(|&i| i as i64) == Some(eos);
            s.completion_ids.len() + usize::from(!ended)
        })
        .sum();
    let labelled: usize = packed
        .iter()
        .map(|r| r.labels.iter().filter(|&&l| l >= 0).count())
        .sum();
    assert_eq!(labelled, turns, "every assistant turn's token, once");
    for r in &packed {
        assert_eq!(r.input_ids.len(), 256);
        assert!(r.token_ids.iter().all(|t| t.len() == r.token_ids[0].len()));
    }
    // A conversation longer than the rows is left out and counted.
    let r = sb
        .run(&[
            "datasets",
            "export",
            "runs/kd",
            "--kind",
            "kd",
            "--format",
            "distillkit",
            "--sequence-len",
            "8",
            "--out",
            "short",
        ])
        .bad_input();
    assert!(
        r.stderr.contains("longer than `--sequence-len` tokens")
            && r.stderr.contains("`--sequence-len`"),
        "{}",
        r.stderr
    );
    assert!(!sb.join("short").exists());
    // Everything in one packed row: DistillKit cannot read a split of fewer than 2.
    let r = sb
        .run(&[
            "datasets",
            "export",
            "runs/kd",
            "--kind",
            "kd",
            "--format",
            "distillkit",
            "--sequence-len",
            "65536",
            "--out",
            "one",
        ])
        .bad_input();
    assert!(
        r.stderr
            .contains("pack into 1 row of 65536 tokens in split `train`")
            && r.stderr.contains("at least 2 rows"),
        "{}",
        r.stderr
    );
    assert!(!sb.join("one").exists());
}
