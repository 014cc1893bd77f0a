//! The embedded default: every event in one append-only table of one SQLite file; see
//! [`SqliteStore`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, ToSql, TransactionBehavior};

use super::{AppendResult, EventStore, Visitor};
use crate::error::{AppendError, ReadError, StoreError};
use crate::event::{EventId, NewEvent, RecordedEventRef, Timestamp};
use crate::version::{ExpectedVersion, Position, StreamId, Version};

/// `PRAGMA application_id` of an eventsource store ("ESRC").
const APPLICATION_ID: i32 = 0x4553_5243;

/// Schema migrations: entry `i` takes a store from schema version `i` to `i + 1`. A new
/// store runs them all; the file's `user_version` is the number applied.
const MIGRATIONS: &[&str] = &[r"
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    aggregate_type TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_type     TEXT    NOT NULL,
    event_version  INTEGER NOT NULL CHECK (event_version >= 1),
    event_id       TEXT    NOT NULL UNIQUE,
    recorded_at    INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    UNIQUE (aggregate_type, stream_id, version)
);
CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'eventsource: the events table is append-only; UPDATE is refused'); END;
CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'eventsource: the events table is append-only; DELETE is refused'); END;
"];

/// The schema version this build writes and reads.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const INSERT_EVENT: &str = "INSERT INTO events (aggregate_type, stream_id, version, event_type, \
     event_version, event_id, recorded_at, payload, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const STREAM_VERSION: &str = "SELECT version FROM events WHERE aggregate_type = ?1 AND stream_id = ?2 \
     ORDER BY version DESC LIMIT 1";
const READ_STREAM: &str = "SELECT position, version, event_type, event_version, event_id, recorded_at, \
     payload, metadata FROM events WHERE aggregate_type = ?1 AND stream_id = ?2 AND version >= ?3 \
     ORDER BY version LIMIT ?4";
const READ_ALL: &str = "SELECT position, version, event_type, event_version, event_id, recorded_at, \
     payload, metadata, aggregate_type, stream_id FROM events WHERE position > ?1 \
     ORDER BY position LIMIT ?2";

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is on disk before it is acknowledged, surviving a power loss.
    #[default]
    Full,
    /// Commits survive a crash of the application but the last ones may be lost on a
    /// power loss or OS crash. Much faster for many small appends.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Options for [`SqliteStore::open_with`].
///
/// ```
/// use eventsource::{SqliteStore, Synchronous};
/// use eventsource::SqliteOptions;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("bank.db");
///
/// let options = SqliteOptions::new().synchronous(Synchronous::Normal);
/// let store = SqliteStore::open_with(&path, options)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SqliteOptions {
    synchronous: Synchronous,
    busy_timeout: Duration,
    on_connect: Option<Arc<ConnectHook>>,
}

type ConnectHook = dyn Fn(&Connection) -> rusqlite::Result<()> + Send + Sync;

impl fmt::Debug for SqliteOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteOptions")
            .field("synchronous", &self.synchronous)
            .field("busy_timeout", &self.busy_timeout)
            .field("on_connect", &self.on_connect.is_some())
            .finish()
    }
}

impl SqliteOptions {
    /// `synchronous=FULL`, a 5-second busy timeout.
    pub fn new() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            on_connect: None,
        }
    }

    /// Runs `hook` on every connection the store opens, after the store has configured
    /// it: to set further pragmas (`cache_size`, `max_page_count`, ...), register SQL
    /// functions, or install tracing and authorizer hooks.
    ///
    /// ```
    /// use eventsource::{SqliteOptions, SqliteStore};
    ///
    /// let options = SqliteOptions::new().on_connect(|conn| conn.pragma_update(None, "cache_size", -65_536));
    /// let store = SqliteStore::in_memory_with(options)?;
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    #[must_use]
    pub fn on_connect(
        mut self,
        hook: impl Fn(&Connection) -> rusqlite::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.on_connect = Some(Arc::new(hook));
        self
    }

    /// Chooses the durability of commits.
    #[must_use]
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long an append waits for another writer (thread or process) to finish before
    /// failing with a busy error.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// An event store in one SQLite file.
