//! Lenient column readers: the bridge from "an Arrow column someone wrote" to our typed records.
//!
//! pyarrow, polars, DuckDB and HF `datasets` each spell the same logical column differently
//! (`large_string`, `string_view`, `large_list<item>`, nullable everything, `int64` where we use
//! `uint32`). Every reader here accepts those spellings, casts once per batch, and gives row
//! access without copying; anything it cannot read is a [`ColumnError`] naming the column and
//! saying what was expected.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float32Array, GenericListArray, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray, TimestampMicrosecondArray, UInt8Array, UInt32Array, UInt64Array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, Field};

use crate::error::ColumnError;
use crate::record::{Message, TopLogprob};
use crate::schema::timestamp_type;

const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: arrow_cast::display::FormatOptions::new(),
};

/// Looks a column up by name.
pub fn find<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    batch.column_by_name(name)
}

/// A compact, readable name of an Arrow type: `list<struct<id: uint32, logprob: float>>`.
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) => {
            format!("list<{}>", type_name(f.data_type()))
        }
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                arrow_schema::TimeUnit::Second => "s",
                arrow_schema::TimeUnit::Millisecond => "ms",
                arrow_schema::TimeUnit::Microsecond => "us",
                arrow_schema::TimeUnit::Nanosecond => "ns",
            };
            match tz {
                Some(tz) => format!("timestamp[{unit}, tz={tz}]"),
                None => format!("timestamp[{unit}]"),
            }
        }
        other => other.to_string().to_lowercase(),
    }
}

fn cast_to(
    array: &ArrayRef,
    to: &DataType,
    column: &str,
    expected: &str,
) -> Result<ArrayRef, ColumnError> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    if !arrow_cast::can_cast_types(array.data_type(), to)
        || is_nested(array.data_type()) != is_nested(to)
    {
        return Err(ColumnError::new(
            column,
            format!(
                "has type {}; expected {expected}",
                type_name(array.data_type())
            ),
        ));
    }
    cast_with_options(array, to, &STRICT).map_err(|e| {
        ColumnError::new(
            column,
            format!(
                "cannot be read as {expected} (type {}): {e}",
                type_name(array.data_type())
            ),
        )
    })
}

fn is_nested(dt: &DataType) -> bool {
    dt.is_nested()
}

/// A text column (`string`, `large_string`, `string_view`, or numbers and booleans, which are
/// written out as text).
pub fn text(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>, ColumnError> {
    let Some(array) = find(batch, name) else {
        return Ok(None);
    };
    if matches!(array.data_type(), DataType::Null) {
        return Ok(Some(StringArray::new_null(array.len())));
    }
    let cast = cast_to(array, &DataType::Utf8, name, "text")?;
    Ok(Some(downcast::<StringArray>(&cast, name)?.clone()))
}

/// A text column every row of which has a value.
pub fn required_text(
    batch: &RecordBatch,
    name: &str,
    what: &str,
) -> Result<StringArray, ColumnError> {
    let Some(array) = text(batch, name)? else {
        return Err(ColumnError::new(
            name,
            format!("is missing; every row needs {what}"),
        ));
    };
    if let Some(row) = first_null(array.nulls()) {
        return Err(ColumnError::new(
            name,
            format!("row {row} is null; every row needs {what}"),
        ));
    }
    Ok(array)
}

fn first_null(nulls: Option<&NullBuffer>) -> Option<usize> {
    nulls.and_then(|n| (0..n.len()).find(|&i| n.is_null(i)))
}

fn downcast<'a, T: 'static>(array: &'a ArrayRef, name: &str) -> Result<&'a T, ColumnError> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| ColumnError::new(name, "has an unexpected internal layout"))
}

macro_rules! primitive_reader {
    ($fn_name:ident, $array:ty, $dt:expr, $expected:literal) => {
        #[doc = concat!("A column read as ", $expected, "; `None` when absent.")]
        pub fn $fn_name(batch: &RecordBatch, name: &str) -> Result<Option<$array>, ColumnError> {
            let Some(array) = find(batch, name) else {
                return Ok(None);
            };
            if matches!(array.data_type(), DataType::Null) {
                return Ok(Some(<$array>::new_null(array.len())));
            }
            let cast = cast_to(array, &$dt, name, $expected)?;
            Ok(Some(downcast::<$array>(&cast, name)?.clone()))
        }
    };
}

