//! Expert review: the annotation store (SQLite), the review queue and the ratatui terminal app.
//!
//! Its place in the loop: it reads candidate sets written through `datasets` and writes expert
//! decisions to `annotations.db`, exported back as SFT and preference sets. It never imports
//! `distill`.

pub mod agreement;
pub mod app;
pub mod components;
pub mod diff;
pub mod error;
pub mod feedback;
pub mod import;
pub mod simulated;
pub mod stats;
pub mod store;
pub mod theme;

pub use datasets::config::QueueOrder;
pub use error::{Error, Result};
pub use store::{Candidate, Filter, Item, Progress, Store, Stored, Verdict};