///
/// One table, `events`, holds every event of every aggregate: `position` (the global
/// order), `aggregate_type`, `stream_id`, `version`, `event_type`, `event_version`,
/// `event_id` (UUID text), `recorded_at` (microseconds since the Unix epoch, UTC),
/// `payload` and `metadata` (JSON text). Triggers make every UPDATE and DELETE on it
/// fail; `DROP TRIGGER` in a shell is the only way around them, and this crate never
/// issues UPDATE, DELETE or DROP.
///
/// The file is in WAL mode. Appends take the write lock up front (`BEGIN IMMEDIATE`)
/// and wait up to the busy timeout for other threads or processes, so any number of them
/// can share one file. With [`Synchronous::Full`] (the default) an acknowledged append
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
        let conn = connect(path, &options)?;
        prepare_schema(&conn, path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        configure(&conn, &options)?;
        Ok(SqliteStore {
            writer: Mutex::new(conn),
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
        let conn = Connection::open_in_memory()?;
        prepare_schema(&conn, Path::new(":memory:"))?;
        configure(&conn, &options)?;
        Ok(SqliteStore {
            writer: Mutex::new(conn),
            readers: None,
            path: None,
            options,
        })
    }

    /// The file of the store (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open: it rolls back
        // on drop. So the connection is still good.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on an idle read connection (opening one if none is idle).
    fn with_reader<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let (Some(readers), Some(path)) = (&self.readers, &self.path) else {
            return f(&self.writer());
        };
        let idle = readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = if let Some(conn) = idle {
            conn
        } else {
            let conn = connect(path, &self.options)?;
            configure(&conn, &self.options)?;
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

fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(options.busy_timeout)?;
    Ok(conn)
}

/// Settings of every connection, once the schema is known to be ours.
fn configure(conn: &Connection, options: &SqliteOptions) -> Result<(), StoreError> {
    conn.pragma_update(None, "synchronous", options.synchronous.pragma())?;
    if let Some(hook) = &options.on_connect {
        hook(conn)?;
    }
    Ok(())
}

/// Checks that the file is an eventsource store of a schema we know, creating the
/// schema in an empty file. Nothing is written to a file that is refused.
fn prepare_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let not_a_store = |reason: String| StoreError::NotAStore {
        path: path.to_owned(),
        reason,
    };
    // Reading the header is the first thing that touches the file: a file that is not
    // SQLite fails here, before anything is written.
    let (app_id, user_version, objects) = match read_header(conn) {
        Ok(header) => header,
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            return Err(not_a_store("the file is not a SQLite database".into()));
        }
        Err(e) => return Err(e.into()),
    };
    if app_id == 0 && objects == 0 {
        return create_schema(conn, path);
    }
    if app_id != APPLICATION_ID {
        return Err(not_a_store(format!(
            "it is a SQLite database of another application (application_id {app_id:#x}, {objects} schema objects)"
        )));
    }
    if user_version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: user_version,
            supported: SCHEMA_VERSION,
        });
    }
    if user_version < SCHEMA_VERSION {
        return create_schema(conn, path);
    }
    Ok(())
}

fn read_header(conn: &Connection) -> rusqlite::Result<(i32, i64, i64)> {
    let app_id = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let user_version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let objects = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok((app_id, user_version, objects))
}

