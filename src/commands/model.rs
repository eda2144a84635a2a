//! `workbench model logits | convert` and `workbench serve`.

use std::path::Path;

use anyhow::Result;
use datasets::text::inert_line;
use distill::data::chat::ChatTemplate;
use distill::data::tokenizer::Tokenizer;
use distill::model::from_gguf::{is_gguf, starts_with_magic};
use distill::model::kernels::quant::QuantKind;
use distill::model::to_gguf::{self, GgufType};
use distill::model::{Model, checkpoint};
use serde_json::json;

use crate::BadInput;
use crate::cli::{ModelCommand, ServeArgs};
use crate::output::Output;

fn load(dir: &Path, device: &str) -> Result<Model> {
    let device = distill::backend::device(device)?;
    Ok(checkpoint::load(dir, &device)?)
}

fn tokenizer(dir: &Path) -> Result<Tokenizer> {
    if !dir.exists() {
        return Err(BadInput(format!(
            "`{}` does not exist; give a checkpoint directory (config.json, model.safetensors, \
             tokenizer.json) or a `.gguf` file",
            dir.display()
        ))
        .into());
    }
    if !is_gguf(dir) && !dir.join("tokenizer.json").is_file() {
        return Err(BadInput(format!(
            "`{}` has no tokenizer.json, so text cannot be encoded\n\nhint: pass token ids with `--ids 1,2,3`",
            dir.display()
        ))
        .into());
    }
    Ok(Tokenizer::from_dir(dir)?)
}

