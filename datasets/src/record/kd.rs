//! Rows of teacher logprobs in the layouts distributed trainers read for knowledge distillation.

use super::*;

/// One conversation with its teacher logprobs, as Axolotl's KD strategy reads it.
///
/// `logprobs[r]` and `target_token_ids[r]` are the teacher's top-k at one position of the
/// tokenized conversation; Axolotl right-aligns the rows to the end of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KdAxolotlRow {
    /// The id of the sample it was made from.
    pub id: String,
    /// The conversation, ending with the teacher's answer.
    pub messages: Vec<Message>,
    /// Natural-log probabilities, one row per position, highest first.
    pub logprobs: Vec<Vec<f32>>,
    /// The token ids of `logprobs`, entry for entry.
    pub target_token_ids: Vec<Vec<i64>>,
}

fn nested<T: arrow_array::ArrowPrimitiveType>(
    schema: &SchemaRef,
    name: &str,
    rows: &[&[Vec<T::Native>]],
) -> Result<ArrayRef> {
    let outer = offsets_from_lengths(rows.iter().map(|r| r.len()), name)?;
    let inner = offsets_from_lengths(rows.iter().flat_map(|r| r.iter().map(Vec::len)), name)?;
    let values: Vec<T::Native> = rows
        .iter()
        .flat_map(|r| r.iter().flatten().copied())
        .collect();
    let outer_field = list_child(field_of(schema, name).data_type());
    let inner_field = list_child(outer_field.data_type());
    let inner = ListArray::new(
        inner_field,
        inner,
        Arc::new(arrow_array::PrimitiveArray::<T>::new(
            ScalarBuffer::from(values),
            None,
        )),
        None,
    );
    Ok(Arc::new(ListArray::new(
        outer_field,
        outer,
        Arc::new(inner),
        None,
    )))
}

impl Record for KdAxolotlRow {
    const KIND: Kind = Kind::KdAxolotl;

    fn id(&self) -> &str {
        &self.id
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        let schema = Self::schema();
        let logprobs: Vec<&[Vec<f32>]> = rows.iter().map(|r| r.logprobs.as_slice()).collect();
        let ids: Vec<&[Vec<i64>]> = rows.iter().map(|r| r.target_token_ids.as_slice()).collect();
        let columns: Vec<ArrayRef> = vec![
            string_column(rows.iter().map(|r| r.id.as_str())),
            messages_column(
                &schema,
                "messages",
                rows.iter().map(|r| r.messages.as_slice()),
            )?,
            nested::<arrow_array::types::Float32Type>(&schema, "logprobs", &logprobs)?,
            nested::<arrow_array::types::Int64Type>(&schema, "target_token_ids", &ids)?,
        ];
        batch(schema, columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ColumnError> {
        let missing = |name: &str| ColumnError::new(name, "is missing");
        let id = columns::required_text(batch, "id", "an id")?;
        let messages = columns::messages(batch, "messages")?.ok_or_else(|| missing("messages"))?;
        let logprobs =
            columns::nested_f32s(batch, "logprobs")?.ok_or_else(|| missing("logprobs"))?;
        let ids = columns::nested_i64s(batch, "target_token_ids")?
            .ok_or_else(|| missing("target_token_ids"))?;
        (0..batch.num_rows())
            .map(|i| {
                let row = KdAxolotlRow {
                    id: id.value(i).to_string(),
                    messages: messages.get(i),
                    logprobs: logprobs.get(i),
                    target_token_ids: ids.get(i),
                };
                let shapes_agree = row.logprobs.len() == row.target_token_ids.len()
                    && row
                        .logprobs
                        .iter()
                        .zip(&row.target_token_ids)
                        .all(|(l, t)| l.len() == t.len());
                if shapes_agree {
                    Ok(row)
                } else {
                    Err(at_row(i)(ColumnError::new(
                        "target_token_ids",
                        "does not match `logprobs` position for position and entry for entry",
                    )))
                }
            })
            .collect()
    }
}

/// One packed row of conversations with the teacher's logprobs at every position, as DistillKit's
/// offline (`prepacked`) training reads it.
///
/// `token_ids[t]` and `top_values[t]` are the teacher's top-k for the token after position `t`;
/// `labels` is -100 where no answer token sits (prompts, padding), and DistillKit uses a
/// position's row only where its label is not -100.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KdDistillKitRow {
    /// A content id (of the row's tokens and labels), for split assignment; not stored.
    pub id: String,
    /// The packed conversations' tokens, then padding.
    pub input_ids: Vec<i64>,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// The token where it is an answer token, else -100.
    pub labels: Vec<i64>,
    /// Per position, the top-k token ids.
    pub token_ids: Vec<Vec<i64>>,
    /// Per position, the natural-log probabilities of `token_ids`.
    pub top_values: Vec<Vec<f32>>,
}

impl KdDistillKitRow {
    /// A row, with its content id.
    pub fn new(
        input_ids: Vec<i64>,
        attention_mask: Vec<i64>,
        labels: Vec<i64>,
        token_ids: Vec<Vec<i64>>,
        top_values: Vec<Vec<f32>>,
    ) -> Self {
        let mut h = IdHasher::new("kd-distillkit");
        for (i, l) in input_ids.iter().zip(&labels) {
            h.part(&format!("{i}:{l}"));
        }
        KdDistillKitRow {
            id: h.finish(),
            input_ids,
            attention_mask,
            labels,
            token_ids,
            top_values,
        }
    }
}

fn flat_i64(schema: &SchemaRef, name: &str, rows: &[&[i64]]) -> Result<ArrayRef> {
    let offsets = offsets_from_lengths(rows.iter().map(|r| r.len()), name)?;
    let values: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Ok(Arc::new(ListArray::new(
        list_child(field_of(schema, name).data_type()),
        offsets,
        Arc::new(arrow_array::Int64Array::new(
            ScalarBuffer::from(values),
            None,
        )),
        None,
    )))
}

impl Record for KdDistillKitRow {
    const KIND: Kind = Kind::KdDistillKit;

