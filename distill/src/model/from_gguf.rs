//! A Llama-family model and its tokenizer read from a GGUF file, as llama.cpp's
//! `convert_hf_to_gguf.py` writes them: the config from `{arch}.*` metadata, the tensors renamed
//! back to the Hub's names and dequantized to f32, the query and key rows put back in the Hub's
//! rotary order, and the tokenizer rebuilt from `tokenizer.ggml.*`.
//!
//! llama.cpp rotates pairs of adjacent dimensions (GPT-J style) for its `llama` architecture, so
//! its converter interleaves the two halves of each query and key head of a Hub checkpoint; the
//! Hub (and this workbench) rotates the first half against the second. Reading undoes that. For
//! `qwen2` llama.cpp rotates halves as the Hub does, so the rows are kept.

use std::path::Path;

use serde_json::{Value as Json, json};

use super::config::{ModelConfig, ModelType, RopeScaling};
use super::gguf::{Gguf, TensorInfo, Value};
use crate::data::chat::ChatTemplate;
use crate::data::tokenizer::{SpecialTokens, Tokenizer};
use crate::error::{Error, Result};

/// Whether `path` names a GGUF file (by its extension, or its first four bytes).
pub fn is_gguf(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        || starts_with_magic(path)
}

/// Whether the file at `path` starts with GGUF's magic number (whatever its name).
pub fn starts_with_magic(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| &magic == b"GGUF")
}

/// `general.file_type` of the GGUF file at `path` (llama.cpp's numbering: 0 F32, 1 F16, 2 Q4_0,
/// 7 Q8_0, ...), when it says.
pub fn file_type(path: &Path) -> Result<Option<u32>> {
    let g = Gguf::open_metadata(path)?;
    Ok(g.metadata
        .get("general.file_type")
        .and_then(Value::as_u64)
        .map(|v| v as u32))
}

/// The architectures read, as GGUF names them.
const ARCHITECTURES: &str = "llama, mistral and qwen2";

fn error(path: &Path, message: String) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    }
}

/// The model's architecture and whether its query/key rows were interleaved.
fn architecture(g: &Gguf, path: &Path) -> Result<(String, ModelType, bool)> {
    let arch = g
        .metadata
        .get("general.architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            error(
                path,
                "has no `general.architecture` metadata, so its layout is unknown".into(),
            )
        })?;
    let (model_type, interleaved) = match arch {
        "llama" => (ModelType::Llama, true),
        "mistral" => (ModelType::Mistral, true),
        "qwen2" => (ModelType::Qwen2, false),
        other => {
            return Err(error(
                path,
                format!(
                    "is a `{other}` model (`general.architecture`); the workbench reads the \
                     Llama family as GGUF names it: {ARCHITECTURES}"
                ),
            ));
        }
    };
    Ok((arch.to_string(), model_type, interleaved))
}