pub fn run(out: &Output, cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Logits {
            model,
            text,
            ids,
            json,
            device,
        } => {
            if ids.is_none() && text.is_none() {
                return Err(BadInput("give `--text` or `--ids`".into()).into());
            }
            let m = load(&model, &device)?;
            let (ids, tok) = match (ids, text) {
                (Some(ids), _) => (ids, None),
                (None, text) => {
                    let tok = tokenizer(&model)?;
                    tok.check_fits(m.config().vocab_size, &model)?;
                    (
                        tok.encode(text.as_deref().unwrap_or_default(), true)?,
                        Some(tok),
                    )
                }
            };
            let logits = distill::generate::logits(&m, &ids)?;
            if json {
                return out
                    .data(&json!({"ids": ids, "logits": logits}).to_string())
                    .map_err(Into::into);
            }
            let tok = tok.or_else(|| tokenizer(&model).ok());
            let mut text = String::new();
            for (pos, (id, row)) in ids.iter().zip(&logits).enumerate() {
                let top = distill::generate::top_k(row, 5);
                let name = |t: u32| {
                    tok.as_ref()
                        .and_then(|k| k.id_to_token(t))
                        .map(|s| format!("{t} {:?}", inert_line(&s)))
                        .unwrap_or_else(|| t.to_string())
                };
                let best: Vec<String> = top
                    .iter()
                    .map(|t| format!("{} ({:.3})", name(t.id), t.logprob))
                    .collect();
                text.push_str(&format!("[{pos}] {} -> {}\n", name(*id), best.join(", ")));
            }
            out.data(&text)?;
            out.say(format!(
                "{} positions × {} logits from `{}` ({} parameters)",
                logits.len(),
                logits.first().map_or(0, Vec::len),
                model.display(),
                m.num_params()
            ));
            Ok(())
        }
        ModelCommand::Convert {
            model,
            out: dest,
            quantize,
            chat_template,
            force,
        } => {
            let to_gguf = dest
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
            let kind = match (quantize.as_deref(), to_gguf) {
                (None, _) => GgufType::F32,
                (Some(q), true) => GgufType::parse(q).ok_or_else(|| {
                    BadInput(format!("`--quantize {q}`: expected f32, f16, q8_0 or q4_0"))
                })?,
                (Some(q), false) => {
                    return Err(BadInput(format!(
                        "`--quantize {q}` is for GGUF output; `{}` is a directory name\n\nhint: \
                         give `--out FILE.gguf`",
                        dest.display()
                    ))
                    .into());
                }
            };
            if to_gguf && dest.exists() && !(force && dest.is_file() && starts_with_magic(&dest)) {
                return Err(BadInput(format!(
                    "`{}` exists{}",
                    dest.display(),
                    if force {
                        " and is not a GGUF file, so `--force` leaves it alone"
                    } else {
                        "\n\nhint: pass `--force` to replace it"
                    }
                ))
                .into());
            }
            let m = load(&model, "cpu")?;
            let mut tok = if is_gguf(&model) {
                // The weights are worth converting even when the tokenizer cannot be rebuilt.
                match Tokenizer::from_dir(&model) {
                    Ok(tok) => Some(tok),
                    Err(e) => {
                        tracing::warn!("{e}\n\nthe weights are written without a tokenizer");
                        None
                    }
                }
            } else if model.join("tokenizer.json").is_file() {
                let tok = Tokenizer::from_dir(&model)?;
                tok.check_fits(m.config().vocab_size, &model)?;
                Some(tok)
            } else {
                None
            };
            let template = match (chat_template.as_deref(), tok.as_mut()) {
                (None, _) => None,
                (Some(spec), None) => {
                    return Err(BadInput(format!(
                        "`--chat-template {spec}`: `{}` has no tokenizer.json, and a chat template \
                         belongs to a tokenizer\n\nhint: copy the model's tokenizer.json (and \
                         tokenizer_config.json) into `{}` first",
                        model.display(),
                        model.display()
                    ))
                    .into());
                }
                (Some(spec), Some(tok)) => {
                    tok.set_chat_template(Some(chat_template_of(spec)?));
                    Some(spec)
                }
            };
            if to_gguf {
                to_gguf::save(&m, tok.as_ref(), &dest, kind)?;
            } else {
                checkpoint::save(&m, tok.as_ref(), &dest, force)?;
            }
            let with = match (&tok, template) {
                (None, _) => ", no tokenizer".to_string(),
                (Some(_), Some("plain")) => {
                    ", with its tokenizer and the plain chat template".into()
                }
                (Some(_), Some(file)) => {
                    format!(", with its tokenizer and the chat template of `{file}`")
                }
                (Some(t), None) if t.chat_template().is_some() => {
                    ", with its tokenizer and chat template".into()
                }
                (Some(_), None) => ", with its tokenizer (no chat template: add one with \
                                    `--chat-template plain`)"
                    .into(),
            };
            let stored = if to_gguf {
                format!("GGUF, {}", kind.as_str())
            } else {
                "f32".to_string()
            };
            out.say(format!(
                "Wrote `{}` ({} parameters, {} model, {stored}{with})",
                dest.display(),
                m.num_params(),
                m.config().model_type.as_str(),
            ));
            Ok(())
        }
    }
}

/// `--chat-template plain|FILE`: the workbench's plain template, or a Jinja file's.
fn chat_template_of(spec: &str) -> Result<ChatTemplate> {
    if spec == "plain" {
        return Ok(distill::recipe::plain_chat_template()?);
    }
    let path = Path::new(spec);
    if !path.is_file() {
        return Err(BadInput(format!(
            "`--chat-template {spec}`: no such file; give `plain` (the prompt as the workbench \
             trains on it) or the path of a Jinja chat template"
        ))
        .into());
    }
    let source = fs_err::read_to_string(path)?;
    // As transformers reads `chat_template.jinja`: text mode, so `\r\n` is `\n`.
    let source = source.replace("\r\n", "\n").replace('\r', "\n");
    Ok(ChatTemplate::new(source, Some(path.display().to_string()))?)
}

