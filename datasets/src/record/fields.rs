//! One row's fields, before they become a record: the meeting point of the Arrow reader
//! ([`BatchFields`]) and the JSON/CSV reader ([`crate::import`]), so the rules below are written
//! once whatever the file format.
//!
//! The rules follow TRL's dataset formats: `prompt`, `completion`, `chosen` and `rejected` may be
//! plain text or conversations (`[{role, content}, ...]`); a `messages` conversation that ends
//! with the assistant carries its own answer; a prompt that is only given as messages is the last
//! user turn.

use arrow_array::{Array, RecordBatch, StringArray};

use super::{Message, PreferenceRow, Sample, SftRow, TopLogprob};
use crate::columns::{self, MessagesColumn, TextOrMessages, TopKColumn, U32ListColumn};
use crate::error::ColumnError;

/// Text, or a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum TextOrConv {
    /// Plain text.
    Text(String),
    /// A list of messages.
    Conv(Vec<Message>),
}

impl TextOrConv {
    /// The answer a value stands for: the text, or the assistant turns of a conversation joined.
    fn into_answer(self) -> String {
        match self {
            TextOrConv::Text(s) => s,
            TextOrConv::Conv(msgs) => {
                let assistant: Vec<&str> = msgs
                    .iter()
                    .filter(|m| m.role == "assistant")
                    .map(|m| m.content.as_str())
                    .collect();
                if assistant.is_empty() {
                    msgs.last().map(|m| m.content.clone()).unwrap_or_default()
                } else {
                    assistant.join("\n")
                }
            }
        }
    }
}

/// Everything a row may say, by our column names.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RowFields {
    pub id: Option<String>,
    pub prompt: Option<TextOrConv>,
    pub messages: Option<Vec<Message>>,
    pub completion: Option<TextOrConv>,
    /// Whether the source has a `completion` column at all (even if this row's is empty): only
    /// without one does a conversation's final assistant turn become the answer.
    pub has_completion_column: bool,
    pub completion_ids: Option<Vec<u32>>,
    pub teacher_topk: Option<Vec<Vec<TopLogprob>>>,
    pub teacher: Option<String>,
    pub logprob_mean: Option<f32>,
    pub entropy_mean: Option<f32>,
    pub disagreement: Option<f32>,
    pub reference: Option<String>,
    pub template: Option<String>,
    pub slice: Option<String>,
    pub seed: Option<u64>,
    pub created_at: Option<i64>,
    pub chosen: Option<TextOrConv>,
    pub rejected: Option<TextOrConv>,
    pub source: Option<String>,
}

fn last_user(messages: &[Message]) -> Option<String> {
    messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.clone())
}

impl RowFields {
    /// `(prompt text, messages before the answer, answer carried by the conversation)`.
    ///
    /// With `pop_answer`, a conversation's final assistant turn is taken off as the answer.
    fn prompt_parts(
        &mut self,
        pop_answer: bool,
    ) -> Result<(String, Vec<Message>, Option<String>), ColumnError> {
        let (text, mut messages) = match (self.prompt.take(), self.messages.take()) {
            (Some(TextOrConv::Text(p)), m) => (Some(p), m.unwrap_or_default()),
            (Some(TextOrConv::Conv(p)), Some(m)) => (last_user(&p), m),
            (Some(TextOrConv::Conv(p)), None) => (None, p),
            (None, Some(m)) => (None, m),
            (None, None) => {
                return Err(ColumnError::new(
                    "prompt",
                    "is missing (and there are no `messages`); every row needs a prompt",
                ));
            }
        };
        let answer = if pop_answer && messages.last().is_some_and(|m| m.role == "assistant") {
            messages.pop().map(|m| m.content)
        } else {
            None
        };
        let text = match text.or_else(|| last_user(&messages)) {
            Some(t) => t,
            None => {
                return Err(ColumnError::new(
                    "messages",
                    "has no user message to take the prompt from",
                ));
            }
        };
        if messages.is_empty() {
            messages.push(Message::new("user", text.clone()));
        }
        Ok((text, messages, answer))
    }