/// The Hub config of the model in `g`.
pub fn config(g: &Gguf, path: &Path) -> Result<ModelConfig> {
    let (arch, model_type, _) = architecture(g, path)?;
    let key = |k: &str| format!("{arch}.{k}");
    let get = |k: &str| g.metadata.get(&key(k));
    let count = |k: &str| -> Result<Option<usize>> {
        match get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| error(path, format!("`{}` is {v:?}, not a count", key(k)))),
        }
    };
    let need = |k: &str| -> Result<usize> {
        count(k)?.ok_or_else(|| {
            error(
                path,
                format!("lacks the `{}` metadata a {arch} model needs", key(k)),
            )
        })
    };
    let float = |k: &str| -> Result<Option<f64>> {
        match get(k) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| error(path, format!("`{}` is {v:?}, not a number", key(k)))),
        }
    };
    let hidden = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    let kv_heads = count("attention.head_count_kv")?.unwrap_or(heads);
    let head_dim = count("attention.key_length")?.unwrap_or(hidden / heads.max(1));
    if let Some(v) = count("attention.value_length")?
        && v != head_dim
    {
        return Err(error(
            path,
            format!(
                "has keys of width {head_dim} and values of width {v}; the workbench's \
                 attention needs them equal"
            ),
        ));
    }
    if let Some(rot) = count("rope.dimension_count")?
        && rot != head_dim
    {
        return Err(error(
            path,
            format!(
                "rotates {rot} of each head's {head_dim} dimensions (`{}`); the workbench \
                 rotates whole heads",
                key("rope.dimension_count")
            ),
        ));
    }
    let rope_scaling = match get("rope.scaling.type").and_then(Value::as_str) {
        None | Some("none") => RopeScaling::Default,
        Some("linear") => RopeScaling::Linear {
            factor: float("rope.scaling.factor")?.unwrap_or(1.0),
        },
        Some(other) => {
            return Err(error(
                path,
                format!(
                    "uses `{other}` rope scaling (`{}`); the workbench implements none and \
                     linear",
                    key("rope.scaling.type")
                ),
            ));
        }
    };
    let embed = g.tensor("token_embd.weight").ok_or_else(|| {
        error(
            path,
            "has no `token_embd.weight` tensor (the token embedding)".into(),
        )
    })?;
    let vocab_size = match count("vocab_size")? {
        Some(v) => v,
        None => embed.dims.get(1).copied().unwrap_or(0) as usize,
    };
    let token_id = |k: &str| {
        g.metadata
            .get(&format!("tokenizer.ggml.{k}"))
            .and_then(Value::as_u64)
            .map(|v| v as u32)
    };
    let mut config = ModelConfig {
        model_type,
        vocab_size,
        hidden_size: hidden,
        intermediate_size: need("feed_forward_length")?,
        num_hidden_layers: need("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: float("attention.layer_norm_rms_epsilon")?.ok_or_else(|| {
            error(
                path,
                format!(
                    "lacks `{}` (RMSNorm's epsilon)",
                    key("attention.layer_norm_rms_epsilon")
                ),
            )
        })?,
        rope_theta: float("rope.freq_base")?.unwrap_or(10_000.0),
        rope_scaling,
        max_position_embeddings: need("context_length")?,
        tie_word_embeddings: g.tensor("output.weight").is_none(),
        qkv_bias: g.tensor("blk.0.attn_q.bias").is_some(),
        o_bias: g.tensor("blk.0.attn_output.bias").is_some(),
        mlp_bias: g.tensor("blk.0.ffn_up.bias").is_some(),
        sliding_window: None,
        bos_token_id: token_id("bos_token_id"),
        eos_token_ids: token_id("eos_token_id").into_iter().collect(),
        pad_token_id: token_id("padding_token_id"),
        dtype: "float32".into(),
    };
    // Llama 3's scaling travels as the divisors it applies to each frequency.
    if let Some(info) = g.tensor("rope_freqs.weight") {
        let factors = g.dequantize(info)?;
        config.rope_scaling = super::llama3_from_factors(&config, &factors).ok_or_else(|| {
            error(
                path,
                format!(
                    "carries per-frequency rope factors (`rope_freqs.weight`, {} values) that \
                     Llama 3's rope scaling does not give, and the workbench implements no \
                     other\n\nhint: load the Hub checkpoint (config.json + safetensors) instead",
                    factors.len()
                ),
            )
        })?;
    }
    config
        .validate()
        .map_err(|m| error(path, format!("describes an impossible model: {m}")))?;
    Ok(config)
}

