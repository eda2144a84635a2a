//! The one error type of the model crate. Messages say what failed, name the file, tensor or key,
//! and say what to do; [`Error::is_bad_input`] tells the binary whether to exit with 2 or 1.

use std::path::PathBuf;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with models, tokenizers and templates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("Failed to read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file could not be written.
    #[error("Failed to write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file (config.json, tokenizer_config.json, ...) is malformed or has a wrong field.
    #[error("Invalid `{path}`: {message}")]
    Json { path: PathBuf, message: String },

    /// A model config describes something this model is not.
    #[error("Unsupported model in `{path}`: {message}")]
    Unsupported { path: PathBuf, message: String },

    /// A checkpoint lacks a tensor, or has one of the wrong shape or type.
    #[error("Checkpoint `{path}`: {message}")]
    Checkpoint { path: PathBuf, message: String },

    // --- tokenizer and chat template -------------------------------------------------------
    /// A tokenizer could not be loaded, trained, saved or used.
    #[error("Tokenizer{}: {message}", path.as_ref().map(|p| format!(" `{}`", p.display())).unwrap_or_default())]
    Tokenizer {
        path: Option<PathBuf>,
        message: String,
    },

    /// A chat template could not be parsed or rendered.
    #[error("Chat template{}: {message}", origin.as_ref().map(|p| format!(" from `{p}`")).unwrap_or_default())]
    Template {
        origin: Option<String>,
        message: String,
    },
    // --- end tokenizer and chat template ---------------------------------------------------
    /// Input that is well-formed but cannot be used (bad option, empty prompt, mismatch).
    #[error("{message}")]
    Invalid { message: String },

    /// Training produced a loss or weights that are not finite numbers: the settings make it
    /// diverge (too high a learning rate, too low a KD temperature). Nothing of it is saved.
    #[error("Training diverged at step {step}: {what}{hint}")]
    Diverged {
        /// The 1-based optimizer step.
        step: usize,
        /// What went non-finite, e.g. "the loss is NaN".
        what: String,
        /// `\n\nhint: ...` naming the settings to change (empty when the loop does not know).
        hint: String,
    },

    /// A teacher failed at run time (a server that kept failing, a response we cannot use).
    #[error("{message}")]
    Teacher { message: String },

    /// An error from the data layer.
    #[error(transparent)]
    Data(#[from] datasets::Error),
}

impl Error {
    /// Whether this is the user's input (exit 2) rather than a run-time failure (exit 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Read { .. }
            | Error::Json { .. }
            | Error::Unsupported { .. }
            | Error::Checkpoint { .. }
            | Error::Tokenizer { .. }
            | Error::Template { .. }
            | Error::Invalid { .. }
            | Error::Diverged { .. } => true,
            Error::Write { .. } | Error::Teacher { .. } => false,
            Error::Data(e) => e.is_bad_input(),
        }
    }

    pub(crate) fn teacher(message: impl Into<String>) -> Self {
        Error::Teacher {
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid {
            message: message.into(),
        }
    }
}
