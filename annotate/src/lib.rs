//! Expert review: the annotation store (SQLite), the review queue and the ratatui terminal app.
//!
//! Its place in the loop: it reads candidate sets written through `datasets` and writes expert
//! decisions to `annotations.db`, exported back as SFT and preference sets. It never imports
//! `distill`. The store and the terminal app land here after the model and teacher stages (see the
//! README's status table).
