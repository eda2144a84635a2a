//! Writing a model and its tokenizer as a GGUF file that llama.cpp (and so `llama-server`,
//! Ollama, LM Studio) loads as is: the names, metadata and query/key row order of llama.cpp's own
//! `convert_hf_to_gguf.py`, matrices in F32, F16, Q8_0 or Q4_0 (quantized as llama.cpp's reference
//! quantizers do), 1-D tensors in F32.

use std::path::Path;

use serde_json::Value as Json;

use super::Model;
use super::checkpoint::named_tensors;
use super::config::{ModelType, RopeScaling};
use super::from_gguf::gguf_name;
use super::kernels::quant::{QuantKind, QuantMatrix};
use crate::data::tokenizer::Tokenizer;
use crate::error::{Error, Result};

/// How matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    /// 32-bit floats: exact.
    F32,
    /// Half floats.
    F16,
    /// Blocks of 32 bytes and one f16 scale (8.5 bits a weight).
    Q8_0,
    /// Blocks of 32 nibbles and one f16 scale (4.5 bits a weight).
    Q4_0,
}

impl GgufType {
    /// Parses `f32`, `f16`, `q8_0` or `q4_0`.
    pub fn parse(name: &str) -> Option<GgufType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "f32" => GgufType::F32,
            "f16" => GgufType::F16,
            "q8_0" => GgufType::Q8_0,
            "q4_0" => GgufType::Q4_0,
            _ => return None,
        })
    }

    /// ggml's type id.
    fn id(self) -> u32 {
        match self {
            GgufType::F32 => 0,
            GgufType::F16 => 1,
            GgufType::Q4_0 => 2,
            GgufType::Q8_0 => 8,
        }
    }

    /// llama.cpp's `general.file_type` for a file mostly of this type.
    fn file_type(self) -> u32 {
        match self {
            GgufType::F32 => 0,
            GgufType::F16 => 1,
            GgufType::Q4_0 => 2,
            GgufType::Q8_0 => 7,
        }
    }

    /// The name users type.
    pub fn as_str(self) -> &'static str {
        match self {
            GgufType::F32 => "f32",
            GgufType::F16 => "f16",
            GgufType::Q8_0 => "q8_0",
            GgufType::Q4_0 => "q4_0",
        }
    }
}

/// llama.cpp's `quantize_row_q8_0_ref`: per 32 values, `d = max|x| / 127`, `q = round(x / d)`;
/// each block its f16 scale, then 32 signed bytes.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    QuantMatrix::quantize(QuantKind::Q8_0, values, values.len() / 32, 32).gguf_blocks()
}

/// llama.cpp's `quantize_row_q4_0_ref`: per 32 values, the value of largest magnitude `m`,
/// `d = m / -8`, `q = min(15, trunc(x / d + 8.5))`; each block its f16 scale, then 16 bytes, the
/// first 16 values in the low nibbles.
pub fn quantize_q4_0(values: &[f32]) -> Vec<u8> {
    QuantMatrix::quantize(QuantKind::Q4_0, values, values.len() / 32, 32).gguf_blocks()
}

/// GGUF metadata and tensors, laid out as the format wants them.
#[derive(Default)]
struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

const ALIGNMENT: usize = 32;

impl Writer {
    fn key(&mut self, key: &str, kind: u32) {
        put_string(&mut self.kv, key);
        self.kv.extend(kind.to_le_bytes());
        self.n_kv += 1;
    }

    fn u32(&mut self, key: &str, v: u32) {
        self.key(key, 4);
        self.kv.extend(v.to_le_bytes());
    }

    fn f32(&mut self, key: &str, v: f64) {
        self.key(key, 6);
        self.kv.extend((v as f32).to_le_bytes());
    }

    fn bool(&mut self, key: &str, v: bool) {
        self.key(key, 7);
        self.kv.push(v as u8);
    }

    fn str(&mut self, key: &str, v: &str) {
        self.key(key, 8);
        put_string(&mut self.kv, v);
    }

