//! The embedded default: every event in one append-only table of one SQLite file; see
//! [`SqliteStore`].

mod import;
mod project;
mod read;
mod schema;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql, TransactionBehavior};

use self::read::{
    FilteredQuery, LIST_STREAMS_AFTER, LIST_STREAMS_FIRST, LOAD_SNAPSHOT, READ_ALL, READ_COMMAND,
    READ_STREAM, REPLAY_STREAM, decode_row, read_filtered, row_head, text,
};
use self::schema::{check_file_len, configure, connect, enable_wal, prepare_schema};
use self::write::{PRUNE_SNAPSHOTS, SAVE_SNAPSHOT, check_json, current_version};
use super::group_commit::{GroupCommit, Request};
use super::notify::Commits;
use super::{
    AppendResult, CommandRecord, DataVisitor, EventFilter, EventStore, StreamInfo, Visitor,
};
use crate::error::{AppendError, ReadError, StoreError};
use crate::event::{EventData, NewEvent, Timestamp};
use crate::snapshot::Snapshot;
use crate::version::{ExpectedVersion, Position, StreamId, Version};

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

type ConnectHook = dyn Fn(&mut Connection) -> rusqlite::Result<()> + Send + Sync;

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
        hook: impl Fn(&mut Connection) -> rusqlite::Result<()> + Send + Sync + 'static,
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
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
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

/// A `snapshots` row as a snapshot, or `None` when it is none: a snapshot is a cache, so a
/// negative version, a state that is not text or a timestamp that is not an integer
/// make the row no snapshot rather than an error.
fn snapshot_row(row: &rusqlite::Row<'_>, state_version: u32) -> Option<Snapshot> {
    let version = u64::try_from(row.get::<_, i64>(0).ok()?).ok()?;
    let state = row.get_ref(1).ok()?.as_str().ok()?.to_owned();
    let taken_at = Timestamp::from_micros(row.get(2).ok()?);
    Some(Snapshot {
        version: Version::new(version),
        state_version,
        state,
        taken_at,
    })
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

impl SqliteStore {
    /// Runs a stream query (`sql` takes the aggregate type, stream id, first version and
    /// limit) on a read connection and hands each row to `each`.
    fn stream_rows(
        &self,
        sql: &str,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        mut each: impl FnMut(&rusqlite::Row<'_>) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        stream.validate().map_err(StoreError::from)?;
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let limit = i64::try_from(max_count).unwrap_or(i64::MAX);
            let from = from.clamp(Version::new(1), Version::MAX);
            let mut rows = stmt.query((stream.aggregate_type(), stream.id(), from, limit))?;
            while let Some(row) = rows.next()? {
                each(row)?;
            }
            Ok(())
        })
    }

    /// Checks the payloads, then hands the append to the group commit.
    fn submit(&self, request: Request<'_>) -> Result<AppendResult, AppendError> {
        project::refuse_inside_batch(self)?;
        request.stream.validate().map_err(StoreError::from)?;
        for event in request.events {
            check_json(request.stream, event)?;
        }
        let appended = self.group.append(request, &|batch| self.commit(batch))?;
        if let Some(last) = appended.positions.last() {
            self.commits.committed(*last);
        }
        Ok(appended)
    }
}

