//! `workbench datasets export --kind kd`: the synthetic set's teacher logprobs in the layout a
//! distributed trainer reads as precomputed teacher logits.
//!
//! **Axolotl** (`type: axolotl.integrations.kd.chat_template`): each row holds the conversation
//! ending with the teacher's answer (`messages`) and lists of top-k `logprobs` and
//! `target_token_ids`. Axolotl tokenizes the conversation with the trainer's chat template and
//! lays the lists against the *end* of it, one per position; its KD loss compares the row at
//! position `t` with the student's logits at `t`, which predict the token at `t + 1`. So the row
//! at `t` here is the teacher's distribution over the token after `t`:
//!
//! - from the last prompt position through the answer's second-to-last token, the teacher's
//!   own top-k for the next answer token;
//! - at positions whose next token the teacher did not grade (what the chat template adds after
//!   the answer, and the last position, which has no next token) the token that follows (EOS at
//!   the end) with log-probability 0, as the cross-entropy label would have it.
//!
//! A row is exported only when the trainer's tokenization of the conversation reproduces the
//! teacher's tokens where the rows place them (the prompt's tokens, then the answer's ids);
//! others are left out and counted, since their rows would teach the student the wrong tokens.
//! Axolotl masks a row by the label at its own position, so it leaves out the teacher's
//! distribution for the answer's first token (at the last prompt position).

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::export::{ExportReport, is_run_dir, run_set};
use crate::import::Source;
use crate::jsonl::Mapping;
use crate::record::{KdAxolotlRow, Message, Sample, TopLogprob};
use crate::schema::Kind;
use crate::set::{SetOptions, SetWriter};
use crate::text::count;

/// The lowest log-probability written: trainers exponentiate these in float32, where
/// `exp(-80)` is still a normal number and anything below about -103 is 0, whose logarithm
/// (taken again after renormalising) makes the loss NaN.
pub const LOGPROB_FLOOR: f32 = -80.0;

/// The layouts `--kind kd` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdFormat {
    /// Axolotl's `axolotl.integrations.kd.chat_template` datasets.
    Axolotl,
}

impl KdFormat {
    /// The set kind of this layout.
    pub fn kind(self) -> Kind {
        match self {
            KdFormat::Axolotl => Kind::KdAxolotl,
        }
    }
}

/// The trainer's tokenization of a conversation: its chat template and tokenizer.
pub trait ChatTokens {
    /// The ids of `messages` rendered by the chat template (with the generation prompt when
    /// asked), encoded without adding special tokens, as transformers'
    /// `apply_chat_template(messages, tokenize=True)` gives them.
    fn chat_ids(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> std::result::Result<Vec<u32>, String>;
    /// The end-of-sequence id.
    fn eos_id(&self) -> u32;
}

/// Why a sample gives no KD row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    /// No completion.
    NoCompletion,
    /// No teacher logprobs, or not one row per completion token.
    NoLogprobs,
    /// The conversation does not tokenize to the teacher's prompt and answer tokens.
    Retokenized,
}

impl Misfit {
    fn describe(self) -> &'static str {
        match self {
            Misfit::NoCompletion => "without a completion",
            Misfit::NoLogprobs => "without one row of teacher logprobs per completion token",
            Misfit::Retokenized => {
                "whose conversation, tokenized with the chat template, does not give the teacher's tokens"
            }
        }
    }
}

/// The conversation of a sample: its messages (or its prompt as one user message).
fn prompt_messages(s: &Sample) -> Vec<Message> {
    if s.messages.is_empty() {
        vec![Message::new("user", s.prompt.clone())]
    } else {
        s.messages.clone()
    }
}

/// A top-k row truncated to `k`, highest first, floored at [`LOGPROB_FLOOR`].
fn teacher_row(top: &[TopLogprob], k: usize) -> (Vec<f32>, Vec<i64>) {
    let mut top = top.to_vec();
    top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
    top.truncate(k);
    (
        top.iter().map(|t| t.logprob.max(LOGPROB_FLOOR)).collect(),
        top.iter().map(|t| i64::from(t.id)).collect(),
    )
}

/// A row certain of `token`: log-probability 0 for it, the floor for `k - 1` other ids.
fn certain_row(token: u32, k: usize) -> (Vec<f32>, Vec<i64>) {
    let mut ids = vec![i64::from(token)];
    ids.extend((0..k as i64).filter(|&i| i != i64::from(token)).take(k - 1));
    let mut logprobs = vec![0.0];
    logprobs.resize(k, LOGPROB_FLOOR);
    (logprobs, ids)
}