    fn strs(&mut self, key: &str, v: &[String]) {
        self.key(key, 9);
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for s in v {
            put_string(&mut self.kv, s);
        }
    }

    fn i32s(&mut self, key: &str, v: &[i32]) {
        self.key(key, 9);
        self.kv.extend(5u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for x in v {
            self.kv.extend(x.to_le_bytes());
        }
    }

    fn f32s(&mut self, key: &str, v: &[f32]) {
        self.key(key, 9);
        self.kv.extend(6u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for x in v {
            self.kv.extend(x.to_le_bytes());
        }
    }

    /// A tensor of Hub shape `shape` (slowest dimension first), its bytes already encoded.
    fn tensor(&mut self, name: &str, shape: &[usize], kind: u32, bytes: &[u8]) {
        put_string(&mut self.infos, name);
        self.infos.extend((shape.len() as u32).to_le_bytes());
        for &d in shape.iter().rev() {
            self.infos.extend((d as u64).to_le_bytes());
        }
        self.infos.extend(kind.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.data
            .resize(self.data.len().div_ceil(ALIGNMENT) * ALIGNMENT, 0);
        self.n_tensors += 1;
    }

    fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.kv.len() + self.infos.len() + self.data.len() + 64);
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        out.resize(out.len().div_ceil(ALIGNMENT) * ALIGNMENT, 0);
        out.extend(&self.data);
        out
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// Puts each head's two rotary halves in adjacent pairs (llama.cpp's row order for `llama`):
/// the Hub's row `s · half + j` of a head becomes row `2j + s`.
fn interleave(values: &[f32], heads: usize, rows: usize) -> Vec<f32> {
    super::from_gguf::reorder_heads(values, heads, rows, true)
}

/// llama.cpp's name for the pre-tokenizer of a byte-level BPE `tokenizer.json`, when llama.cpp
/// splits text as it does.
fn pre_name(file: &Json) -> Option<&'static str> {
    let pre = &file["pre_tokenizer"];
    let byte_level_regex =
        |p: &Json| p["type"] == "ByteLevel" && p["use_regex"].as_bool().unwrap_or(true);
    if byte_level_regex(pre) {
        return Some("gpt-2");
    }
    let parts = pre["pretokenizers"].as_array()?;
    match parts.as_slice() {
        [digits, byte_level]
            if digits["type"] == "Digits"
                && digits["individual_digits"] == true
                && byte_level_regex(byte_level) =>
        {
            Some("smollm")
        }
        _ => None,
    }
}

/// How llama.cpp encodes as a tokenizer does.
enum LlamaCppVocab {
    /// Byte-level BPE (`gpt2`) with llama.cpp's name for its pre-tokenizer.
    Bpe(&'static str),
    /// SentencePiece BPE (`llama`): `▁` for spaces, byte fallback; with or without a space put
    /// before the text.
    Spm { space_prefix: bool },
}

/// Whether a `tokenizer.json` is SentencePiece BPE as llama.cpp runs it (spaces as `▁`, byte
/// fallback), and if so whether it puts a space before the text.
fn spm_form(file: &Json) -> Option<bool> {
    let model = &file["model"];
    if model["type"] != "BPE" || model["byte_fallback"] != true {
        return None;
    }
    let parts = |j: &Json, list: &str| -> Vec<Json> {
        match j[list].as_array() {
            Some(items) => items.clone(),
            None if j.is_object() => vec![j.clone()],
            None => vec![],
        }
    };
    let normalizers = parts(&file["normalizer"], "normalizers");
    let escapes = normalizers.iter().any(|n| {
        n["type"] == "Replace" && n["pattern"]["String"] == " " && n["content"] == "\u{2581}"
    });
    let prepends = normalizers
        .iter()
        .any(|n| n["type"] == "Prepend" && n["prepend"] == "\u{2581}");
    let metaspace = parts(&file["pre_tokenizer"], "pretokenizers")
        .into_iter()
        .find(|p| p["type"] == "Metaspace");
    match (escapes, metaspace) {
        (true, None) => Some(prepends),
        (false, Some(m)) if m["split"] != true => Some(match m["prepend_scheme"].as_str() {
            Some(scheme) => scheme != "never",
            None => m["add_prefix_space"] != false,
        }),
        _ => None,
    }
}

/// The serialized tokenizer and how llama.cpp encodes as it does, or why llama.cpp cannot.
fn llama_cpp_form(tok: &Tokenizer) -> Result<(Json, LlamaCppVocab)> {
    let fail = |message: String| Error::Tokenizer {
        path: None,
        message,
    };
    let file: Json = serde_json::from_str(
        &tok.inner()
            .to_string(false)
            .map_err(|e| fail(format!("cannot serialize the tokenizer: {e}")))?,
    )
    .map_err(|e| fail(format!("cannot read the serialized tokenizer: {e}")))?;
    if let Some(space_prefix) = spm_form(&file) {
        return Ok((file, LlamaCppVocab::Spm { space_prefix }));
    }
    let model = &file["model"];
    if model["type"] != "BPE" || file["decoder"]["type"] != "ByteLevel" {
        return Err(fail(
            "only byte-level BPE (`tokenizer.ggml.model = gpt2`) and SentencePiece BPE \
             (`llama`) tokenizers go into GGUF; this one is neither"
                .into(),
        ));
    }
    let pre = pre_name(&file).ok_or_else(|| {
        fail(format!(
            "its pre-tokenizer ({}) splits text in a way llama.cpp has no name for, so llama.cpp \
             would encode prompts differently\n\nhint: GGUF export takes SentencePiece BPE \
             and byte-level BPE tokenizers that split text as GPT-2 or SmolLM do (pretrained \
             ones such as SmolLM's); the tokenizer a run trains for itself keeps words together \
             unless `teacher.tokenizer_split = \"words\"`, which llama.cpp runs",
            file["pre_tokenizer"]
        ))
    })?;
    Ok((file, LlamaCppVocab::Bpe(pre)))
}

/// SentencePiece scores that make llama.cpp's merging (the adjacent pair whose join scores
/// highest goes first) follow the BPE merges: a piece scores minus the rank of the first merge
/// that makes it; pieces no merge makes score below all of those.
fn spm_scores(tokens: &[String], types: &[i32], merges: &[(String, String)]) -> Vec<f32> {
    let mut first: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (rank, (l, r)) in merges.iter().enumerate() {
        first.entry(format!("{l}{r}")).or_insert(rank);
    }
    tokens
        .iter()
        .zip(types)
        .enumerate()
        .map(|(id, (t, &kind))| match first.get(t) {
            _ if kind != 1 => 0.0,
            Some(&rank) => -(rank as f32),
            None => -((merges.len() + id) as f32),
        })
        .collect()
}

/// Checks that llama.cpp can encode text as `tok` does, so a GGUF file of it works.
pub fn check_tokenizer(tok: &Tokenizer) -> Result<()> {
    llama_cpp_form(tok).map(|_| ())
}

/// Adds the `tokenizer.*` metadata of a byte-level or SentencePiece BPE tokenizer.
fn tokenizer_metadata(w: &mut Writer, tok: &Tokenizer, vocab_size: usize) -> Result<()> {
    let (file, form) = llama_cpp_form(tok)?;
    let model = &file["model"];
    let mut tokens = vec![String::new(); vocab_size];
    let mut types = vec![1i32; vocab_size];
    for (token, id) in tok.inner().get_vocab(true) {
        if let Some(slot) = tokens.get_mut(id as usize) {
            *slot = token;
        }
    }
    for (i, slot) in tokens.iter_mut().enumerate() {
        if slot.is_empty() {
            // Rows of the embedding no token uses: llama.cpp wants a name for each.
            *slot = format!("[PAD{i}]");
            types[i] = 5;
        }
    }
    for added in file["added_tokens"].as_array().into_iter().flatten() {
        if let Some(id) = added["id"].as_u64().filter(|&i| (i as usize) < vocab_size) {
            types[id as usize] = if added["special"] == true { 3 } else { 4 };
        }
    }
    let merges: Vec<(String, String)> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Json::String(s) => s
                .split_once(' ')
                .map(|(l, r)| (l.to_string(), r.to_string())),
            Json::Array(pair) => match pair.as_slice() {
                [Json::String(l), Json::String(r)] => Some((l.clone(), r.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    match form {
        LlamaCppVocab::Bpe(pre) => {
            w.str("tokenizer.ggml.model", "gpt2");
            w.str("tokenizer.ggml.pre", pre);
            w.strs("tokenizer.ggml.tokens", &tokens);
            w.i32s("tokenizer.ggml.token_type", &types);
            let merges: Vec<String> = merges.iter().map(|(l, r)| format!("{l} {r}")).collect();
            w.strs("tokenizer.ggml.merges", &merges);
        }
        LlamaCppVocab::Spm { space_prefix } => {
            // Byte fallback tokens are `<0xXX>`; llama.cpp finds them by their type.
            for (t, kind) in tokens.iter().zip(types.iter_mut()) {
                let byte = t.len() == 6 && t.starts_with("<0x") && t.ends_with('>');
                if byte && *kind == 1 {
                    *kind = 6;
                }
            }
            let unk = model["unk_token"]
                .as_str()
                .and_then(|u| tokens.iter().position(|t| t == u));
            if let Some(id) = unk {
                types[id] = 2;
                w.u32("tokenizer.ggml.unknown_token_id", id as u32);
            }
            let scores = spm_scores(&tokens, &types, &merges);
            w.str("tokenizer.ggml.model", "llama");
            w.str("tokenizer.ggml.pre", "default");
            w.strs("tokenizer.ggml.tokens", &tokens);
            w.f32s("tokenizer.ggml.scores", &scores);
            w.i32s("tokenizer.ggml.token_type", &types);
            w.bool("tokenizer.ggml.add_space_prefix", space_prefix);
        }
    }
    if let Some(id) = tok.bos_id() {
        w.u32("tokenizer.ggml.bos_token_id", id);
    }
    if let Some(id) = tok.eos_id() {
        w.u32("tokenizer.ggml.eos_token_id", id);
    }
    if let Some(id) = tok.pad_id() {
        w.u32("tokenizer.ggml.padding_token_id", id);
    }
    let adds_bos = tok.bos_id().is_some_and(|bos| {
        tok.encode("a", true)
            .is_ok_and(|ids| ids.first() == Some(&bos))
    });
    w.bool("tokenizer.ggml.add_bos_token", adds_bos);
    w.bool("tokenizer.ggml.add_eos_token", false);
    if let Some(t) = tok.chat_template() {
        w.str("tokenizer.chat_template", t.source());
    }
    Ok(())
}

/// The GGUF file of `model` (and its tokenizer), matrices stored as `kind`.
pub fn gguf_bytes(
    model: &Model,
    tok: Option<&Tokenizer>,
    name: &str,
    kind: GgufType,
) -> Result<Vec<u8>> {
    let c = model.config();
    let arch = match c.model_type {
        ModelType::Llama | ModelType::Mistral => "llama",
        ModelType::Qwen2 => "qwen2",
    };
    let mut w = Writer::default();
    w.str("general.architecture", arch);
    w.str("general.name", name);
    w.u32("general.file_type", kind.file_type());
    w.u32("general.quantization_version", 2);
    w.u32("general.alignment", ALIGNMENT as u32);
    let key = |k: &str| format!("{arch}.{k}");
    w.u32(&key("context_length"), c.max_position_embeddings as u32);
    w.u32(&key("embedding_length"), c.hidden_size as u32);
    w.u32(&key("block_count"), c.num_hidden_layers as u32);
    w.u32(&key("feed_forward_length"), c.intermediate_size as u32);
    w.u32(&key("attention.head_count"), c.num_attention_heads as u32);
    w.u32(
        &key("attention.head_count_kv"),
        c.num_key_value_heads as u32,
    );
    w.f32(&key("attention.layer_norm_rms_epsilon"), c.rms_norm_eps);
    w.f32(&key("rope.freq_base"), c.rope_theta);
    w.u32(&key("rope.dimension_count"), c.head_dim as u32);
    if c.head_dim * c.num_attention_heads != c.hidden_size {
        w.u32(&key("attention.key_length"), c.head_dim as u32);
        w.u32(&key("attention.value_length"), c.head_dim as u32);
    }
    w.u32(&key("vocab_size"), c.vocab_size as u32);
    match &c.rope_scaling {
        RopeScaling::Default => {}
        RopeScaling::Linear { factor } => {
            w.str(&key("rope.scaling.type"), "linear");
            w.f32(&key("rope.scaling.factor"), *factor);
        }
        // GGUF carries it as the divisor of each frequency (`rope_freqs.weight`, below).
        RopeScaling::Llama3 { .. } => {}
    }
    if let Some(tok) = tok {
        tokenizer_metadata(&mut w, tok, c.vocab_size)?;
    }
    let interleaved = arch == "llama";
    for (hub, (shape, values)) in named_tensors(model) {
        let Some(target) = gguf_name(&hub) else {
            return Err(Error::invalid(format!(
                "the tensor `{hub}` has no GGUF name"
            )));
        };
        let heads = if hub.contains("self_attn.q_proj") {
            c.num_attention_heads
        } else if hub.contains("self_attn.k_proj") {
            c.num_key_value_heads
        } else {
            0
        };
        let values = if interleaved && heads > 0 {
            interleave(&values, heads, shape[0])
        } else {
            values
        };
        // Matrices in the chosen type when their rows fill whole blocks; the rest in F32, as
        // llama.cpp keeps norms and biases.
        let row = *shape.last().unwrap_or(&0);
        let store = match kind {
            _ if shape.len() < 2 => GgufType::F32,
            GgufType::Q8_0 | GgufType::Q4_0 if row % 32 != 0 => GgufType::F16,
            k => k,
        };
        let bytes = match store {
            GgufType::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            GgufType::F16 => values
                .iter()
                .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                .collect(),
            GgufType::Q8_0 => quantize_q8_0(&values),
            GgufType::Q4_0 => quantize_q4_0(&values),
        };
        w.tensor(&target, &shape, store.id(), &bytes);
    }
    if let RopeScaling::Llama3 { .. } = c.rope_scaling {
        let factors = super::rope_factors(c);
        let bytes: Vec<u8> = factors.iter().flat_map(|x| x.to_le_bytes()).collect();
        w.tensor(
            "rope_freqs.weight",
            &[factors.len()],
            GgufType::F32.id(),
            &bytes,
        );
    }
    Ok(w.finish())
}

/// Writes `model` (and its tokenizer) to the GGUF file `path`, atomically.
pub fn save(model: &Model, tok: Option<&Tokenizer>, path: &Path, kind: GgufType) -> Result<()> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let bytes = gguf_bytes(model, tok, &name, kind)?;
    datasets::atomic::write_file(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gguf::{Gguf, TensorType};
    use serde_json::json;

    /// SentencePiece BPE is recognised in both of transformers' layouts (a normalizer that
    /// escapes spaces, or a Metaspace pre-tokenizer), with its space prefix; byte-level BPE and
    /// a SentencePiece model without byte fallback are not.
    #[test]
    fn sentencepiece_tokenizers_are_recognised_in_both_layouts() {
        let bpe = json!({"type": "BPE", "byte_fallback": true});
        let escape = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
        let prepend = json!({"type": "Prepend", "prepend": "\u{2581}"});
        let legacy = json!({"model": bpe, "normalizer": {"type": "Sequence", "normalizers": [prepend, escape]}});
        assert_eq!(spm_form(&legacy), Some(true));
        let bare = json!({"model": bpe, "normalizer": escape});
        assert_eq!(spm_form(&bare), Some(false));
        let meta = |scheme: &str| {
            json!({"model": bpe, "normalizer": null, "pre_tokenizer": {"type": "Metaspace",
                   "replacement": "\u{2581}", "prepend_scheme": scheme, "split": false}})
        };
        assert_eq!(spm_form(&meta("first")), Some(true));
        assert_eq!(spm_form(&meta("never")), Some(false));
        let no_fallback =
            json!({"model": {"type": "BPE", "byte_fallback": false}, "normalizer": escape});
        assert_eq!(spm_form(&no_fallback), None);
        let byte_level = json!({"model": {"type": "BPE"}, "pre_tokenizer": {"type": "ByteLevel"}});
        assert_eq!(spm_form(&byte_level), None);
    }

    #[test]
    fn quantizers_match_llama_cpps_reference_on_known_blocks() {
        // A ramp from -1.875 to 2: Q8_0's scale is 2/127, the first value -119, the last 127.
        let ramp: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 8.0 + 0.125).collect();
        let q8 = quantize_q8_0(&ramp);
        assert_eq!(q8.len(), 34);
        let d = half::f16::from_le_bytes([q8[0], q8[1]]).to_f32();
        assert!((d - 2.0 / 127.0).abs() < 1e-5);
        assert_eq!(q8[2] as i8, -119);
        assert_eq!(q8[33] as i8, 127);
        // Q4_0 keeps the sign of the largest value (the last, +2), so d = -2/8 and +2 maps to
        // nibble 0 (the high nibble of the last byte), -1.875 to 15 (clipped from 16).
        let q4 = quantize_q4_0(&ramp);
        assert_eq!(q4.len(), 18);
        let d = half::f16::from_le_bytes([q4[0], q4[1]]).to_f32();
        assert_eq!(d, -0.25);
        assert_eq!(q4[2 + 15] >> 4, 0);
        assert_eq!(q4[2] & 0x0F, 15);
        // An all-zero block has scale 0 and dequantizes to zeros.
        assert!(quantize_q8_0(&[0.0; 32])[2..].iter().all(|&b| b == 0));
    }

    #[test]
    fn interleaving_is_undone_by_the_reader() {
        let values: Vec<f32> = (0..48).map(|x| x as f32).collect();
        let stored = interleave(&values, 2, 8);
        assert_ne!(stored, values);
        assert_eq!(
            crate::model::from_gguf::deinterleave(&stored, 2, &[8, 6]),
            values
        );
    }

    #[test]
    fn quantized_blocks_read_back_within_half_a_step() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 32.0) / 10.0)
            .collect();
        let mut w = Writer::default();
        w.tensor("q8", &[2, 32], 8, &quantize_q8_0(&x));
        w.tensor("q4", &[2, 32], 2, &quantize_q4_0(&x));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.gguf");
        std::fs::write(&path, w.finish()).unwrap();
        let g = Gguf::open(&path).unwrap();
        // Q8_0 rounds to the nearest step; Q4_0 clips its most negative level, so a value at
        // the far end of the block's sign is off by up to a whole step.
        for (name, kind, tolerance) in [
            ("q8", TensorType::Q8_0, 3.2 / 127.0 / 2.0),
            ("q4", TensorType::Q4_0, 3.2 / 8.0),
        ] {
            let t = g.tensor(name).unwrap();
            assert_eq!(t.kind, kind);
            assert_eq!(t.dims, vec![32, 2]);
            let back = g.dequantize(t).unwrap();
            assert_eq!(back.len(), x.len(), "{name}: every value");
            for (a, b) in back.iter().zip(&x) {
                assert!((a - b).abs() <= tolerance + 2e-3, "{name}: {a} vs {b}");
            }
        }
    }
}
