//! The embedded default: every event in one append-only table of one SQLite file; see
//! [`SqliteStore`].

mod chain;
mod event_store;
mod import;
mod options;
mod project;
mod read;
mod schema;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, TransactionBehavior};

use self::schema::{check_file_len, configure, connect, enable_wal, prepare_schema};
use super::group_commit::GroupCommit;
use super::notify::Commits;
use crate::error::StoreError;
use crate::version::{Position, Version};

pub use self::options::{SqliteOptions, Synchronous};

/// An event store in one SQLite file.
///
/// One table, `events`, holds every event of every aggregate: `position` (the global
/// order), `aggregate_type`, `stream_id`, `version`, `event_type`, `event_version`,
/// `event_id` (UUID text), `recorded_at` (microseconds since the Unix epoch, UTC),
/// `payload` and `metadata` (JSON text). Triggers make every UPDATE, DELETE and
/// `INSERT OR REPLACE` on it fail; `DROP TRIGGER` in a shell is the only way around
/// them, and this crate never issues UPDATE, DELETE or DDL on it. Beside it: `commands`
/// (the outcomes of idempotent commands, append-only as well) and `snapshots` (a
/// disposable cache of aggregate states).
///
/// The file is in WAL mode. Appends take the write lock up front (`BEGIN IMMEDIATE`)
/// and wait up to the busy timeout for other threads or processes, so any number of them
/// can share one file. Within a process, appends that arrive while another commits are
/// written together in one transaction (group commit), each in isolation from the
/// others' failures. With [`Synchronous::Full`] (the default) an acknowledged append
/// survives a power loss; [`Synchronous::Normal`] survives a crash of the process only.
///
/// ```
/// use eventsource::SqliteStore;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("bank.db");
///
/// let store = SqliteStore::open(&path)?; // created on first open
/// let again = SqliteStore::open(&path)?; // any number of handles, threads or processes
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    writer: Mutex<Connection>,
    /// How many threads wait for `writer` (a replay on the writer hands over to a reader
    /// when one does).
    writer_waits: AtomicUsize,
    /// How far the chain's head lags behind this handle's commits.
    chain_lag: Mutex<write::ChainLag>,
    /// Appends waiting to be committed together.
    group: GroupCommit,
    /// The last position committed through this handle, for live readers.
    commits: Commits,
    /// Idle read connections (file stores only; an in-memory store reads on `writer`).
    readers: Option<Mutex<Vec<Connection>>>,
    path: Option<PathBuf>,
    options: SqliteOptions,
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and the schema if the file does not
    /// exist, with default [`SqliteOptions`].
    ///
    /// # Errors
    /// [`StoreError::NotAStore`] for a directory, a file that is not SQLite or a SQLite
    /// database of another application; [`StoreError::NewerSchema`] for a store written
    /// by a newer version of this crate. Such files are left untouched.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::new())
    }

    /// Opens the store at `path` with `options`.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if path.is_dir() {
            return Err(StoreError::NotAStore {
                path: path.to_owned(),
                reason: "it is a directory".into(),
            });
        }
        check_file_len(path)?;
        let mut conn = connect(path, &options)?;
        prepare_schema(&conn, path)?;
        enable_wal(&conn, options.busy_timeout)?;
        configure(&mut conn, &options)?;
        Ok(SqliteStore {
            writer: Mutex::new(conn),
            writer_waits: AtomicUsize::new(0),
            chain_lag: Mutex::default(),
            group: GroupCommit::default(),
            commits: Commits::default(),
            readers: Some(Mutex::new(Vec::new())),
            path: Some(path.to_owned()),
            options,
        })
    }

    /// A store in memory, private to this handle: for tests and examples.
    ///
    /// # Errors
    /// When SQLite cannot allocate the database.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::in_memory_with(SqliteOptions::new())
    }

    /// A store in memory with `options`.
    ///
    /// # Errors
    /// When SQLite cannot allocate the database, or the `on_connect` hook fails.
    pub fn in_memory_with(options: SqliteOptions) -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        prepare_schema(&conn, Path::new(":memory:"))?;
        configure(&mut conn, &options)?;
        Ok(SqliteStore {
            writer: Mutex::new(conn),
            writer_waits: AtomicUsize::new(0),
            chain_lag: Mutex::default(),
            group: GroupCommit::default(),
            commits: Commits::default(),
            readers: None,
            path: None,
            options,
        })
    }

    /// The file of the store (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` on a read connection of the store: to query read models kept in the
    /// same file (see [`Projector`](crate::Projector)).
    ///
    /// ```
    /// use eventsource::SqliteStore;
    ///
    /// let store = SqliteStore::in_memory()?;
    /// let events: i64 = store.read(|conn| conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)))?;
    /// assert_eq!(events, 0);
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    ///
    /// # Errors
    /// `f`'s error, or the store's when it cannot open a connection.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.with_reader(|conn| Ok(f(conn)?))
    }

    /// Runs `f` in a write transaction, committed when `f` returns `Ok`: to create and
    /// migrate read-model tables in the store's file. The events, commands and
    /// projections tables are the store's: their triggers refuse changes.
    ///
    /// ```
    /// use eventsource::SqliteStore;
    ///
    /// let store = SqliteStore::in_memory()?;
    /// store.write(|tx| tx.execute_batch("CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, balance INTEGER)"))?;
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    ///
    /// # Errors
    /// `f`'s error (the transaction is rolled back), or the store's.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        project::refuse_inside_batch(self)?;
        let conn = self.writer();
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open: it rolls back
        // on drop. So the connection is still good.
        match self.writer.try_lock() {
            Ok(conn) => conn,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.writer_waits.fetch_add(1, Ordering::Relaxed);
                let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
                self.writer_waits.fetch_sub(1, Ordering::Relaxed);
                conn
            }
        }
    }

    /// The writer connection of a file store, if no thread holds or waits for it (a
    /// thread that holds it, inside a projection batch, gets `None` as well).
    fn idle_writer(&self) -> Option<MutexGuard<'_, Connection>> {
        self.path.as_ref()?;
        if self.writer_wanted() {
            return None;
        }
        match self.writer.try_lock() {
            Ok(conn) => Some(conn),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Whether a thread waits for the writer connection.
    fn writer_wanted(&self) -> bool {
        self.writer_waits.load(Ordering::Relaxed) > 0
    }

    /// Runs `f` on an idle read connection (opening one if none is idle).
    fn with_reader<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let (Some(readers), Some(path)) = (&self.readers, &self.path) else {
            // In memory, reads share the writer connection, which a batch holds.
            project::refuse_inside_batch(self)?;
            return f(&self.writer());
        };
        let idle = readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = if let Some(conn) = idle {
            conn
        } else {
            let mut conn = connect(path, &self.options)?;
            configure(&mut conn, &self.options)?;
            conn
        };
        let result = f(&conn);
        readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        result
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.move_lagging_head();
    }
}

impl ToSql for Version {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(i64::try_from(self.get()).map_err(
            |e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        )?))
    }
}

impl FromSql for Version {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let n = value.as_i64()?;
        u64::try_from(n)
            .map(Version::new)
            .map_err(|_| FromSqlError::OutOfRange(n))
    }
}

impl ToSql for Position {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(i64::try_from(self.get()).map_err(
            |e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        )?))
    }
}