/// The GGUF name of a Hub tensor name, e.g. `model.layers.3.mlp.up_proj.weight` →
/// `blk.3.ffn_up.weight`.
pub fn gguf_name(hub: &str) -> Option<String> {
    match hub {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hub.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let short = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{suffix}"))
}

/// A GGUF file's tensors under their Hub names, in the Hub's layout.
pub struct GgufWeights {
    gguf: Gguf,
    path: std::path::PathBuf,
    interleaved: bool,
    heads: usize,
    kv_heads: usize,
}

impl GgufWeights {
    /// Opens `path` and reads its config.
    pub fn open(path: &Path) -> Result<(GgufWeights, ModelConfig)> {
        let gguf = Gguf::open(path)?;
        let (_, _, interleaved) = architecture(&gguf, path)?;
        let config = config(&gguf, path)?;
        Ok((
            GgufWeights {
                gguf,
                path: path.to_path_buf(),
                interleaved,
                heads: config.num_attention_heads,
                kv_heads: config.num_key_value_heads,
            },
            config,
        ))
    }

    /// An error about this file.
    pub fn error(&self, message: String) -> Error {
        error(&self.path, message)
    }

    fn info(&self, hub: &str) -> Option<&TensorInfo> {
        self.gguf.tensor(&gguf_name(hub)?)
    }

    /// Whether the file has the Hub tensor `hub`.
    pub fn has(&self, hub: &str) -> bool {
        self.info(hub).is_some()
    }

    /// The Hub tensor `hub` as f32 in PyTorch's layout (`[out, in]` for a matrix), checked
    /// against `shape`.
    pub fn get(&self, hub: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let name = gguf_name(hub).unwrap_or_else(|| hub.to_string());
        let info = self.gguf.tensor(&name).ok_or_else(|| {
            error(
                &self.path,
                format!(
                    "tensor `{name}` (the Hub's `{hub}`) is missing (expected shape {shape:?})"
                ),
            )
        })?;
        let dims: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        if dims != shape {
            return Err(error(
                &self.path,
                format!(
                    "tensor `{name}` has shape {:?} (GGUF order); the metadata implies {:?}",
                    info.dims,
                    shape.iter().rev().collect::<Vec<_>>()
                ),
            ));
        }
        let values = self.gguf.dequantize(info)?;
        let heads = if hub.contains("self_attn.q_proj") {
            self.heads
        } else if hub.contains("self_attn.k_proj") {
            self.kv_heads
        } else {
            0
        };
        if self.interleaved && heads > 0 {
            return Ok(deinterleave(&values, heads, shape));
        }
        Ok(values)
    }
}

/// Undoes llama.cpp's interleaving of a query or key projection (weight `[rows, cols]` or bias
/// `[rows]`): within each head of `rows / heads` rows, GGUF row `2j + s` is the Hub's row
/// `s · half + j`.
pub(crate) fn deinterleave(values: &[f32], heads: usize, shape: &[usize]) -> Vec<f32> {
    reorder_heads(values, heads, shape[0], false)
}

/// Moves rows within each head between the Hub's order (`s · half + j`) and llama.cpp's
/// interleaved one (`2j + s`): towards llama.cpp when `interleave`, back otherwise.
pub(crate) fn reorder_heads(
    values: &[f32],
    heads: usize,
    rows: usize,
    interleave: bool,
) -> Vec<f32> {
    let cols = values.len() / rows.max(1);
    let head = rows / heads;
    let half = head / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for j in 0..half {
            for s in 0..2 {
                let (hub, gguf) = (h * head + s * half + j, h * head + 2 * j + s);
                let (from, to) = if interleave { (hub, gguf) } else { (gguf, hub) };
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// GGUF token types (`tokenizer.ggml.token_type`).
const NORMAL: u64 = 1;
const UNKNOWN: u64 = 2;
const CONTROL: u64 = 3;
const USER_DEFINED: u64 = 4;

/// SentencePiece's space, `▁`.
const SPACE: &str = "\u{2581}";

/// The BPE merges that make a SentencePiece BPE vocabulary encode as SentencePiece (and
/// llama.cpp) do: wherever two adjacent pieces join into a normal piece of the vocabulary, the
/// join with the highest score goes first (the leftmost among equals). So every split of every
/// normal piece into two pieces of the vocabulary is a merge, ranked by the joined piece's score,
/// and within one piece by the ids of its parts (as transformers' converter orders them).
fn spm_merges(tokens: &[String], types: &[u64], scores: &[f64]) -> Vec<Json> {
    let ids: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut merges: Vec<(f64, usize, usize, usize, &str, &str)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if types.get(id).copied().unwrap_or(NORMAL) != NORMAL {
            continue;
        }
        let score = scores.get(id).copied().unwrap_or(0.0);
        for (at, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(at);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                merges.push((score, id, l, r, left, right));
            }
        }
    }
    merges.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then((a.1, a.2, a.3).cmp(&(b.1, b.2, b.3)))
    });
    merges
        .into_iter()
        .map(|(_, _, _, _, l, r)| json!([l, r]))
        .collect()
}

/// The pre-tokenizer llama.cpp names `tokenizer.ggml.pre`, as a `tokenizer.json` fragment.
fn pre_tokenizer(pre: &str) -> Option<Json> {
    let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let split = |pattern: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    };
    Some(match pre {
        "default" | "gpt-2" | "gpt2" => byte_level(true),
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            byte_level(true),
        ]}),
        "llama-bpe" | "llama3" => split(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        "qwen2" => split(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        _ => return None,
    })
}

