//! Every Arrow schema the workbench writes, in one place.
//!
//! Stages never agree on a layout by convention: they agree on these functions. Lists name their
//! child `element`, as the Parquet spec does, so a file we write and the same file rewritten by
//! pyarrow or Spark have one schema. Columns other tools may leave empty are nullable; readers
//! (see [`crate::record`]) accept any nullability and the usual string and list flavours
//! (`large_string`, `string_view`, `large_list`) so sets written elsewhere load unchanged.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Version of the schemas in this module; bumped whenever a column is added, removed or retyped.
pub const SCHEMA_VERSION: &str = "3";

/// Parquet key-value metadata key: the schema version.
pub const META_SCHEMA_VERSION: &str = "workbench.schema_version";
/// Parquet key-value metadata key: the version of the workbench that wrote the file.
pub const META_WORKBENCH_VERSION: &str = "workbench.version";
/// Parquet key-value metadata key: hash of the resolved config that produced the file.
pub const META_CONFIG_HASH: &str = "workbench.config_hash";
/// Parquet key-value metadata key: which schema the file follows (`sample`, `sft`, ...).
pub const META_KIND: &str = "workbench.kind";

/// The version of the workbench, written into every file.
pub const WORKBENCH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The kinds of table the workbench writes; each has one schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Prompts with teacher completions and top-k logprobs.
    Sample,
    /// Expert decisions.
    Annotation,
    /// Supervised fine-tuning rows in TRL's layout.
    Sft,
    /// Preference pairs in TRL's layout.
    Preference,
    /// Teacher logprobs for knowledge distillation in Axolotl's layout (`messages`, `logprobs`,
    /// `target_token_ids`).
    #[serde(rename = "kd-axolotl")]
    KdAxolotl,
    /// Teacher logprobs for knowledge distillation in DistillKit's prepacked layout
    /// (`input_ids`, `attention_mask`, `labels`, `token_ids`, `top_values`).
    #[serde(rename = "kd-distillkit")]
    KdDistillKit,
}

impl Kind {
    /// The name used in metadata and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sample => "sample",
            Kind::Annotation => "annotation",
            Kind::Sft => "sft",
            Kind::Preference => "preference",
            Kind::KdAxolotl => "kd-axolotl",
            Kind::KdDistillKit => "kd-distillkit",
        }
    }

    /// Parses the metadata name.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "sample" | "samples" => Some(Kind::Sample),
            "annotation" | "annotations" => Some(Kind::Annotation),
            "sft" => Some(Kind::Sft),
            "preference" | "preferences" => Some(Kind::Preference),
            "kd-axolotl" => Some(Kind::KdAxolotl),
            "kd-distillkit" => Some(Kind::KdDistillKit),
            _ => None,
        }
    }

    /// The Arrow schema of this kind, with the schema version in its metadata.
    pub fn schema(self) -> SchemaRef {
        match self {
            Kind::Sample => sample_schema(),
            Kind::Annotation => annotation_schema(),
            Kind::Sft => sft_schema(),
            Kind::Preference => preference_schema(),
            Kind::KdAxolotl => kd_axolotl_schema(),
            Kind::KdDistillKit => kd_distillkit_schema(),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A list whose child is named `element`, as the Parquet spec names it.
pub fn list_of(item: DataType, item_nullable: bool) -> DataType {
    DataType::List(Arc::new(Field::new("element", item, item_nullable)))
}

/// `struct<role: string, content: string>`: one chat message.
pub fn message_type() -> DataType {
    DataType::Struct(message_fields())
}

/// The fields of a chat message.
pub fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ])
}

/// `struct<id: uint32, logprob: float32>`: one of the teacher's top-k tokens at a position.
pub fn top_logprob_type() -> DataType {
    DataType::Struct(top_logprob_fields())
}

/// The fields of one top-k entry.
pub fn top_logprob_fields() -> Fields {
    Fields::from(vec![
        Field::new("id", DataType::UInt32, false),
        Field::new("logprob", DataType::Float32, false),
    ])
}

/// `list<list<struct<id, logprob>>>`: one inner list per completion token.
pub fn teacher_topk_type() -> DataType {
    list_of(list_of(top_logprob_type(), false), false)
}

/// `list<struct<role, content>>`.
pub fn messages_type() -> DataType {
    list_of(message_type(), false)
}

