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
//!   the end) with log-probability 0: the token the trainers' cross-entropy learns there too,
//!   since both learn the whole assistant turn as the template closes it.
//!
//! A row is exported only when the trainer's tokenization of the conversation holds the
//! teacher's answer ids right after the prompt as the template renders it for generation;
//! others are left out and counted, since their rows would teach the student the wrong tokens.
//! (The prompt ids the teacher saw are not stored, so a teacher that rendered the prompt with
//! another template goes unnoticed.)
//! Axolotl masks a row by the label at its own position, so it leaves out the teacher's
//! distribution for the answer's first token (at the last prompt position).
//!
//! **DistillKit** (offline, `prepacked: true`): conversations tokenized the same way are packed
//! into rows of `sequence_len` tokens (the last padded), with per position the same next-token
//! rows (`token_ids`, `top_values`: DistillKit's uncompressed layout) and `labels` holding the
//! assistant turn's tokens (the answer and what the template closes it with; -100 elsewhere).
//! DistillKit reads packed sets of at least two rows per split. It compares the row at `t` with the student's logits at
//! `t` where the label at `t` is not -100, as Axolotl does. Every column is numeric: DistillKit
//! stacks each one into a tensor.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::export::{ExportReport, is_run_dir, run_set, stored_kind};
use crate::import::Source;
use crate::jsonl::Mapping;
use crate::record::{KdAxolotlRow, KdDistillKitRow, Message, Sample, TopLogprob};
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
    /// DistillKit's offline datasets, packed into rows of `sequence_len` tokens.
    DistillKit {
        /// Tokens per row (DistillKit's `sequence_length`).
        sequence_len: usize,
    },
}

impl KdFormat {
    /// The set kind of this layout.
    pub fn kind(self) -> Kind {
        match self {
            KdFormat::Axolotl => Kind::KdAxolotl,
            KdFormat::DistillKit { .. } => Kind::KdDistillKit,
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
    /// The conversation is longer than a packed row.
    TooLong,
}

impl Misfit {
    fn describe(self) -> &'static str {
        match self {
            Misfit::NoCompletion => "without a completion",
            Misfit::NoLogprobs => "without one row of teacher logprobs per completion token",
            Misfit::Retokenized => {
                "whose conversation, tokenized with the chat template, does not give the teacher's tokens"
            }
            Misfit::TooLong => "longer than `--sequence-len` tokens",
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

/// A sample's conversation as the trainer tokenizes it, with the teacher's tokens found in it.
pub struct Aligned<'a> {
    sample: &'a Sample,
    /// The conversation, ending with the teacher's answer.
    pub messages: Vec<Message>,
    /// Its tokens: the prompt's, the answer's (the teacher's ids), what the template adds.
    pub chat: Vec<u32>,
    /// Where the answer starts in `chat`.
    pub answer_start: usize,
    /// The fewest top-k entries the teacher gave at any answer position.
    pub k: usize,
    eos: u32,
}

impl Aligned<'_> {
    /// Whether position `t` is in the assistant turn: the answer or what the template closes it
    /// with (the tokens trainers learn).
    pub fn is_turn(&self, t: usize) -> bool {
        t >= self.answer_start && t < self.chat.len()
    }

    /// Whether position `t` holds an answer token (one the teacher wrote).
    pub fn is_answer(&self, t: usize) -> bool {
        (self.answer_start..self.answer_start + self.sample.completion_ids.len()).contains(&t)
    }

    /// The row at position `t` (of `k` entries): the teacher's top-k for the token after `t`
    /// where the teacher wrote it, else certain of the next token (EOS after the end).
    pub fn row(&self, t: usize, k: usize) -> (Vec<f32>, Vec<i64>) {
        if self.is_answer(t + 1) {
            teacher_row(&self.sample.teacher_topk[t + 1 - self.answer_start], k)
        } else {
            certain_row(self.chat.get(t + 1).copied().unwrap_or(self.eos), k)
        }
    }
}

/// Tokenizes a sample's conversation as the trainer will and finds the teacher's tokens in it,
/// or says why they cannot be used.
pub fn align<'a>(
    s: &'a Sample,
    tok: &dyn ChatTokens,
) -> Result<std::result::Result<Aligned<'a>, Misfit>> {
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
                "Cannot tokenize the conversation of sample {}: {e}\n\nhint: the tokenizer's chat \
                 template (`--tokenizer`, else the run's teacher) must render a user message and \
                 an assistant answer; fix it, or pass a tokenizer whose template does",
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
    Ok(Ok(Aligned {
        sample: s,
        messages,
        chat,
        answer_start: p,
        k,
        eos: tok.eos_id(),
    }))
}