    fn id(&self) -> &str {
        &self.id
    }

    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        let schema = Self::schema();
        let flat = |f: fn(&Self) -> &[i64], name: &str| {
            let lists: Vec<&[i64]> = rows.iter().map(f).collect();
            flat_i64(&schema, name, &lists)
        };
        let ids: Vec<&[Vec<i64>]> = rows.iter().map(|r| r.token_ids.as_slice()).collect();
        let values: Vec<&[Vec<f32>]> = rows.iter().map(|r| r.top_values.as_slice()).collect();
        let columns: Vec<ArrayRef> = vec![
            flat(|r| &r.input_ids, "input_ids")?,
            flat(|r| &r.attention_mask, "attention_mask")?,
            flat(|r| &r.labels, "labels")?,
            nested::<arrow_array::types::Int64Type>(&schema, "token_ids", &ids)?,
            nested::<arrow_array::types::Float32Type>(&schema, "top_values", &values)?,
        ];
        batch(schema, columns)
    }

    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, ColumnError> {
        let missing = |name: &str| ColumnError::new(name, "is missing");
        let ints = |name: &str| columns::i64_lists(batch, name)?.ok_or_else(|| missing(name));
        let (input_ids, mask, labels) =
            (ints("input_ids")?, ints("attention_mask")?, ints("labels")?);
        let token_ids =
            columns::nested_i64s(batch, "token_ids")?.ok_or_else(|| missing("token_ids"))?;
        let top_values =
            columns::nested_f32s(batch, "top_values")?.ok_or_else(|| missing("top_values"))?;
        (0..batch.num_rows())
            .map(|i| {
                let row = KdDistillKitRow::new(
                    input_ids.get(i),
                    mask.get(i),
                    labels.get(i),
                    token_ids.get(i),
                    top_values.get(i),
                );
                let n = row.input_ids.len();
                let agree = [row.attention_mask.len(), row.labels.len(), row.token_ids.len()]
                    .iter()
                    .all(|&l| l == n)
                    && row
                        .token_ids
                        .iter()
                        .zip(&row.top_values)
                        .all(|(a, b)| a.len() == b.len())
                    && row.top_values.len() == n;
                if agree {
                    Ok(row)
                } else {
                    Err(at_row(i)(ColumnError::new(
                        "token_ids",
                        "does not match `input_ids` position for position and `top_values` entry for entry",
                    )))
                }
            })
            .collect()
    }
}