    /// A sample; the id is the content hash unless the row brought one.
    pub fn into_sample(mut self, now: i64) -> Result<Sample, ColumnError> {
        // Our samples keep the completion in its own column: only a source without one (a TRL
        // conversational set) carries the answer as the conversation's last turn.
        let (prompt, messages, answer) = self.prompt_parts(!self.has_completion_column)?;
        let mut sample = Sample {
            id: String::new(),
            prompt,
            messages,
            completion: self.completion.map(TextOrConv::into_answer).or(answer),
            completion_ids: self.completion_ids.unwrap_or_default(),
            teacher_topk: self.teacher_topk.unwrap_or_default(),
            teacher: self.teacher,
            logprob_mean: self.logprob_mean,
            entropy_mean: self.entropy_mean,
            disagreement: self.disagreement,
            reference: self.reference,
            template: self.template,
            slice: self.slice,
            seed: self.seed,
            created_at: self.created_at.unwrap_or(now),
        };
        if !sample.teacher_topk.is_empty()
            && !sample.completion_ids.is_empty()
            && sample.teacher_topk.len() != sample.completion_ids.len()
        {
            return Err(ColumnError::new(
                "teacher_topk",
                format!(
                    "has {} positions but `completion_ids` has {} tokens; expected one top-k list per completion token",
                    sample.teacher_topk.len(),
                    sample.completion_ids.len()
                ),
            ));
        }
        sample.id = match self.id {
            Some(id) if !id.is_empty() => id,
            _ => sample.content_id(),
        };
        Ok(sample)
    }

    /// An SFT row: the answer is `completion`, else the conversation's final assistant turn,
    /// else the `reference`.
    pub fn into_sft(mut self) -> Result<SftRow, ColumnError> {
        // SFT conversations end with the answer; `SftRow::new` appends it again.
        let (prompt, messages, answer) = self.prompt_parts(true)?;
        let completion = self
            .completion
            .map(TextOrConv::into_answer)
            .or(answer)
            .or(self.reference)
            .ok_or_else(|| {
                ColumnError::new(
                    "completion",
                    "is missing (no `completion`, final assistant message or `reference`); an SFT row needs an answer",
                )
            })?;
        Ok(SftRow::new(messages, prompt, completion, self.source))
    }

    /// A preference pair. Sets without a prompt column (HH-RLHF) keep the prompt inside
    /// `chosen` and `rejected`, and get an empty `prompt`.
    pub fn into_preference(mut self) -> Result<PreferenceRow, ColumnError> {
        let prompt = if self.prompt.is_some() || self.messages.is_some() {
            self.prompt_parts(false)?.0
        } else {
            String::new()
        };
        let chosen = self
            .chosen
            .take()
            .ok_or_else(|| {
                ColumnError::new(
                    "chosen",
                    "is missing; a preference pair needs `chosen` and `rejected`",
                )
            })?
            .into_answer();
        let rejected = self
            .rejected
            .take()
            .ok_or_else(|| {
                ColumnError::new(
                    "rejected",
                    "is missing; a preference pair needs `chosen` and `rejected`",
                )
            })?
            .into_answer();
        Ok(PreferenceRow::new(prompt, chosen, rejected, self.source))
    }
}

pub(crate) fn cell_text(a: &Option<StringArray>, i: usize) -> Option<String> {
    a.as_ref()
        .and_then(|a| a.is_valid(i).then(|| a.value(i).to_string()))
}

pub(crate) fn cell_value<T: arrow_array::ArrowPrimitiveType>(
    a: &Option<arrow_array::PrimitiveArray<T>>,
    i: usize,
) -> Option<T::Native> {
    a.as_ref().and_then(|a| a.is_valid(i).then(|| a.value(i)))
}