/// `--quantize auto|f32|q8_0|q4_0` of `serve`: what the decoder reads.
fn serve_weights(spec: &str, model: &Path, device: &str) -> Result<Option<QuantKind>> {
    Ok(match spec.to_ascii_lowercase().as_str() {
        "f32" => None,
        // Only the CPU decoder reads quantized weights; other devices compute in f32.
        "auto" if device != "cpu" => None,
        "q8_0" => Some(QuantKind::Q8_0),
        "q4_0" => Some(QuantKind::Q4_0),
        "auto" if is_gguf(model) => match distill::model::from_gguf::file_type(model)? {
            Some(7) => Some(QuantKind::Q8_0),
            Some(2) => Some(QuantKind::Q4_0),
            _ => None,
        },
        "auto" => None,
        other => {
            return Err(BadInput(format!(
                "`--quantize {other}`: expected auto, f32, q8_0 or q4_0"
            ))
            .into());
        }
    })
}

pub fn serve(out: &Output, args: ServeArgs) -> Result<()> {
    let weights = serve_weights(&args.quantize, &args.model, &args.device)?;
    let tok = tokenizer(&args.model)?;
    let mut model = load(&args.model, &args.device)?;
    if weights.is_some() && args.device != "cpu" {
        return Err(BadInput(format!(
            "`--quantize {}` runs on the CPU decoder; `--device {}` computes in f32\n\nhint: \
             leave out `--quantize` (or give `auto` or `f32`) on that device",
            args.quantize, args.device
        ))
        .into());
    }
    model.quantize(weights)?;
    tok.check_fits(model.config().vocab_size, &args.model)?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    if !args.addr.ip().is_loopback() {
        tracing::warn!(
            "serving on {}, which is not a loopback address: other machines can send prompts to this model",
            args.addr
        );
    }
    let timeout = match args.timeout_secs {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 => Some(std::time::Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(BadInput(format!(
                "`--timeout-secs {t}`: expected a positive number of seconds (leave it out for no \
                 limit)"
            ))
            .into());
        }
    };
    if tok.chat_template().is_none() {
        tracing::warn!(
            "`{}` has no chat template: /v1/chat/completions will answer 400 (use /v1/completions)\n\n\
             hint: give it one with `workbench model convert --model {} --out DIR --chat-template plain`",
            args.model.display(),
            args.model.display()
        );
    }
    let options = distill::serve::ServeOptions {
        addr: args.addr,
        model_name: name.clone(),
        max_tokens: args.max_tokens,
        max_body_bytes: args.max_body_kib << 10,
        timeout,
        model_dir: args.model.clone(),
    };
    let out = *out;
    let weights = match &model.quantized {
        Some(q) => format!(
            "{} weights, {:.1} MiB",
            match q.kind {
                QuantKind::Q8_0 => "Q8_0",
                QuantKind::Q4_0 => "Q4_0",
            },
            q.bytes() as f64 / (1 << 20) as f64
        ),
        None => "f32 weights".into(),
    };
    distill::serve::serve(model, tok, options, move |addr| {
        out.say(format!(
            "Serving `{name}` on http://{addr}/v1 ({weights}; Ctrl-C stops)"
        ));
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `auto` reads quantized weights only where the CPU decoder runs; an explicit type is kept
    /// on any device, for `serve` to refuse off the CPU.
    #[test]
    fn auto_weights_are_f32_off_the_cpu() {
        // The file is not read off the CPU: `auto` is f32 there whatever the file holds.
        let file = Path::new("missing.q8_0.gguf");
        assert_eq!(serve_weights("auto", file, "cuda:0").unwrap(), None);
        assert_eq!(serve_weights("AUTO", file, "wgpu").unwrap(), None);
        assert_eq!(
            serve_weights("auto", Path::new("dir"), "cpu").unwrap(),
            None
        );
        assert_eq!(
            serve_weights("q8_0", file, "cuda:0").unwrap(),
            Some(QuantKind::Q8_0)
        );
        assert_eq!(
            serve_weights("Q4_0", file, "cpu").unwrap(),
            Some(QuantKind::Q4_0)
        );
        assert_eq!(serve_weights("f32", file, "cpu").unwrap(), None);
        assert!(serve_weights("int3", file, "cpu").is_err());
    }
}