impl Aligned<'_> {
    /// The Axolotl row: rows from the last prompt position (none precedes an empty prompt) to
    /// the end of the conversation.
    pub fn axolotl_row(self) -> KdAxolotlRow {
        let (logprobs, target_token_ids) = (self.answer_start.saturating_sub(1)..self.chat.len())
            .map(|t| self.row(t, self.k))
            .unzip();
        KdAxolotlRow {
            id: self.sample.id.clone(),
            messages: self.messages,
            logprobs,
            target_token_ids,
        }
    }
}

/// The Axolotl row of one sample, or why it has none.
pub fn axolotl_row(
    s: &Sample,
    tok: &dyn ChatTokens,
) -> Result<std::result::Result<KdAxolotlRow, Misfit>> {
    Ok(align(s, tok)?.map(Aligned::axolotl_row))
}

/// Packs aligned conversations into DistillKit rows of `len` tokens, each row's entries `k`.
pub struct Packer {
    len: usize,
    k: usize,
    pad: u32,
    current: KdDistillKitRow,
    done: Vec<KdDistillKitRow>,
}

impl Packer {
    /// A packer of rows of `len` tokens with `k` entries per position, padded with `pad`.
    pub fn new(len: usize, k: usize, pad: u32) -> Self {
        Packer {
            len,
            k,
            pad,
            current: KdDistillKitRow::new(vec![], vec![], vec![], vec![], vec![]),
            done: Vec::new(),
        }
    }

    /// Adds a conversation (at most `len` tokens), starting a new row when it does not fit.
    pub fn push(&mut self, a: &Aligned) {
        debug_assert!(a.chat.len() <= self.len);
        if self.current.input_ids.len() + a.chat.len() > self.len {
            self.flush();
        }
        let r = &mut self.current;
        for (t, &id) in a.chat.iter().enumerate() {
            let (values, ids) = a.row(t, self.k);
            r.input_ids.push(i64::from(id));
            r.attention_mask.push(1);
            r.labels
                .push(if a.is_turn(t) { i64::from(id) } else { -100 });
            r.token_ids.push(ids);
            r.top_values.push(values);
        }
    }

    /// Pads the row being filled to `len` and closes it.
    pub fn flush(&mut self) {
        if self.current.input_ids.is_empty() {
            return;
        }
        let r = &mut self.current;
        let (values, ids) = certain_row(self.pad, self.k);
        while r.input_ids.len() < self.len {
            r.input_ids.push(i64::from(self.pad));
            r.attention_mask.push(0);
            r.labels.push(-100);
            r.token_ids.push(ids.clone());
            r.top_values.push(values.clone());
        }
        let r = std::mem::replace(
            &mut self.current,
            KdDistillKitRow::new(vec![], vec![], vec![], vec![], vec![]),
        );
        self.done.push(KdDistillKitRow::new(
            r.input_ids,
            r.attention_mask,
            r.labels,
            r.token_ids,
            r.top_values,
        ));
    }

    /// The rows closed so far.
    pub fn take(&mut self) -> Vec<KdDistillKitRow> {
        std::mem::take(&mut self.done)
    }
}

/// What a KD export holds, for its dataset card (the trainer's config in it).
#[derive(Debug, Clone, Copy, Default)]
pub struct KdStats {
    /// Tokens in the longest conversation exported.
    pub longest: usize,
    /// The fewest top-k entries at any position.
    pub k: usize,
}

