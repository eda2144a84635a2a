//! The workbench's data layer: every stage reads and writes through this crate.
//!
//! Files are the interface between stages (see `DESIGN.md`): a synthetic set, an annotation
//! export or a preference set is a directory of Parquet files in the Hugging Face layout, whose
//! schemas live in [`schema`]. Any other tool can read what we write, and we read what pyarrow,
//! polars, DuckDB or HF `datasets` write.

pub mod atomic;
pub mod card;
pub mod columns;
pub mod config;
pub mod csv;
pub mod decontam;
pub mod dedup;
pub mod error;
pub mod export;
pub mod import;
pub mod inspect;
pub mod jsonl;
pub mod kd;
pub mod metrics;
pub mod parquet;
pub mod prepare;
pub mod record;
pub mod rundir;
pub mod schema;
pub mod set;
pub mod tasks;
pub mod text;

pub use error::{ColumnError, Error, Result};
pub use record::{
    Annotation, Decision, KdAxolotlRow, KdDistillKitRow, Message, Preference, PreferenceRow,
    Record, Sample, SftRow, TopLogprob,
};
pub use schema::Kind;
pub use set::{Set, SetOptions, SetSummary, SetWriter, Splits};
