//! Hugging Face checkpoints in and out: `config.json`, `model.safetensors` (or a sharded
//! `model.safetensors.index.json`), `generation_config.json`.
//!
//! Tensor names are the Hub's (`model.layers.3.self_attn.q_proj.weight`, ...); weights may be
//! f32, f16 or bf16 and are computed in f32. PyTorch stores a linear weight `[out, in]`; we keep
//! `[in, out]` (what a row-major matmul wants), so loading and saving transpose. A missing tensor
//! or a wrong shape is an error that names the tensor and both shapes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::TensorData;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};

use super::layers::{Attention, Block, Mlp, Proj, RmsNorm};
use super::{Model, ModelConfig, inv_freq};
use crate::error::{Error, Result};

/// The weight files of a checkpoint, read into memory.
struct Weights {
    dir: PathBuf,
    /// File name → bytes.
    files: HashMap<String, Vec<u8>>,
    /// Tensor name → file name.
    index: HashMap<String, String>,
}

impl Weights {
    fn open(dir: &Path) -> Result<Weights> {
        let single = dir.join("model.safetensors");
        let sharded = dir.join("model.safetensors.index.json");
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| Error::Read {
                path: p.to_path_buf(),
                source: e,
            })
        };
        let mut files = HashMap::new();
        let mut index = HashMap::new();
        if single.is_file() {
            let bytes = read(&single)?;
            let st = parse(&single, &bytes)?;
            for name in st.names() {
                index.insert(name.to_string(), "model.safetensors".to_string());
            }
            files.insert("model.safetensors".to_string(), bytes);
        } else if sharded.is_file() {
            let text = std::fs::read_to_string(&sharded).map_err(|e| Error::Read {
                path: sharded.clone(),
                source: e,
            })?;
            let v: Value = serde_json::from_str(&text).map_err(|e| Error::Json {
                path: sharded.clone(),
                message: format!("not valid JSON: {e}"),
            })?;
            let map = v
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| Error::Json {
                    path: sharded.clone(),
                    message: "has no `weight_map` object".into(),
                })?;
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| Error::Json {
                    path: sharded.clone(),
                    message: format!("`weight_map.{tensor}` is not a file name"),
                })?;
                if file.contains('/') || file.contains("..") {
                    return Err(Error::Json {
                        path: sharded.clone(),
                        message: format!(
                            "`weight_map.{tensor}` points outside the checkpoint: `{file}`"
                        ),
                    });
                }
                if !files.contains_key(file) {
                    let p = dir.join(file);
                    let bytes = read(&p)?;
                    parse(&p, &bytes)?;
                    files.insert(file.to_string(), bytes);
                }
                index.insert(tensor.clone(), file.to_string());
            }
        } else {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                message: "has no `model.safetensors` and no `model.safetensors.index.json`".into(),
            });
        }
        Ok(Weights {
            dir: dir.to_path_buf(),
            files,
            index,
        })
    }

    fn error(&self, message: String) -> Error {
        Error::Checkpoint {
            path: self.dir.clone(),
            message,
        }
    }

    /// The tensor `name` as f32, checked against `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let file = self.index.get(name).ok_or_else(|| {
            self.error(format!(
                "tensor `{name}` is missing (expected shape {shape:?})"
            ))
        })?;
        let st = SafeTensors::deserialize(&self.files[file])
            .map_err(|e| self.error(format!("`{file}`: {e}")))?;
        let view = st
            .tensor(name)
            .map_err(|e| self.error(format!("tensor `{name}` in `{file}`: {e}")))?;
        if view.shape() != shape {
            return Err(self.error(format!(
                "tensor `{name}` has shape {:?}; the config implies {shape:?}",
                view.shape()
            )));
        }
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => {
                return Err(self.error(format!(
                    "tensor `{name}` is {other:?}; expected f32, f16 or bf16 weights (quantised checkpoints are not supported)"
                )));
            }
        };
        Ok(values)
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}

/// Where a checkpoint's tensors come from: a Hub directory or a GGUF file.
enum Source {
    Hub(Weights),
    Gguf(super::from_gguf::GgufWeights),
}

impl Source {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self {
            Source::Hub(w) => w.get(name, shape),
            Source::Gguf(w) => w.get(name, shape),
        }
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Source::Hub(w) => w.has(name),
            Source::Gguf(w) => w.has(name),
        }
    }

    fn error(&self, message: String) -> Error {
        match self {
            Source::Hub(w) => w.error(message),
            Source::Gguf(w) => w.error(message),
        }
    }
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!("not a readable safetensors file ({e}); it may be truncated"),
    })
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
pub(crate) fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

fn param2(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Param<Tensor<2>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

fn param1(values: Vec<f32>, device: &Device) -> Param<Tensor<1>> {
    let n = values.len();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, [n]), device))
}

