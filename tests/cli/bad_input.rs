//! The bad-input table: every way a user's input can be wrong, run through the real
//! binary. Each case must end with one message that names the file, line or key and says what to
//! do; exit 2 for bad input or 1 for a failure of the world (a server, a lock, the disk); no panic;
//! and nothing half-written: no temporary left anywhere in the sandbox, and no output the command
//! was asked for.
//!
//! One test runs the whole table and reports every case that misbehaves, not only the first.

use std::path::{Path, PathBuf};

use crate::common::fake_openai::{FakeServer, Fault, State};
use crate::common::{Run, Sandbox, root, temporaries, tiny_config};

/// One row of the table.
struct Case {
    name: &'static str,
    /// Prepares the sandbox and returns the command line (after `workbench`). The case owns
    /// whatever it returns in `Setup::keep` until the command has run (a server, a lock).
    setup: fn(&Sandbox) -> Setup,
    /// 2: bad input; 1: the input was fine but the world was not.
    code: i32,
    /// Text the message must contain.
    needles: &'static [&'static str],
    /// Paths (relative to the sandbox) that must not exist afterwards.
    absent: &'static [&'static str],
}

struct Setup {
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// Run through `sh -c` with this prefix (for `ulimit`).
    shell_prefix: Option<&'static str>,
    keep: Vec<Box<dyn std::any::Any>>,
}

