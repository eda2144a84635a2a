//! Interop with real clients: sets we write open in pyarrow, pandas, polars, DuckDB and HF
//! `datasets`; Parquet that pyarrow writes in the HF shapes imports unchanged. The scripts live in
//! `tests/interop/`; the venv comes from `scripts/python-env.sh`.

use std::ffi::OsStr;

use crate::common::{Sandbox, python, root, run_python, run_python_args, torch_python};
use crate::model::Server;

#[test]
fn sets_we_export_open_in_every_python_client() {
    let Some(py) = python() else { return };
    let sb = Sandbox::new();
    // A sample set with teacher top-k, written through the CLI from JSONL.
    let rows: String = (0..40)
        .map(|i| {
            format!(
                "{{\"prompt\": \"question {i} é👩‍🔬\", \"completion\": \"answer {i}\", \"completion_ids\": [{i}, 7], \"teacher_topk\": [[{{\"id\": {i}, \"logprob\": -0.5}}, {{\"id\": 3, \"logprob\": -1.5}}], [{{\"id\": 7, \"logprob\": -0.1}}]], \"teacher\": \"t\", \"logprob_mean\": -0.3, \"entropy_mean\": 0.7, \"reference\": \"answer {i}\", \"seed\": {i}}}\n"
            )
        })
        .collect();
    sb.write("s.jsonl", &rows);
    sb.run(&[
        "datasets",
        "import",
        "s.jsonl",
        "--out",
        "samples",
        "--split",
        "train=0.8,test=0.2",
    ])
    .ok();
    sb.run(&[
        "datasets", "export", "samples", "--kind", "sft", "--out", "sft",
    ])
    .ok();
    sb.write(
        "p.jsonl",
        "{\"prompt\": \"2+2?\", \"chosen\": \"4\", \"rejected\": \"5\"}\n{\"prompt\": \"3+3?\", \"chosen\": \"6\", \"rejected\": \"7\"}\n",
    );
    sb.run(&["datasets", "import", "p.jsonl", "--out", "preference"])
        .ok();
    let out = run_python(
        &py,
        "read_sets.py",
        &[&sb.join("samples"), &sb.join("sft"), &sb.join("preference")],
    );
    assert!(out.contains("all clients read all sets"), "{out}");
}

#[test]
fn parquet_written_by_pyarrow_in_hf_shapes_imports_unchanged() {
    let Some(py) = python() else { return };
    let sb = Sandbox::new();
    run_python(&py, "write_hf_shapes.py", &[sb.path()]);
    // Conversational SFT (messages), prompt/completion, preference, and a `datasets`-written file.
    let r = sb
        .run(&[
            "datasets",
            "import",
            "messages.parquet",
            "--out",
            "m",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["set"]["rows"], 3);
    assert_eq!(r["kind"], "sample");
    let v = sb
        .run(&["datasets", "inspect", "m", "--json", "--head", "3"])
        .ok()
        .json();
    let row = v["first_rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prompt"] == "What is 2+2?")
        .expect("row");
    assert_eq!(row["completion"], "4");

    let r = sb
        .run(&[
            "datasets",
            "import",
            "prompt_completion.parquet",
            "--out",
            "pc",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["set"]["rows"], 3);
    let r = sb
        .run(&[
            "datasets",
            "import",
            "preference.parquet",
            "--out",
            "pref",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["kind"], "preference");
    assert_eq!(r["set"]["rows"], 2);
    let r = sb
        .run(&[
            "datasets",
            "import",
            "hf_datasets_dir",
            "--out",
            "hf",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["set"]["rows"], 4);
    let r = sb
        .run(&[
            "datasets",
            "import",
            "topk.parquet",
            "--out",
            "topk",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["set"]["rows"], 2);
    // Round trip back to pyarrow: the top-k survived.
    let out = run_python(&py, "check_topk.py", &[&sb.join("topk")]);
    assert!(out.contains("top-k ok"), "{out}");
}

#[test]
fn the_openai_client_talks_to_our_server() {
    let Some(py) = python() else { return };
    let dir = root().join("distill/tests/fixtures/models/llama-gqa");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let server = Server::start(&dir);
    let base = format!("http://{}/v1", server.addr);
    let prompt = expected["inputs"][2].to_string();
    let greedy = expected["greedy"][2].to_string();
    let args: Vec<&OsStr> = vec![
        OsStr::new(&base),
        OsStr::new("llama-gqa"),
        OsStr::new(&prompt),
        OsStr::new(&greedy),
    ];
    let out = run_python_args(&py, "openai_client.py", &args);
    assert!(out.contains("openai client ok"), "{out}");
}

#[test]
fn checkpoints_we_save_load_in_transformers_with_equal_logits() {
    let Some(py) = torch_python() else { return };
    let sb = Sandbox::new();
    for name in [
        "llama-gqa",
        "qwen2-tied-bf16",
        "llama-head-dim",
        "mistral-legacy-rope",
    ] {
        let src = root().join("distill/tests/fixtures/models").join(name);
        sb.run(&[
            "model",
            "convert",
            "--model",
            src.to_str().unwrap(),
            "--out",
            name,
        ])
        .ok();
        let ids: Vec<Vec<u32>> = vec![vec![1, 2, 3], (5..40).collect(), vec![511]];
        let logits: Vec<serde_json::Value> = ids
            .iter()
            .map(|i| {
                let list = i.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
                sb.run(&["model", "logits", "--model", name, "--ids", &list, "--json"])
                    .ok()
                    .json()["logits"]
                    .clone()
            })
            .collect();
        let expected = sb.write(
            &format!("{name}.json"),
            serde_json::json!({"ids": ids, "logits": logits}).to_string(),
        );
        let out = run_python(&py, "check_saved_model.py", &[&sb.join(name), &expected]);
        assert!(out.contains("saved checkpoint ok"), "{name}: {out}");
    }
}