primitive_reader!(f32s, Float32Array, DataType::Float32, "float32");
primitive_reader!(u64s, UInt64Array, DataType::UInt64, "uint64");
primitive_reader!(u8s, UInt8Array, DataType::UInt8, "uint8");
primitive_reader!(
    timestamps,
    TimestampMicrosecondArray,
    timestamp_type(),
    "a timestamp"
);

/// Normalises any list flavour to a `ListArray` (32-bit offsets) without touching the values.
fn as_list(array: &ArrayRef, name: &str, expected: &str) -> Result<ListArray, ColumnError> {
    match array.data_type() {
        DataType::List(_) => Ok(downcast::<ListArray>(array, name)?.clone()),
        DataType::LargeList(field)
        | DataType::FixedSizeList(field, _)
        | DataType::ListView(field)
        | DataType::LargeListView(field) => {
            let to = DataType::List(field.clone());
            let cast = cast_to(array, &to, name, expected)?;
            Ok(downcast::<ListArray>(&cast, name)?.clone())
        }
        other => Err(ColumnError::new(
            name,
            format!("has type {}; expected {expected}", type_name(other)),
        )),
    }
}

/// Casts a list's values to `item`, keeping offsets and nulls.
fn list_with_values(list: &ListArray, values: ArrayRef) -> ListArray {
    let field = Arc::new(Field::new("element", values.data_type().clone(), true));
    GenericListArray::new(field, list.offsets().clone(), values, list.nulls().cloned())
}

/// Row access into a list column of chat messages.
pub struct MessagesColumn {
    offsets: OffsetBuffer<i32>,
    nulls: Option<NullBuffer>,
    roles: StringArray,
    contents: StringArray,
}

impl MessagesColumn {
    /// Whether row `i` has a value.
    pub fn is_valid(&self, i: usize) -> bool {
        self.nulls.as_ref().is_none_or(|n| n.is_valid(i))
    }

    /// The messages of row `i` (none when the row is null).
    pub fn get(&self, i: usize) -> Vec<Message> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(i)) {
            return Vec::new();
        }
        let (start, end) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        (start..end)
            .map(|j| Message {
                role: self.roles.value(j).to_string(),
                content: self.contents.value(j).to_string(),
            })
            .collect()
    }
}

const MESSAGES: &str = "a list of {role, content} messages";

/// Reads a `list<struct<role, content>>` column; field order and extra fields do not matter.
pub fn messages(batch: &RecordBatch, name: &str) -> Result<Option<MessagesColumn>, ColumnError> {
    let Some(array) = find(batch, name) else {
        return Ok(None);
    };
    messages_array(array, name).map(Some)
}

/// Reads an array (not a batch column) of chat messages.
pub fn messages_array(array: &ArrayRef, name: &str) -> Result<MessagesColumn, ColumnError> {
    let list = as_list(array, name, MESSAGES)?;
    let DataType::Struct(_) = list.values().data_type() else {
        return Err(ColumnError::new(
            name,
            format!(
                "has type {}; expected {MESSAGES}",
                type_name(array.data_type())
            ),
        ));
    };
    let values = list.values().clone();
    let st = downcast::<StructArray>(&values, name)?;
    let field = |child: &str| -> Result<StringArray, ColumnError> {
        let Some(col) = st.column_by_name(child) else {
            return Err(ColumnError::new(
                name,
                format!("messages have no `{child}` field; expected {MESSAGES}"),
            ));
        };
        let cast = cast_to(col, &DataType::Utf8, name, "text")?;
        let arr = downcast::<StringArray>(&cast, name)?.clone();
        if let Some(row) = first_null(arr.nulls()) {
            return Err(ColumnError::new(
                name,
                format!("message {row} has a null `{child}`"),
            ));
        }
        Ok(arr)
    };
    let roles = field("role")?;
    let contents = field("content")?;
    if let Some(row) = first_null(st.nulls()) {
        return Err(ColumnError::new(name, format!("message {row} is null")));
    }
    Ok(MessagesColumn {
        offsets: list.offsets().clone(),
        nulls: list.nulls().cloned(),
        roles,
        contents,
    })
}

/// Row access into a `list<uint32>` column (token ids).
pub struct U32ListColumn {
    list: ListArray,
    values: UInt32Array,
}

impl U32ListColumn {
    /// The ids of row `i` (empty when null).
    pub fn get(&self, i: usize) -> &[u32] {
        if self.list.is_null(i) {
            return &[];
        }
        let offsets = self.list.offsets();
        &self.values.values()[offsets[i] as usize..offsets[i + 1] as usize]
    }
}

