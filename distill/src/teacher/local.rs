//! A teacher that runs a checkpoint on this machine: batched KV-cache sampling with the top-k of
//! the full distribution at every token.

use std::path::Path;

use crate::backend;
use crate::data::tokenizer::Tokenizer;
use crate::generate::{self, FinishReason, GenerateOptions, TURN_ENDS};
use crate::model::{Model, checkpoint};
use crate::{Error, Result};

use super::{Request, Response, Teacher, TeacherStats, now_micros};

/// A checkpoint directory, loaded.
pub struct LocalTeacher {
    model: Model,
    tokenizer: Tokenizer,
    id: String,
    cache_id: String,
    batch_size: usize,
    eos: Vec<u32>,
    requests: u64,
}

impl LocalTeacher {
    /// Loads the checkpoint at `dir` (config.json, model.safetensors, tokenizer.json) onto
    /// `device` (`cpu`, `cuda:N`, `wgpu`).
    pub fn load(
        dir: &Path,
        device: &str,
        batch_size: usize,
        weights: Option<crate::model::kernels::quant::QuantKind>,
    ) -> Result<LocalTeacher> {
        let on_cpu = device == "cpu";
        let device = backend::device(device)?;
        let (mut model, tokenizer) = checkpoint::load_with_tokenizer(dir, &device)?;
        if !crate::train::weights_are_finite(&model) {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                message: "holds weights that are not finite numbers (NaN or infinity), so its \
                          answers would be too\n\nhint: a training run that diverged wrote it; \
                          train it again with a lower learning rate"
                    .into(),
            });
        }
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "teacher".into());
        // The weights decide the answers: hash them, so a retrained teacher never reuses the
        // answers of the old one.
        let mut h = blake3::Hasher::new();
        for file in ["config.json", "tokenizer.json"] {
            if let Ok(bytes) = std::fs::read(dir.join(file)) {
                h.update(&bytes);
            }
        }
        let mut files: Vec<_> = if crate::model::from_gguf::is_gguf(dir) {
            vec![dir.to_path_buf()]
        } else {
            std::fs::read_dir(dir)
                .map_err(|e| Error::Read {
                    path: dir.to_path_buf(),
                    source: e,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect()
        };
        files.sort();
        for path in files {
            let file = std::fs::File::open(&path).map_err(|e| Error::Read {
                path: path.clone(),
                source: e,
            })?;
            h.update_reader(file)
                .map_err(|e| Error::Read { path, source: e })?;
        }
        // Rounded weights give other answers: they are part of the teacher's identity.
        if let Some(kind) = weights {
            if !on_cpu {
                return Err(Error::invalid(
                    "`teacher.weights` q8_0 and q4_0 run on the CPU decoder; set `teacher.device = \"cpu\"` or `teacher.weights = \"f32\"`",
                ));
            }
            model.quantize(Some(kind))?;
            h.update(format!("{kind:?}").as_bytes());
        }
        let digest = h.finalize().to_hex()[..16].to_string();
        let mut eos: Vec<u32> = model.config().eos_token_ids.clone();
        eos.extend(tokenizer.eos_id());
        for end in TURN_ENDS {
            eos.extend(tokenizer.token_to_id(end));
        }
        eos.sort_unstable();
        eos.dedup();
        Ok(LocalTeacher {
            model,
            tokenizer,
            id: format!("local:{name}"),
            cache_id: format!("local:{digest}"),
            batch_size: batch_size.max(1),
            eos,
            requests: 0,
        })
    }

    /// The teacher's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The prompt's token ids: through the chat template when the tokenizer has one, else the
    /// plain prompt text with the tokenizer's special tokens.
    fn encode(&self, r: &Request) -> Result<Vec<u32>> {
        if self.tokenizer.chat_template().is_some() {
            let text = self.tokenizer.apply_chat_template(&r.messages, true)?;
            self.tokenizer.encode(&text, false)
        } else {
            self.tokenizer.encode(&r.prompt, true)
        }
    }
}

impl Teacher for LocalTeacher {
    fn id(&self) -> &str {
        &self.id
    }

    fn cache_id(&self) -> &str {
        &self.cache_id
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn answer(
        &mut self,
        requests: &[Request],
        done: &mut dyn FnMut(usize, Response) -> Result<()>,
    ) -> Result<()> {
        // Requests that sample the same way share a batch.
        let mut start = 0;
        while start < requests.len() {
            let first = &requests[start];
            let mut end = start + 1;
            while end < requests.len()
                && end - start < self.batch_size
                && same_sampling(first, &requests[end])
            {
                end += 1;
            }
            let group = &requests[start..end];
            let prompts = group
                .iter()
                .map(|r| self.encode(r))
                .collect::<Result<Vec<_>>>()?;
            let options = GenerateOptions {
                max_new_tokens: first.max_tokens,
                temperature: first.temperature,
                top_k: 0,
                top_p: first.top_p,
                seed: first.seed,
                row_seeds: group.iter().map(|r| r.seed).collect(),
                logprobs: first.top_logprobs,
                eos_ids: self.eos.clone(),
                stop: first.stop.clone(),
            };
            let tokenizer = &self.tokenizer;
            let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
            let out = generate::generate(&self.model, &prompts, &options, Some(&decode))?;
            self.requests += group.len() as u64;
            for (i, (g, prompt)) in out.into_iter().zip(&prompts).enumerate() {
                let mut text = self.tokenizer.decode(&g.ids, true)?;
                if let Some(cut) = first
                    .stop
                    .iter()
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                {
                    text.truncate(cut);
                }
                let response = Response {
                    text,
                    ids_exact: true,
                    logprobs: g.logprobs.clone(),
                    entropy_mean: g.entropy_mean(),
                    finish: match g.finish {
                        FinishReason::Stop => "stop".into(),
                        FinishReason::Length => "length".into(),
                    },
                    prompt_tokens: prompt.len() as u64,
                    completion_tokens: g.ids.len() as u64,
                    ids: g.ids,
                    top: g.top,
                    host: None,
                    received_at: now_micros(),
                };
                done(start + i, response)?;
            }
            start = end;
        }
        Ok(())
    }

    fn stats(&self) -> TeacherStats {
        TeacherStats {
            requests: self.requests,
            retries: 0,
            hosts: Vec::new(),
            servers: Vec::new(),
        }
    }
}

fn same_sampling(a: &Request, b: &Request) -> bool {
    a.max_tokens == b.max_tokens
        && a.temperature == b.temperature
        && a.top_p == b.top_p
        && a.stop == b.stop
        && a.top_logprobs == b.top_logprobs
}
