//! The model's shape, read from and written to a Hugging Face `config.json`.
//!
//! One architecture (the Llama family: RMSNorm, rotary embeddings, SwiGLU, grouped-query
//! attention) covers `model_type` llama, qwen2 and mistral, so teacher and student are the same
//! code at two sizes and users can bring SmolLM, Qwen2 or Llama checkpoints. Anything the config
//! asks for that this model does not do (another activation, a rope scaling we do not implement,
//! another `model_type`) is an error that names it, never a silently different model.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// How rotary frequencies are scaled for long contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3's frequency-dependent scaling.
    Llama3 {
        /// Overall factor.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are scaled fully.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was trained with.
        original_max_position_embeddings: usize,
    },
}

/// Which Hugging Face class the checkpoint is (it decides tensor names and biases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    /// `LlamaForCausalLM` (also SmolLM).
    Llama,
    /// `Qwen2ForCausalLM`: q/k/v projections have biases.
    Qwen2,
    /// `MistralForCausalLM`.
    Mistral,
}

impl ModelType {
    /// The `model_type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Llama => "llama",
            ModelType::Qwen2 => "qwen2",
            ModelType::Mistral => "mistral",
        }
    }

    /// The `architectures` entry.
    pub fn architecture(self) -> &'static str {
        match self {
            ModelType::Llama => "LlamaForCausalLM",
            ModelType::Qwen2 => "Qwen2ForCausalLM",
            ModelType::Mistral => "MistralForCausalLM",
        }
    }
}

/// The shape of a decoder, field for field as in a Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Which Hugging Face class.
    pub model_type: ModelType,
    /// Tokens in the vocabulary (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU hidden layer.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Width of one head; `hidden_size / num_attention_heads` unless the config says otherwise.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// Longest sequence the rotary tables cover.
    pub max_position_embeddings: usize,
    /// Whether the output projection is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v projections (always for Qwen2; `attention_bias` for Llama).
    pub qkv_bias: bool,
    /// Bias on the output projection (`attention_bias` for Llama; never for Qwen2).
    pub o_bias: bool,
    /// Biases on the MLP projections (`mlp_bias`).
    pub mlp_bias: bool,
    /// Attention window (Mistral, Qwen2 with `use_sliding_window`); longer sequences are refused.
    pub sliding_window: Option<usize>,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (a config may list several).
    pub eos_token_ids: Vec<u32>,
    /// Padding token.
    pub pad_token_id: Option<u32>,
    /// The dtype the weights were stored in (`float32`, `bfloat16`, `float16`).
    pub dtype: String,
}