/// Reads a list of unsigned 32-bit ids (any integer list that fits).
pub fn u32_lists(batch: &RecordBatch, name: &str) -> Result<Option<U32ListColumn>, ColumnError> {
    let Some(array) = find(batch, name) else {
        return Ok(None);
    };
    let list = as_list(array, name, "a list of token ids")?;
    let values = cast_to(
        list.values(),
        &DataType::UInt32,
        name,
        "a list of uint32 token ids",
    )?;
    let values = downcast::<UInt32Array>(&values, name)?.clone();
    if values.null_count() > 0 {
        return Err(ColumnError::new(name, "contains a null token id"));
    }
    Ok(Some(U32ListColumn {
        list: list_with_values(&list, Arc::new(values.clone())),
        values,
    }))
}

/// Row access into a `list<string>` column (labels).
pub struct StringListColumn {
    list: ListArray,
    values: StringArray,
}

impl StringListColumn {
    /// The strings of row `i` (empty when null).
    pub fn get(&self, i: usize) -> Vec<String> {
        if self.list.is_null(i) {
            return Vec::new();
        }
        let offsets = self.list.offsets();
        (offsets[i] as usize..offsets[i + 1] as usize)
            .map(|j| self.values.value(j).to_string())
            .collect()
    }
}

/// Reads a list of strings.
pub fn string_lists(
    batch: &RecordBatch,
    name: &str,
) -> Result<Option<StringListColumn>, ColumnError> {
    let Some(array) = find(batch, name) else {
        return Ok(None);
    };
    let list = as_list(array, name, "a list of strings")?;
    let values = cast_to(list.values(), &DataType::Utf8, name, "a list of strings")?;
    let values = downcast::<StringArray>(&values, name)?.clone();
    if values.null_count() > 0 {
        return Err(ColumnError::new(name, "contains a null string"));
    }
    Ok(Some(StringListColumn { list, values }))
}

/// Row access into a `list<list<struct<id, logprob>>>` column.
pub struct TopKColumn {
    outer: ListArray,
    inner_offsets: OffsetBuffer<i32>,
    ids: UInt32Array,
    logprobs: Float32Array,
}

impl TopKColumn {
    /// Number of completion tokens in row `i`.
    pub fn tokens(&self, i: usize) -> usize {
        if self.outer.is_null(i) {
            0
        } else {
            self.outer.value_length(i) as usize
        }
    }

    /// The top-k of row `i`, one inner list per completion token.
    pub fn get(&self, i: usize) -> Vec<Vec<TopLogprob>> {
        if self.outer.is_null(i) {
            return Vec::new();
        }
        let o = self.outer.offsets();
        (o[i] as usize..o[i + 1] as usize)
            .map(|t| {
                let (s, e) = (
                    self.inner_offsets[t] as usize,
                    self.inner_offsets[t + 1] as usize,
                );
                self.ids.values()[s..e]
                    .iter()
                    .zip(&self.logprobs.values()[s..e])
                    .map(|(&id, &logprob)| TopLogprob { id, logprob })
                    .collect()
            })
            .collect()
    }
}

const TOPK: &str = "a list (one per token) of lists of {id, logprob}";

/// Reads the teacher's top-k column.
pub fn topk(batch: &RecordBatch, name: &str) -> Result<Option<TopKColumn>, ColumnError> {
    let Some(array) = find(batch, name) else {
        return Ok(None);
    };
    let outer = as_list(array, name, TOPK)?;
    let inner = as_list(outer.values(), name, TOPK)?;
    if inner.null_count() > 0 {
        return Err(ColumnError::new(name, "a token's top-k list is null"));
    }
    let DataType::Struct(_) = inner.values().data_type() else {
        return Err(ColumnError::new(
            name,
            format!("has type {}; expected {TOPK}", type_name(array.data_type())),
        ));
    };
    let values = inner.values().clone();
    let st = downcast::<StructArray>(&values, name)?;
    let child = |child: &str, to: DataType, what: &str| -> Result<ArrayRef, ColumnError> {
        let col = st.column_by_name(child).ok_or_else(|| {
            ColumnError::new(
                name,
                format!("top-k entries have no `{child}` field; expected {TOPK}"),
            )
        })?;
        let cast = cast_to(col, &to, name, what)?;
        if cast.null_count() > 0 {
            return Err(ColumnError::new(
                name,
                format!("a top-k entry has a null `{child}`"),
            ));
        }
        Ok(cast)
    };
    let ids = child("id", DataType::UInt32, "uint32 token ids")?;
    let logprobs = child("logprob", DataType::Float32, "float32 logprobs")?;
    Ok(Some(TopKColumn {
        outer,
        inner_offsets: inner.offsets().clone(),
        ids: downcast::<UInt32Array>(&ids, name)?.clone(),
        logprobs: downcast::<Float32Array>(&logprobs, name)?.clone(),
    }))
}

