//! Typed records for every schema in [`crate::schema`], and their conversion to and from Arrow.
//!
//! Writing builds each column's buffers directly (no per-value builders), so a batch of samples
//! with thousands of top-k entries per row costs a few memcpys. Reading goes through the lenient
//! readers in [`crate::columns`], so files written by other tools convert too.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float32Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray, UInt8Array, UInt32Array, UInt64Array,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::columns;

mod fields;
mod kd;
use crate::error::{ColumnError, Error, Result};
use crate::schema::{self, Kind};
pub use fields::{BatchFields, RowFields, TextOrConv};
use fields::{at_row, cell_text, cell_value};
pub use kd::{KdAxolotlRow, KdDistillKitRow};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or any role the template knows.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// One of the teacher's top-k tokens at one position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// Token id in the teacher's vocabulary.
    pub id: u32,
    /// Natural-log probability.
    pub logprob: f32,
}

/// A prompt with (optionally) the teacher's completion: one row of a synthetic set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Stable content hash of prompt, messages and completion ([`Sample::content_id`]).
    pub id: String,
    /// The prompt as text.
    pub prompt: String,
    /// The conversation before the completion (the prompt as a user turn, at least).
    pub messages: Vec<Message>,
    /// The teacher's completion; `None` for prompts not yet answered.
    pub completion: Option<String>,
    /// Token ids of the completion, in the teacher's vocabulary.
    pub completion_ids: Vec<u32>,
    /// Per completion token, the teacher's top-k (id, logprob).
    pub teacher_topk: Vec<Vec<TopLogprob>>,
    /// Which teacher wrote the completion.
    pub teacher: Option<String>,
    /// Mean logprob of the sampled tokens.
    pub logprob_mean: Option<f32>,
    /// Mean entropy of the teacher's distribution over the completion.
    pub entropy_mean: Option<f32>,
    /// How far the student is from the teacher on this completion (mean forward KL per token on
    /// the teacher's top-k, both renormalised, in nats); the review queue sorts on it. `None`
    /// without a student.
    pub disagreement: Option<f32>,
    /// A gold answer, when one exists.
    pub reference: Option<String>,
    /// The template the prompt was rendered with.
    pub template: Option<String>,
    /// The slice of the task the row belongs to (`en-GB`, say), for metrics by slice; `None`
    /// for the rest.
    pub slice: Option<String>,
    /// The sampling seed.
    pub seed: Option<u64>,
    /// Microseconds since the Unix epoch, UTC.
    pub created_at: i64,
}

impl Sample {
    /// A prompt with nothing else: the prompt as the single user message, a content id.
    pub fn from_prompt(prompt: impl Into<String>) -> Sample {
        let prompt = prompt.into();
        let messages = vec![Message::new("user", prompt.clone())];
        let mut sample = Sample {
            id: String::new(),
            prompt,
            messages,
            completion: None,
            completion_ids: Vec::new(),
            teacher_topk: Vec::new(),
            teacher: None,
            logprob_mean: None,
            entropy_mean: None,
            disagreement: None,
            reference: None,
            template: None,
            slice: None,
            seed: None,
            created_at: now_micros(),
        };
        sample.id = sample.content_id();
        sample
    }

    /// The content hash this sample's `id` should have: prompt, messages and completion.
    pub fn content_id(&self) -> String {
        let mut h = IdHasher::new("sample");
        h.part(&self.prompt);
        for m in &self.messages {
            h.part(&m.role);
            h.part(&m.content);
        }
        h.opt(self.completion.as_deref());
        h.finish()
    }
}

/// An expert's decision on an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The output is right as it is.
    Accept,
    /// The output is wrong.
    Reject,
    /// The expert corrected the output.
    Edit,
    /// No decision; come back later.
    Skip,
}

impl Decision {
    /// The name stored in the `decision` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Reject => "reject",
            Decision::Edit => "edit",
            Decision::Skip => "skip",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "accept" => Some(Decision::Accept),
            "reject" => Some(Decision::Reject),
            "edit" => Some(Decision::Edit),
            "skip" => Some(Decision::Skip),
            _ => None,
        }
    }
}

/// Which of two candidates an expert preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Preference {
    /// The first candidate.
    A,
    /// The second candidate.
    B,
    /// Neither is better.
    #[serde(rename = "tie")]
    Tie,
}

impl Preference {
    /// The name stored in the `preference` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Preference::A => "A",
            Preference::B => "B",
            Preference::Tie => "tie",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Preference> {
        match s {
            "A" | "a" => Some(Preference::A),
            "B" | "b" => Some(Preference::B),
            "tie" => Some(Preference::Tie),
            _ => None,
        }
    }
}

