//! The recipes of a run's stages, on top of the engine (the model, the training loop, generation):
//! what each stage reads, what it depends on, and how it trains.
//!
//! - [`inputs`]: the data stage's sets as training reads them, the run's tokenizer.
//! - [`hashes`]: the settings each stage depends on.
//! - [`teacher`]: the local teacher, on every gold row.
//! - [`student`]: the distilled student and the gold-only baseline.
//! - [`finetune`]: the expert fine-tune and whether it becomes the final student.
//!
//! Each training stage runs as a [`crate::train::job`]: the model, `metrics.parquet` and the plots
//! in the stage's directory, step checkpoints to resume from.

pub mod finetune;
pub mod hashes;
pub mod inputs;
pub mod student;
pub mod teacher;
