//! The pieces every trained model of a run shares: its tokenizer, how a (prompt, completion) pair
//! becomes a training example, and exact match by greedy decoding.

use datasets::TopLogprob;
use datasets::config::Normalize;

use crate::Result;
use crate::data::chat::ChatTemplate;
use crate::data::tokenizer::{BpeSplit, SpecialTokens, Tokenizer};
use crate::generate::{self, GenerateOptions};
use crate::model::Model;
use crate::train::data::Example;

/// Eval prompts and their references.
#[derive(Debug, Clone, Default)]
pub struct EvalSet {
    /// Prompts.
    pub prompts: Vec<String>,
    /// References, one per prompt.
    pub references: Vec<String>,
    /// The slice of each prompt (`None`: the rest), for exact match by slice.
    pub slices: Vec<Option<String>>,
}

/// A seed from the run's seed and a label (stable across runs and machines).
pub fn seed_of(run_seed: u64, label: &str) -> u64 {
    let h = blake3::hash(format!("{run_seed}\0{label}").as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The one special token of tokenizers the workbench trains: beginning, end and padding.
pub const END: &str = "<|endoftext|>";

/// The chat template of the models the workbench trains: the conversation as the run formats a
/// training example, BOS, then each message's text as it is, an assistant turn closed by EOS;
/// the generation prompt adds nothing. A single user message renders to BOS and the prompt,
/// which encodes to exactly the ids the run trains on (see [`prompt_ids`]), so a chat client of
/// `workbench serve` asks the model what it learned to answer.
pub const PLAIN_CHAT_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}\
{{ message['content'] }}{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}\
{% endfor %}";

/// [`PLAIN_CHAT_TEMPLATE`], compiled.
pub fn plain_chat_template() -> Result<ChatTemplate> {
    ChatTemplate::new(PLAIN_CHAT_TEMPLATE, Some("the plain chat template".into()))
}

/// Trains the run's byte-level BPE on `texts` (`vocab_size` at most, split as `split` says:
/// [`BpeSplit::Digits`] unless asked), with [`END`] as BOS, EOS and padding and the
/// [`PLAIN_CHAT_TEMPLATE`]; encoding with special tokens starts with BOS.
pub fn train_tokenizer(texts: &[&str], vocab_size: usize, split: BpeSplit) -> Result<Tokenizer> {
    let mut tok = Tokenizer::train_bpe(texts.to_vec(), vocab_size, &[END], split)?;
    tok.set_special_tokens(SpecialTokens {
        bos: Some(END.into()),
        eos: Some(END.into()),
        pad: Some(END.into()),
        unk: None,
    });
    tok.add_bos_on_encode()?;
    tok.set_chat_template(Some(plain_chat_template()?));
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
                rejected: None,
                weights: None,
            })
        }
        _ => {
            ids.extend(tok.encode(completion, false)?);
            ids.extend(tok.eos_id());
            Ok(Example {
                ids,
                prompt_len,
                topk: None,
                rejected: None,
                weights: None,
            })
        }
    }
}

/// A preference pair as a training example: the prompt and the chosen answer (learned with
/// cross-entropy), the rejected answer beside it (for DPO), each ending with EOS.
pub fn pair_example(
    tok: &Tokenizer,
    prompt: &str,
    chosen: &str,
    rejected: &str,
) -> Result<Example> {
    let mut e = example(tok, prompt, chosen, None)?;
    let mut ids = tok.encode(rejected, false)?;
    ids.extend(tok.eos_id());
    e.rejected = Some(ids);
    Ok(e)
}

/// Greedy answers to `prompts`, `batch` at a time. A prompt that fills the model's positions
/// gets an empty answer; the others get at most as many new tokens as still fit.
pub fn answers(
    model: &Model,
    tok: &Tokenizer,
    prompts: &[String],
    max_new_tokens: usize,
    batch: usize,
) -> Result<Vec<String>> {
    Ok(answers_counted(model, tok, prompts, max_new_tokens, batch)?.answers)
}

/// What [`answers_counted`] gives.
pub struct Answered {
    /// One answer per prompt (empty for a prompt that fills the model's positions).
    pub answers: Vec<String>,
    /// Tokens generated in all.
    pub tokens: usize,
    /// Prompts that fill the model's positions, so they get no answer.
    pub too_long: usize,
}