/// The Axolotl row of one sample, or why it has none.
pub fn axolotl_row(
    s: &Sample,
    tok: &dyn ChatTokens,
) -> Result<std::result::Result<KdAxolotlRow, Misfit>> {
    let Some(completion) = &s.completion else {
        return Ok(Err(Misfit::NoCompletion));
    };
    let n = s.completion_ids.len();
    let k = s.teacher_topk.iter().map(Vec::len).min().unwrap_or(0);
    if n == 0 || s.teacher_topk.len() != n || k == 0 {
        return Ok(Err(Misfit::NoLogprobs));
    }
    let tokenize = |messages: &[Message], generation: bool| {
        tok.chat_ids(messages, generation).map_err(|e| {
            Error::invalid(format!(
                "Cannot tokenize the conversation of sample {}: {e}",
                s.id
            ))
        })
    };
    let mut messages = prompt_messages(s);
    let prompt = tokenize(&messages, true)?;
    messages.push(Message::new("assistant", completion.clone()));
    let chat = tokenize(&messages, false)?;
    let p = prompt.len();
    if !chat.starts_with(&prompt) || !chat[p..].starts_with(&s.completion_ids) {
        return Ok(Err(Misfit::Retokenized));
    }
    let mut logprobs = Vec::with_capacity(chat.len() + 1 - p);
    let mut target_token_ids = Vec::with_capacity(logprobs.capacity());
    // With an empty prompt no position precedes the first answer token.
    for t in p.saturating_sub(1)..chat.len() {
        let next = t + 1;
        let (l, ids) = if next >= p && next < p + n {
            teacher_row(&s.teacher_topk[next - p], k)
        } else {
            certain_row(chat.get(next).copied().unwrap_or(tok.eos_id()), k)
        };
        logprobs.push(l);
        target_token_ids.push(ids);
    }
    Ok(Ok(KdAxolotlRow {
        id: s.id.clone(),
        messages,
        logprobs,
        target_token_ids,
    }))
}