/// Applies the missing migrations under the write lock; another process may be doing the
/// same, so the state is read again inside the transaction.
fn create_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let (app_id, user_version, objects) = read_header(&tx)?;
    if app_id != APPLICATION_ID && !(app_id == 0 && objects == 0) {
        return Err(StoreError::NotAStore {
            path: path.to_owned(),
            reason: "another application created a schema in the file".into(),
        });
    }
    let from = usize::try_from(user_version).unwrap_or(usize::MAX);
    for migration in MIGRATIONS.iter().skip(from) {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Whether `e` is a violation of a UNIQUE constraint (`SQLITE_CONSTRAINT_UNIQUE`), the
/// only constraint an append can break once its expected version has been checked under
/// the write lock: so it means a duplicate event id.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(err, _)
            if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
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

fn current_version(conn: &Connection, stream: &StreamId) -> rusqlite::Result<Version> {
    Ok(conn
        .prepare_cached(STREAM_VERSION)?
        .query_row((stream.aggregate_type(), stream.id()), |r| r.get(0))
        .optional()?
        .unwrap_or(Version::NONE))
}

/// Encodes an event id as hyphenated text without allocating.
fn event_id_text<'b>(id: &EventId, buf: &'b mut [u8; 36]) -> &'b str {
    id.as_uuid().hyphenated().encode_lower(buf)
}

/// Checks that a payload is JSON before it is stored.
fn check_json(stream: &StreamId, event: &NewEvent) -> Result<(), AppendError> {
    serde_json::from_str::<serde::de::IgnoredAny>(&event.payload)
        .map(drop)
        .map_err(|source| AppendError::Encode {
            stream: stream.clone(),
            event_type: event.event_type.to_string(),
            source,
        })
}

impl EventStore for SqliteStore {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        for event in events {
            check_json(stream, event)?;
        }
        let conn = self.writer();
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        let actual = current_version(&tx, stream)?;
        if !expected.matches(actual) {
            return Err(AppendError::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            });
        }
        let recorded_at = Timestamp::now().as_micros();
        let mut positions = Vec::with_capacity(events.len());
        let mut version = actual;
        {
            let mut insert = tx.prepare_cached(INSERT_EVENT)?;
            let mut id_buf = [0u8; 36];
            for event in events {
                version = version.next();
                if version > Version::MAX {
                    return Err(AppendError::VersionOverflow {
                        stream: stream.clone(),
                    });
                }
                let metadata = event
                    .metadata
                    .to_json()
                    .map_err(|source| AppendError::Encode {
                        stream: stream.clone(),
                        event_type: event.event_type.to_string(),
                        source,
                    })?;
                let inserted = insert.execute((
                    stream.aggregate_type(),
                    stream.id(),
                    version,
                    event.event_type.as_ref(),
                    event.event_version,
                    event_id_text(&event.event_id, &mut id_buf),
                    recorded_at,
                    event.payload.as_str(),
                    metadata.as_str(),
                ));
                match inserted {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        return Err(AppendError::DuplicateEventId {
                            stream: stream.clone(),
                            event_id: event.event_id,
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
                positions.push(Position::new(tx.last_insert_rowid().unsigned_abs()));
            }
        }
        tx.commit()?;
        Ok(AppendResult {
            stream_version: version,
            positions,
        })
    }

    fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.with_reader(|conn| Ok(current_version(conn, stream)?))
    }

    fn read_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(READ_STREAM)?;
            let limit = i64::try_from(max_count).unwrap_or(i64::MAX);
            let mut rows = stmt.query((
                stream.aggregate_type(),
                stream.id(),
                from.clamp(Version::new(1), Version::MAX),
                limit,
            ))?;
            while let Some(row) = rows.next()? {
                visit(decode_row(row, stream.aggregate_type(), stream.id())?)?;
            }
            Ok(())
        })
    }

    fn read_all_with(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(READ_ALL)?;
            let limit = i64::try_from(max_count).unwrap_or(i64::MAX);
            let after = after.min(Position::new(i64::MAX.unsigned_abs()));
            let mut rows = stmt.query((after, limit))?;
            while let Some(row) = rows.next()? {
                let position: i64 = row.get(0)?;
                let aggregate_type = text(row, 8, position, "aggregate_type")?;
                let stream_id = text(row, 9, position, "stream_id")?;
                visit(decode_row(row, aggregate_type, stream_id)?)?;
            }
            Ok(())
        })
    }
}

