//! The annotate crate's errors: each says what failed, names the file, and carries the source.

use std::path::PathBuf;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store, the queue and the terminal app.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The annotation database could not be opened, read or written.
    #[error("Annotation database `{path}`: {message}")]
    Store {
        /// The database file (or the PostgreSQL server's URL).
        path: PathBuf,
        /// What failed, in words.
        message: String,
        /// The database's own error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The database is in use by another process for longer than the busy timeout.
    #[error(
        "Annotation database `{path}` was held by another process for longer than the busy timeout (an import, a long export?)\n\nhint: retry in a moment; several `workbench annotate` sessions can share one database, each decision waits its turn"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },

    /// The file exists but is not an annotation database (another file, or damaged).
    #[error(
        "`{path}` is not a readable annotation database ({message})\n\nhint: restore it from a backup, or move it aside to start a new one; `sqlite3 {path} .recover` can save what is left"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's words.
        message: String,
    },

    /// Input the user gave is wrong (an unknown item, an empty set, a bad flag value).
    #[error("{message}")]
    Invalid {
        /// What is wrong and what to do.
        message: String,
    },

    /// Reading or writing a set failed.
    #[error(transparent)]
    Data(#[from] datasets::Error),

    /// The terminal could not be drawn to or read from.
    #[error("Terminal: {0}")]
    Terminal(#[source] std::io::Error),

    /// A file beside the database (the guidelines) could not be read.
    #[error("Failed to read `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An error in the user's input.
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid {
            message: message.into(),
        }
    }

    /// Whether the user can fix this by changing their input (exit code 2) rather than a failure
    /// at run time (exit code 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Invalid { .. } | Error::Corrupt { .. } | Error::Read { .. } => true,
            Error::Data(e) => e.is_bad_input(),
            _ => false,
        }
    }
}