fn proj(
    w: &Source,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &Device,
) -> Result<Proj> {
    let weight = w.get(&format!("{prefix}.weight"), &[d_out, d_in])?;
    let bias = if bias {
        Some(param1(w.get(&format!("{prefix}.bias"), &[d_out])?, device))
    } else {
        None
    };
    Ok(Proj {
        weight: param2(transpose(&weight, d_out, d_in), [d_in, d_out], device),
        bias,
    })
}

fn norm(w: &Source, name: &str, d: usize, eps: f64, device: &Device) -> Result<RmsNorm> {
    Ok(RmsNorm {
        weight: param1(w.get(name, &[d])?, device),
        eps,
    })
}

/// Loads the checkpoint at `dir` and its `tokenizer.json`, and checks that they belong together
/// (every token id has a row in the model).
pub fn load_with_tokenizer(
    dir: &Path,
    device: &Device,
) -> Result<(Model, crate::data::tokenizer::Tokenizer)> {
    let model = load(dir, device)?;
    let tok = crate::data::tokenizer::Tokenizer::from_dir(dir)?;
    tok.check_fits(model.config().vocab_size, dir)?;
    Ok((model, tok))
}

/// Loads a checkpoint onto `device`: a directory (config.json + safetensors) or a GGUF file.
pub fn load(dir: &Path, device: &Device) -> Result<Model> {
    let (config, w) = if super::from_gguf::is_gguf(dir) {
        let (w, config) = super::from_gguf::GgufWeights::open(dir)?;
        (config, Source::Gguf(w))
    } else if dir.is_dir() {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        (config, Source::Hub(Weights::open(dir)?))
    } else {
        return Err(Error::Checkpoint {
            path: dir.to_path_buf(),
            message: "is not a directory or a GGUF file; expected a checkpoint directory with \
                      config.json and model.safetensors, or a `.gguf` file"
                .into(),
        });
    };
    let c = &config;
    let (h, hd) = (c.hidden_size, c.head_dim);
    let (q, kv) = (c.num_attention_heads * hd, c.num_key_value_heads * hd);
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        layers.push(Block {
            input_layernorm: norm(
                &w,
                &format!("{p}.input_layernorm.weight"),
                h,
                c.rms_norm_eps,
                device,
            )?,
            self_attn: Attention {
                q_proj: proj(
                    &w,
                    &format!("{p}.self_attn.q_proj"),
                    h,
                    q,
                    c.qkv_bias,
                    device,
                )?,
                k_proj: proj(
                    &w,
                    &format!("{p}.self_attn.k_proj"),
                    h,
                    kv,
                    c.qkv_bias,
                    device,
                )?,
                v_proj: proj(
                    &w,
                    &format!("{p}.self_attn.v_proj"),
                    h,
                    kv,
                    c.qkv_bias,
                    device,
                )?,
                o_proj: proj(&w, &format!("{p}.self_attn.o_proj"), q, h, c.o_bias, device)?,
                heads: c.num_attention_heads,
                kv_heads: c.num_key_value_heads,
                head_dim: hd,
            },
            post_attention_layernorm: norm(
                &w,
                &format!("{p}.post_attention_layernorm.weight"),
                h,
                c.rms_norm_eps,
                device,
            )?,
            mlp: Mlp {
                gate_proj: proj(
                    &w,
                    &format!("{p}.mlp.gate_proj"),
                    h,
                    c.intermediate_size,
                    c.mlp_bias,
                    device,
                )?,
                up_proj: proj(
                    &w,
                    &format!("{p}.mlp.up_proj"),
                    h,
                    c.intermediate_size,
                    c.mlp_bias,
                    device,
                )?,
                down_proj: proj(
                    &w,
                    &format!("{p}.mlp.down_proj"),
                    c.intermediate_size,
                    h,
                    c.mlp_bias,
                    device,
                )?,
            },
        });
    }
    let embed = w.get("model.embed_tokens.weight", &[c.vocab_size, h])?;
    let lm_head = if c.tie_word_embeddings {
        None
    } else if w.has("lm_head.weight") {
        let head = w.get("lm_head.weight", &[c.vocab_size, h])?;
        Some(param2(
            transpose(&head, c.vocab_size, h),
            [h, c.vocab_size],
            device,
        ))
    } else {
        return Err(w.error(
            "tensor `lm_head.weight` is missing and `tie_word_embeddings` is false; set it to true if the head shares the embedding".into(),
        ));
    };
    Ok(Model {
        embed_tokens: param2(embed, [c.vocab_size, h], device),
        layers,
        norm: norm(&w, "model.norm.weight", h, c.rms_norm_eps, device)?,
        lm_head,
        inv_freq: Arc::new(inv_freq(c)),
        config: Arc::new(config),
        quantized: None,
    })
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