/// The timestamp type of every `created_at`: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn with_version(fields: Vec<Field>, kind: Kind) -> SchemaRef {
    let metadata = HashMap::from([
        (META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
        (META_KIND.to_string(), kind.as_str().to_string()),
    ]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// **sample**: a prompt, the teacher's completion and what the teacher knew about each token.
pub fn sample_schema() -> SchemaRef {
    with_version(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("prompt", DataType::Utf8, false),
            Field::new("messages", messages_type(), false),
            Field::new("completion", DataType::Utf8, true),
            Field::new("completion_ids", list_of(DataType::UInt32, false), false),
            Field::new("teacher_topk", teacher_topk_type(), false),
            Field::new("teacher", DataType::Utf8, true),
            Field::new("logprob_mean", DataType::Float32, true),
            Field::new("entropy_mean", DataType::Float32, true),
            Field::new("disagreement", DataType::Float32, true),
            Field::new("reference", DataType::Utf8, true),
            Field::new("template", DataType::Utf8, true),
            Field::new("slice", DataType::Utf8, true),
            Field::new("seed", DataType::UInt64, true),
            Field::new("created_at", timestamp_type(), false),
        ],
        Kind::Sample,
    )
}

/// **annotation**: one expert decision on one item.
pub fn annotation_schema() -> SchemaRef {
    with_version(
        vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("annotator", DataType::Utf8, false),
            Field::new("decision", DataType::Utf8, false),
            Field::new("rating", DataType::UInt8, true),
            Field::new("corrected", DataType::Utf8, true),
            Field::new("preference", DataType::Utf8, true),
            Field::new("labels", list_of(DataType::Utf8, false), false),
            Field::new("comment", DataType::Utf8, true),
            Field::new("duration_ms", DataType::UInt64, false),
            Field::new("created_at", timestamp_type(), false),
        ],
        Kind::Annotation,
    )
}

/// **sft**: TRL's conversational (`messages`) and prompt-completion (`prompt`, `completion`)
/// columns side by side, so either trainer recipe reads the set as is.
pub fn sft_schema() -> SchemaRef {
    with_version(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("messages", messages_type(), false),
            Field::new("prompt", DataType::Utf8, false),
            Field::new("completion", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, true),
        ],
        Kind::Sft,
    )
}

/// **preference**: TRL's standard preference layout (`prompt`, `chosen`, `rejected`).
pub fn preference_schema() -> SchemaRef {
    with_version(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("prompt", DataType::Utf8, false),
            Field::new("chosen", DataType::Utf8, false),
            Field::new("rejected", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, true),
        ],
        Kind::Preference,
    )
}

/// **kd-axolotl**: the conversation ending with the teacher's answer, and per position of its
/// tokenized form (right-aligned to its end) the teacher's top-k next-token logprobs and their
/// token ids, as Axolotl's `axolotl.integrations.kd.chat_template` strategy reads them.
pub fn kd_axolotl_schema() -> SchemaRef {
    with_version(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("messages", messages_type(), false),
            Field::new(
                "logprobs",
                list_of(list_of(DataType::Float32, false), false),
                false,
            ),
            Field::new(
                "target_token_ids",
                list_of(list_of(DataType::Int64, false), false),
                false,
            ),
        ],
        Kind::KdAxolotl,
    )
}

/// **kd-distillkit**: conversations packed into rows of one length, with per position the
/// teacher's top-k next-token logprobs (`top_values`) and their ids (`token_ids`), as
/// DistillKit's offline (`prepacked`) training reads them. Every column is numeric, since
/// DistillKit stacks each one into a tensor.
pub fn kd_distillkit_schema() -> SchemaRef {
    let ints = || list_of(DataType::Int64, false);
    with_version(
        vec![
            Field::new("input_ids", ints(), false),
            Field::new("attention_mask", ints(), false),
            Field::new("labels", ints(), false),
            Field::new(
                "token_ids",
                list_of(list_of(DataType::Int64, false), false),
                false,
            ),
            Field::new(
                "top_values",
                list_of(list_of(DataType::Float32, false), false),
                false,
            ),
        ],
        Kind::KdDistillKit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_carries_its_version_and_kind() {
        for kind in [
            Kind::Sample,
            Kind::Annotation,
            Kind::Sft,
            Kind::Preference,
            Kind::KdAxolotl,
            Kind::KdDistillKit,
        ] {
            let schema = kind.schema();
            assert_eq!(schema.metadata()[META_SCHEMA_VERSION], SCHEMA_VERSION);
            assert_eq!(schema.metadata()[META_KIND], kind.as_str());
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn teacher_topk_is_a_list_of_lists_of_id_logprob_structs() {
        let DataType::List(outer) = teacher_topk_type() else {
            panic!("outer is a list")
        };
        assert_eq!(outer.name(), "element");
        let DataType::List(inner) = outer.data_type() else {
            panic!("inner is a list")
        };
        let DataType::Struct(fields) = inner.data_type() else {
            panic!("entries are structs")
        };
        assert_eq!(fields[0].name(), "id");
        assert_eq!(fields[0].data_type(), &DataType::UInt32);
        assert_eq!(fields[1].name(), "logprob");
        assert_eq!(fields[1].data_type(), &DataType::Float32);
    }
}