fn args(a: &[&str]) -> Setup {
    Setup {
        args: a.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        shell_prefix: None,
        keep: Vec::new(),
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn fixture(name: &str) -> PathBuf {
    root().join("distill/tests/fixtures/models").join(name)
}

/// A copy of a fixture checkpoint in the sandbox, to damage.
fn copy_model(sb: &Sandbox, fixture_name: &str, to: &str) -> PathBuf {
    let src = fixture(fixture_name);
    let dst = sb.join(to);
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dst
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// A small GGUF file: version `version`, `general.architecture = arch`, and one tensor
/// `token_embd.weight` of 32 × 2 values of ggml type `kind` (its data zeros, sized as F32's).
fn gguf_bytes(version: u32, arch: &str, kind: u32) -> Vec<u8> {
    let mut b = Vec::new();
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    b.extend(b"GGUF");
    b.extend(version.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    string(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    string(&mut b, arch);
    string(&mut b, "token_embd.weight");
    b.extend(2u32.to_le_bytes());
    b.extend(32u64.to_le_bytes());
    b.extend(2u64.to_le_bytes());
    b.extend(kind.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.resize(b.len().div_ceil(32) * 32, 0);
    b.extend(vec![0u8; 32 * 2 * 4]);
    b
}

/// [`gguf_bytes`] (version 3, `llama`, F32) with its one tensor's dimensions rewritten, its data
/// left as it is.
fn gguf_with_dims(d0: u64, d1: u64) -> Vec<u8> {
    let mut b = gguf_bytes(3, "llama", 0);
    let name = b
        .windows(17)
        .position(|w| w == b"token_embd.weight")
        .unwrap();
    // After the name: its number of dimensions (u32), then each dimension (u64).
    let dims = name + 17 + 4;
    b[dims..dims + 8].copy_from_slice(&d0.to_le_bytes());
    b[dims + 8..dims + 16].copy_from_slice(&d1.to_le_bytes());
    b
}

/// Rewrites a safetensors file without the tensor `drop` (its bytes cut out, every later offset
/// moved down), so the file is valid and only that tensor is missing.
fn drop_tensor(path: &Path, drop: &str) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut entries: Vec<(String, serde_json::Value)> = header.into_iter().collect();
    entries.sort_by_key(|(_, v)| v["data_offsets"][0].as_u64().unwrap_or(0));
    let (mut out_header, mut out_data) = (serde_json::Map::new(), Vec::new());
    let mut found = false;
    for (name, mut v) in entries {
        if name == "__metadata__" {
            out_header.insert(name, v);
            continue;
        }
        if name == drop {
            found = true;
            continue;
        }
        let (a, b) = (
            v["data_offsets"][0].as_u64().unwrap() as usize,
            v["data_offsets"][1].as_u64().unwrap() as usize,
        );
        let start = out_data.len();
        out_data.extend_from_slice(&data[a..b]);
        v["data_offsets"] = serde_json::json!([start, out_data.len()]);
        out_header.insert(name, v);
    }
    assert!(found, "{drop} is not in {}", path.display());
    let mut h = serde_json::to_vec(&out_header).unwrap();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&out_data);
    std::fs::write(path, out).unwrap();
}

/// A Parquet file without a `prompt` column (a `question` column instead).
fn no_prompt_parquet(path: &Path) {
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        Field::new("question", DataType::Utf8, false),
        Field::new("answer", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["q1", "q2"])),
            Arc::new(StringArray::from(vec!["a", "b"])),
        ],
    )
    .unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

const JSONL: &str =
    "{\"prompt\": \"a\", \"reference\": \"b\"}\n{\"prompt\": \"c\", \"reference\": \"d\"}\n";

/// A run config whose teacher is an OpenAI-compatible server at `base_url` that gives up fast.
fn server_config(sb: &Sandbox, name: &str, base_url: &str) -> PathBuf {
    tiny_config(
        sb,
        name,
        &format!(
            "[teacher]\nkind = \"openai\"\nbase_url = \"{base_url}\"\nmodel = \"fake\"\n\
             timeout_secs = 1.0\nbackoff_ms = 10\nbackoff_max_ms = 20\nmax_retries = 1\n\n\
             [generate]\nlimit = 4\n"
        ),
    )
}

fn faulty_server(sb: &Sandbox, name: &str, fault: Fault) -> Setup {
    let server = FakeServer::start(State {
        after: Some(fault),
        ..Default::default()
    });
    let cfg = server_config(sb, name, &server.base_url());
    let mut s = args(&["generate", p(&cfg)]);
    s.keep.push(Box::new(server));
    s
}

fn config(sb: &Sandbox, text: &str) -> PathBuf {
    sb.write("c.toml", text)
}

const GOOD: &str = "[run]\nname = \"x\"\n\n[data]\ntask = \"dates\"\n";

fn cases() -> Vec<Case> {
    vec![
        // ---- the config file ----
        Case {
            name: "malformed TOML",
            setup: |sb| {
                let c = config(sb, "[run]\nname = \"x\n");
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["c.toml` at line 2"],
            absent: &["runs"],
        },
        Case {
            name: "unknown key",
            setup: |sb| {
                let c = config(sb, &format!("{GOOD}gold_sise = 3\n"));
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["gold_sise", "gold_size"],
            absent: &["runs"],
        },
        Case {
            name: "wrong type",
            setup: |sb| {
                let c = config(sb, &format!("{GOOD}gold_size = \"many\"\n"));
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["data.gold_size"],
            absent: &["runs"],
        },
        Case {
            name: "--set with an unknown key",
            setup: |sb| {
                let c = config(sb, GOOD);
                args(&["run", p(&c), "--set", "data.gold_sise=3"])
            },
            code: 2,
            needles: &["gold_sise"],
            absent: &["runs"],
        },
        Case {
            name: "--set with a wrong type",
            setup: |sb| {
                let c = config(sb, GOOD);
                args(&["run", p(&c), "--set", "run.seed=\"soon\""])
            },
            code: 2,
            needles: &["run.seed"],
            absent: &["runs"],
        },
        Case {
            name: "missing config file",
            setup: |_| args(&["run", "nowhere.toml"]),
            code: 2,
            needles: &["nowhere.toml"],
            absent: &["runs"],
        },
        Case {
            name: "a directory where the config belongs",
            setup: |sb| {
                std::fs::create_dir(sb.join("c.toml")).unwrap();
                args(&["run", "c.toml"])
            },
            code: 2,
            needles: &["c.toml", "directory"],
            absent: &["runs"],
        },
        Case {
            name: "empty config file",
            setup: |sb| {
                let c = config(sb, "");
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["c.toml", "the file is empty", "configs/demo.toml"],
            absent: &["runs"],
        },
        Case {
            name: "config that is not UTF-8",
            setup: |sb| {
                let c = sb.write("c.toml", b"[run]\nname = \"caf\xe9\"\n");
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["c.toml", "UTF-8"],
            absent: &["runs"],
        },
        Case {
            name: "zero size",
            setup: |sb| {
                let c = config(sb, &format!("{GOOD}gold_size = 0\n"));
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["data.gold_size"],
            absent: &["runs"],
        },
        Case {
            name: "negative size",
            setup: |sb| {
                let c = config(sb, &format!("{GOOD}\n[teacher.train]\nsteps = -5\n"));
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["teacher.train.steps"],
            absent: &["runs"],
        },
        Case {
            name: "a run name that leaves the runs directory",
            setup: |sb| {
                let c = config(
                    sb,
                    "[run]\nname = \"../escaped\"\n\n[data]\ntask = \"dates\"\n",
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["run.name", "../escaped"],
            absent: &["runs", "escaped"],
        },
        Case {
            name: "an export split that leaves the set directory",
            setup: |sb| {
                let c = config(
                    sb,
                    &format!("{GOOD}\n[export]\nsplits = {{ \"../up\" = 1.0 }}\n"),
                );
                args(&["config", "check", p(&c)])
            },
            code: 2,
            needles: &["export.splits", "../up"],
            absent: &["up"],
        },
        Case {
            name: "a data file the config names is missing",
            setup: |sb| {
                let c = config(
                    sb,
                    "[run]\nname = \"x\"\n\n[data]\ngold = { path = \"nope.jsonl\" }\n\
                     prompts = { path = \"nope.jsonl\" }\neval = { path = \"nope.jsonl\" }\n",
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["nope.jsonl"],
            absent: &["runs/x/data"],
        },
        Case {
            name: "a run directory another config made",
            setup: |sb| {
                let a = tiny_config(sb, "shared", "");
                // `eval` prepares the run directory and its data, then stops: no models yet.
                sb.run(&["eval", p(&a)]);
                assert!(sb.join("runs/shared/config.toml").exists());
                let b = sb.write(
                    "b.toml",
                    std::fs::read_to_string(&a)
                        .unwrap()
                        .replace("seed = 3", "seed = 4"),
                );
                args(&["run", p(&b)])
            },
            code: 2,
            needles: &["runs/shared", "--force"],
            absent: &["runs/shared/teacher"],
        },
        Case {
            name: "--resume without a checkpoint",
            setup: |sb| {
                let c = tiny_config(sb, "fresh", "");
                args(&["teacher", "train", p(&c), "--resume"])
            },
            code: 2,
            needles: &["no complete checkpoint", "without --resume"],
            absent: &["runs/fresh/teacher"],
        },
        // ---- data files ----
        Case {
            name: "JSONL with one bad line",
            setup: |sb| {
                sb.write("bad.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n");
                args(&["datasets", "import", "bad.jsonl", "--out", "out"])
            },
            code: 2,
            needles: &["bad.jsonl` line 2", "not valid JSON"],
            absent: &["out"],
        },
        Case {
            name: "CSV with a ragged row",
            setup: |sb| {
                sb.write("ragged.csv", "prompt,reference\na,b\nc,d,e\n");
                args(&["datasets", "import", "ragged.csv", "--out", "out"])
            },
            code: 2,
            needles: &["ragged.csv` line 3", "3 fields"],
            absent: &["out"],
        },
        Case {
            name: "invalid UTF-8 in a data file",
            setup: |sb| {
                sb.write(
                    "latin1.jsonl",
                    b"{\"prompt\": \"a\"}\n{\"prompt\": \"caf\xe9\"}\n",
                );
                args(&["datasets", "import", "latin1.jsonl", "--out", "out"])
            },
            code: 2,
            needles: &["latin1.jsonl` line 2", "UTF-8"],
            absent: &["out"],
        },
        Case {
            name: "missing data file",
            setup: |_| args(&["datasets", "import", "gone.jsonl", "--out", "out"]),
            code: 2,
            needles: &["gone.jsonl"],
            absent: &["out"],
        },
        Case {
            name: "a mapping that names a missing column",
            setup: |sb| {
                sb.write("q.jsonl", "{\"question\": \"a\"}\n");
                args(&[
                    "datasets", "import", "q.jsonl", "--map", "prompt=q", "--out", "out",
                ])
            },
            code: 2,
            needles: &["has no column `q`", "question"],
            absent: &["out"],
        },
        Case {
            name: "truncated Parquet",
            setup: |sb| {
                let rows: String = (0..40)
                    .map(|i| format!("{{\"prompt\": \"question {i}\"}}\n"))
                    .collect();
                sb.write("a.jsonl", rows);
                sb.run(&["datasets", "import", "a.jsonl", "--out", "good"])
                    .ok();
                let bytes =
                    std::fs::read(sb.join("good/data/train-00000-of-00001.parquet")).unwrap();
                sb.write("cut.parquet", &bytes[..bytes.len() / 2]);
                args(&["datasets", "import", "cut.parquet", "--out", "out"])
            },
            code: 2,
            needles: &["cut.parquet", "Parquet"],
            absent: &["out"],
        },
        Case {
            name: "Parquet with the wrong schema",
            setup: |sb| {
                no_prompt_parquet(&sb.join("qa.parquet"));
                args(&["datasets", "import", "qa.parquet", "--out", "out"])
            },
            code: 2,
            needles: &["qa.parquet", "prompt", "question", "--map"],
            absent: &["out"],
        },
        Case {
            name: "a corrupt Parquet page the decoder chokes on",
            setup: |sb| {
                // Found by `fuzz/`: the `parquet` crate panics on it; we must not.
                let bytes = std::fs::read(
                    root().join("fuzz/regressions/parquet_import/dict_decoder_not_set.parquet"),
                )
                .unwrap();
                sb.write("dict.parquet", bytes);
                args(&["datasets", "import", "dict.parquet", "--out", "out"])
            },
            code: 2,
            needles: &["dict.parquet", "row group 0 is unreadable", "corrupt"],
            absent: &["out"],
        },
        Case {
            name: "a split name that leaves the output directory",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                args(&[
                    "datasets",
                    "import",
                    "ok.jsonl",
                    "--out",
                    "out",
                    "--split",
                    "../evil=1",
                ])
            },
            code: 2,
            needles: &["Split name `../evil`"],
            absent: &["out", "evil"],
        },
        Case {
            name: "an existing output without --force",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                sb.write("out/keep.txt", "mine");
                args(&["datasets", "import", "ok.jsonl", "--out", "out"])
            },
            code: 2,
            needles: &["`out` already exists", "--force"],
            absent: &["out/data"],
        },
        // ---- checkpoints ----
        Case {
            name: "checkpoint with a missing tensor",
            setup: |sb| {
                let m = copy_model(sb, "llama-gqa", "m");
                drop_tensor(
                    &m.join("model.safetensors"),
                    "model.layers.0.mlp.up_proj.weight",
                );
                args(&["model", "logits", "--model", "m", "--ids", "1,2"])
            },
            code: 2,
            needles: &["model.layers.0.mlp.up_proj.weight", "is missing"],
            absent: &[],
        },
        Case {
            name: "checkpoint with a wrong shape",
            setup: |sb| {
                let m = copy_model(sb, "llama-gqa", "m");
                edit_json(&m.join("config.json"), |v| {
                    v["intermediate_size"] = 128.into()
                });
                args(&["model", "logits", "--model", "m", "--ids", "1,2"])
            },
            code: 2,
            needles: &["mlp", "shape"],
            absent: &[],
        },
        Case {
            name: "a GGUF file with a wrong magic number",
            setup: |sb| {
                std::fs::write(sb.join("m.gguf"), b"GGML\x03\0\0\0 not really").unwrap();
                args(&["model", "logits", "--model", "m.gguf", "--ids", "1,2"])
            },
            code: 2,
            needles: &["m.gguf", "not `GGUF`"],
            absent: &[],
        },
        Case {
            name: "a truncated GGUF file",
            setup: |sb| {
                let mut b = gguf_bytes(3, "llama", 0);
                b.truncate(b.len() - 10);
                std::fs::write(sb.join("m.gguf"), b).unwrap();
                args(&["model", "logits", "--model", "m.gguf", "--ids", "1,2"])
            },
            code: 2,
            needles: &["m.gguf", "truncated"],
            absent: &[],
        },
        Case {
            name: "a GGUF tensor whose size in bytes overflows",
            setup: |sb| {
                // 2^30 × 2^32 F32 values: a count that fits, bytes that do not.
                let b = gguf_with_dims(1 << 30, 1 << 32);
                std::fs::write(sb.join("m.gguf"), b).unwrap();
                args(&["model", "logits", "--model", "m.gguf", "--ids", "1,2"])
            },
            code: 2,
            needles: &[
                "m.gguf",
                "token_embd.weight",
                "more than 2^64 bytes",
                "header is damaged",
            ],
            absent: &[],
        },
        Case {
            name: "a GGUF file of an unsupported version",
            setup: |sb| {
                std::fs::write(sb.join("m.gguf"), gguf_bytes(7, "llama", 0)).unwrap();
                args(&["model", "logits", "--model", "m.gguf", "--ids", "1,2"])
            },
            code: 2,
            needles: &["version 7", "versions 2 and 3"],
            absent: &[],
        },
        Case {
            name: "a GGUF tensor of a type the workbench does not read",
            setup: |sb| {
                std::fs::write(sb.join("m.gguf"), gguf_bytes(3, "llama", 16)).unwrap();
                args(&["model", "logits", "--model", "m.gguf", "--ids", "1,2"])
            },
            code: 2,
            needles: &["token_embd.weight", "IQ2_XXS", "Q4_K"],
            absent: &[],
        },
        Case {
            name: "a GGUF tensor of a type id no GGUF version defines",
            setup: |sb| {
                std::fs::write(sb.join("m.gguf"), gguf_bytes(3, "llama", 99)).unwrap();
                args(&["model", "logits", "--model", "m.gguf", "--ids", "1,2"])
            },
            code: 2,
            needles: &["m.gguf", "token_embd.weight", "type 99", "Q4_K"],
            absent: &[],
        },
        Case {
            name: "a GGUF tensor whose shape asks for more data than the file holds",
            setup: |sb| {
                // [32, 64] F32 values over the data of [32, 2].
                std::fs::write(sb.join("m.gguf"), gguf_with_dims(32, 64)).unwrap();
                args(&["model", "convert", "--model", "m.gguf", "--out", "out"])
            },
            code: 2,
            needles: &["m.gguf", "token_embd.weight", "disagrees with its shape"],
            absent: &["out"],
        },
        Case {
            name: "a GGUF model of an architecture the workbench does not run",
            setup: |sb| {
                std::fs::write(sb.join("m.gguf"), gguf_bytes(3, "gpt9", 0)).unwrap();
                args(&["model", "convert", "--model", "m.gguf", "--out", "out"])
            },
            code: 2,
            needles: &["gpt9", "llama, mistral and qwen2"],
            absent: &["out"],
        },
        Case {
            name: "a GGUF export with an unknown quantization",
            setup: |_| {
                let m = fixture("llama-gqa");
                args(&[
                    "model",
                    "convert",
                    "--model",
                    p(&m),
                    "--out",
                    "m.gguf",
                    "--quantize",
                    "q3_k",
                ])
            },
            code: 2,
            needles: &["--quantize q3_k", "f32, f16, q8_0 or q4_0"],
            absent: &["m.gguf"],
        },
        Case {
            name: "a quantization asked of a directory output",
            setup: |_| {
                let m = fixture("llama-gqa");
                args(&[
                    "model",
                    "convert",
                    "--model",
                    p(&m),
                    "--out",
                    "out",
                    "--quantize",
                    "q8_0",
                ])
            },
            code: 2,
            needles: &["--quantize q8_0", "FILE.gguf"],
            absent: &["out"],
        },
        Case {
            name: "serve a model file that does not exist",
            setup: |_| args(&["serve", "--model", "missing.gguf"]),
            code: 2,
            needles: &["missing.gguf", "does not exist"],
            absent: &[],
        },
        Case {
            name: "serve with an unknown weight type",
            setup: |_| {
                let m = fixture("llama-gqa");
                args(&["serve", "--model", p(&m), "--quantize", "int3"])
            },
            code: 2,
            needles: &["--quantize int3", "auto, f32, q8_0 or q4_0"],
            absent: &[],
        },
        Case {
            name: "checkpoint with an unknown model_type",
            setup: |sb| {
                let m = copy_model(sb, "llama-gqa", "m");
                edit_json(&m.join("config.json"), |v| v["model_type"] = "gpt9".into());
                args(&["model", "logits", "--model", "m", "--ids", "1,2"])
            },
            code: 2,
            needles: &["gpt9", "config.json"],
            absent: &[],
        },
        Case {
            name: "a sharded checkpoint whose index points outside it",
            setup: |sb| {
                let m = copy_model(sb, "llama-gqa", "m");
                std::fs::rename(
                    m.join("model.safetensors"),
                    sb.join("elsewhere.safetensors"),
                )
                .unwrap();
                sb.write(
                    "m/model.safetensors.index.json",
                    "{\"weight_map\": {\"model.embed_tokens.weight\": \"../elsewhere.safetensors\"}}",
                );
                args(&["model", "logits", "--model", "m", "--ids", "1,2"])
            },
            code: 2,
            needles: &["points outside the checkpoint"],
            absent: &[],
        },
        Case {
            name: "a tokenizer that does not match the checkpoint",
            setup: |sb| {
                let m = copy_model(sb, "llama-gqa", "m");
                // 900 added tokens: the tokenizer's ids run past the model's 512 rows.
                edit_json(&m.join("tokenizer.json"), |v| {
                    let added = v["added_tokens"].as_array_mut().unwrap();
                    for i in 0..900 {
                        added.push(serde_json::json!({
                            "id": 512 + i, "content": format!("<extra_{i}>"), "single_word": false,
                            "lstrip": false, "rstrip": false, "normalized": false, "special": true
                        }));
                    }
                });
                args(&["model", "logits", "--model", "m", "--text", "hello"])
            },
            code: 2,
            needles: &["tokenizer.json", "vocab"],
            absent: &[],
        },
        Case {
            name: "a port in use for serve",
            setup: |_| {
                let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = taken.local_addr().unwrap().to_string();
                let m = fixture("llama-gqa");
                let mut s = args(&["serve", "--model", p(&m), "--addr", &addr]);
                s.keep.push(Box::new(taken));
                s
            },
            code: 2,
            needles: &["127.0.0.1:", "--addr"],
            absent: &[],
        },
        // ---- a teacher server that misbehaves ----
        Case {
            name: "a server answering 429",
            setup: |sb| faulty_server(sb, "s429", Fault::TooMany),
            code: 1,
            needles: &["HTTP 429", "gave up"],
            absent: &["runs/s429/synthetic"],
        },
        Case {
            name: "on-policy against a server that scores no tokens",
            setup: |sb| {
                // The fake server answers every request as a chat completion: neither
                // `prompt_logprobs` nor the prompt's logprobs with `echo`.
                let server = FakeServer::start(State::default());
                let fixture = crate::common::root().join("distill/tests/fixtures/models/llama-gqa");
                let cfg = tiny_config(
                    sb,
                    "noscore",
                    &format!(
                        "[teacher]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"fake\"\n\
                         tokenizer = \"{}\"\nmax_retries = 0\n\n[generate]\nlimit = 8\n\
                         check_teacher = false\nmin_chars = 0\n\n[distill]\non_policy = 1.0\n\
                         baseline = false\n",
                        server.base_url(),
                        fixture.display()
                    ),
                );
                let mut s = args(&["run", p(&cfg)]);
                s.keep.push(Box::new(server));
                s
            },
            code: 1,
            needles: &[
                "scores tokens neither with `prompt_logprobs`",
                "no `prompt_logprobs`",
                "`echo` and `logprobs`",
                "distill.on_policy = 0",
            ],
            absent: &["runs/noscore/student"],
        },
        Case {
            name: "a server answering 500",
            setup: |sb| faulty_server(sb, "s500", Fault::Internal),
            code: 1,
            needles: &["HTTP 500", "gave up"],
            absent: &["runs/s500/synthetic"],
        },
        Case {
            name: "a server answering garbage",
            setup: |sb| faulty_server(sb, "junk", Fault::Malformed),
            code: 1,
            needles: &["gave up"],
            absent: &["runs/junk/synthetic"],
        },
        Case {
            name: "a server answering nothing",
            setup: |sb| faulty_server(sb, "mute", Fault::Drop),
            code: 1,
            needles: &["gave up"],
            absent: &["runs/mute/synthetic"],
        },
        Case {
            name: "no server at the address",
            setup: |sb| {
                // A port that was free a moment ago: nothing listens there.
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let cfg = server_config(sb, "nobody", &format!("http://127.0.0.1:{port}/v1"));
                args(&["generate", p(&cfg)])
            },
            code: 1,
            needles: &["gave up", "127.0.0.1"],
            absent: &["runs/nobody/synthetic"],
        },
        // ---- the annotation database ----
        Case {
            name: "a corrupted annotation database",
            setup: |sb| {
                sb.write("broken.db", vec![b'x'; 4096]);
                args(&["annotate", "stats", "broken.db"])
            },
            code: 2,
            needles: &[
                "broken.db",
                "is not a readable annotation database",
                "hint:",
            ],
            absent: &[],
        },
        Case {
            name: "a locked annotation database",
            setup: |sb| {
                sb.write("items.jsonl", JSONL);
                let db = sb.join("annotations.db");
                let conn = rusqlite::Connection::open(&db).unwrap();
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA locking_mode = EXCLUSIVE; \
                     CREATE TABLE hold(x); BEGIN EXCLUSIVE; INSERT INTO hold VALUES (1);",
                )
                .unwrap();
                let mut s = args(&["annotate", "stats", p(&db)]);
                s.keep.push(Box::new(conn));
                s
            },
            code: 1,
            needles: &["annotations.db", "held by another process", "retry"],
            absent: &[],
        },
        Case {
            name: "a store URL with a password in it",
            setup: |sb| {
                sb.write("items.jsonl", JSONL);
                args(&[
                    "annotate",
                    "stats",
                    "items.jsonl",
                    "--store",
                    "postgres://ana:hunter2@127.0.0.1:1/wb",
                ])
            },
            code: 2,
            needles: &["--store", "password", "PGPASSWORD"],
            absent: &[],
        },
        Case {
            name: "annotate.store that is not a PostgreSQL URL",
            setup: |sb| {
                let c = tiny_config(sb, "st", "[annotate]\nstore = \"team.db\"\n");
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &[
                "annotate.store",
                "team.db",
                "postgres://USER@HOST:PORT/DATABASE",
            ],
            absent: &["runs/st"],
        },
        Case {
            name: "a PostgreSQL store nobody answers at",
            setup: |sb| {
                sb.write("items.jsonl", JSONL);
                args(&[
                    "annotate",
                    "stats",
                    "items.jsonl",
                    "--store",
                    "postgres://ana@127.0.0.1:1/wb",
                ])
            },
            code: 1,
            needles: &["127.0.0.1:1", "cannot be reached", "hint:"],
            absent: &[],
        },
        Case {
            name: "import-store from a store that does not exist",
            setup: |_| args(&["annotate", "import-store", "nothing.db", "copy.db"]),
            code: 2,
            needles: &["nothing.db", "does not exist", "FROM"],
            absent: &["copy.db"],
        },
        Case {
            name: "import-store into the store it reads",
            setup: |sb| {
                sb.write("a.db", b"");
                args(&["annotate", "import-store", "a.db", "a.db"])
            },
            code: 2,
            needles: &["same store", "a.db"],
            absent: &[],
        },
        // ---- the machine ----
        Case {
            name: "the disk fills up",
            setup: |sb| {
                let rows: String = (0..4000)
                    .map(|i| format!("{{\"prompt\": \"question {i} {}\"}}\n", "x".repeat(200)))
                    .collect();
                sb.write("big.jsonl", rows);
                // Files may not grow past 64 KiB: writes fail as on a full disk (EFBIG).
                let mut s = args(&["datasets", "import", "big.jsonl", "--out", "out"]);
                s.shell_prefix = Some("trap '' XFSZ; ulimit -f 64;");
                s
            },
            code: 1,
            needles: &["out"],
            absent: &["out"],
        },
        Case {
            name: "a run directory that cannot be written",
            setup: |sb| {
                // A file where the runs directory belongs: unwritable for root too.
                sb.write("runs", "not a directory");
                let c = tiny_config(sb, "ro", "");
                args(&["run", p(&c)])
            },
            code: 1,
            needles: &["runs"],
            absent: &[],
        },
        Case {
            name: "logit KD across vocabularies",
            setup: |sb| {
                let cfg = crate::common::fixture_student_config(sb);
                sb.run(&["teacher", "train", p(&cfg)]).ok();
                sb.run(&["generate", p(&cfg)]).ok();
                args(&["distill", p(&cfg)])
            },
            code: 2,
            needles: &["share a vocabulary", "distill.loss = \"ce\""],
            absent: &["runs/vocab/student"],
        },
        // ---- values that would diverge, not fit, or blame the wrong culprit ----
        Case {
            name: "no command at all",
            setup: |_| args(&[]),
            code: 2,
            needles: &["no command", "workbench run"],
            absent: &[],
        },
        Case {
            name: "a KD temperature so low the softmax overflows",
            setup: |sb| {
                let c = tiny_config(sb, "cold", "");
                args(&["run", p(&c), "--set", "distill.temperature=1e-300"])
            },
            code: 2,
            needles: &["--set distill.temperature=1e-300", "distill.temperature"],
            absent: &["runs"],
        },
        Case {
            name: "a learning rate that diverges",
            setup: |sb| {
                let c = tiny_config(sb, "hot", "");
                args(&["run", p(&c), "--set", "teacher.train.lr=1e300"])
            },
            code: 2,
            needles: &["teacher.train.lr", "up to 1"],
            absent: &["runs"],
        },
        Case {
            name: "an override out of range blames the override, not the file",
            setup: |sb| {
                let c = tiny_config(sb, "blame", "");
                args(&["config", "check", p(&c), "--set", "distill.alpha=3"])
            },
            code: 2,
            needles: &["Invalid config `--set distill.alpha=3`", "distill.alpha"],
            absent: &[],
        },
        Case {
            name: "logit KD with no top-k logprobs to learn from",
            setup: |sb| {
                let c = tiny_config(sb, "nok", "");
                args(&["run", p(&c), "--set", "generate.top_logprobs=0"])
            },
            code: 2,
            needles: &["generate.top_logprobs", "distill.loss"],
            absent: &["runs"],
        },
        Case {
            name: "a teacher too short for every gold row names its positions",
            setup: |sb| {
                let c = tiny_config(sb, "short", "");
                args(&[
                    "run",
                    p(&c),
                    "--set",
                    "teacher.architecture.max_positions=4",
                ])
            },
            code: 2,
            needles: &[
                "longer than its 4 positions",
                "teacher.architecture.max_positions",
            ],
            absent: &["runs/short/teacher"],
        },
        Case {
            name: "a teacher too wide for this machine",
            setup: |sb| {
                let c = tiny_config(sb, "wide", "");
                let set = "teacher.architecture.hidden_size=1000000000";
                args(&["run", p(&c), "--set", set])
            },
            code: 2,
            needles: &["teacher.architecture.hidden_size", "nothing was started"],
            absent: &["runs"],
        },
        Case {
            name: "a vocabulary too big for this machine",
            setup: |sb| {
                let c = tiny_config(sb, "vocab", "");
                args(&["run", p(&c), "--set", "teacher.vocab_size=2000000000"])
            },
            code: 2,
            needles: &["teacher.vocab_size", "nothing was started"],
            absent: &["runs"],
        },
        Case {
            name: "a batch too big for this machine",
            setup: |sb| {
                let c = tiny_config(sb, "batch", "");
                args(&["run", p(&c), "--set", "distill.train.batch_size=1000000000"])
            },
            code: 2,
            needles: &["distill.train.batch_size", "nothing was started"],
            absent: &["runs"],
        },
        Case {
            name: "a budget of zero for the simulated expert",
            setup: |sb| {
                let c = tiny_config(
                    sb,
                    "budget0",
                    "[annotate]\nsimulated_expert = true\nbudget = 0\n",
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["annotate.budget", "is 0", "simulated_expert = false"],
            absent: &["runs/budget0"],
        },
        Case {
            name: "a budget larger than the review prompts",
            setup: |sb| {
                let c = tiny_config(
                    sb,
                    "budget",
                    "[annotate]\nsimulated_expert = true\nbudget = 50\n",
                );
                args(&["run", p(&c), "--set", "data.review_size=10"])
            },
            code: 2,
            needles: &[
                "annotate.budget",
                "more than the 10 review prompts",
                "at most 10",
            ],
            absent: &["runs/budget"],
        },
        Case {
            name: "a learning curve without the simulated expert",
            setup: |sb| {
                let c = tiny_config(sb, "curve", "[annotate]\ncurve = true\n");
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["annotate.curve", "simulated_expert", "set it to true"],
            absent: &["runs/curve"],
        },
        Case {
            name: "a corrected-token weight below one",
            setup: |sb| {
                let c = tiny_config(sb, "weight", "[finetune]\ncorrected_weight = 0.5\n");
                args(&["config", "check", p(&c)])
            },
            code: 2,
            needles: &[
                "finetune.corrected_weight",
                "is 0.5",
                "expected a number ≥ 1",
            ],
            absent: &[],
        },
        Case {
            name: "a queue order nobody knows",
            setup: |sb| {
                let c = tiny_config(sb, "order", "[annotate]\norder = \"smart\"\n");
                args(&["config", "check", p(&c)])
            },
            code: 2,
            needles: &["annotate.order", "ranked", "random"],
            absent: &[],
        },
        Case {
            name: "a validation share above a half",
            setup: |sb| {
                let c = tiny_config(sb, "val", "");
                args(&[
                    "config",
                    "check",
                    p(&c),
                    "--set",
                    "data.validation_share=0.8",
                ])
            },
            code: 2,
            needles: &["data.validation_share", "is 0.8", "from 0 to 0.5"],
            absent: &[],
        },
        Case {
            name: "a slice the eval set lacks",
            setup: |sb| {
                let c = tiny_config(sb, "slices", "[eval]\nslices = [\"fr-CA\"]\n");
                args(&["run", p(&c), "--set", "data.slice_share=0.5"])
            },
            code: 2,
            needles: &["eval.slices", "`fr-CA`", "`en-GB`", "hint:"],
            absent: &["runs/slices/teacher"],
        },
        Case {
            name: "a simulated expert's budget above the review candidates of files",
            setup: |sb| {
                sb.write("g.jsonl", JSONL);
                let c = sb.write(
                    "over.toml",
                    format!(
                        "[run]\nname = \"over\"\n[data]\ndedup = \"none\"\ndecontaminate = false\n\
                         gold = {{ path = \"g.jsonl\" }}\nprompts = {{ path = \"g.jsonl\" }}\n\
                         eval = {{ path = \"g.jsonl\" }}\nreview = {{ path = \"g.jsonl\" }}\n{}\
                         [generate]\ndecontaminate = false\n\n\
                         [annotate]\nsimulated_expert = true\nbudget = 500\n",
                        crate::common::TINY_MODELS
                    ),
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &[
                "annotate.budget",
                "is 500, more than the",
                "review candidates",
            ],
            absent: &["runs/over/finetuned"],
        },
        Case {
            name: "an eval file without answers",
            setup: |sb| {
                sb.write("g.jsonl", JSONL);
                sb.write("e.jsonl", "{\"prompt\": \"a\", \"note\": \"n\"}\n");
                let c = sb.write(
                    "noref.toml",
                    "[run]\nname = \"noref\"\n[data]\ngold = { path = \"g.jsonl\" }\n\
                     prompts = { path = \"g.jsonl\" }\neval = { path = \"e.jsonl\" }\n",
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["no references", "data.eval.map", "reference = "],
            absent: &["runs/noref/data", "runs/noref/teacher"],
        },
        Case {
            name: "a positive confidence threshold",
            setup: |sb| {
                let c = tiny_config(sb, "conf", "");
                args(&[
                    "config",
                    "check",
                    p(&c),
                    "--set",
                    "generate.min_logprob_mean=0.5",
                ])
            },
            code: 2,
            needles: &[
                "generate.min_logprob_mean",
                "expected a negative mean token logprob",
            ],
            absent: &[],
        },
        Case {
            name: "an on-policy share above one",
            setup: |sb| {
                let c = tiny_config(sb, "onpol", "");
                args(&["config", "check", p(&c), "--set", "distill.on_policy=1.5"])
            },
            code: 2,
            needles: &["distill.on_policy", "is 1.5", "expected a share from 0"],
            absent: &[],
        },
        Case {
            name: "a negative on-policy share",
            setup: |sb| {
                let c = tiny_config(sb, "onpolneg", "");
                args(&["config", "check", p(&c), "--set", "distill.on_policy=-0.5"])
            },
            code: 2,
            needles: &["distill.on_policy", "is -0.5", "expected a share from 0"],
            absent: &[],
        },
        Case {
            name: "on-policy starting after the last step",
            setup: |sb| {
                let c = tiny_config(sb, "onpolafter", "[distill]\non_policy = 1.0\n");
                args(&[
                    "config",
                    "check",
                    p(&c),
                    "--set",
                    "distill.on_policy_after=8",
                ])
            },
            code: 2,
            needles: &["distill.on_policy_after", "is 8", "never write a batch"],
            absent: &[],
        },
        Case {
            name: "a speculative threshold of one",
            setup: |sb| {
                let c = tiny_config(sb, "specone", "[distill]\non_policy = 1.0\n");
                args(&["config", "check", p(&c), "--set", "distill.replace_below=1"])
            },
            code: 2,
            needles: &["distill.replace_below", "is 1", "below 1"],
            absent: &[],
        },
        Case {
            name: "a speculative threshold without on-policy batches",
            setup: |sb| {
                let c = tiny_config(sb, "specoff", "");
                args(&[
                    "config",
                    "check",
                    p(&c),
                    "--set",
                    "distill.replace_below=0.1",
                ])
            },
            code: 2,
            needles: &["distill.replace_below", "`distill.on_policy` is 0"],
            absent: &[],
        },
        Case {
            name: "a distillation mode to compare with a value out of range",
            setup: |sb| {
                let c = tiny_config(
                    sb,
                    "cmpval",
                    "[[distill.compare]]\nname = \"on-policy\"\non_policy = 2.0\n",
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["distill.compare[0].on_policy", "is 2"],
            absent: &["runs/cmpval"],
        },
        Case {
            name: "a distillation mode to compare named like no folder",
            setup: |sb| {
                let c = tiny_config(
                    sb,
                    "cmpname",
                    "[[distill.compare]]\nname = \"On Policy/1\"\non_policy = 1.0\n",
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &[
                "distill.compare[0].name",
                "On Policy/1",
                "lowercase letters",
            ],
            absent: &["runs/cmpname"],
        },
        Case {
            name: "a student cut from more layers than the teacher has",
            setup: |sb| {
                let c = tiny_config(sb, "cutmany", "[student]\nfrom_teacher = { layers = 3 }\n");
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &[
                "student.from_teacher.layers",
                "is 3",
                "1 layer",
                "at most 1",
            ],
            absent: &["runs/cutmany"],
        },
        Case {
            name: "a student cut from an openai teacher",
            setup: |sb| {
                let c = sb.write(
                    "cutapi.toml",
                    "[run]\nname = \"cutapi\"\n[data]\ntask = \"dates\"\n[teacher]\n\
                     kind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n\
                     [student]\nfrom_teacher = { layers = 1 }\n",
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["student.from_teacher", "local teacher", "student.path"],
            absent: &["runs/cutapi"],
        },
        Case {
            name: "full-vocabulary KD with an openai teacher",
            setup: |sb| {
                let c = sb.write(
                    "onpolapi.toml",
                    "[run]\nname = \"onpolapi\"\n[data]\ntask = \"dates\"\n[teacher]\n\
                     kind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\n\
                     [distill]\non_policy = 0.5\nfull_vocab = true\n",
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &[
                "distill.full_vocab",
                "local teacher",
                "top `generate.top_logprobs`",
            ],
            absent: &["runs/onpolapi"],
        },
        Case {
            name: "files without a prompt pool",
            setup: |sb| {
                sb.write("g.jsonl", JSONL);
                let c = sb.write(
                    "nopool.toml",
                    "[run]\nname = \"nopool\"\n[data]\ngold = { path = \"g.jsonl\" }\n",
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["`data.prompts`", "no prompts to answer", "prompts = { path"],
            absent: &["runs/nopool"],
        },
        Case {
            name: "a slice share above one",
            setup: |sb| {
                let c = tiny_config(sb, "slice", "");
                args(&["config", "check", p(&c), "--set", "data.slice_share=1.5"])
            },
            code: 2,
            needles: &["data.slice_share", "expected a share from 0 to 1"],
            absent: &[],
        },
        Case {
            name: "a slice share on data from files",
            setup: |sb| {
                sb.write("g.jsonl", JSONL);
                let c = sb.write(
                    "files.toml",
                    "[run]\nname = \"files\"\n[data]\ngold = { path = \"g.jsonl\" }\nslice_share = 0.2\n",
                );
                args(&["config", "check", p(&c)])
            },
            code: 2,
            needles: &["data.slice_share", "`slice` column"],
            absent: &[],
        },
        Case {
            name: "a gold set too big for this machine",
            setup: |sb| {
                let c = tiny_config(sb, "gold", "");
                args(&[
                    "config",
                    "check",
                    p(&c),
                    "--set",
                    "data.gold_size=3000000000",
                ])
            },
            code: 2,
            needles: &["data.gold_size", "nothing was started"],
            absent: &[],
        },
        Case {
            name: "too many layers for this machine",
            setup: |sb| {
                let c = tiny_config(sb, "deep", "");
                let set = "teacher.architecture.layers=1000000000";
                args(&["run", p(&c), "--set", set])
            },
            code: 2,
            needles: &["teacher.architecture.layers", "nothing was started"],
            absent: &["runs"],
        },
        Case {
            name: "--set on a review of a data file, which has no config",
            setup: |sb| {
                let f = sb.write("items.jsonl", JSONL);
                args(&["annotate", p(&f), "--set", "annotate.overlap=2"])
            },
            code: 2,
            needles: &["--set", "not a config file or a run directory"],
            absent: &["items.annotations.db"],
        },
        Case {
            name: "a value where a table belongs",
            setup: |sb| {
                let text =
                    "[run]\nname = \"flat\"\n[data]\ntask = \"dates\"\n[teacher]\ntrain = 5\n";
                let c = sb.write("flat.toml", text);
                args(&["config", "check", p(&c)])
            },
            code: 2,
            needles: &["teacher.train", "expected a table"],
            absent: &[],
        },
        Case {
            name: "a word where a whole number belongs",
            setup: |sb| {
                let c = tiny_config(sb, "words", "");
                args(&["config", "check", p(&c), "--set", "run.seed=\"three\""])
            },
            code: 2,
            needles: &["run.seed", "expected a non-negative integer"],
            absent: &[],
        },
        Case {
            name: "export.gguf with a type the GGUF export does not write",
            setup: |sb| {
                let c = tiny_config(sb, "q5", "[export]\ngguf = \"q5_k\"\n");
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["export.gguf", "\"q5_k\"", "\"q8_0\""],
            absent: &["runs/q5"],
        },
        Case {
            name: "teacher.tokenizer_split with a pretrained teacher",
            setup: |sb| {
                let c = tiny_config(
                    sb,
                    "split",
                    "[teacher]\npath = \"somewhere\"\ntokenizer_split = \"words\"\n",
                );
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &["teacher.tokenizer_split", "trains no tokenizer of its own"],
            absent: &["runs/split"],
        },
        Case {
            name: "export.gguf for a student on the run's own tokenizer",
            setup: |sb| {
                let c = tiny_config(sb, "own", "[export]\ngguf = \"q8_0\"\n");
                args(&["run", p(&c)])
            },
            code: 2,
            needles: &[
                "`export.gguf`",
                "the tokenizer this run trains",
                "student.path",
            ],
            absent: &["runs/own"],
        },
        // ---- `--force` replaces only what the workbench made ----
        Case {
            name: "--force onto a folder the workbench did not make",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                sb.write("mine/important.txt", "the only copy");
                args(&["datasets", "import", "ok.jsonl", "--out", "mine", "--force"])
            },
            code: 2,
            needles: &["`mine`", "`important.txt`", "nothing was deleted"],
            absent: &["mine/data", "mine/README.md"],
        },
        Case {
            name: "--force onto a set someone keeps notes in",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                sb.run(&["datasets", "import", "ok.jsonl", "--out", "set"])
                    .ok();
                sb.write("set/notes.txt", "mine");
                args(&[
                    "datasets", "export", "set", "--kind", "sft", "--out", "set", "--force",
                ])
            },
            code: 2,
            needles: &["`set` is a set the workbench wrote", "`notes.txt`"],
            absent: &[],
        },
        // ---- `datasets export --kind kd` ----
        Case {
            name: "a KD export of a set without the teacher's tokenizer",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                sb.run(&["datasets", "import", "ok.jsonl", "--out", "set"])
                    .ok();
                args(&["datasets", "export", "set", "--kind", "kd", "--out", "kd"])
            },
            code: 2,
            needles: &["`set` needs the teacher's tokenizer", "`--tokenizer PATH`"],
            absent: &["kd"],
        },
        Case {
            name: "a KD export whose --tokenizer does not exist",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                sb.run(&["datasets", "import", "ok.jsonl", "--out", "set"])
                    .ok();
                args(&[
                    "datasets",
                    "export",
                    "set",
                    "--kind",
                    "kd",
                    "--tokenizer",
                    "nowhere",
                    "--out",
                    "kd",
                ])
            },
            code: 2,
            needles: &["`nowhere` does not exist", "`--tokenizer`"],
            absent: &["kd"],
        },
        Case {
            name: "a KD export with a tokenizer that has no chat template",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                sb.run(&["datasets", "import", "ok.jsonl", "--out", "set"])
                    .ok();
                let m = copy_model(sb, "llama-gqa", "m");
                args(&[
                    "datasets",
                    "export",
                    "set",
                    "--kind",
                    "kd",
                    "--tokenizer",
                    p(&m),
                    "--out",
                    "kd",
                ])
            },
            code: 2,
            needles: &["has no chat template", "chat_template"],
            absent: &["kd"],
        },
        Case {
            name: "a KD export of samples without teacher logprobs",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                sb.run(&["datasets", "import", "ok.jsonl", "--out", "set"])
                    .ok();
                args(&[
                    "datasets",
                    "export",
                    "set",
                    "--kind",
                    "kd",
                    "--tokenizer",
                    p(&fixture("llama-gqa")),
                    "--out",
                    "kd",
                ])
            },
            code: 2,
            needles: &[
                "no sample to export with teacher logprobs",
                "of 2 samples, 2 samples without a completion",
            ],
            absent: &["kd"],
        },
        Case {
            name: "a KD export for Axolotl with --sequence-len",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                sb.run(&["datasets", "import", "ok.jsonl", "--out", "set"])
                    .ok();
                args(&[
                    "datasets",
                    "export",
                    "set",
                    "--kind",
                    "kd",
                    "--sequence-len",
                    "512",
                    "--tokenizer",
                    p(&fixture("llama-gqa")),
                    "--out",
                    "kd",
                ])
            },
            code: 2,
            needles: &[
                "`--sequence-len`",
                "DistillKit's packed rows",
                "--format distillkit",
            ],
            absent: &["kd"],
        },
        Case {
            name: "a KD export for DistillKit with --sequence-len 0",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                sb.run(&["datasets", "import", "ok.jsonl", "--out", "set"])
                    .ok();
                args(&[
                    "datasets",
                    "export",
                    "set",
                    "--kind",
                    "kd",
                    "--format",
                    "distillkit",
                    "--sequence-len",
                    "0",
                    "--tokenizer",
                    p(&fixture("llama-gqa")),
                    "--out",
                    "kd",
                ])
            },
            code: 2,
            needles: &["`--sequence-len 0`", "1 to 1048576 tokens"],
            absent: &["kd"],
        },
        Case {
            name: "--format without --kind kd",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                sb.run(&["datasets", "import", "ok.jsonl", "--out", "set"])
                    .ok();
                args(&[
                    "datasets", "export", "set", "--kind", "sft", "--format", "axolotl", "--out",
                    "sft",
                ])
            },
            code: 2,
            needles: &["`--format`, `--tokenizer` and `--sequence-len` go with `--kind kd`"],
            absent: &["sft"],
        },
        Case {
            name: "an import as --kind kd",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                args(&[
                    "datasets", "import", "ok.jsonl", "--kind", "kd", "--out", "kd",
                ])
            },
            code: 2,
            needles: &["`--kind kd`", "only exported", "`--kind samples`"],
            absent: &["kd"],
        },
        Case {
            name: "model convert --force onto a folder the workbench did not make",
            setup: |sb| {
                let m = copy_model(sb, "llama-gqa", "m");
                sb.write("mine/important.txt", "the only copy");
                args(&[
                    "model",
                    "convert",
                    "--model",
                    p(&m),
                    "--out",
                    "mine",
                    "--force",
                ])
            },
            code: 2,
            needles: &["`mine`", "`important.txt`", "nothing was deleted"],
            absent: &["mine/config.json"],
        },
        Case {
            name: "--force onto a run directory whose config.toml is someone else's",
            setup: |sb| {
                let c = tiny_config(sb, "theirs", "");
                sb.write("runs/theirs/config.toml", "my = \"own\"\n");
                args(&["run", p(&c), "--force"])
            },
            code: 2,
            needles: &["runs/theirs/config.toml", "not written by the workbench"],
            absent: &["runs/theirs/data"],
        },
        Case {
            name: "a run directory that holds someone's files but no config.toml",
            setup: |sb| {
                let c = tiny_config(sb, "theirs", "");
                sb.write("runs/theirs/checkpoints/student/notes.txt", "the only copy");
                args(&["run", p(&c), "--force"])
            },
            code: 2,
            needles: &["runs/theirs", "`checkpoints`", "no `config.toml`"],
            absent: &["runs/theirs/config.toml", "runs/theirs/data"],
        },
        // ---- splits ----
        Case {
            name: "split shares that do not add up to 1",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                let split = "train=0.9,test=0.3";
                args(&[
                    "datasets", "import", "ok.jsonl", "--out", "out", "--split", split,
                ])
            },
            code: 2,
            needles: &["add up to 1.2", "train=0.9,test=0.1"],
            absent: &["out"],
        },
        Case {
            name: "a split without a share",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                args(&[
                    "datasets", "import", "ok.jsonl", "--out", "out", "--split", "train",
                ])
            },
            code: 2,
            needles: &["Split `train` has no share", "`train=1`"],
            absent: &["out"],
        },
        Case {
            name: "a split named twice",
            setup: |sb| {
                sb.write("ok.jsonl", JSONL);
                let split = "train=0.5,train=0.5";
                args(&[
                    "datasets", "import", "ok.jsonl", "--out", "out", "--split", split,
                ])
            },
            code: 2,
            needles: &["Split `train` is named twice"],
            absent: &["out"],
        },
        Case {
            name: "export splits in the config that do not add up to 1",
            setup: |sb| {
                let c = config(
                    sb,
                    &format!("{GOOD}\n[export]\nsplits = {{ train = 0.9, test = 0.3 }}\n"),
                );
                args(&["config", "check", p(&c)])
            },
            code: 2,
            needles: &["export.splits", "add up to 1.2"],
            absent: &[],
        },
        // ---- ambiguous or empty inputs ----
        Case {
            name: "a CSV with two prompt columns",
            setup: |sb| {
                sb.write("two.csv", "prompt,reference,prompt\na,b,c\n");
                args(&["datasets", "import", "two.csv", "--out", "out"])
            },
            code: 2,
            needles: &[
                "two.csv` line 1",
                "`prompt` appears twice",
                "columns 1 and 3",
            ],
            absent: &["out"],
        },
        Case {
            name: "a JSONL row with its prompt twice",
            setup: |sb| {
                sb.write("two.jsonl", "{\"prompt\": \"a\", \"prompt\": \"b\"}\n");
                args(&["datasets", "import", "two.jsonl", "--out", "out"])
            },
            code: 2,
            needles: &["two.jsonl` line 1", "`prompt` appears twice"],
            absent: &["out"],
        },
        Case {
            name: "a JSON array row with its prompt twice",
            setup: |sb| {
                sb.write("two.json", "[{\"prompt\": \"a\", \"prompt\": \"b\"}]\n");
                args(&["datasets", "import", "two.json", "--out", "out"])
            },
            code: 2,
            needles: &["two.json` element 0", "`prompt` appears twice"],
            absent: &["out"],
        },
        Case {
            name: "a Parquet file with two prompt columns",
            setup: |sb| {
                string_parquet(&sb.join("two.parquet"), &["prompt", "prompt"], 2);
                args(&["datasets", "import", "two.parquet", "--out", "out"])
            },
            code: 2,
            needles: &["two.parquet`, column `prompt`", "appears twice"],
            absent: &["out"],
        },
        Case {
            name: "an empty Parquet file",
            setup: |sb| {
                string_parquet(&sb.join("empty.parquet"), &["prompt"], 0);
                args(&["datasets", "import", "empty.parquet", "--out", "out"])
            },
            code: 2,
            needles: &["empty.parquet` has no rows; nothing to import"],
            absent: &["out"],
        },
        Case {
            name: "an empty JSONL file",
            setup: |sb| {
                sb.write("empty.jsonl", "");
                args(&["datasets", "import", "empty.jsonl", "--out", "out"])
            },
            code: 2,
            needles: &["empty.jsonl` has no rows", "nothing to import"],
            absent: &["out"],
        },
        Case {
            name: "a filter that removes every row",
            setup: |sb| {
                sb.write(
                    "rows.jsonl",
                    "{\"prompt\": \"what is the date of the third of May in the year two \
                     thousand and one written as numbers\"}\n",
                );
                let eval = "rows.jsonl";
                args(&[
                    "datasets",
                    "import",
                    "rows.jsonl",
                    "--out",
                    "out",
                    "--decontaminate",
                    eval,
                ])
            },
            code: 2,
            needles: &[
                "removed every row of `rows.jsonl`",
                "decontamination",
                "removed 1 of 1 row",
                "--decontaminate",
            ],
            absent: &["out"],
        },
        // ---- models and serving ----
        Case {
            name: "a chat template file that is not there",
            setup: |sb| {
                let m = copy_model(sb, "llama-gqa", "m");
                let out = "--out";
                args(&[
                    "model",
                    "convert",
                    "--model",
                    p(&m),
                    out,
                    "c",
                    "--chat-template",
                    "nope.jinja",
                ])
            },
            code: 2,
            needles: &["--chat-template nope.jinja", "no such file", "plain"],
            absent: &["c"],
        },
        Case {
            name: "a chat template that is not valid Jinja",
            setup: |sb| {
                let m = copy_model(sb, "llama-gqa", "m");
                let t = sb.write("bad.jinja", "{% for m in messages %}{{ m.content }}");
                args(&[
                    "model",
                    "convert",
                    "--model",
                    p(&m),
                    "--out",
                    "c",
                    "--chat-template",
                    p(&t),
                ])
            },
            code: 2,
            needles: &["bad.jinja"],
            absent: &["c"],
        },
        Case {
            name: "a serve timeout that is not a positive number",
            setup: |_| {
                let m = fixture("llama-gqa");
                let m = m.to_str().unwrap().to_string();
                let mut s = args(&["serve", "--addr", "127.0.0.1:0", "--timeout-secs", "0"]);
                s.args.extend(["--model".to_string(), m]);
                s
            },
            code: 2,
            needles: &["--timeout-secs 0", "positive number of seconds"],
            absent: &[],
        },
    ]
}

/// A Parquet file of text columns named `names` (duplicates allowed), `rows` rows.
fn string_parquet(path: &Path, names: &[&str], rows: usize) {
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = names
        .iter()
        .map(|n| {
            let values: Vec<String> = (0..rows).map(|i| format!("{n} {i}")).collect();
            Arc::new(StringArray::from(values)) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn run_case(case: &Case) -> Result<(), String> {
    let sb = Sandbox::new();
    let setup = (case.setup)(&sb);
    let env: Vec<(&str, &str)> = setup.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run: Run = match setup.shell_prefix {
        None => {
            let a: Vec<&str> = setup.args.iter().map(String::as_str).collect();
            sb.run_env(&a, &env)
        }
        Some(prefix) => {
            let quoted: Vec<String> = setup.args.iter().map(|a| format!("'{a}'")).collect();
            let line = format!(
                "{prefix} exec '{}' {}",
                env!("CARGO_BIN_EXE_workbench"),
                quoted.join(" ")
            );
            let out = std::process::Command::new("sh")
                .args(["-c", &line])
                .current_dir(sb.path())
                .env("NO_COLOR", "1")
                .env_remove("RUST_LOG")
                .output()
                .unwrap();
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
    };
    drop(setup.keep);
    let mut problems = Vec::new();
    if run.code != case.code {
        problems.push(format!("exit {} (expected {})", run.code, case.code));
    }
    if run.stderr.contains("panicked") || run.stderr.contains("RUST_BACKTRACE") {
        problems.push("panicked".into());
    }
    let lines: Vec<&str> = run.stderr.lines().collect();
    let last = lines
        .iter()
        .rposition(|l| l.starts_with("error: "))
        .map(|i| lines[i..].join("\n"));
    match &last {
        None => problems.push("no `error: ` line".into()),
        Some(message) => {
            for n in case.needles {
                if !message.contains(n) {
                    problems.push(format!("the message lacks {n:?}"));
                }
            }
        }
    }
    for a in case.absent {
        if sb.join(a).exists() {
            problems.push(format!("`{a}` was written"));
        }
    }
    let temps = temporaries(sb.path());
    if !temps.is_empty() {
        problems.push(format!("temporaries left: {temps:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}\n--- stderr ---\n{}",
            case.name,
            problems.join("; "),
            run.stderr
                .replace(sb.path().to_str().unwrap(), "[SANDBOX]")
                .trim_end()
        ))
    }
}

#[test]
fn every_bad_input_gets_one_clear_message_and_leaves_nothing_half_written() {
    let cases = cases();
    assert!(
        cases.len() >= 30,
        "at least 30 cases, one per kind of bad input"
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            std::panic::catch_unwind(|| run_case(c))
                .unwrap_or_else(|_| Err(format!("{}: its setup panicked (above)", c.name)))
                .err()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases misbehaved:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
