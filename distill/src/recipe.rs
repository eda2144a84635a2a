//! The pieces every trained model of a run shares: its tokenizer, how a (prompt, completion) pair
//! becomes a training example, and exact match by greedy decoding.

use datasets::TopLogprob;

use crate::Result;
use crate::data::tokenizer::{SpecialTokens, Tokenizer};
use crate::generate::{self, GenerateOptions};
use crate::model::Model;
use crate::train::data::Example;

/// The one special token of tokenizers the workbench trains: beginning, end and padding.
pub const END: &str = "<|endoftext|>";

/// Trains the run's byte-level BPE on `texts` (`vocab_size` at most), with [`END`] as BOS, EOS
/// and padding.
pub fn train_tokenizer(texts: &[&str], vocab_size: usize) -> Result<Tokenizer> {
    let mut tok = Tokenizer::train_bpe(texts.to_vec(), vocab_size, &[END])?;
    tok.set_special_tokens(SpecialTokens {
        bos: Some(END.into()),
        eos: Some(END.into()),
        pad: Some(END.into()),
        unk: None,
    });
    Ok(tok)
}

/// Prompt ids as generation sees them: through the chat template when the tokenizer has one,
/// else the text with the tokenizer's special tokens.
pub fn prompt_ids(tok: &Tokenizer, prompt: &str) -> Result<Vec<u32>> {
    if tok.chat_template().is_some() {
        let text = tok.apply_chat_template(&[datasets::Message::new("user", prompt)], true)?;
        tok.encode(&text, false)
    } else {
        let mut ids = tok.encode(prompt, true)?;
        if let Some(bos) = tok.bos_id()
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }
}

/// A training example: the prompt, then `completion` and EOS (or the teacher's own ids and
/// top-k when given).
pub fn example(
    tok: &Tokenizer,
    prompt: &str,
    completion: &str,
    teacher: Option<(&[u32], &[Vec<TopLogprob>])>,
) -> Result<Example> {
    let mut ids = prompt_ids(tok, prompt)?;
    let prompt_len = ids.len();
    match teacher {
        Some((cids, top)) if !cids.is_empty() => {
            ids.extend_from_slice(cids);
            Ok(Example {
                ids,
                prompt_len,
                topk: (!top.is_empty()).then(|| top.to_vec()),
            })
        }
        _ => {
            ids.extend(tok.encode(completion, false)?);
            ids.extend(tok.eos_id());
            Ok(Example {
                ids,
                prompt_len,
                topk: None,
            })
        }
    }
}

/// Greedy answers to `prompts`, `batch` at a time.
pub fn answers(
    model: &Model,
    tok: &Tokenizer,
    prompts: &[String],
    max_new_tokens: usize,
    batch: usize,
) -> Result<Vec<String>> {
    let options = GenerateOptions {
        max_new_tokens,
        temperature: 0.0,
        logprobs: 0,
        eos_ids: tok.eos_id().into_iter().collect(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch.max(1)) {
        let ids = chunk
            .iter()
            .map(|p| prompt_ids(tok, p))
            .collect::<Result<Vec<_>>>()?;
        for g in generate::generate(model, &ids, &options, None)? {
            out.push(tok.decode(&g.ids, true)?);
        }
    }
    Ok(out)
}

/// The share of `answers` equal to `references` after trimming whitespace.
pub fn exact_match(answers: &[String], references: &[String]) -> f64 {
    if references.is_empty() {
        return 0.0;
    }
    let hits = answers
        .iter()
        .zip(references)
        .filter(|(a, r)| a.trim() == r.trim())
        .count();
    hits as f64 / references.len() as f64
}