impl ModelConfig {
    /// A small Llama config for models the workbench trains from scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn llama(
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
        max_position_embeddings: usize,
        tie_word_embeddings: bool,
    ) -> ModelConfig {
        ModelConfig {
            model_type: ModelType::Llama,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim: hidden_size / num_attention_heads.max(1),
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::Default,
            max_position_embeddings,
            tie_word_embeddings,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            sliding_window: None,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
            pad_token_id: None,
            dtype: "float32".into(),
        }
    }

    /// Reads `config.json`.
    pub fn from_file(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            message: format!(
                "not valid JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        })?;
        ModelConfig::from_json(&value, path)
    }

    /// Reads a parsed `config.json`; `path` names it in errors.
    pub fn from_json(value: &Value, path: &Path) -> Result<ModelConfig> {
        let Some(obj) = value.as_object() else {
            return Err(Error::Json {
                path: path.to_path_buf(),
                message: "expected a JSON object".into(),
            });
        };
        let r = Reader { obj, path };
        let model_type = match r.str("model_type")?.as_deref() {
            Some("llama") => ModelType::Llama,
            Some("qwen2") => ModelType::Qwen2,
            Some("mistral") => ModelType::Mistral,
            Some(other) => {
                return Err(r.unsupported(format!(
                    "`model_type` is `{other}`; the workbench runs llama, qwen2 and mistral decoders"
                )));
            }
            None => return Err(r.missing("model_type")),
        };
        if let Some(act) = r.str("hidden_act")?
            && act != "silu"
        {
            return Err(r.unsupported(format!(
                "`hidden_act` is `{act}`; this model uses silu (SwiGLU)"
            )));
        }
        let hidden_size = r
            .usize("hidden_size")?
            .ok_or_else(|| r.missing("hidden_size"))?;
        let heads = r
            .usize("num_attention_heads")?
            .ok_or_else(|| r.missing("num_attention_heads"))?;
        let kv_heads = r.usize("num_key_value_heads")?.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(r.unsupported(format!(
                "`num_attention_heads` {heads} is not a multiple of `num_key_value_heads` {kv_heads}"
            )));
        }
        let head_dim = match r.usize("head_dim")? {
            Some(d) => d,
            None => {
                if !hidden_size.is_multiple_of(heads) {
                    return Err(r.unsupported(format!(
                        "`hidden_size` {hidden_size} is not divisible by `num_attention_heads` {heads} and no `head_dim` is given"
                    )));
                }
                hidden_size / heads
            }
        };
        if !head_dim.is_multiple_of(2) {
            return Err(r.unsupported(format!(
                "`head_dim` {head_dim} is odd; rotary embeddings need an even width"
            )));
        }
        // Newer transformers write `rope_parameters`; older write `rope_theta` + `rope_scaling`.
        let (rope_theta, rope_scaling) = match obj.get("rope_parameters").filter(|v| !v.is_null()) {
            Some(params) => {
                let p = params
                    .as_object()
                    .ok_or_else(|| r.json("`rope_parameters` is not an object"))?;
                let theta = p
                    .get("rope_theta")
                    .and_then(Value::as_f64)
                    .or(r.f64("rope_theta")?)
                    .unwrap_or(10_000.0);
                (theta, rope_scaling(&r, Some(params))?)
            }
            None => (
                r.f64("rope_theta")?.unwrap_or(10_000.0),
                rope_scaling(&r, obj.get("rope_scaling"))?,
            ),
        };
        let attention_bias = r.bool("attention_bias")?.unwrap_or(false);
        let (qkv_bias, o_bias) = match model_type {
            ModelType::Qwen2 => (true, false),
            _ => (attention_bias, attention_bias),
        };
        let sliding_window = match model_type {
            ModelType::Qwen2 if !r.bool("use_sliding_window")?.unwrap_or(false) => None,
            _ => r.usize("sliding_window")?,
        };
        let eos_token_ids = match obj.get("eos_token_id") {
            Some(Value::Array(ids)) => ids
                .iter()
                .filter_map(Value::as_u64)
                .map(|v| v as u32)
                .collect(),
            Some(Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
            _ => Vec::new(),
        };
        let dtype = r
            .str("dtype")?
            .or(r.str("torch_dtype")?)
            .unwrap_or_else(|| "float32".into());
        let config = ModelConfig {
            model_type,
            vocab_size: r
                .usize("vocab_size")?
                .ok_or_else(|| r.missing("vocab_size"))?,
            hidden_size,
            intermediate_size: r
                .usize("intermediate_size")?
                .ok_or_else(|| r.missing("intermediate_size"))?,
            num_hidden_layers: r
                .usize("num_hidden_layers")?
                .ok_or_else(|| r.missing("num_hidden_layers"))?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: r.f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: r.usize("max_position_embeddings")?.unwrap_or(2048),
            tie_word_embeddings: r.bool("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias: r.bool("mlp_bias")?.unwrap_or(false),
            sliding_window,
            bos_token_id: r.usize("bos_token_id")?.map(|v| v as u32),
            eos_token_ids,
            pad_token_id: r.usize("pad_token_id")?.map(|v| v as u32),
            dtype,
        };
        config.validate().map_err(|m| r.unsupported(m))?;
        Ok(config)
    }

    /// Checks sizes.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("max_position_embeddings", self.max_position_embeddings),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                return Err(format!("`{name}` is 0"));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err("`num_attention_heads` is not a multiple of `num_key_value_heads`".into());
        }
        Ok(())
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Number of parameters (tied embeddings counted once).
    pub fn num_params(&self) -> u64 {
        let (h, i, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.vocab_size as u64,
        );
        let (q, kv) = (
            (self.num_attention_heads * self.head_dim) as u64,
            (self.num_key_value_heads * self.head_dim) as u64,
        );
        let mut attn = h * q + 2 * h * kv + q * h;
        if self.qkv_bias {
            attn += q + 2 * kv;
        }
        if self.o_bias {
            attn += h;
        }
        let mut mlp = 3 * h * i;
        if self.mlp_bias {
            mlp += 2 * i + h;
        }
        let layer = attn + mlp + 2 * h;
        let embed = v * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        embed + head + self.num_hidden_layers as u64 * layer + h
    }

    /// The `config.json` transformers reads (written with `rope_parameters`, as transformers 5
    /// writes it, and the legacy `rope_theta` beside it for older readers).
    pub fn to_json(&self) -> Value {
        let rope_parameters = match &self.rope_scaling {
            RopeScaling::Default => json!({"rope_type": "default", "rope_theta": self.rope_theta}),
            RopeScaling::Linear { factor } => {
                json!({"rope_type": "linear", "rope_theta": self.rope_theta, "factor": factor})
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => json!({
                "rope_type": "llama3",
                "rope_theta": self.rope_theta,
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
        };
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let mut v = json!({
            "architectures": [self.model_type.architecture()],
            "model_type": self.model_type.as_str(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": rope_parameters,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
            "dtype": self.dtype,
            "use_cache": true,
            "initializer_range": 0.02,
            "attention_dropout": 0.0,
        });
        let obj = v.as_object_mut().expect("an object");
        match self.model_type {
            ModelType::Llama => {
                obj.insert("attention_bias".into(), json!(self.qkv_bias));
                obj.insert("mlp_bias".into(), json!(self.mlp_bias));
            }
            ModelType::Qwen2 => {
                obj.insert(
                    "use_sliding_window".into(),
                    json!(self.sliding_window.is_some()),
                );
                obj.insert("sliding_window".into(), json!(self.sliding_window));
                obj.insert("max_window_layers".into(), json!(self.num_hidden_layers));
            }
            ModelType::Mistral => {
                obj.insert("sliding_window".into(), json!(self.sliding_window));
            }
        }
        v
    }
}

struct Reader<'a> {
    obj: &'a Map<String, Value>,
    path: &'a Path,
}

impl Reader<'_> {
    fn json(&self, message: impl Into<String>) -> Error {
        Error::Json {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    fn unsupported(&self, message: impl Into<String>) -> Error {
        Error::Unsupported {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    fn missing(&self, key: &str) -> Error {
        self.json(format!("`{key}` is missing"))
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| {
                self.json(format!("`{key}` is {v}; expected a non-negative integer"))
            }),
        }
    }

    fn f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.json(format!("`{key}` is {v}; expected a number"))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.json(format!("`{key}` is {v}; expected true or false"))),
        }
    }

    fn str(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.json(format!("`{key}` is {v}; expected a string"))),
        }
    }
}