/// [`answers`], how many tokens were generated in all, and how many prompts got no answer as
/// they fill the model's positions.
pub fn answers_counted(
    model: &Model,
    tok: &Tokenizer,
    prompts: &[String],
    max_new_tokens: usize,
    batch: usize,
) -> Result<Answered> {
    let options = GenerateOptions {
        max_new_tokens,
        temperature: 0.0,
        logprobs: 0,
        eos_ids: tok.eos_id().into_iter().collect(),
        ..Default::default()
    };
    let config = model.config();
    let limit = config
        .sliding_window
        .unwrap_or(usize::MAX)
        .min(config.max_position_embeddings);
    let mut out = vec![String::new(); prompts.len()];
    let mut tokens = 0;
    let mut too_long = 0;
    let mut start = 0;
    for chunk in prompts.chunks(batch.max(1)) {
        let ids = chunk
            .iter()
            .map(|p| prompt_ids(tok, p))
            .collect::<Result<Vec<_>>>()?;
        // A prompt that fills the model's positions gets no answer (an empty one, so it counts
        // as wrong); the others get as many new tokens as fit.
        let fits: Vec<usize> = (0..ids.len()).filter(|&i| ids[i].len() < limit).collect();
        too_long += ids.len() - fits.len();
        let longest = fits.iter().map(|&i| ids[i].len()).max().unwrap_or(0);
        if !fits.is_empty() {
            let options = GenerateOptions {
                max_new_tokens: max_new_tokens.min(limit - longest),
                ..options.clone()
            };
            let batch_ids: Vec<Vec<u32>> = fits.iter().map(|&i| ids[i].clone()).collect();
            for (g, &i) in generate::generate(model, &batch_ids, &options, None)?
                .into_iter()
                .zip(&fits)
            {
                tokens += g.ids.len();
                out[start + i] = tok.decode(&g.ids, true)?;
            }
        }
        start += chunk.len();
    }
    Ok(Answered {
        answers: out,
        tokens,
        too_long,
    })
}

/// The share of `answers` equal to `references` after the `normalize` steps.
pub fn exact_match(answers: &[String], references: &[String], normalize: &[Normalize]) -> f64 {
    if references.is_empty() {
        return 0.0;
    }
    let hits = answers
        .iter()
        .zip(references)
        .filter(|(a, r)| Normalize::apply(normalize, a) == Normalize::apply(normalize, r))
        .count();
    hits as f64 / references.len() as f64
}

#[cfg(test)]
mod tests {
    use datasets::Message;

    use super::*;

    fn run_tokenizer() -> Tokenizer {
        let texts = [
            "Normalise the date: 3rd of March 2021",
            "2021-03-03",
            "March 3, '21 → ISO",
            "Ünïcödé dates: 3 März 2021",
        ];
        train_tokenizer(&texts, 400, BpeSplit::Digits).unwrap()
    }

    /// The plain chat template must not change a single training id: a model trained before it
    /// existed and one trained after see the same tokens.
    #[test]
    fn the_plain_chat_template_leaves_training_ids_unchanged() {
        let with = run_tokenizer();
        assert!(with.chat_template().is_some());
        let mut without = with.clone();
        without.set_chat_template(None);
        let prompts = [
            "Normalise the date: 3rd of March 2021",
            " leading space",
            "  two spaces and digits 0123456789",
            "new\nlines\n\nand\ttabs",
            "Ünïcödé, emoji 👩‍🔬 and CJK 日付",
            "a literal <|endoftext|> inside",
            "",
            "trailing space ",
        ];
        for p in prompts {
            assert_eq!(
                prompt_ids(&with, p).unwrap(),
                prompt_ids(&without, p).unwrap(),
                "prompt {p:?}"
            );
            let a = example(&with, p, "2021-03-03", None).unwrap();
            let b = example(&without, p, "2021-03-03", None).unwrap();
            assert_eq!(
                (a.ids, a.prompt_len),
                (b.ids, b.prompt_len),
                "example {p:?}"
            );
        }
    }

    #[test]
    fn the_plain_chat_template_renders_turns_as_training_formats_them() {
        let tok = run_tokenizer();
        let one = tok
            .apply_chat_template(&[Message::new("user", "3 May 2001")], true)
            .unwrap();
        assert_eq!(one, format!("{END}3 May 2001"));
        let turns = [
            Message::new("user", "3 May 2001"),
            Message::new("assistant", "2001-05-03"),
            Message::new("user", "4 May 2001"),
        ];
        assert_eq!(
            tok.apply_chat_template(&turns, true).unwrap(),
            format!("{END}3 May 20012001-05-03{END}4 May 2001")
        );
        // It travels with the tokenizer, as transformers reads it.
        let dir = tempfile::tempdir().unwrap();
        tok.save_dir(dir.path()).unwrap();
        let loaded = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(
            loaded.chat_template().map(ChatTemplate::source),
            Some(PLAIN_CHAT_TEMPLATE)
        );
        let config = std::fs::read_to_string(dir.path().join("tokenizer_config.json")).unwrap();
        assert!(config.contains("\"chat_template\""), "{config}");
    }
}
