//! Interop with real clients: sets we write open in pyarrow, pandas, polars, DuckDB and HF
//! `datasets`; Parquet that pyarrow writes in the HF shapes imports unchanged. The scripts live in
//! `tests/interop/`; the venv comes from `scripts/python-env.sh`.

use std::ffi::OsStr;

use crate::common::{
    Sandbox, llama_python, python, root, run_python, run_python_args, torch_python,
};
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
    let sb = Sandbox::new();
    let ids: Vec<String> = expected["inputs"][2]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect();
    let logits = sb
        .run(&[
            "model",
            "logits",
            "--model",
            dir.to_str().unwrap(),
            "--ids",
            &ids.join(","),
            "--json",
        ])
        .ok()
        .stdout;
    let logits_file = sb.write("logits.json", &logits);
    let args: Vec<&OsStr> = vec![
        OsStr::new(&base),
        OsStr::new("llama-gqa"),
        OsStr::new(&prompt),
        OsStr::new(&greedy),
        logits_file.as_os_str(),
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

/// A GGUF file written by llama.cpp's `gguf` package (every tensor type the reader knows,
/// quantized by `gguf.quants`) reads back with its metadata, dimensions and the values
/// `gguf.quants.dequantize` gives.
#[test]
fn gguf_files_from_llama_cpps_package_read_back() {
    let Some(py) = python() else { return };
    let sb = Sandbox::new();
    let (file, expected) = (sb.join("fixture.gguf"), sb.join("expected.json"));
    let out = run_python(&py, "write_gguf.py", &[&file, &expected]);
    assert!(out.contains("gguf written"), "{out}");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
    let g = distill::model::gguf::Gguf::open(&file).unwrap();
    assert_eq!(g.metadata["general.architecture"].as_str(), Some("llama"));
    for (key, value) in want["metadata"].as_object().unwrap() {
        assert_eq!(g.metadata[key].as_u64(), value.as_u64(), "{key}");
    }
    assert!(matches!(
        &g.metadata["tokenizer.ggml.tokens"],
        distill::model::gguf::Value::Array(t) if t.len() == 4
    ));
    let tensors = want["tensors"].as_object().unwrap();
    assert_eq!(g.tensors.len(), tensors.len());
    for (name, t) in tensors {
        let info = g.tensor(name).unwrap();
        let dims: Vec<u64> = t["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(info.dims, dims, "{name}");
        let got = g.dequantize(info).unwrap();
        let values = t["values"].as_array().unwrap();
        assert_eq!(got.len(), values.len(), "{name}");
        for (i, (a, b)) in got.iter().zip(values).enumerate() {
            let b = b.as_f64().unwrap() as f32;
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{name}[{i}]: {a} vs {b}"
            );
        }
    }
}

/// The committed parity checkpoints, written as GGUF by llama.cpp's `gguf` package the way its
/// converter lays them out (Llama's query/key rows interleaved, names and metadata as llama.cpp's),
/// load through `--model FILE.gguf` with the logits of the same weights read from safetensors,
/// for every stored type; the tokenizer rebuilt from `tokenizer.ggml.*` encodes as the original
/// `tokenizer.json`, with the same special tokens and chat template; and `model convert` turns the
/// file into a Hub directory that loads alike.
#[test]
fn gguf_checkpoints_load_with_the_logits_and_tokenizer_of_their_source() {
    use distill::data::tokenizer::Tokenizer;
    let Some(py) = python() else { return };
    let sb = Sandbox::new();
    let models = root().join("distill/tests/fixtures/models");
    let ids = [0, 5, 17, 300, 42, 7, 511, 64, 1, 99];
    let logits = |model: &std::path::Path| -> Vec<f64> { sb.logits(model, &ids).concat() };
    let texts = [
        "Hello world! The answer is 42, isn't it?",
        "  leading spaces\nand new\tlines\r\n  ",
        "ünïcödé 👩‍🔬 tokens and <|endoftext|> inside",
    ];
    for entry in std::fs::read_dir(&models).unwrap() {
        let src = entry.unwrap().path();
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        for kind in [
            "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k",
        ] {
            let file = sb.join(&format!("{name}-{kind}.gguf"));
            let reference = sb.join(&format!("{name}-{kind}-ref"));
            let out = run_python(
                &py,
                "hf_to_gguf.py",
                &[&src, &file, std::path::Path::new(kind), &reference],
            );
            assert!(out.contains("gguf written"), "{out}");
            let (ours, want) = (logits(&file), logits(&reference));
            assert_eq!(ours.len(), want.len(), "{name} {kind}");
            let worst = ours
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(worst <= 1e-5, "{name} {kind}: logits differ by {worst}");
        }
        // Named `mistral` rather than `llama` in its metadata, the same file reads alike.
        if name.starts_with("mistral") {
            let file = sb.join(&format!("{name}-arch.gguf"));
            let reference = sb.join(&format!("{name}-arch-ref"));
            let f32 = std::path::Path::new("f32");
            let mistral = std::path::Path::new("mistral");
            run_python(
                &py,
                "hf_to_gguf.py",
                &[&src, &file, f32, &reference, mistral],
            );
            assert_eq!(logits(&file), logits(&sb.join(&format!("{name}-f32.gguf"))));
        }
        let file = sb.join(&format!("{name}-f32.gguf"));
        let (original, rebuilt) = (
            Tokenizer::from_dir(&src).unwrap(),
            Tokenizer::from_dir(&file).unwrap(),
        );
        for text in texts {
            for special in [false, true] {
                assert_eq!(
                    rebuilt.encode(text, special).unwrap(),
                    original.encode(text, special).unwrap(),
                    "{name}: {text:?}"
                );
            }
            let ids = original.encode(text, false).unwrap();
            assert_eq!(
                rebuilt.decode(&ids, false).unwrap(),
                original.decode(&ids, false).unwrap()
            );
        }
        assert_eq!(
            rebuilt.special_tokens(),
            original.special_tokens(),
            "{name}"
        );
        assert_eq!(
            rebuilt.chat_template().map(|t| t.source().to_string()),
            original.chat_template().map(|t| t.source().to_string()),
            "{name}"
        );
        // Converted to a Hub directory, it loads with the same logits and tokenizer.
        let dir = sb.join(&format!("{name}-converted"));
        sb.run(&[
            "model",
            "convert",
            "--model",
            file.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .ok();
        assert_eq!(logits(&dir), logits(&file), "{name}");
        let converted = Tokenizer::from_dir(&dir).unwrap();
        assert_eq!(
            converted.encode(texts[0], true).unwrap(),
            original.encode(texts[0], true).unwrap()
        );
    }
}

/// Greedy continuation of each of `inputs` by the checkpoint (or GGUF file) at `model`, with the
/// workbench's own forward pass: `n` new tokens, never stopping at EOS.
fn our_greedy(model: &std::path::Path, inputs: &[Vec<u32>], n: usize) -> Vec<Vec<u32>> {
    let device = distill::backend::device("cpu").unwrap();
    let m = distill::model::checkpoint::load(model, &device).unwrap();
    inputs
        .iter()
        .map(|ids| {
            let mut ids = ids.clone();
            let start = ids.len();
            for _ in 0..n {
                let logits = distill::generate::logits(&m, &ids).unwrap();
                let last = logits.last().unwrap();
                let best = (0..last.len())
                    .max_by(|&a, &b| last[a].total_cmp(&last[b]))
                    .unwrap();
                ids.push(best as u32);
            }
            ids[start..].to_vec()
        })
        .collect()
}

/// Greedy continuations by the CPU decoder reading the model's matrices as `kind` (8- or 4-bit,
/// activations rounded to 8 bits as llama.cpp rounds them), one prompt at a time.
fn our_quantized_greedy(
    model: &std::path::Path,
    inputs: &[Vec<u32>],
    n: usize,
    kind: distill::model::kernels::quant::QuantKind,
) -> Vec<Vec<u32>> {
    let device = distill::backend::device("cpu").unwrap();
    let mut m = distill::model::checkpoint::load(model, &device).unwrap();
    m.quantize(Some(kind)).unwrap();
    let options = distill::generate::GenerateOptions {
        max_new_tokens: n,
        temperature: 0.0,
        logprobs: 0,
        eos_ids: Vec::new(),
        ..Default::default()
    };
    inputs
        .iter()
        .map(|ids| {
            distill::generate::generate(&m, std::slice::from_ref(ids), &options, None).unwrap()[0]
                .ids
                .clone()
        })
        .collect()
}

/// `model convert --out FILE.gguf` writes files llama.cpp (llama-cpp-python, built from PyPI's
/// source) loads as they are, and llama.cpp encodes text with the exported tokenizer as the
/// original `tokenizer.json` does. For F32, llama.cpp's greedy tokens equal ours on the file and
/// transformers' on the source checkpoint, and its logits ours within 1e-4. For Q8_0 llama.cpp
/// also rounds the activations to 8 bits before each matrix product: its greedy tokens equal
/// those of our decoder when it runs the 8-bit matrices the same way, and its logits stay within
/// a band of our f32 forward pass on the dequantized weights (on average 1% of the largest logit,
/// at most 10%: on these random tiny models the activations' rounding moves logits about as much
/// as the weights' own).
#[test]
fn gguf_files_we_write_run_in_llama_cpp() {
    use distill::data::tokenizer::Tokenizer;
    let Some(py) = llama_python() else { return };
    let sb = Sandbox::new();
    let models = root().join("distill/tests/fixtures/models");
    let texts = [
        "Hello world! The answer is 42, isn't it?",
        "question 7: what is 12 + 30?\nanswer: 42",
        "ünïcödé 👩‍🔬 and <|endoftext|> inside",
    ];
    let device = distill::backend::device("cpu").unwrap();
    for name in [
        "llama-gqa",
        "llama-head-dim",
        "mistral-legacy-rope",
        "qwen2-tied-bf16",
    ] {
        let src = models.join(name);
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("expected.json")).unwrap())
                .unwrap();
        let inputs: Vec<Vec<u32>> = serde_json::from_value(expected["inputs"].clone()).unwrap();
        let transformers: Vec<Vec<u32>> =
            serde_json::from_value(expected["greedy"].clone()).unwrap();
        let n = expected["max_new_tokens"].as_u64().unwrap() as usize;
        let original = Tokenizer::from_dir(&src).unwrap();
        for (kind, exact) in [("f32", true), ("q8_0", false)] {
            let file = sb.join(&format!("{name}-{kind}.gguf"));
            sb.run(&[
                "model",
                "convert",
                "--model",
                src.to_str().unwrap(),
                "--out",
                file.to_str().unwrap(),
                "--quantize",
                kind,
            ])
            .ok();
            let ours = our_greedy(&file, &inputs, n);
            if kind == "f32" {
                assert_eq!(ours, transformers, "{name}: our greedy on our F32 GGUF");
            }
            let sequences: Vec<Vec<u32>> = inputs
                .iter()
                .zip(&ours)
                .map(|(i, g)| i.iter().chain(g).copied().collect())
                .collect();
            let spec = sb.write(
                &format!("{name}-{kind}-inputs.json"),
                serde_json::json!({
                    "inputs": inputs, "max_new_tokens": n, "texts": texts, "sequences": sequences,
                })
                .to_string(),
            );
            let out = run_python(&py, "llama_cpp_greedy.py", &[&file, &spec]);
            let got: serde_json::Value =
                serde_json::from_str(out.lines().last().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{name} {kind}: {e}: {out}"));
            let tokens: Vec<Vec<u32>> = serde_json::from_value(got["tokens"].clone()).unwrap();
            for (text, t) in texts.iter().zip(&tokens) {
                assert_eq!(
                    t,
                    &original.encode(text, false).unwrap(),
                    "{name}: {text:?}"
                );
            }
            let theirs: Vec<Vec<Vec<f32>>> = serde_json::from_value(got["logits"].clone()).unwrap();
            let model = distill::model::checkpoint::load(&file, &device).unwrap();
            let llama: Vec<Vec<u32>> = serde_json::from_value(got["greedy"].clone()).unwrap();
            for (s, seq) in sequences.iter().enumerate() {
                let mine = distill::generate::logits(&model, seq).unwrap();
                let gaps: Vec<f32> = mine
                    .iter()
                    .flatten()
                    .zip(theirs[s].iter().flatten())
                    .map(|(a, b)| (a - b).abs())
                    .collect();
                let worst = gaps.iter().copied().fold(0.0f32, f32::max);
                let mean = gaps.iter().sum::<f32>() / gaps.len() as f32;
                let scale = mine.iter().flatten().fold(0.0f32, |a, v| a.max(v.abs()));
                if exact {
                    assert!(
                        worst <= 1e-4,
                        "{name}: llama.cpp's F32 logits differ by {worst}"
                    );
                } else {
                    assert!(
                        mean <= 0.01 * scale && worst <= 0.1 * scale,
                        "{name} {kind}: llama.cpp's logits differ from ours by {mean} on average, \
                         {worst} at most (largest logit {scale})"
                    );
                }
                let band = worst;
                // Greedy agrees up to the first step where our lead is within the band.
                let start = inputs[s].len();
                for step in 0..n {
                    let row = &mine[start + step - 1];
                    let mut sorted = row.clone();
                    sorted.sort_by(|a, b| b.total_cmp(a));
                    if sorted[0] - sorted[1] <= 2.0 * band {
                        break;
                    }
                    assert_eq!(
                        llama[s][step], ours[s][step],
                        "{name} {kind}: llama.cpp's greedy token {step} of input {s}"
                    );
                }
                if exact {
                    assert_eq!(llama[s], ours[s], "{name}: llama.cpp's greedy tokens");
                }
            }
            if !exact {
                let quantized = our_quantized_greedy(
                    &file,
                    &inputs,
                    n,
                    distill::model::kernels::quant::QuantKind::Q8_0,
                );
                assert_eq!(
                    llama, quantized,
                    "{name}: llama.cpp's greedy tokens on Q8_0"
                );
            }
        }
    }
}

/// transformers' own GGUF loader (dequantizing with the `gguf` package, undoing llama.cpp's
/// query/key interleaving itself) gives the logits the workbench gives from the same file, for BF16
/// and the quantized types, on every parity checkpoint laid out as llama.cpp's converter lays it
/// out (for the K-quants, widened to whole blocks of 256, with random weights: see
/// `hf_to_gguf.py`).
#[test]
fn quantized_gguf_files_give_transformers_logits() {
    let Some(py) = python() else { return };
    let Some(tpy) = torch_python() else { return };
    let sb = Sandbox::new();
    let models = root().join("distill/tests/fixtures/models");
    let ids = [0u32, 5, 17, 300, 42, 7, 511, 64, 1, 99];
    let list = ids.map(|i| i.to_string()).join(",");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&models).unwrap() {
        let src = entry.unwrap().path();
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        for kind in ["bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k"] {
            let file = sb.join(&format!("{name}-{kind}.gguf"));
            let reference = sb.join(&format!("{name}-{kind}-ref"));
            run_python(
                &py,
                "hf_to_gguf.py",
                &[&src, &file, std::path::Path::new(kind), &reference],
            );
            files.push(file);
        }
    }
    let mut args = vec![OsStr::new(&list)];
    args.extend(files.iter().map(|f| f.as_os_str()));
    let out = run_python_args(&tpy, "transformers_gguf.py", &args);
    let theirs: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    for file in &files {
        let key = file.to_str().unwrap();
        let logits: Vec<Vec<f64>> = serde_json::from_value(theirs[key].clone()).unwrap();
        let ours = sb.logits(file, &ids);
        let worst = ours
            .iter()
            .flatten()
            .zip(logits.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        assert_eq!(ours.len(), logits.len(), "{key}");
        assert!(
            worst <= 1e-4,
            "{key}: transformers' logits differ by {worst}"
        );
    }
}

/// A KD export loads in Axolotl's own KD dataset code (the strategy its `type:` names, its
/// collator and its top-k KD loss) with the teacher's tokenizer through transformers, and
/// teaches what the teacher said about each next token.
#[test]
fn a_kd_export_trains_in_axolotls_own_kd_code() {
    let Some(py) = torch_python() else { return };
    let sb = Sandbox::new();
    crate::datasets::run_with_synthetic_set(&sb, "kd");
    sb.run(&[
        "datasets", "export", "runs/kd", "--kind", "kd", "--format", "axolotl", "--out", "kd",
    ])
    .ok();
    let out = run_python(
        &py,
        "check_axolotl_kd.py",
        &[
            &sb.join("kd"),
            &sb.join("runs/kd/teacher"),
            &sb.join("runs/kd/synthetic"),
        ],
    );
    assert!(out.contains("axolotl kd ok"), "{out}");
}

/// A DistillKit KD export reads as DistillKit's offline training reads it: every column stacks
/// into a tensor, the packing and labels are what an independent packing in Python gives, each
/// labelled row is the teacher's top-k for the next token, and the KD loss is ~0 for a student
/// that says what the teacher said (DistillKit's own signal source and loss when
/// `WORKBENCH_DISTILLKIT` names a checkout: it is not on PyPI, so CI recomputes its sparse KL).
#[test]
fn a_kd_export_trains_in_distillkits_offline_layout() {
    let Some(py) = torch_python() else { return };
    let sb = Sandbox::new();
    crate::datasets::run_with_synthetic_set(&sb, "kd");
    sb.run(&[
        "datasets",
        "export",
        "runs/kd",
        "--kind",
        "kd",
        "--format",
        "distillkit",
        "--sequence-len",
        "200",
        "--out",
        "dk",
    ])
    .ok();
    let out = run_python_args(
        &py,
        "check_distillkit_kd.py",
        &[
            sb.join("dk").as_os_str(),
            sb.join("runs/kd/teacher").as_os_str(),
            sb.join("runs/kd/synthetic").as_os_str(),
            OsStr::new("200"),
        ],
    );
    assert!(out.contains("distillkit kd ok"), "{out}");
    if std::env::var_os("WORKBENCH_DISTILLKIT").is_none() {
        eprintln!(
            "note: DistillKit's own code did not run (it is not on PyPI); set \
             WORKBENCH_DISTILLKIT to a checkout of github.com/arcee-ai/DistillKit to run it"
        );
    }
}

/// A GGUF file with a SentencePiece BPE vocabulary (`tokenizer.ggml.model = llama`, as Llama 2,
/// Mistral and TinyLlama files carry it; written by llama.cpp's `gguf` package) gets a tokenizer
/// that encodes as llama.cpp does on the same file: spaces as `▁`, the space prefix, merges by
/// score, bytes for characters the vocabulary lacks, special tokens in the text; and decodes
/// back to the text. Converted to a Hub directory and written back to GGUF, llama.cpp encodes
/// with it as with the original.
#[test]
fn sentencepiece_gguf_tokenizers_encode_as_llama_cpp_does() {
    use distill::data::tokenizer::Tokenizer;
    let (Some(py), Some(llama)) = (python(), llama_python()) else {
        return;
    };
    let sb = Sandbox::new();
    let src = root().join("distill/tests/fixtures/models/llama-gqa");
    let file = sb.join("spm.gguf");
    let out = run_python_args(
        &py,
        "hf_to_gguf.py",
        &[
            src.as_os_str(),
            file.as_os_str(),
            OsStr::new("f32"),
            sb.join("spm-ref").as_os_str(),
            OsStr::new("spm"),
        ],
    );
    assert!(out.contains("gguf written"), "{out}");
    let texts = [
        "The quick brown fox jumps over the lazy dog.",
        "user-defined tokens match anywhere: a<|user|>b qqqq xqqqy",
        "Hello world! The answer is 42, isn't it?",
        "  leading spaces\nand new\tlines\r\n  trailing ",
        "Über naïve café: 日本語のテキスト",
        "bytes for what the vocabulary lacks: 👩‍🔬 ∑ ß",
        "special tokens inside: <s>the student</s> answers",
        "",
    ];
    let spec = sb.write(
        "inputs.json",
        serde_json::json!({"inputs": [], "max_new_tokens": 0, "texts": texts, "sequences": []})
            .to_string(),
    );
    let out = run_python(&llama, "llama_cpp_greedy.py", &[&file, &spec]);
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let want: Vec<Vec<u32>> = serde_json::from_value(got["tokens"].clone()).unwrap();
    let tok = Tokenizer::from_dir(&file).unwrap();
    for (text, want) in texts.iter().zip(&want) {
        let ours = tok.encode(text, false).unwrap();
        assert_eq!(&ours, want, "{text:?}");
        if !text.contains('<') {
            assert_eq!(&tok.decode(&ours, false).unwrap(), text, "{text:?}");
        }
    }
    let with_bos = tok.encode(texts[0], true).unwrap();
    assert_eq!(with_bos[0], 1, "BOS first, as llama.cpp adds it");
    assert_eq!(&with_bos[1..], &want[0][..]);
    // Converted to a Hub directory, its tokenizer.json encodes alike.
    let dir = sb.join("spm-converted");
    sb.run(&[
        "model",
        "convert",
        "--model",
        file.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ])
    .ok();
    let converted = Tokenizer::from_dir(&dir).unwrap();
    for (text, want) in texts.iter().zip(&want) {
        assert_eq!(&converted.encode(text, false).unwrap(), want, "{text:?}");
    }
    // And written back to GGUF, llama.cpp encodes with it as with the original file.
    let back = sb.join("spm-back.gguf");
    sb.run(&[
        "model",
        "convert",
        "--model",
        dir.to_str().unwrap(),
        "--out",
        back.to_str().unwrap(),
    ])
    .ok();
    let out = run_python(&llama, "llama_cpp_greedy.py", &[&back, &spec]);
    let again: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(again["tokens"], got["tokens"]);
    // Served, a completion keeps the spaces its pieces start with, and its tokens add up to it.
    let server = Server::start(&file);
    let req = serde_json::json!({"prompt": "The quick brown", "max_tokens": 8, "temperature": 0, "logprobs": 1});
    let (status, body) =
        crate::model::http(&server.addr, "POST", "/v1/completions", &req.to_string());
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let text = v["choices"][0]["text"].as_str().unwrap();
    let tokens: String = v["choices"][0]["logprobs"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens, text, "{body}");
}

/// Llama 3's rope scaling goes into GGUF as llama.cpp's converter writes it (the divisor of each
/// frequency, `rope_freqs.weight`) and comes back as the same scaling: our logits from the GGUF
/// equal those of the checkpoint, llama.cpp's equal ours on a sequence long enough for the
/// scaled frequencies to matter, and a conversion back writes the same rope parameters.
#[test]
fn llama3_rope_scaling_travels_through_gguf_as_llama_cpp_reads_it() {
    let Some(py) = llama_python() else { return };
    let sb = Sandbox::new();
    let src = root().join("distill/tests/fixtures/models/llama-gqa");
    let dir = sb.join("llama3");
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    // Head dim 16, theta 10,000: two of the eight frequencies fall between kept and scaled.
    config["rope_parameters"] = serde_json::json!({
        "rope_theta": 10000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 8.0, "original_max_position_embeddings": 2048,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let file = sb.join("llama3.gguf");
    sb.run(&[
        "model",
        "convert",
        "--model",
        dir.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ])
    .ok();
    let seq: Vec<u32> = (0..100).map(|i| (i * 37 + 11) % 512).collect();
    let ours = sb.logits(&dir, &seq);
    let back = sb.logits(&file, &seq);
    let plain = sb.logits(&src, &seq);
    let gap = |a: &[Vec<f64>], b: &[Vec<f64>]| {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    assert!(gap(&ours, &back) <= 1e-5, "{}", gap(&ours, &back));
    assert!(gap(&ours, &plain) > 1e-3, "the scaling changes the logits");
    let spec = sb.write(
        "inputs.json",
        serde_json::json!({"inputs": [], "max_new_tokens": 0, "texts": [], "sequences": [seq]})
            .to_string(),
    );
    let out = run_python(&py, "llama_cpp_greedy.py", &[&file, &spec]);
    let got: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let theirs: Vec<Vec<Vec<f64>>> = serde_json::from_value(got["logits"].clone()).unwrap();
    assert!(
        gap(&ours, &theirs[0]) <= 1e-4,
        "llama.cpp's logits differ by {}",
        gap(&ours, &theirs[0])
    );
    let converted = sb.join("llama3-back");
    sb.run(&[
        "model",
        "convert",
        "--model",
        file.to_str().unwrap(),
        "--out",
        converted.to_str().unwrap(),
    ])
    .ok();
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(converted.join("config.json")).unwrap())
            .unwrap();
    let rope = &again["rope_parameters"];
    assert_eq!(
        (
            &rope["rope_type"],
            &rope["factor"],
            &rope["high_freq_factor"],
            &rope["original_max_position_embeddings"]
        ),
        (
            &serde_json::json!("llama3"),
            &serde_json::json!(8.0),
            &serde_json::json!(8.0),
            &serde_json::json!(2048)
        ),
        "{again}"
    );
}

/// A run whose own tokenizer splits words apart (`teacher.tokenizer_split = "words"`, SmolLM's
/// split) writes its student as GGUF (`export.gguf`), and llama.cpp encodes the run's prompts
/// with that file as the run does and gives the student's logits.
#[test]
fn a_run_with_a_words_tokenizer_exports_a_gguf_llama_cpp_runs() {
    use distill::data::tokenizer::Tokenizer;
    let Some(py) = llama_python() else { return };
    let sb = Sandbox::new();
    let cfg = crate::common::tiny_config(
        &sb,
        "words",
        "[teacher]\ntokenizer_split = \"words\"\n\n[export]\ngguf = \"f32\"\n",
    );
    sb.run(&["run", cfg.to_str().unwrap()]).ok();
    let file = sb.join("runs/words/words.f32.gguf");
    let student = sb.join("runs/words/student/final");
    let tok = Tokenizer::from_dir(&student).unwrap();
    let texts = [
        "Normalise the date: 3rd of March 2021",
        "What is 12 + 30? It's 42, isn't it?",
    ];
    let seq = tok.encode(texts[0], true).unwrap();
    let spec = sb.write(
        "inputs.json",
        serde_json::json!({"inputs": [], "max_new_tokens": 0, "texts": texts, "sequences": [seq]})
            .to_string(),
    );
    let out = run_python(&py, "llama_cpp_greedy.py", &[&file, &spec]);
    let got: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let tokens: Vec<Vec<u32>> = serde_json::from_value(got["tokens"].clone()).unwrap();
    for (text, t) in texts.iter().zip(&tokens) {
        assert_eq!(t, &tok.encode(text, false).unwrap(), "{text:?}");
    }
    let theirs: Vec<Vec<Vec<f64>>> = serde_json::from_value(got["logits"].clone()).unwrap();
    let ours = sb.logits(&student, &seq);
    let worst = ours
        .iter()
        .flatten()
        .zip(theirs[0].iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-4, "llama.cpp's logits differ by {worst}");
}
