//! Naming a store on the command line: a SQLite path or a PostgreSQL connection string.

use std::path::Path;

use eventsource::{PostgresStore, SqliteOptions, SqliteStore, Synchronous};

use crate::error::CliError;

/// An opened store of either backend. Commands are generic over the store and are
/// called through [`on_store!`].
#[derive(Debug)]
pub enum Store {
    /// A SQLite file.
    Sqlite(Box<SqliteStore>),
    /// A schema of a PostgreSQL database.
    Postgres(Box<PostgresStore>),
}

/// Runs `$body` with `$s` bound to the store inside `$store`, whichever backend it is.
macro_rules! on_store {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            $crate::target::Store::Sqlite($s) => {
                let $s = &**$s;
                $body
            }
            $crate::target::Store::Postgres($s) => {
                let $s = &**$s;
                $body
            }
        }
    };
}
pub(crate) use on_store;

/// Whether `target` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres(target: &str) -> bool {
    target.starts_with("postgres://")
        || target.starts_with("postgresql://")
        || target.contains("host=")
}

/// Opens an existing store: a SQLite file that does not exist is refused rather than
/// created (a typo must not leave an empty store behind).
pub fn open(target: &str, schema: &str) -> Result<Store, CliError> {
    if !is_postgres(target) && !Path::new(target).exists() {
        return Err(CliError::NoSuchFile {
            path: target.into(),
        });
    }
    create(target, schema)
}

/// Opens a store, creating it if it does not exist: the target of `import` and `copy`.
///
/// A SQLite target commits with `synchronous=NORMAL`: in WAL mode a commit then waits for
/// no flush to disk (one per batch made a bulk load wait on the disk, not the CPU), and
/// stays atomic. A power loss may lose the last batches, never corrupt the file: the
/// copy then goes on after whatever the target holds, and an import starts over.
pub fn create(target: &str, schema: &str) -> Result<Store, CliError> {
    let opened = if is_postgres(target) {
        PostgresStore::connect_with_schema(target, schema).map(|s| Store::Postgres(Box::new(s)))
    } else {
        SqliteStore::open_with(
            target,
            SqliteOptions::new().synchronous(Synchronous::Normal),
        )
        .map(|s| Store::Sqlite(Box::new(s)))
    };
    opened.map_err(|source| CliError::Open {
        target: describe(target, schema),
        source,
    })
}

/// How a store is named in messages: the path, or the schema of the database (the
/// connection string may hold a password).
pub fn describe(target: &str, schema: &str) -> String {
    if is_postgres(target) {
        format!("PostgreSQL schema `{schema}`")
    } else {
        target.to_owned()
    }
}