impl EventStore for SqliteStore {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        self.submit(Request {
            stream,
            expected,
            events,
            command: None,
        })
    }

    fn append_command(
        &self,
        command_id: &str,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        self.submit(Request {
            stream,
            expected,
            events,
            command: Some(command_id),
        })
    }

    fn command(&self, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.with_reader(|conn| {
            let row = conn
                .prepare_cached(READ_COMMAND)?
                .query_row([command_id], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Version>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, i64>(4)?,
                    ))
                })
                .optional()?;
            let Some((aggregate_type, stream_id, stream_version, positions, recorded_at)) = row
            else {
                return Ok(None);
            };
            let positions: Vec<u64> = serde_json::from_str(&positions).map_err(|e| {
                StoreError::Sqlite(rusqlite::Error::FromSqlConversionFailure(
                    3,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                ))
            })?;
            Ok(Some(CommandRecord {
                command_id: command_id.to_owned(),
                stream: StreamId::new(aggregate_type, stream_id),
                result: AppendResult {
                    stream_version,
                    positions: positions.into_iter().map(Position::new).collect(),
                    recorded_at: Timestamp::from_micros(recorded_at),
                },
                recorded_at: Timestamp::from_micros(recorded_at),
            }))
        })
    }

    fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        stream.validate()?;
        self.with_reader(|conn| Ok(current_version(conn, stream)?))
    }

    fn read_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        self.stream_rows(READ_STREAM, stream, from, max_count, |row| {
            visit(decode_row(row, stream.aggregate_type(), stream.id())?)
        })
    }

    fn replay_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut DataVisitor<'_>,
    ) -> Result<(), ReadError> {
        self.stream_rows(REPLAY_STREAM, stream, from, max_count, |row| {
            let (position, version, event_type, event_version) = row_head(row)?;
            visit(EventData {
                position,
                version,
                event_type,
                event_version,
                payload: text(row, 4, position.get() as i64, "payload")?,
            })
        })
    }

    fn load_snapshot(
        &self,
        stream: &StreamId,
        at_most: Version,
        state_version: u32,
    ) -> Result<Option<Snapshot>, StoreError> {
        stream.validate()?;
        self.with_reader(|conn| {
            let at_most = at_most.min(Version::MAX);
            let snapshot = conn
                .prepare_cached(LOAD_SNAPSHOT)?
                .query_row(
                    (stream.aggregate_type(), stream.id(), state_version, at_most),
                    |row| Ok(snapshot_row(row, state_version)),
                )
                .optional()?;
            Ok(snapshot.flatten())
        })
    }

    fn save_snapshot(&self, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError> {
        stream.validate()?;
        project::refuse_inside_batch(self)?;
        let conn = self.writer();
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        tx.prepare_cached(SAVE_SNAPSHOT)?.execute((
            stream.aggregate_type(),
            stream.id(),
            snapshot.state_version,
            snapshot.version,
            snapshot.state.as_str(),
            snapshot.taken_at.as_micros(),
        ))?;
        tx.prepare_cached(PRUNE_SNAPSHOTS)?
            .execute((stream.aggregate_type(), stream.id()))?;
        tx.commit()?;
        Ok(())
    }

    fn read_all_filtered_with(
        &self,
        after: Position,
        filter: &EventFilter,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        let until = Position::new(i64::MAX.unsigned_abs());
        self.with_reader(|conn| read_filtered(conn, after, until, filter, max_count, visit))
    }

    fn list_streams(
        &self,
        aggregate_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamInfo>, StoreError> {
        StreamId::new(aggregate_type, after.unwrap_or_default()).validate()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (sql, after) = match after {
            Some(after) => (LIST_STREAMS_AFTER, after),
            None => (LIST_STREAMS_FIRST, ""),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map((aggregate_type, after, limit), |row| {
                Ok(StreamInfo {
                    stream: StreamId::new(aggregate_type, row.get::<_, String>(0)?),
                    version: row.get(1)?,
                    first_recorded_at: Timestamp::from_micros(row.get(2)?),
                    last_recorded_at: Timestamp::from_micros(row.get(3)?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
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

impl SqliteStore {
    /// `EXPLAIN QUERY PLAN` of the statement [`EventStore::read_all_filtered_with`] runs
    /// for `filter`, one line per step. Not public API: for the tests that check that a
    /// filtered read never sorts.
    ///
    /// # Errors
    /// When SQLite fails.
    #[doc(hidden)]
    pub fn explain_filtered(&self, filter: &EventFilter) -> Result<String, StoreError> {
        let query = FilteredQuery::new(
            filter,
            Position::START,
            Position::new(i64::MAX.unsigned_abs()),
            512,
        )?;
        self.explain(&query.sql, rusqlite::params_from_iter(&query.params))
    }

    /// `EXPLAIN QUERY PLAN` of the statement [`EventStore::list_streams`] runs. Not public
    /// API: for the tests of its plan.
    ///
    /// # Errors
    /// When SQLite fails.
    #[doc(hidden)]
    pub fn explain_list_streams(&self) -> Result<String, StoreError> {
        self.explain(LIST_STREAMS_AFTER, ("t", "a", 10))
    }

    fn explain(&self, sql: &str, params: impl rusqlite::Params) -> Result<String, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let lines = stmt
                .query_map(params, |row| row.get::<_, String>(3))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(lines.join("\n"))
        })
    }
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

    #[test]
    fn concurrent_appends_each_get_their_own_outcome() -> Result<(), Box<dyn std::error::Error>> {
        let store = Arc::new(SqliteStore::in_memory()?);
        let shared = StreamId::new("note", "shared");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                let shared = shared.clone();
                std::thread::spawn(move || -> Result<(u32, u32), AppendError> {
                    let own = StreamId::new("note", format!("t{t}"));
                    let (mut won, mut lost) = (0, 0);
                    for i in 0..50u64 {
                        let done = store.append(
                            &own,
                            ExpectedVersion::Exact(Version::new(i)),
                            &[note("x")],
                        )?;
                        assert_eq!(done.stream_version, Version::new(i + 1));
                        assert_eq!(done.positions.len(), 1);
                        // Everyone races for the same version of the shared stream.
                        match store.append(
                            &shared,
                            ExpectedVersion::Exact(Version::new(i)),
                            &[note("y")],
                        ) {
                            Ok(_) => won += 1,
                            Err(AppendError::Conflict { .. }) => lost += 1,
                            Err(e) => return Err(e),
                        }
                    }
                    Ok((won, lost))
                })
            })
            .collect();
        let mut won = 0;
        for t in threads {
            let (w, l) = t.join().map_err(|_| "thread panicked")??;
            assert_eq!(w + l, 50);
            won += w;
        }
        let shared_version = store.stream_version(&shared)?;
        assert_eq!(shared_version, Version::new(u64::from(won)));
        for t in 0..8 {
            assert_eq!(
                store.stream_version(&StreamId::new("note", format!("t{t}")))?,
                Version::new(50)
            );
        }
        let positions: Vec<u64> = store
            .read_all(Position::START)
            .map(|e| e.map(|e| e.position.get()))
            .collect::<Result<_, _>>()?;
        let expected: Vec<u64> = (1..=positions.len() as u64).collect();
        assert_eq!(positions, expected);
        Ok(())
    }
}