/// What a text-or-messages column holds: TRL lets `prompt`, `completion`, `chosen` and
/// `rejected` be plain strings or conversations.
pub enum TextOrMessages {
    /// A plain string column.
    Text(StringArray),
    /// A conversational column.
    Messages(MessagesColumn),
}

impl TextOrMessages {
    /// Reads the column as either shape.
    pub fn read(batch: &RecordBatch, name: &str) -> Result<Option<Self>, ColumnError> {
        let Some(array) = find(batch, name) else {
            return Ok(None);
        };
        if array.data_type().is_nested() {
            Ok(Some(TextOrMessages::Messages(messages_array(array, name)?)))
        } else {
            Ok(text(batch, name)?.map(TextOrMessages::Text))
        }
    }
}

/// Row access into a `list<list<T>>` column of numbers (per position, per rank).
pub struct NestedColumn<A> {
    outer: ListArray,
    inner: ListArray,
    values: A,
}

macro_rules! nested_reader {
    ($fn_name:ident, $array:ty, $native:ty, $dt:expr, $expected:literal) => {
        impl NestedColumn<$array> {
            /// The rows of row `i` (empty when null).
            pub fn get(&self, i: usize) -> Vec<Vec<$native>> {
                if self.outer.is_null(i) {
                    return Vec::new();
                }
                let (o, n) = (self.outer.offsets(), self.inner.offsets());
                (o[i] as usize..o[i + 1] as usize)
                    .map(|j| self.values.values()[n[j] as usize..n[j + 1] as usize].to_vec())
                    .collect()
            }
        }

        #[doc = concat!("Reads a column of ", $expected, "; `None` when absent.")]
        pub fn $fn_name(
            batch: &RecordBatch,
            name: &str,
        ) -> Result<Option<NestedColumn<$array>>, ColumnError> {
            let Some(array) = find(batch, name) else {
                return Ok(None);
            };
            let item = |dt: DataType| DataType::List(Arc::new(Field::new("element", dt, true)));
            let cast = cast_to(array, &item(item($dt)), name, $expected)?;
            let outer = downcast::<ListArray>(&cast, name)?.clone();
            let inner = downcast::<ListArray>(outer.values(), name)?.clone();
            if first_null(inner.nulls()).is_some() || first_null(inner.values().nulls()).is_some() {
                return Err(ColumnError::new(
                    name,
                    concat!("holds a null inside a row; expected ", $expected),
                ));
            }
            let values = downcast::<$array>(inner.values(), name)?.clone();
            Ok(Some(NestedColumn {
                outer,
                inner,
                values,
            }))
        }
    };
}

nested_reader!(
    nested_f32s,
    Float32Array,
    f32,
    DataType::Float32,
    "lists of lists of float32"
);
nested_reader!(
    nested_i64s,
    Int64Array,
    i64,
    DataType::Int64,
    "lists of lists of int64"
);

/// Row access into a `list<int64>` column.
pub struct I64ListColumn {
    list: ListArray,
    values: Int64Array,
}

impl I64ListColumn {
    /// The values of row `i` (empty when null).
    pub fn get(&self, i: usize) -> Vec<i64> {
        if self.list.is_null(i) {
            return Vec::new();
        }
        let o = self.list.offsets();
        self.values.values()[o[i] as usize..o[i + 1] as usize].to_vec()
    }
}

/// Reads a list of signed 64-bit integers (any integer list); `None` when absent.
pub fn i64_lists(batch: &RecordBatch, name: &str) -> Result<Option<I64ListColumn>, ColumnError> {
    let Some(array) = find(batch, name) else {
        return Ok(None);
    };
    let to = DataType::List(Arc::new(Field::new("element", DataType::Int64, true)));
    let cast = cast_to(array, &to, name, "a list of integers")?;
    let list = downcast::<ListArray>(&cast, name)?.clone();
    if first_null(list.values().nulls()).is_some() {
        return Err(ColumnError::new(
            name,
            "holds a null inside a row; expected integers",
        ));
    }
    let values = downcast::<Int64Array>(list.values(), name)?.clone();
    Ok(Some(I64ListColumn { list, values }))
}
