//! Parity with Hugging Face `transformers`: the fixtures under `tests/fixtures/models/` were made
//! by `tests/fixtures/make_model_fixtures.py` (tiny random models saved with `save_pretrained`,
//! and transformers' own logits and greedy continuations). Our logits must match within 1e-4,
//! greedy decoding with the KV cache must give the same tokens, and a checkpoint we save must load
//! back to the same numbers.

use std::path::{Path, PathBuf};

use distill::generate::{GenerateOptions, generate, logits};
use distill::model::checkpoint;
use safetensors::SafeTensors;

const MODELS: [&str; 4] = [
    "llama-gqa",
    "qwen2-tied-bf16",
    "llama-head-dim",
    "mistral-legacy-rope",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

struct Expected {
    inputs: Vec<Vec<u32>>,
    logits: Vec<Vec<f32>>,
    greedy: Vec<Vec<u32>>,
}

fn expected(dir: &Path) -> Expected {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let to_ids = |v: &serde_json::Value| -> Vec<Vec<u32>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect()
    };
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let inputs = to_ids(&json["inputs"]);
    let logits = (0..inputs.len())
        .map(|i| {
            let t = st.tensor(&format!("logits_{i}")).unwrap();
            t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect();
    Expected {
        inputs,
        logits,
        greedy: to_ids(&json["greedy"]),
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn logits_match_transformers() {
    let device = distill::backend::cpu();
    for name in MODELS {
        let dir = fixture(name);
        let model = checkpoint::load(&dir, &device).unwrap_or_else(|e| panic!("{name}: {e}"));
        let exp = expected(&dir);
        for (i, ids) in exp.inputs.iter().enumerate() {
            let ours: Vec<f32> = logits(&model, ids).unwrap().concat();
            let d = max_diff(&ours, &exp.logits[i]);
            assert!(d < 1e-4, "{name} input {i}: max |Δlogit| = {d}");
        }
    }
}

#[test]
fn greedy_generation_with_the_cache_matches_transformers() {
    let device = distill::backend::cpu();
    for name in MODELS {
        let dir = fixture(name);
        let model = checkpoint::load(&dir, &device).unwrap();
        let exp = expected(&dir);
        let options = GenerateOptions {
            max_new_tokens: exp.greedy[0].len(),
            logprobs: 5,
            ..Default::default()
        };
        // One by one, then all at once (left padding must not change anything).
        for (i, ids) in exp.inputs.iter().enumerate() {
            let out = generate(&model, std::slice::from_ref(ids), &options, None).unwrap();
            assert_eq!(out[0].ids, exp.greedy[i], "{name} input {i}");
        }
        let out = generate(&model, &exp.inputs, &options, None).unwrap();
        for (i, g) in out.iter().enumerate() {
            assert_eq!(g.ids, exp.greedy[i], "{name} input {i} in a batch");
            assert_eq!(g.top[0][0].id, g.ids[0], "greedy picks the top token");
            assert!(g.logprobs.iter().all(|lp| *lp <= 0.0));
        }
    }
}

#[test]
fn a_saved_checkpoint_loads_back_to_the_same_logits() {
    let device = distill::backend::cpu();
    let tmp = tempfile::tempdir().unwrap();
    for name in MODELS {
        let dir = fixture(name);
        let model = checkpoint::load(&dir, &device).unwrap();
        let out = tmp.path().join(name);
        checkpoint::save_weights(&model, &out).unwrap();
        let again = checkpoint::load(&out, &device).unwrap();
        let exp = expected(&dir);
        let ids = &exp.inputs[2];
        let a = logits(&model, ids).unwrap().concat();
        let b = logits(&again, ids).unwrap().concat();
        assert_eq!(max_diff(&a, &b), 0.0, "{name}");
    }
}

#[test]
fn broken_checkpoints_are_named_errors() {
    let device = distill::backend::cpu();
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("llama-gqa");
    let copy = |to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(src.join(f), to.join(f)).unwrap();
        }
    };
    // Unknown model_type.
    let d = tmp.path().join("gpt2");
    copy(&d);
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"llama\"", "\"gpt2\"");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let e = checkpoint::load(&d, &device).unwrap_err().to_string();
    assert!(e.contains("`gpt2`"), "{e}");
    // A shape that does not match the config.
    let d = tmp.path().join("shape");
    copy(&d);
    let cfg = std::fs::read_to_string(d.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 96", "\"intermediate_size\": 97");
    std::fs::write(d.join("config.json"), cfg).unwrap();
    let e = checkpoint::load(&d, &device).unwrap_err().to_string();
    assert!(
        e.contains("gate_proj.weight") && e.contains("[96, 64]") && e.contains("[97, 64]"),
        "{e}"
    );
    // A truncated weights file.
    let d = tmp.path().join("cut");
    copy(&d);
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = checkpoint::load(&d, &device).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
    // No weights at all.
    let d = tmp.path().join("empty");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(src.join("config.json"), d.join("config.json")).unwrap();
    let e = checkpoint::load(&d, &device).unwrap_err().to_string();
    assert!(e.contains("no `model.safetensors`"), "{e}");
}

#[test]
fn the_training_path_computes_the_same_logits_as_the_inference_path() {
    // With autodiff the grouped key/value heads are repeated for composed matmuls; without it
    // the fused kernel takes them grouped. Both must agree.
    use burn::prelude::*;
    use burn::tensor::TensorData;
    let dir = fixture("llama-gqa");
    let exp = expected(&dir);
    let ids = &exp.inputs[2];
    let plain = checkpoint::load(&dir, &distill::backend::cpu()).unwrap();
    let ad = checkpoint::load(&dir, &distill::backend::cpu().autodiff()).unwrap();
    let t = |device: &Device| {
        Tensor::<2, Int>::from_data(
            TensorData::new(
                ids.iter().map(|&x| x as i64).collect::<Vec<_>>(),
                [1, ids.len()],
            ),
            device,
        )
    };
    let a: Vec<f32> = plain
        .forward(t(&plain.device()))
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap();
    let b: Vec<f32> = ad
        .forward(t(&ad.device()))
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap();
    assert!(max_diff(&a, &b) < 1e-4, "{}", max_diff(&a, &b));
    assert!(max_diff(&a, &exp.logits[2]) < 1e-4);
}

#[test]
fn a_sharded_checkpoint_loads_like_the_single_file() {
    use std::collections::{BTreeMap, HashMap};
    let src = fixture("qwen2-tied-bf16");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    // Two shards: the first layer in one file, everything else in the other.
    let mut shards: BTreeMap<&str, Vec<(String, safetensors::tensor::TensorView<'_>)>> =
        BTreeMap::new();
    let mut weight_map = serde_json::Map::new();
    for (name, view) in st.tensors() {
        let file = if name.starts_with("model.layers.0.") {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        weight_map.insert(name.clone(), serde_json::json!(file));
        shards.entry(file).or_default().push((name, view));
    }
    for (file, tensors) in shards {
        let data = safetensors::serialize(
            tensors,
            Some(HashMap::from([("format".into(), "pt".into())])),
        )
        .unwrap();
        std::fs::write(dir.join(file), data).unwrap();
    }
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();
    let device = distill::backend::cpu();
    let single = checkpoint::load(&src, &device).unwrap();
    let sharded = checkpoint::load(dir, &device).unwrap();
    let ids = [3u32, 1, 4, 1, 5];
    assert_eq!(
        logits(&single, &ids).unwrap(),
        logits(&sharded, &ids).unwrap()
    );
    // A shard named in the index but missing is an error naming it.
    std::fs::remove_file(dir.join("model-00001-of-00002.safetensors")).unwrap();
    let e = checkpoint::load(dir, &device).unwrap_err().to_string();
    assert!(e.contains("model-00001-of-00002.safetensors"), "{e}");
}