/// Exports the samples of `input` (a sample set, a data file, or a run directory's synthetic
/// set) with their teacher logprobs in `format` at `out`.
pub fn export_kd(
    input: &Path,
    format: KdFormat,
    out: &Path,
    options: SetOptions,
    tok: &dyn ChatTokens,
    progress: &mut dyn FnMut(u64),
) -> Result<ExportReport> {
    let path = if is_run_dir(input) {
        run_set(input, Kind::Sample)?
    } else {
        input.to_path_buf()
    };
    let source = Source::open(&path, Mapping::new())?;
    if source.detect_kind()? == Kind::Preference {
        return Err(Error::invalid(format!(
            "`{}` holds preference pairs; a KD export needs samples with teacher logprobs (a run's `synthetic` set)",
            path.display()
        )));
    }
    let mut options = options;
    options
        .card
        .provenance
        .insert(0, ("exported from".into(), format!("`{}`", path.display())));
    let kind = format.kind();
    let mut writer = SetWriter::create(out, kind, options)?;
    let mut read = 0u64;
    let mut misfits: BTreeMap<Misfit, u64> = BTreeMap::new();
    source.for_each::<Sample>(1024, |rows| {
        read += rows.len() as u64;
        progress(read);
        let mut kept = Vec::with_capacity(rows.len());
        for s in &rows {
            match axolotl_row(s, tok)? {
                Ok(row) => kept.push(row),
                Err(why) => *misfits.entry(why).or_default() += 1,
            }
        }
        writer.write(&kept)
    })?;
    let skipped: u64 = misfits.values().sum();
    if skipped == read {
        // Nothing is written: the set's temp folder goes when the writer drops.
        let why = misfits
            .keys()
            .next()
            .map(|m| m.describe())
            .unwrap_or("in it");
        return Err(Error::invalid(format!(
            "`{}` has no sample to export with teacher logprobs: all {} are {why}\n\nhint: a KD export needs the synthetic set of a run whose teacher returned logprobs (`generate.top_logprobs` above 0), tokenized by the teacher's tokenizer (`--tokenizer`)",
            path.display(),
            count(read, "sample"),
        )));
    }
    let skipped_reason = (skipped > 0).then(|| {
        misfits
            .iter()
            .map(|(m, n)| format!("{} {}", count(*n, "sample"), m.describe()))
            .collect::<Vec<_>>()
            .join("; ")
    });
    if let Some(reason) = &skipped_reason {
        writer
            .card_mut()
            .provenance
            .push(("rows left out".into(), reason.clone()));
    }
    let set = writer.finish()?;
    Ok(ExportReport {
        source: path,
        kind,
        rows_read: read,
        skipped,
        skipped_reason,
        set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Characters as tokens: `B` is BOS and EOS; the template renders BOS, each message's text,
    /// and EOS after an assistant turn (the plain template of the models the workbench trains).
    struct Chars;

    impl ChatTokens for Chars {
        fn chat_ids(&self, messages: &[Message], _: bool) -> std::result::Result<Vec<u32>, String> {
            let mut text = String::from("B");
            for m in messages {
                text.push_str(&m.content);
                if m.role == "assistant" {
                    text.push('B');
                }
            }
            Ok(text.chars().map(|c| c as u32).collect())
        }

        fn eos_id(&self) -> u32 {
            'B' as u32
        }
    }

    fn top(pairs: &[(char, f32)]) -> Vec<TopLogprob> {
        pairs
            .iter()
            .map(|&(c, logprob)| TopLogprob {
                id: c as u32,
                logprob,
            })
            .collect()
    }

    fn sample(prompt: &str, completion: &str, ids: &str, topk: Vec<Vec<TopLogprob>>) -> Sample {
        let mut s = Sample::from_prompt(prompt);
        s.messages = vec![Message::new("user", prompt)];
        s.completion = Some(completion.into());
        s.completion_ids = ids.chars().map(|c| c as u32).collect();
        s.teacher_topk = topk;
        s
    }

    /// Chat `B a b x y B`: the prompt is `B a b` (P = 3), the answer `x y B` (the teacher
    /// stopped with EOS). Rows run from the last prompt position (2) to the end (5): positions
    /// 2, 3 and 4 hold the teacher's rows for `x`, `y` and `B`; position 5 has no next token.
    #[test]
    fn rows_are_the_teachers_next_token_distributions_right_aligned_to_the_chat() {
        let s = sample(
            "ab",
            "xy",
            "xyB",
            vec![
                top(&[('q', -2.0), ('x', -0.1)]),
                top(&[('y', -0.2), ('z', -1.9), ('w', -3.0)]),
                top(&[('B', -0.01), ('y', -200.0)]),
            ],
        );
        let row = axolotl_row(&s, &Chars).unwrap().unwrap();
        assert_eq!(
            row.messages,
            vec![Message::new("user", "ab"), Message::new("assistant", "xy")]
        );
        let id = |c: char| c as i64;
        assert_eq!(row.logprobs.len(), 4, "chat length 6 - P 3 + 1");
        assert_eq!(row.target_token_ids[0], vec![id('x'), id('q')], "sorted");
        assert_eq!(row.logprobs[0], vec![-0.1, -2.0]);
        assert_eq!(row.target_token_ids[1], vec![id('y'), id('z')], "k = 2");
        assert_eq!(row.logprobs[2], vec![-0.01, LOGPROB_FLOOR], "floored");
        assert_eq!(
            row.target_token_ids[3],
            vec![id('B'), 0],
            "EOS after the end"
        );
        assert_eq!(row.logprobs[3], vec![0.0, LOGPROB_FLOOR]);
    }

    /// An answer cut short (no EOS): the template's EOS after it was not graded by the
    /// teacher, so the row predicting it is certain of it.
    #[test]
    fn what_the_template_adds_after_the_answer_gets_certain_rows() {
        let s = sample(
            "a",
            "xy",
            "xy",
            vec![
                top(&[('x', -0.5), ('y', -1.0)]),
                top(&[('y', -0.3), ('x', -2.0)]),
            ],
        );
        let row = axolotl_row(&s, &Chars).unwrap().unwrap();
        // Chat `B a x y B`, P = 2: positions 1..=4.
        assert_eq!(row.logprobs.len(), 4);
        assert_eq!(row.target_token_ids[1][0], 'y' as i64);
        assert_eq!(row.target_token_ids[2], vec!['B' as i64, 0]);
        assert_eq!(row.target_token_ids[3], vec!['B' as i64, 0]);
    }

    #[test]
    fn a_conversation_that_does_not_tokenize_to_the_teachers_tokens_is_left_out() {
        let topk = vec![top(&[('x', -0.5)]), top(&[('B', -0.1)])];
        let s = sample("a", "xy", "zB", topk.clone());
        assert_eq!(axolotl_row(&s, &Chars).unwrap(), Err(Misfit::Retokenized));
        let mut s = sample("a", "x", "xB", topk[..1].to_vec());
        assert_eq!(axolotl_row(&s, &Chars).unwrap(), Err(Misfit::NoLogprobs));
        s.completion = None;
        assert_eq!(axolotl_row(&s, &Chars).unwrap(), Err(Misfit::NoCompletion));
    }
}