fn text<'r>(
    row: &'r rusqlite::Row<'_>,
    idx: usize,
    position: i64,
    column: &str,
) -> Result<&'r str, ReadError> {
    row.get_ref(idx)?
        .as_str()
        .map_err(|e| corrupt(position, column, &e))
}

fn corrupt(position: i64, column: &str, e: &dyn fmt::Display) -> ReadError {
    ReadError::Corrupt {
        position,
        reason: format!("column `{column}`: {e}"),
    }
}

/// Borrows one row of [`READ_STREAM`] or [`READ_ALL`] (same first eight columns).
fn decode_row<'r>(
    row: &'r rusqlite::Row<'_>,
    aggregate_type: &'r str,
    stream_id: &'r str,
) -> Result<RecordedEventRef<'r>, ReadError> {
    let position: i64 = row.get(0)?;
    let int = |idx: usize, column: &str| -> Result<i64, ReadError> {
        row.get_ref(idx)?
            .as_i64()
            .map_err(|e| corrupt(position, column, &e))
    };
    let version = int(1, "version")?;
    let event_version = int(3, "event_version")?;
    Ok(RecordedEventRef {
        position: Position::new(
            u64::try_from(position).map_err(|e| corrupt(position, "position", &e))?,
        ),
        aggregate_type,
        stream_id,
        version: Version::new(
            u64::try_from(version).map_err(|e| corrupt(position, "version", &e))?,
        ),
        event_type: text(row, 2, position, "event_type")?,
        event_version: u32::try_from(event_version)
            .map_err(|e| corrupt(position, "event_version", &e))?,
        event_id: text(row, 4, position, "event_id")?,
        recorded_at: Timestamp::from_micros(int(5, "recorded_at")?),
        payload: text(row, 6, position, "payload")?,
        metadata: text(row, 7, position, "metadata")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(text: &str) -> NewEvent {
        NewEvent::new("note.added", 1, format!(r#"{{"text":"{text}"}}"#))
    }

    #[test]
    fn expected_versions_are_enforced() -> Result<(), Box<dyn std::error::Error>> {
        let store = SqliteStore::in_memory()?;
        let s = StreamId::new("note", "1");
        store.append(&s, ExpectedVersion::NoStream, &[note("a")])?;
        let err = store.append(&s, ExpectedVersion::NoStream, &[note("b")]);
        assert!(matches!(
            err,
            Err(AppendError::Conflict { actual, .. }) if actual == Version::new(1)
        ));
        let ok = store.append(
            &s,
            ExpectedVersion::Exact(Version::new(1)),
            &[note("b"), note("c")],
        )?;
        assert_eq!(ok.stream_version, Version::new(3));
        assert_eq!(ok.positions, [Position::new(2), Position::new(3)]);
        Ok(())
    }

    #[test]
    fn a_duplicate_event_id_rolls_back_the_whole_batch() -> Result<(), Box<dyn std::error::Error>> {
        let store = SqliteStore::in_memory()?;
        let s = StreamId::new("note", "1");
        let first = note("a");
        store.append(&s, ExpectedVersion::Any, std::slice::from_ref(&first))?;
        let batch = [note("b"), note("c").with_id(first.event_id)];
        let err = store.append(&s, ExpectedVersion::Any, &batch);
        assert!(
            matches!(err, Err(AppendError::DuplicateEventId { event_id, .. }) if event_id == first.event_id)
        );
        assert_eq!(store.stream_version(&s)?, Version::new(1));
        Ok(())
    }

    #[test]
    fn a_payload_that_is_not_json_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let store = SqliteStore::in_memory()?;
        let s = StreamId::new("note", "1");
        let err = store.append(
            &s,
            ExpectedVersion::Any,
            &[note("a"), NewEvent::new("x", 1, "{nope")],
        );
        assert!(
            matches!(err, Err(AppendError::Encode { ref event_type, .. }) if event_type == "x")
        );
        assert_eq!(store.stream_version(&s)?, Version::NONE);
        Ok(())
    }
}
