//! The one error type of the data layer.
//!
//! Every message says what failed and names the file, line, key, column or row group, so the
//! binary can print the chain and the user knows where to look. [`Error::is_bad_input`] tells the
//! binary whether to exit with 2 (the user's input is wrong) or 1 (something failed at run time).

use std::path::PathBuf;

/// A `Result` whose error is the data layer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the data layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file could not be opened or read.
    #[error("Failed to read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An output file or directory could not be written.
    #[error("Failed to write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A line-oriented input (JSONL, JSON, CSV) is malformed at a known line.
    #[error("`{path}` line {line}: {message}")]
    Line {
        path: PathBuf,
        line: u64,
        message: String,
    },

    /// An element of a JSON array is malformed.
    #[error("`{path}` element {index}: {message}")]
    Element {
        path: PathBuf,
        index: u64,
        message: String,
    },

    /// A Parquet file is not readable as Parquet (not Parquet, truncated, corrupt).
    #[error("Failed to read Parquet file `{path}`: {message}")]
    ParquetRead {
        path: PathBuf,
        message: String,
        #[source]
        source: Option<parquet::errors::ParquetError>,
    },

    /// A Parquet file could not be written.
    #[error("Failed to write Parquet file `{path}`")]
    ParquetWrite {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A column of a Parquet file (or of a batch) has the wrong type or content.
    #[error("`{path}`, column `{column}`{}: {message}", row_group.map(|g| format!(", row group {g}")).unwrap_or_default())]
    Column {
        path: PathBuf,
        column: String,
        row_group: Option<usize>,
        message: String,
    },

    /// A configuration file or override is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),

    /// Input that is well-formed but cannot be used (missing columns, empty set, bad option).
    #[error("{message}")]
    Invalid { message: String },

    /// A run directory was made by a different config.
    #[error(
        "The run directory `{dir}` was made by a different config (hash {found}, this config is {expected})\n\nhint: pass `--force` to redo the stages whose settings changed, or set `[run] name` to start a new run"
    )]
    RunMismatch {
        dir: PathBuf,
        found: String,
        expected: String,
    },

    /// An Arrow computation failed (a bug or an impossible cast, with context).
    #[error("{context}")]
    Arrow {
        context: String,
        #[source]
        source: arrow_schema::ArrowError,
    },
}

impl Error {
    /// Whether this error is the user's input (exit code 2) rather than a run-time failure (1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Read { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::OutOfMemory
                    | std::io::ErrorKind::TimedOut
            ),
            Error::Line { .. }
            | Error::Element { .. }
            | Error::ParquetRead { .. }
            | Error::Column { .. }
            | Error::Config(_)
            | Error::Invalid { .. }
            | Error::RunMismatch { .. } => true,
            Error::Write { .. } | Error::ParquetWrite { .. } | Error::Arrow { .. } => false,
        }
    }

    /// An error in the user's input, in words that say what to do.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid {
            message: message.into(),
        }
    }

    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Read {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Write {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn arrow(context: impl Into<String>, source: arrow_schema::ArrowError) -> Self {
        Error::Arrow {
            context: context.into(),
            source,
        }
    }
}

/// A problem with one column of a batch, before the batch's file and row group are known.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnError {
    /// The column's name.
    pub column: String,
    /// What is wrong with it.
    pub message: String,
}

impl ColumnError {
    pub(crate) fn new(column: &str, message: impl Into<String>) -> Self {
        ColumnError {
            column: column.to_string(),
            message: message.into(),
        }
    }

    /// Attaches the file and row group the batch came from.
    pub fn at(self, path: impl Into<PathBuf>, row_group: Option<usize>) -> Error {
        Error::Column {
            path: path.into(),
            column: self.column,
            row_group,
            message: self.message,
        }
    }
}

impl std::fmt::Display for ColumnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "column `{}`: {}", self.column, self.message)
    }
}
