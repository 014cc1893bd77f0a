//! What can go wrong in a command, each with what was wrong in its message.

use std::path::PathBuf;

use eventsource::{ImportError, ReadError, StoreError};

/// A failed command. `main` prints it with its causes and exits with code 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The store could not be opened (not a store, damaged, unreachable).
    #[error("cannot open {target}")]
    Open {
        /// The store, as [`crate::target::describe`] names it.
        target: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A SQLite file that does not exist, named to a command that only reads.
    #[error("{}: no such store file (only `import` and `copy` create a store)", path.display())]
    NoSuchFile {
        /// The path given.
        path: PathBuf,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The target refused a batch of imported events.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// Reading or writing a file or a standard stream failed.
    #[error("{what}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// An import file that is not what `export` writes.
    #[error("{file}, line {line}: {reason}")]
    Format {
        /// The file (`-` for standard input).
        file: String,
        /// The line, from 1.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The command cannot do what was asked (importing into a store with events, a
    /// copy target that is not a prefix of its source, an argument that names nothing).
    #[error("{0}")]
    Refused(String),
}

impl CliError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }

    /// Whether this is a write to a closed pipe (`eventsource events ... | head`): not
    /// an error for the user.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<std::io::Error> for CliError {
    fn from(source: std::io::Error) -> Self {
        CliError::Io {
            what: "cannot write to standard output".into(),
            source,
        }
    }
}