/// One expert decision on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// The `id` of the item decided on.
    pub item_id: String,
    /// Who decided.
    pub annotator: String,
    /// What they decided.
    pub decision: Decision,
    /// 1 to 5, when rated.
    pub rating: Option<u8>,
    /// The corrected output, for `edit`.
    pub corrected: Option<String>,
    /// A/B preference, when two candidates were shown.
    pub preference: Option<Preference>,
    /// Free labels.
    pub labels: Vec<String>,
    /// A free comment.
    pub comment: Option<String>,
    /// Time spent on the item.
    pub duration_ms: u64,
    /// Microseconds since the Unix epoch, UTC.
    pub created_at: i64,
}

/// One supervised fine-tuning row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftRow {
    /// Content hash of the conversation.
    pub id: String,
    /// The whole conversation, ending with the assistant's answer.
    pub messages: Vec<Message>,
    /// The prompt as text.
    pub prompt: String,
    /// The answer as text.
    pub completion: String,
    /// Where the answer came from (`accepted`, `corrected`, `teacher`, `reference`, ...).
    pub source: Option<String>,
}

impl SftRow {
    /// A row from a conversation and its answer, with its content id.
    pub fn new(
        prompt_messages: Vec<Message>,
        prompt: String,
        completion: String,
        source: Option<String>,
    ) -> SftRow {
        let mut messages = prompt_messages;
        messages.push(Message::new("assistant", completion.clone()));
        let mut h = IdHasher::new("sft");
        for m in &messages {
            h.part(&m.role);
            h.part(&m.content);
        }
        SftRow {
            id: h.finish(),
            messages,
            prompt,
            completion,
            source,
        }
    }
}

/// One preference pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferenceRow {
    /// Content hash of prompt, chosen and rejected.
    pub id: String,
    /// The prompt.
    pub prompt: String,
    /// The better answer.
    pub chosen: String,
    /// The worse answer.
    pub rejected: String,
    /// Where the pair came from.
    pub source: Option<String>,
}

impl PreferenceRow {
    /// A pair with its content id.
    pub fn new(prompt: String, chosen: String, rejected: String, source: Option<String>) -> Self {
        let mut h = IdHasher::new("preference");
        h.part(&prompt);
        h.part(&chosen);
        h.part(&rejected);
        PreferenceRow {
            id: h.finish(),
            prompt,
            chosen,
            rejected,
            source,
        }
    }
}

/// A typed row of one of the workbench's schemas.
pub trait Record: Sized {
    /// Which schema.
    const KIND: Kind;
    /// The row's stable id.
    fn id(&self) -> &str;
    /// Rows to one batch of [`Kind::schema`].
    fn to_batch(rows: &[Self]) -> Result<RecordBatch>;
    /// A batch (ours, or any with compatible columns) to rows.
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ColumnError>;
    /// The schema of [`Record::to_batch`].
    fn schema() -> SchemaRef {
        Self::KIND.schema()
    }
}

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Stable content ids: BLAKE3 over length-prefixed parts, 128 bits in hex.
pub struct IdHasher(blake3::Hasher);

impl IdHasher {
    /// Starts an id in a namespace, so a sample and an SFT row with the same text differ.
    pub fn new(namespace: &str) -> Self {
        let mut h = IdHasher(blake3::Hasher::new());
        h.part(namespace);
        h
    }

    /// Adds one part.
    pub fn part(&mut self, s: &str) {
        self.0.update(&(s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
    }

    /// Adds an optional part (`None` differs from `Some("")`).
    pub fn opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.0.update(&[1]);
                self.part(s);
            }
            None => {
                self.0.update(&[0]);
            }
        }
    }

    /// The id.
    pub fn finish(self) -> String {
        let hash = self.0.finalize();
        hash.as_bytes()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Building columns.

fn offsets_from_lengths(
    lengths: impl Iterator<Item = usize>,
    what: &str,
) -> Result<OffsetBuffer<i32>> {
    let mut offsets = Vec::with_capacity(lengths.size_hint().0 + 1);
    let mut total: usize = 0;
    offsets.push(0i32);
    for len in lengths {
        total += len;
        offsets.push(i32::try_from(total).map_err(|_| {
            Error::invalid(format!(
                "A batch holds more than 2^31 {what}; write fewer rows per batch"
            ))
        })?);
    }
    Ok(OffsetBuffer::new(ScalarBuffer::from(offsets)))
}

fn string_column<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn opt_string_column<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn field_of(schema: &SchemaRef, name: &str) -> Arc<Field> {
    let (_, field) = schema
        .column_with_name(name)
        .unwrap_or_else(|| panic!("schema has column {name}"));
    Arc::new(field.clone())
}

fn list_child(dt: &DataType) -> Arc<Field> {
    match dt {
        DataType::List(f) => f.clone(),
        other => panic!("{other} is a list type"),
    }
}

fn messages_column<'a>(
    schema: &SchemaRef,
    name: &str,
    rows: impl Iterator<Item = &'a [Message]> + Clone,
) -> Result<ArrayRef> {
    let offsets = offsets_from_lengths(rows.clone().map(|m| m.len()), "messages")?;
    let all = || rows.clone().flatten();
    let roles = string_column(all().map(|m| m.role.as_str()));
    let contents = string_column(all().map(|m| m.content.as_str()));
    let values = StructArray::new(schema::message_fields(), vec![roles, contents], None);
    let field = list_child(field_of(schema, name).data_type());
    Ok(Arc::new(ListArray::new(
        field,
        offsets,
        Arc::new(values),
        None,
    )))
}