/// Exports the samples of `input` (a sample set, a data file, or a run directory's synthetic
/// set) with their teacher logprobs in `format` at `out`; `card` gives the dataset card's
/// description from what was exported.
pub fn export_kd(
    input: &Path,
    format: KdFormat,
    out: &Path,
    options: SetOptions,
    tok: &dyn ChatTokens,
    card: &dyn Fn(&KdStats) -> String,
    progress: &mut dyn FnMut(u64),
) -> Result<ExportReport> {
    let path = if is_run_dir(input) {
        run_set(input, Kind::Sample)?
    } else {
        input.to_path_buf()
    };
    let source = Source::open(&path, Mapping::new())?;
    let found = match stored_kind(&source) {
        Some(kind) => kind,
        None => source.detect_kind()?,
    };
    if found != Kind::Sample {
        return Err(Error::invalid(format!(
            "`{}` holds {found} rows; a KD export needs samples with teacher logprobs (a run's `synthetic` set)",
            path.display()
        )));
    }
    let mut options = options;
    options
        .card
        .provenance
        .insert(0, ("exported from".into(), format!("`{}`", path.display())));
    let splits = options.splits.clone();
    let kind = format.kind();
    let mut writer = SetWriter::create(out, kind, options)?;
    let mut read = 0u64;
    let mut misfits: BTreeMap<Misfit, u64> = BTreeMap::new();
    let mut count_misfit = |why: Misfit| *misfits.entry(why).or_default() += 1;
    let mut stats = KdStats {
        longest: 0,
        k: usize::MAX,
    };
    match format {
        KdFormat::Axolotl => {
            source.for_each::<Sample>(1024, |rows| {
                read += rows.len() as u64;
                progress(read);
                let mut kept = Vec::with_capacity(rows.len());
                for s in &rows {
                    match align(s, tok)? {
                        Ok(a) => {
                            stats.longest = stats.longest.max(a.chat.len());
                            stats.k = stats.k.min(a.k);
                            kept.push(a.axolotl_row());
                        }
                        Err(why) => count_misfit(why),
                    }
                }
                writer.write(&kept)
            })?;
        }
        KdFormat::DistillKit { sequence_len } => {
            // Every position of every row has the same number of entries (DistillKit stacks
            // them into one tensor): the fewest the teacher gave in any conversation that fits.
            source.for_each::<Sample>(1024, |rows| {
                for s in &rows {
                    if let Ok(a) = align(s, tok)?
                        && a.chat.len() <= sequence_len
                    {
                        stats.k = stats.k.min(a.k);
                        stats.longest = stats.longest.max(a.chat.len());
                    }
                }
                Ok(())
            })?;
            // (No conversation fits: nothing is packed, and the export fails below.)
            let k = if stats.k == usize::MAX { 1 } else { stats.k };
            let mut packer = Packer::new(sequence_len, k, tok.eos_id());
            let mut per_split = vec![0u64; splits.names().len()];
            let mut write = |rows: Vec<KdDistillKitRow>| {
                for r in &rows {
                    per_split[splits.assign(&r.id)] += 1;
                }
                writer.write(&rows)
            };
            source.for_each::<Sample>(1024, |rows| {
                read += rows.len() as u64;
                progress(read);
                for s in &rows {
                    match align(s, tok)? {
                        Ok(a) if a.chat.len() <= sequence_len => packer.push(&a),
                        Ok(_) => count_misfit(Misfit::TooLong),
                        Err(why) => count_misfit(why),
                    }
                }
                write(packer.take())
            })?;
            packer.flush();
            write(packer.take())?;
            let names = splits.names();
            if let Some((name, n)) = names
                .iter()
                .zip(&per_split)
                .find(|(_, n)| **n < 2)
                .filter(|_| misfits.values().sum::<u64>() < read)
            {
                // Nothing is written: the set's temp folder goes when the writer drops.
                return Err(Error::invalid(format!(
                    "The conversations of `{}` pack into {} of {sequence_len} tokens in split \
                     `{name}`, and DistillKit reads a packed split of at least 2 rows\n\nhint: \
                     pack into shorter rows (`--sequence-len`; the longest conversation has {} \
                     tokens), or use fewer splits",
                    path.display(),
                    count(*n, "row"),
                    stats.longest,
                )));
            }
        }
    }
    let skipped: u64 = misfits.values().sum();
    let reasons = misfits
        .iter()
        .map(|(m, n)| format!("{} {}", count(*n, "sample"), m.describe()))
        .collect::<Vec<_>>()
        .join("; ");
    if skipped == read {
        // Nothing is written: the set's temp folder goes when the writer drops.
        return Err(Error::invalid(format!(
            "`{}` has no sample to export with teacher logprobs: of {}, {}\n\nhint: a KD export \
             needs the synthetic set of a run whose teacher returned logprobs \
             (`generate.top_logprobs` above 0), tokenized by the teacher's tokenizer \
             (`--tokenizer`){}",
            path.display(),
            count(read, "sample"),
            if reasons.is_empty() {
                "none is there".to_string()
            } else {
                reasons
            },
            if misfits.contains_key(&Misfit::TooLong) {
                ", in rows long enough for a conversation (`--sequence-len`)"
            } else {
                ""
            }
        )));
    }
    let skipped_reason = (skipped > 0).then_some(reasons);
    if let Some(reason) = &skipped_reason {
        writer
            .card_mut()
            .provenance
            .push(("rows left out".into(), reason.clone()));
    }
    writer.card_mut().description = card(&stats);
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

    /// Two conversations, `B a x B` (P = 2, answer `x B`) and `B c y z` (answer cut short: the
    /// template adds `B`), packed into rows of 10: both fit in one, then padding.
    #[test]
    fn distillkit_rows_pack_conversations_with_labels_on_the_answers() {
        let one = sample(
            "a",
            "x",
            "xB",
            vec![
                top(&[('x', -0.1), ('q', -2.5)]),
                top(&[('B', -0.2), ('x', -1.7)]),
            ],
        );
        let two = sample(
            "c",
            "yz",
            "yz",
            vec![
                top(&[('y', -0.3), ('z', -1.4), ('w', -5.0)]),
                top(&[('z', -0.4), ('y', -1.1)]),
            ],
        );
        let mut packer = Packer::new(10, 2, 'B' as u32);
        for s in [&one, &two] {
            packer.push(&align(s, &Chars).unwrap().unwrap());
        }
        packer.flush();
        let rows = packer.take();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        let text: String = r.input_ids.iter().map(|&i| i as u8 as char).collect();
        assert_eq!(text, "BaxBBcyzBB");
        assert_eq!(r.attention_mask, [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
        let id = |c: char| c as i64;
        assert_eq!(
            r.labels,
            [
                -100,
                -100,
                id('x'),
                id('B'),
                -100,
                -100,
                id('y'),
                id('z'),
                id('B'),
                -100
            ]
        );
        let first = |t: usize| (r.token_ids[t][0], r.top_values[t][0]);
        // Position 1 (`a`) predicts `x`, position 2 predicts `B`: the teacher's rows.
        assert_eq!(r.token_ids[1], vec![id('x'), id('q')]);
        assert_eq!(first(2), (id('B'), -0.2));
        // After the first conversation's EOS: certain of EOS (the conversation ended).
        assert_eq!(first(3), (id('B'), 0.0));
        assert_eq!(r.token_ids[5], vec![id('y'), id('z')], "k = 2 of 3");
        assert_eq!(first(6), (id('z'), -0.4));
        // `z` predicts the template's EOS, which the teacher did not grade.
        assert_eq!(first(7), (id('B'), 0.0));
        assert_eq!(r.token_ids[9], vec![id('B'), 0], "padding");
        // A third conversation that does not fit starts a new row.
        packer.push(&align(&one, &Chars).unwrap().unwrap());
        packer.push(&align(&two, &Chars).unwrap().unwrap());
        packer.push(&align(&one, &Chars).unwrap().unwrap());
        packer.flush();
        assert_eq!(packer.take().len(), 2);
    }
}