fn cell_text_or_conv(c: &Option<TextOrMessages>, i: usize) -> Option<TextOrConv> {
    match c.as_ref()? {
        TextOrMessages::Text(a) => a
            .is_valid(i)
            .then(|| TextOrConv::Text(a.value(i).to_string())),
        TextOrMessages::Messages(m) => m.is_valid(i).then(|| TextOrConv::Conv(m.get(i))),
    }
}

/// The columns of a batch, read once, from which [`RowFields`] are taken row by row.
pub struct BatchFields {
    rows: usize,
    id: Option<StringArray>,
    prompt: Option<TextOrMessages>,
    messages: Option<MessagesColumn>,
    completion: Option<TextOrMessages>,
    completion_ids: Option<U32ListColumn>,
    teacher_topk: Option<TopKColumn>,
    teacher: Option<StringArray>,
    logprob_mean: Option<arrow_array::Float32Array>,
    entropy_mean: Option<arrow_array::Float32Array>,
    disagreement: Option<arrow_array::Float32Array>,
    reference: Option<StringArray>,
    template: Option<StringArray>,
    slice: Option<StringArray>,
    seed: Option<arrow_array::UInt64Array>,
    created_at: Option<arrow_array::TimestampMicrosecondArray>,
    chosen: Option<TextOrMessages>,
    rejected: Option<TextOrMessages>,
    source: Option<StringArray>,
}

impl BatchFields {
    /// Reads every column the workbench knows; absent ones stay `None`.
    pub fn read(batch: &RecordBatch) -> Result<Self, ColumnError> {
        Ok(BatchFields {
            rows: batch.num_rows(),
            id: columns::text(batch, "id")?,
            prompt: TextOrMessages::read(batch, "prompt")?,
            messages: columns::messages(batch, "messages")?,
            completion: TextOrMessages::read(batch, "completion")?,
            completion_ids: columns::u32_lists(batch, "completion_ids")?,
            teacher_topk: columns::topk(batch, "teacher_topk")?,
            teacher: columns::text(batch, "teacher")?,
            logprob_mean: columns::f32s(batch, "logprob_mean")?,
            entropy_mean: columns::f32s(batch, "entropy_mean")?,
            disagreement: columns::f32s(batch, "disagreement")?,
            reference: columns::text(batch, "reference")?,
            template: columns::text(batch, "template")?,
            slice: columns::text(batch, "slice")?,
            seed: columns::u64s(batch, "seed")?,
            created_at: columns::timestamps(batch, "created_at")?,
            chosen: TextOrMessages::read(batch, "chosen")?,
            rejected: TextOrMessages::read(batch, "rejected")?,
            source: columns::text(batch, "source")?,
        })
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The fields of row `i`.
    pub fn row(&self, i: usize) -> RowFields {
        RowFields {
            id: cell_text(&self.id, i),
            prompt: cell_text_or_conv(&self.prompt, i),
            messages: self
                .messages
                .as_ref()
                .filter(|m| m.is_valid(i))
                .map(|m| m.get(i)),
            completion: cell_text_or_conv(&self.completion, i),
            has_completion_column: self.completion.is_some(),
            completion_ids: self.completion_ids.as_ref().map(|c| c.get(i).to_vec()),
            teacher_topk: self.teacher_topk.as_ref().map(|c| c.get(i)),
            teacher: cell_text(&self.teacher, i),
            logprob_mean: cell_value(&self.logprob_mean, i),
            entropy_mean: cell_value(&self.entropy_mean, i),
            disagreement: cell_value(&self.disagreement, i),
            reference: cell_text(&self.reference, i),
            template: cell_text(&self.template, i),
            slice: cell_text(&self.slice, i),
            seed: cell_value(&self.seed, i),
            created_at: cell_value(&self.created_at, i),
            chosen: cell_text_or_conv(&self.chosen, i),
            rejected: cell_text_or_conv(&self.rejected, i),
            source: cell_text(&self.source, i),
        }
    }
}

/// Adds `row {i}: ` to an error's message.
pub fn at_row(i: usize) -> impl Fn(ColumnError) -> ColumnError {
    move |mut e| {
        e.message = format!("row {i} {}", e.message);
        e
    }
}