fn timestamp_column(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, columns)
        .map_err(|e| Error::arrow("Failed to assemble a record batch", e))
}

// ---------------------------------------------------------------------------------------------

impl Record for Sample {
    const KIND: Kind = Kind::Sample;

    fn id(&self) -> &str {
        &self.id
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        let schema = Self::schema();
        let ids: ArrayRef = {
            let offsets =
                offsets_from_lengths(rows.iter().map(|r| r.completion_ids.len()), "token ids")?;
            let values: Vec<u32> = rows
                .iter()
                .flat_map(|r| r.completion_ids.iter().copied())
                .collect();
            let field = list_child(field_of(&schema, "completion_ids").data_type());
            Arc::new(ListArray::new(
                field,
                offsets,
                Arc::new(UInt32Array::from(values)),
                None,
            ))
        };
        let topk: ArrayRef = {
            let outer =
                offsets_from_lengths(rows.iter().map(|r| r.teacher_topk.len()), "token positions")?;
            let inner = offsets_from_lengths(
                rows.iter()
                    .flat_map(|r| r.teacher_topk.iter().map(|t| t.len())),
                "top-k entries",
            )?;
            let total = inner.last() as usize;
            let mut tok = Vec::with_capacity(total);
            let mut lp = Vec::with_capacity(total);
            for entry in rows.iter().flat_map(|r| r.teacher_topk.iter().flatten()) {
                tok.push(entry.id);
                lp.push(entry.logprob);
            }
            let structs = StructArray::new(
                schema::top_logprob_fields(),
                vec![
                    Arc::new(UInt32Array::from(tok)),
                    Arc::new(Float32Array::from(lp)),
                ],
                None,
            );
            let outer_field = list_child(field_of(&schema, "teacher_topk").data_type());
            let inner_field = list_child(outer_field.data_type());
            let inner_list = ListArray::new(inner_field, inner, Arc::new(structs), None);
            Arc::new(ListArray::new(
                outer_field,
                outer,
                Arc::new(inner_list),
                None,
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            string_column(rows.iter().map(|r| r.id.as_str())),
            string_column(rows.iter().map(|r| r.prompt.as_str())),
            messages_column(
                &schema,
                "messages",
                rows.iter().map(|r| r.messages.as_slice()),
            )?,
            opt_string_column(rows.iter().map(|r| r.completion.as_deref())),
            ids,
            topk,
            opt_string_column(rows.iter().map(|r| r.teacher.as_deref())),
            Arc::new(Float32Array::from_iter(rows.iter().map(|r| r.logprob_mean))),
            Arc::new(Float32Array::from_iter(rows.iter().map(|r| r.entropy_mean))),
            Arc::new(Float32Array::from_iter(rows.iter().map(|r| r.disagreement))),
            opt_string_column(rows.iter().map(|r| r.reference.as_deref())),
            opt_string_column(rows.iter().map(|r| r.template.as_deref())),
            opt_string_column(rows.iter().map(|r| r.slice.as_deref())),
            Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.seed))),
            timestamp_column(rows.iter().map(|r| r.created_at)),
        ];
        batch(schema, columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ColumnError> {
        let fields = BatchFields::read(batch)?;
        let now = now_micros();
        (0..fields.len())
            .map(|i| fields.row(i).into_sample(now).map_err(at_row(i)))
            .collect()
    }
}

impl Record for Annotation {
    const KIND: Kind = Kind::Annotation;