fn rope_scaling(r: &Reader<'_>, value: Option<&Value>) -> Result<RopeScaling> {
    let Some(obj) = value.filter(|v| !v.is_null()).and_then(Value::as_object) else {
        return Ok(RopeScaling::Default);
    };
    let kind = obj
        .get("rope_type")
        .or_else(|| obj.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str| obj.get(k).and_then(Value::as_f64);
    match kind {
        "default" => Ok(RopeScaling::Default),
        "linear" => Ok(RopeScaling::Linear {
            factor: num("factor").ok_or_else(|| r.json("linear rope scaling has no `factor`"))?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor").ok_or_else(|| r.json("llama3 rope scaling has no `factor`"))?,
            low_freq_factor: num("low_freq_factor").unwrap_or(1.0),
            high_freq_factor: num("high_freq_factor").unwrap_or(4.0),
            original_max_position_embeddings: obj
                .get("original_max_position_embeddings")
                .and_then(Value::as_u64)
                .unwrap_or(8192) as usize,
        }),
        other => Err(r.unsupported(format!(
            "rope scaling type `{other}` is not supported; supported: default, linear, llama3"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ModelConfig> {
        ModelConfig::from_json(&v, Path::new("config.json"))
    }

    fn base() -> Value {
        json!({"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2})
    }

    /// GGUF carries Llama 3's rope scaling as the divisor of each frequency; Llama 3.1's and 3.2's
    /// parameters come back from them exactly, and divisors no Llama 3 scaling gives do not.
    #[test]
    fn llama3_rope_scaling_comes_back_from_its_frequency_divisors() {
        let mut v = base();
        v["hidden_size"] = json!(2048);
        v["num_attention_heads"] = json!(16);
        v["rope_theta"] = json!(500000.0);
        for (factor, high, original) in [(8.0, 4.0, 8192), (32.0, 4.0, 8192), (16.0, 8.0, 4096)] {
            v["rope_scaling"] = json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
                                       "high_freq_factor": high, "original_max_position_embeddings": original});
            let c = parse(v.clone()).unwrap();
            let factors = crate::model::rope_factors(&c);
            assert_eq!(factors.len(), 64);
            assert_eq!(
                crate::model::llama3_from_factors(&c, &factors),
                Some(c.rope_scaling.clone()),
                "{factor} {high} {original}"
            );
        }
        // Too few frequencies in between to fit (head dim 16: one, then none): borders put in
        // the gaps give the same divisors, if not the same parameters.
        for (high, original) in [(4.0, 1000), (1.4, 300)] {
            let mut small = base();
            small["rope_theta"] = json!(10000.0);
            small["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": high, "original_max_position_embeddings": original});
            let c = parse(small).unwrap();
            let factors = crate::model::rope_factors(&c);
            let back = crate::model::llama3_from_factors(&c, &factors).expect("a scaling");
            let again = crate::model::rope_factors(&ModelConfig {
                rope_scaling: back,
                ..c.clone()
            });
            let same = again
                .iter()
                .zip(&factors)
                .all(|(a, b)| (a - b).abs() <= 1e-3 * b);
            assert!(same, "{high} {original}: {again:?} {factors:?}");
        }
        let c = parse(v.clone()).unwrap();
        let mut odd = crate::model::rope_factors(&c);
        odd[40] *= 1.5;
        assert_eq!(crate::model::llama3_from_factors(&c, &odd), None);
        assert_eq!(crate::model::llama3_from_factors(&c, &odd[..10]), None);
        assert_eq!(
            crate::model::llama3_from_factors(&c, &[1.0; 64]),
            Some(RopeScaling::Default)
        );
    }

    #[test]
    fn both_rope_layouts_are_read() {
        let mut old = base();
        old["rope_theta"] = json!(500000.0);
        assert_eq!(parse(old).unwrap().rope_theta, 500000.0);
        let mut new = base();
        new["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 1e6});
        assert_eq!(parse(new).unwrap().rope_theta, 1e6);
    }

    #[test]
    fn unsupported_things_are_named() {
        let mut v = base();
        v["model_type"] = json!("gpt2");
        assert!(parse(v).unwrap_err().to_string().contains("`gpt2`"));
        let mut v = base();
        v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
        assert!(parse(v).unwrap_err().to_string().contains("`yarn`"));
        let mut v = base();
        v["hidden_act"] = json!("gelu");
        assert!(parse(v).unwrap_err().to_string().contains("gelu"));
        let mut v = base();
        v.as_object_mut().unwrap().remove("vocab_size");
        assert!(
            parse(v)
                .unwrap_err()
                .to_string()
                .contains("`vocab_size` is missing")
        );
    }

    #[test]
    fn qwen2_has_qkv_bias_and_head_dim_may_be_explicit() {
        let mut v = base();
        v["model_type"] = json!("qwen2");
        v["head_dim"] = json!(32);
        let c = parse(v).unwrap();
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!(c.head_dim, 32);
    }

    #[test]
    fn the_written_config_reads_back_the_same() {
        let c = parse(base()).unwrap();
        let again = parse(c.to_json()).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn parameters_are_counted_like_transformers() {
        // LlamaForCausalLM(vocab 100, hidden 64, inter 96, 2 layers, 4 heads, 2 kv): 43,328 + 12,864
        let c = parse(base()).unwrap();
        let per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 96 + 2 * 64;
        assert_eq!(c.num_params(), (2 * 100 * 64 + 2 * per_layer + 64) as u64);
    }
}
