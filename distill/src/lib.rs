//! Distillation: the Llama-family model in burn, tokenizers, teachers (local and OpenAI-compatible),
//! generation, training (KD, SFT, DPO), evaluation and checkpoints.
//!
//! Its place in the loop: it reads the sets `datasets` writes (gold, prompts, synthetic) and writes
//! checkpoints and new sets back through `datasets`. It never imports `annotate`: expert feedback
//! reaches it as files.

pub mod backend;
pub mod candidates;
pub mod data;
pub mod error;
pub mod evaluate;
pub mod generate;
pub mod model;
pub mod plot;
pub mod recipe;
pub mod report;
pub mod serve;
pub mod stages;
pub mod synth;
pub mod teacher;
pub mod train;

pub use error::{Error, Result};