    fn id(&self) -> &str {
        &self.item_id
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        let schema = Self::schema();
        let labels: ArrayRef = {
            let offsets = offsets_from_lengths(rows.iter().map(|r| r.labels.len()), "labels")?;
            let values = string_column(
                rows.iter()
                    .flat_map(|r| r.labels.iter().map(String::as_str)),
            );
            let field = list_child(field_of(&schema, "labels").data_type());
            Arc::new(ListArray::new(field, offsets, values, None))
        };
        let columns: Vec<ArrayRef> = vec![
            string_column(rows.iter().map(|r| r.item_id.as_str())),
            string_column(rows.iter().map(|r| r.annotator.as_str())),
            string_column(rows.iter().map(|r| r.decision.as_str())),
            Arc::new(UInt8Array::from_iter(rows.iter().map(|r| r.rating))),
            opt_string_column(rows.iter().map(|r| r.corrected.as_deref())),
            opt_string_column(rows.iter().map(|r| r.preference.map(Preference::as_str))),
            labels,
            opt_string_column(rows.iter().map(|r| r.comment.as_deref())),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.duration_ms),
            )),
            timestamp_column(rows.iter().map(|r| r.created_at)),
        ];
        batch(schema, columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ColumnError> {
        let item_id = columns::required_text(batch, "item_id", "an item id")?;
        let annotator = columns::required_text(batch, "annotator", "an annotator")?;
        let decision = columns::required_text(batch, "decision", "a decision")?;
        let rating = columns::u8s(batch, "rating")?;
        let corrected = columns::text(batch, "corrected")?;
        let preference = columns::text(batch, "preference")?;
        let labels = columns::string_lists(batch, "labels")?;
        let comment = columns::text(batch, "comment")?;
        let duration = columns::u64s(batch, "duration_ms")?;
        let created_at = columns::timestamps(batch, "created_at")?;
        let now = now_micros();
        (0..batch.num_rows())
            .map(|i| {
                let d = decision.value(i);
                let decision = Decision::parse(d).ok_or_else(|| {
                    ColumnError::new(
                        "decision",
                        format!("row {i} is `{d}`; expected accept, reject, edit or skip"),
                    )
                })?;
                let preference = match cell_text(&preference, i) {
                    None => None,
                    Some(p) => Some(Preference::parse(&p).ok_or_else(|| {
                        ColumnError::new(
                            "preference",
                            format!("row {i} is `{p}`; expected A, B or tie"),
                        )
                    })?),
                };
                let rating = cell_value(&rating, i);
                if let Some(r) = rating
                    && !(1..=5).contains(&r)
                {
                    return Err(ColumnError::new(
                        "rating",
                        format!("row {i} is {r}; expected 1 to 5"),
                    ));
                }
                Ok(Annotation {
                    item_id: item_id.value(i).to_string(),
                    annotator: annotator.value(i).to_string(),
                    decision,
                    rating,
                    corrected: cell_text(&corrected, i),
                    preference,
                    labels: labels.as_ref().map(|l| l.get(i)).unwrap_or_default(),
                    comment: cell_text(&comment, i),
                    duration_ms: cell_value(&duration, i).unwrap_or(0),
                    created_at: cell_value(&created_at, i).unwrap_or(now),
                })
            })
            .collect()
    }
}

impl Record for SftRow {
    const KIND: Kind = Kind::Sft;

    fn id(&self) -> &str {
        &self.id
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        let schema = Self::schema();
        let columns: Vec<ArrayRef> = vec![
            string_column(rows.iter().map(|r| r.id.as_str())),
            messages_column(
                &schema,
                "messages",
                rows.iter().map(|r| r.messages.as_slice()),
            )?,
            string_column(rows.iter().map(|r| r.prompt.as_str())),
            string_column(rows.iter().map(|r| r.completion.as_str())),
            opt_string_column(rows.iter().map(|r| r.source.as_deref())),
        ];
        batch(schema, columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ColumnError> {
        let fields = BatchFields::read(batch)?;
        (0..fields.len())
            .map(|i| fields.row(i).into_sft().map_err(at_row(i)))
            .collect()
    }
}

impl Record for PreferenceRow {
    const KIND: Kind = Kind::Preference;

    fn id(&self) -> &str {
        &self.id
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            string_column(rows.iter().map(|r| r.id.as_str())),
            string_column(rows.iter().map(|r| r.prompt.as_str())),
            string_column(rows.iter().map(|r| r.chosen.as_str())),
            string_column(rows.iter().map(|r| r.rejected.as_str())),
            opt_string_column(rows.iter().map(|r| r.source.as_deref())),
        ];
        batch(Self::schema(), columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ColumnError> {
        let fields = BatchFields::read(batch)?;
        (0..fields.len())
            .map(|i| fields.row(i).into_preference().map_err(at_row(i)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