fn values1(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// Every tensor of the model under its Hub name, in PyTorch's layout, as f32.
pub fn named_tensors(model: &Model) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut out = BTreeMap::new();
    let mut put_proj = |name: &str, p: &Proj| {
        let [d_in, d_out] = p.weight.val().dims();
        out.insert(
            format!("{name}.weight"),
            (
                vec![d_out, d_in],
                transpose(&values(p.weight.val()), d_in, d_out),
            ),
        );
        if let Some(b) = &p.bias {
            out.insert(format!("{name}.bias"), (vec![d_out], values1(b.val())));
        }
    };
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        put_proj(&format!("{p}.self_attn.q_proj"), &layer.self_attn.q_proj);
        put_proj(&format!("{p}.self_attn.k_proj"), &layer.self_attn.k_proj);
        put_proj(&format!("{p}.self_attn.v_proj"), &layer.self_attn.v_proj);
        put_proj(&format!("{p}.self_attn.o_proj"), &layer.self_attn.o_proj);
        put_proj(&format!("{p}.mlp.gate_proj"), &layer.mlp.gate_proj);
        put_proj(&format!("{p}.mlp.up_proj"), &layer.mlp.up_proj);
        put_proj(&format!("{p}.mlp.down_proj"), &layer.mlp.down_proj);
    }
    for (i, layer) in model.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        let w = values1(layer.input_layernorm.weight.val());
        out.insert(format!("{p}.input_layernorm.weight"), (vec![w.len()], w));
        let w = values1(layer.post_attention_layernorm.weight.val());
        out.insert(
            format!("{p}.post_attention_layernorm.weight"),
            (vec![w.len()], w),
        );
    }
    let w = values1(model.norm.weight.val());
    out.insert("model.norm.weight".into(), (vec![w.len()], w));
    let [v, h] = model.embed_tokens.val().dims();
    out.insert(
        "model.embed_tokens.weight".into(),
        (vec![v, h], values(model.embed_tokens.val())),
    );
    if let Some(head) = &model.lm_head {
        out.insert(
            "lm_head.weight".into(),
            (vec![v, h], transpose(&values(head.val()), h, v)),
        );
    }
    out
}

/// `model.safetensors` bytes (f32, `{"format": "pt"}` metadata as PyTorch writes).
pub fn safetensors_bytes(model: &Model) -> Result<Vec<u8>> {
    let tensors = named_tensors(model);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, (shape, v))| {
            let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name, shape, b)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(name, shape, b)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b)
                    .expect("shape matches data"),
            )
        })
        .collect();
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize(views, metadata)
        .map_err(|e| Error::invalid(format!("Failed to serialise weights: {e}")))
}

/// `generation_config.json` for the model.
pub fn generation_config(config: &ModelConfig) -> Value {
    let eos = match config.eos_token_ids.as_slice() {
        [] => Value::Null,
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "bos_token_id": config.bos_token_id,
        "eos_token_id": eos,
        "pad_token_id": config.pad_token_id,
        "do_sample": false,
    })
}

/// Writes `config.json` (with the workbench's version under `workbench_version`, so the workbench
/// knows the checkpoint as its own), `model.safetensors` and `generation_config.json` into `dir`
/// (each file atomically). The tokenizer files are the tokenizer's to write.
pub fn save_weights(model: &Model, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut config = model.config().clone();
    config.dtype = "float32".into();
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        datasets::atomic::write_file(dir.join(name), bytes).map_err(Error::from)
    };
    write("model.safetensors", &safetensors_bytes(model)?)?;
    let mut json = config.to_json();
    // transformers keeps unknown keys as attributes; the workbench reads this one to know its
    // own checkpoints (an output it may replace with `--force`).
    if let Some(obj) = json.as_object_mut() {
        obj.insert(
            datasets::atomic::CHECKPOINT_VERSION_KEY.into(),
            Value::String(datasets::schema::WORKBENCH_VERSION.into()),
        );
    }
    write(
        "config.json",
        serde_json::to_string_pretty(&json)
            .expect("json")
            .as_bytes(),
    )?;
    write(
        "generation_config.json",
        serde_json::to_string_pretty(&generation_config(&config))
            .expect("json")
            .as_bytes(),
    )?;
    Ok(())
}

/// Writes a whole checkpoint directory in the Hugging Face layout: config, weights, generation
/// config and (when given) the tokenizer files. The directory appears whole or not at all; an
/// existing one is replaced only with `replace`.
pub fn save(
    model: &Model,
    tokenizer: Option<&crate::data::tokenizer::Tokenizer>,
    dir: &Path,
    replace: bool,
) -> Result<()> {
    let staging = datasets::atomic::AtomicDir::create(dir, replace)?;
    save_weights(model, staging.path())?;
    if let Some(tok) = tokenizer {
        tok.save_dir(staging.path())?;
    }
    staging.commit()?;
    Ok(())
}
