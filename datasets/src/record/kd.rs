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