/// The tokenizer of the GGUF file at `path`, rebuilt from its `tokenizer.ggml.*` metadata, with
/// its special tokens and `tokenizer.chat_template`.
pub fn tokenizer(path: &Path) -> Result<Tokenizer> {
    let g = Gguf::open_metadata(path)?;
    tokenizer_of(&g, path)
}

fn tokenizer_of(g: &Gguf, path: &Path) -> Result<Tokenizer> {
    let fail = |message: String| Error::Tokenizer {
        path: Some(path.to_path_buf()),
        message,
    };
    let meta = |k: &str| g.metadata.get(&format!("tokenizer.ggml.{k}"));
    let strings = |k: &str| -> Result<Vec<String>> {
        match meta(k) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| fail(format!("`tokenizer.ggml.{k}` holds a non-string")))
                })
                .collect(),
            Some(_) => Err(fail(format!("`tokenizer.ggml.{k}` is not a list"))),
            None => Ok(Vec::new()),
        }
    };
    let model = meta("model").and_then(Value::as_str).unwrap_or("");
    if model != "gpt2" && model != "llama" {
        return Err(fail(format!(
            "its tokenizer is `{model}` (`tokenizer.ggml.model`); the workbench rebuilds \
             byte-level BPE (`gpt2`) and SentencePiece BPE (`llama`) tokenizers from GGUF\n\n\
             hint: put the model's Hub tokenizer.json beside the weights: convert with \
             `workbench model convert --model FILE.gguf --out DIR`, then copy tokenizer.json (and \
             tokenizer_config.json) into DIR"
        )));
    }
    let tokens = strings("tokens")?;
    if tokens.is_empty() {
        return Err(fail("has no `tokenizer.ggml.tokens`".into()));
    }
    let types: Vec<u64> = match meta("token_type") {
        Some(Value::Array(items)) => items.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        _ => Vec::new(),
    };
    let id = |k: &str| meta(k).and_then(Value::as_u64).map(|v| v as u32);
    let name_of = |i: Option<u32>| i.and_then(|i| tokens.get(i as usize).cloned());
    let (bos, eos, pad) = (
        id("bos_token_id"),
        id("eos_token_id"),
        id("padding_token_id"),
    );
    // llama.cpp adds BOS to SentencePiece vocabularies unless told otherwise.
    let add_bos = match meta("add_bos_token") {
        Some(Value::Bool(b)) => *b,
        _ => model == "llama",
    };
    let bos_template = |b: &str| {
        json!({"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": b, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {b: {"id": b, "ids": [bos], "tokens": [b]}}})
    };
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        vocab.insert(token.clone(), json!(id));
        let kind = types.get(id).copied().unwrap_or(1);
        if kind == CONTROL || kind == USER_DEFINED || (model == "llama" && kind == UNKNOWN) {
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false,
                // llama.cpp matches a SentencePiece file's user-defined tokens in the raw text.
                "normalized": kind == USER_DEFINED && model != "llama",
                "special": kind != USER_DEFINED,
            }));
        }
    }
    let file = if model == "llama" {
        let scores: Vec<f64> = match meta("scores") {
            Some(Value::Array(items)) => items.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect(),
            _ => Vec::new(),
        };
        let space_prefix = !matches!(meta("add_space_prefix"), Some(Value::Bool(false)));
        let mut normal_scores = scores
            .iter()
            .enumerate()
            .filter(|&(i, _)| types.get(i).copied().unwrap_or(NORMAL) == NORMAL)
            .map(|(_, s)| s.to_bits());
        if let Some(first) = normal_scores.next()
            && normal_scores.all(|s| s == first)
        {
            tracing::warn!(
                "{}: every piece of its SentencePiece vocabulary has the same score, so llama.cpp \
                 merges the leftmost pair first where the rebuilt tokenizer merges in vocabulary \
                 order; where two merges compete, they encode differently",
                path.display()
            );
        }
        let unk = name_of(id("unknown_token_id")).unwrap_or_else(|| "<unk>".into());
        let normalizer = if space_prefix {
            json!({"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": SPACE},
                {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
            ]})
        } else {
            json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE})
        };
        let mut decoders = vec![
            json!({"type": "Replace", "pattern": {"String": SPACE}, "content": " "}),
            json!({"type": "ByteFallback"}),
            json!({"type": "Fuse"}),
        ];
        if space_prefix {
            decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        }
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": null,
            "post_processor": match (add_bos, name_of(bos)) {
                (true, Some(b)) => bos_template(&b),
                _ => Json::Null,
            },
            "decoder": {"type": "Sequence", "decoders": decoders},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                "ignore_merges": false, "vocab": vocab,
                "merges": spm_merges(&tokens, &types, &scores),
            },
        })
    } else {
        let merges = strings("merges")?;
        let pre_name = meta("pre").and_then(Value::as_str).unwrap_or("default");
        let pre = pre_tokenizer(pre_name).ok_or_else(|| {
            fail(format!(
                "its pre-tokenizer is `{pre_name}` (`tokenizer.ggml.pre`), which the workbench \
                 does not know; it knows default, gpt-2, smollm, llama-bpe and qwen2"
            ))
        })?;
        let byte_level_post = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
        let post = match (add_bos, name_of(bos)) {
            (true, Some(b)) => json!({"type": "Sequence", "processors": [
                byte_level_post,
                bos_template(&b),
            ]}),
            _ => byte_level_post,
        };
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre,
            "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": false, "vocab": vocab, "merges": merges,
            },
        })
    };
    let special = SpecialTokens {
        bos: name_of(bos),
        eos: name_of(eos),
        pad: name_of(pad),
        unk: (model == "llama")
            .then(|| name_of(id("unknown_token_id")))
            .flatten(),
    };
    let mut tok = Tokenizer::from_json(&file.to_string(), special, path)?;
    if let Some(source) = g
        .metadata
        .get("tokenizer.chat_template")
        .and_then(Value::as_str)
    {
        tok.set_chat_template(Some(ChatTemplate::new(
            source.to_string(),
            Some(format!("`tokenizer.chat_template` of {}", path.display())),
        )?));
    }
    let arch = g
        .metadata
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or("llama");
    if let Some(n) = g
        .metadata
        .get(&format!("{arch}.context_length"))
        .and_then(Value::as_u64)
    {
        tok.set_model_max_length(Some(n));
    }
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_map_to_llama_cpps() {
        for (hub, gguf) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            ("model.norm.weight", "output_norm.weight"),
            (
                "model.layers.0.input_layernorm.weight",
                "blk.0.attn_norm.weight",
            ),
            (
                "model.layers.11.self_attn.q_proj.bias",
                "blk.11.attn_q.bias",
            ),
            (
                "model.layers.2.self_attn.o_proj.weight",
                "blk.2.attn_output.weight",
            ),
            (
                "model.layers.2.post_attention_layernorm.weight",
                "blk.2.ffn_norm.weight",
            ),
            (
                "model.layers.3.mlp.down_proj.weight",
                "blk.3.ffn_down.weight",
            ),
        ] {
            assert_eq!(gguf_name(hub).as_deref(), Some(gguf), "{hub}");
        }
        assert_eq!(gguf_name("model.layers.0.self_attn.rotary.weight"), None);
    }

    #[test]
    fn deinterleaving_undoes_llama_cpps_permutation() {
        // Two heads of four rows, two columns: the Hub's rows 0..8 are h0 = [a0 a1 b0 b1],
        // h1 = [c0 c1 d0 d1] (first half, second half); llama.cpp stores each head's halves
        // interleaved: [a0 b0 a1 b1].
        let hub: Vec<f32> = (0..16).map(|x| x as f32).collect();
        let rows = |order: &[usize]| -> Vec<f32> {
            order
                .iter()
                .flat_map(|&r| [hub[2 * r], hub[2 * r + 1]])
                .collect()
        };
        let stored = rows(&[0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(deinterleave(&stored, 2, &[8, 2]), hub);
        // A bias is a single column.
        let bias: Vec<f32> = (0..4).map(|x| x as f32).collect();
        assert_eq!(deinterleave(&[0.0, 2.0, 1.0, 3.0], 1, &[4]), bias);
    }
}
