//! Errors: one narrow enum per operation, and the umbrella [`Error`].
//!
//! | operation | error |
//! |---|---|
//! | opening a store, anything the database itself refuses | [`StoreError`] |
//! | appending | [`AppendError`] |
//! | reading and decoding | [`ReadError`] |
//! | running a command through a repository | [`ExecuteError`] |
//! | lifting a stored event (what an upcaster returns) | [`UpcastError`] |
//! | registering upcasters (when a repository is built) | [`RegistrationError`] |

use std::fmt;
use std::path::PathBuf;

use crate::event::{DecodeFailure, EventId, EventKey, EventLocation};
use crate::version::{ExpectedVersion, InvalidStreamId, StreamId, Version};

/// A failure of the storage backend, or a file that is not a store we can use.
///
/// Retrying can help for busy or locked databases and lost connections
/// ([`StoreError::is_transient`]); the others need a human.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file exists but is not an eventsource store (another SQLite database, or not
    /// SQLite at all). It was left untouched.
    #[error("{path} is not an eventsource store: {reason}")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The store was written by a newer eventsource with a schema this version does not
    /// know. It was left untouched; upgrade eventsource to open it.
    #[error("{path} has schema version {found}, newer than the supported {supported}")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// The store lacks tables or triggers of its schema: someone dropped them (the
    /// append-only triggers can only be removed by `DROP TRIGGER`). The store is not
    /// repaired behind your back: restore it from a backup, or recreate what is missing
    /// knowingly.
    #[error("{} is damaged: missing {}", path.display(), missing.join(", "))]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The tables and triggers that are missing.
        missing: Vec<String>,
    },
    /// The store does not implement an optional feature.
    #[error("this store does not support {feature}")]
    Unsupported {
        /// The feature, e.g. "idempotent commands".
        feature: &'static str,
    },
    /// The stream id cannot be stored (a NUL character, or longer than
    /// [`StreamId::MAX_LEN`]): see [`StreamId::validate`]. Nothing was read or stored.
    #[error(transparent)]
    InvalidStreamId(#[from] InvalidStreamId),
    /// The store's last position leaves no room for the events of an append: someone
    /// inserted a row by hand at a position near `i64::MAX`. Appending past it would
    /// break the global order (SQLite would pick random positions, and readers following
    /// positions would miss events), so nothing is appended; the row must be removed by
    /// a human.
    #[error(
        "the store's last position {last} leaves no room for {count} more events (a row inserted by hand near the largest position?)"
    )]
    PositionsExhausted {
        /// The largest position stored.
        last: u64,
        /// How many events the refused append held.
        count: usize,
    },
    /// The thread committing a group of appends panicked: the append's outcome is
    /// unknown (it may or may not be stored). Reload and check before retrying.
    #[error("the append was interrupted: the thread committing it panicked")]
    Interrupted,
    /// Every connection of the PostgreSQL store's pool stayed busy for the pool's
    /// acquire timeout ([`PostgresOptions`](crate::PostgresOptions)): nothing was done.
    /// Retry later, or allow more connections.
    #[error("all {max} connections of the pool stayed busy for {waited:?}: nothing was done")]
    PoolExhausted {
        /// The most connections the pool opens.
        max: usize,
        /// How long the call waited.
        waited: std::time::Duration,
    },
    /// The async runtime shut down before the operation started on its blocking pool
    /// (feature `tokio`): nothing ran, nothing was stored.
    #[error("the async runtime is shutting down: the operation did not run")]
    ShuttingDown,
    /// The PostgreSQL store's TLS settings cannot work: `sslmode=require` without the
    /// feature `tls`, `sslmode=disable` with [`PostgresOptions::tls`](crate::PostgresOptions),
    /// or CA certificates that cannot be read. Nothing was connected. (A failed
    /// handshake, e.g. a certificate that does not verify, is a
    /// [`StoreError::Postgres`].)
    #[error("PostgreSQL TLS: {message}")]
    Tls {
        /// What is wrong.
        message: String,
    },
    /// SQLite reported an error; the message is SQLite's.
    #[error("sqlite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error; the message has the SQLSTATE, the server's text and
    /// its detail, or the driver's reason (a lost connection, for example).
    #[cfg(feature = "postgres")]
    #[error("postgres error: {}", postgres_message(.0))]
    Postgres(postgres::Error),
}

impl StoreError {
    /// Whether the same operation may succeed if retried as it is, after a moment: SQLite
    /// reporting the database busy or locked (another writer held it past the busy
    /// timeout), and on PostgreSQL a lost or refused connection (SQLSTATE class 08, a
    /// server shutting down, too many connections), a lock or statement timeout
    /// (`55P03`, `57014`), a serialization failure or a deadlock (`40001`, `40P01`).
    ///
    /// `false` for everything that needs a human or a code change, and for
    /// [`StoreError::Interrupted`], whose append may be stored: check before retrying it
    /// ([`StoreError::is_outcome_unknown`]).
    ///
    /// ```
    /// use eventsource::{rusqlite, StoreError};
    ///
    /// let busy = rusqlite::Error::SqliteFailure(
    ///     rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
    ///     None,
    /// );
    /// assert!(StoreError::Sqlite(busy).is_transient());
    /// assert!(!StoreError::Unsupported { feature: "snapshots" }.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            #[cfg(feature = "postgres")]
            StoreError::Postgres(e) => postgres_transient(e),
            StoreError::PoolExhausted { .. } => true,
            _ => false,
        }
    }

    /// Whether the append this error ended may or may not be stored:
    /// [`StoreError::Interrupted`]. Load the stream (or look up the command id) before
    /// running it again.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, StoreError::Interrupted)
    }
}

/// See [`StoreError::is_transient`].
#[cfg(feature = "postgres")]
fn postgres_transient(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;

    if e.is_closed() {
        return true;
    }
    let Some(db) = e.as_db_error() else {
        // The driver's own errors: an I/O error is a broken connection; the others
        // (a bad parameter, a type mismatch) are bugs.
        return std::error::Error::source(e)
            .is_some_and(<dyn std::error::Error>::is::<std::io::Error>);
    };
    let code = db.code();
    code.code().starts_with("08")
        || [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(code)
}

/// `e` as one line: `SQLSTATE message (detail)` for the server's errors, the driver's
/// own text otherwise.
#[cfg(feature = "postgres")]
fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} {} ({detail})", db.code().code(), db.message()),
            None => format!("{} {}", db.code().code(), db.message()),
        },
        None => e.to_string(),
    }
}

#[cfg(feature = "postgres")]
impl From<postgres::Error> for StoreError {
    /// The driver's error, except a table of the store that no longer exists (someone
    /// dropped it): [`StoreError::Damaged`] naming it, as on SQLite.
    fn from(e: postgres::Error) -> Self {
        if let Some(db) = e.as_db_error()
            && *db.code() == postgres::error::SqlState::UNDEFINED_TABLE
            && let Some((schema, table)) = missing_relation(db.message())
        {
            return StoreError::Damaged {
                path: PathBuf::from(schema),
                missing: vec![format!("table {table}")],
            };
        }
        StoreError::Postgres(e)
    }
}

/// The schema and table of PostgreSQL's `relation "schema.table" does not exist`; the
/// store spells every table with its schema.
#[cfg(feature = "postgres")]
fn missing_relation(message: &str) -> Option<(&str, &str)> {
    let name = message
        .strip_prefix("relation \"")?
        .strip_suffix("\" does not exist")?;
    let (schema, table) = name.split_once('.')?;
    Some((schema.trim_matches('"'), table.trim_matches('"')))
}

macro_rules! from_backend_errors {
    ($($ty:ident),*) => {$(
        impl From<rusqlite::Error> for $ty {
            fn from(e: rusqlite::Error) -> Self {
                $ty::Store(StoreError::Sqlite(e))
            }
        }

        #[cfg(feature = "postgres")]
        impl From<postgres::Error> for $ty {
            fn from(e: postgres::Error) -> Self {
                $ty::Store(StoreError::from(e))
            }
        }
    )*};
}

from_backend_errors!(AppendError, ReadError, Error);

/// Why an append failed. Every variant but one is definite: nothing of the append is
/// stored. The exception is [`AppendError::Unknown`] (and its SQLite sibling
/// [`StoreError::Interrupted`] inside [`AppendError::Store`]): the append may or may not
/// be stored, so check before retrying it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The stream is not at the expected version: another writer appended first. Reload
    /// the aggregate and decide again (the repository does this for you). On PostgreSQL
    /// also when a writer that bypassed the append lock took the stream's next version
    /// or the next position while this append waited (`actual` may then equal the
    /// expectation); nothing of this append is stored and retrying is safe.
    #[error("concurrency conflict on stream {stream}: expected {expected}, found version {actual}")]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's actual version.
        actual: Version,
    },
    /// An event with this id is already stored (possibly by an earlier attempt of the same
    /// append): it is never stored twice.
    #[error("duplicate event id {event_id} appended to stream {stream}")]
    DuplicateEventId {
        /// The stream appended to.
        stream: StreamId,
        /// The id already stored.
        event_id: EventId,
    },
    /// The command id is already recorded: the command ran before, and this append was
    /// not stored. [`EventStore::command`](crate::EventStore::command) returns what it
    /// stored then.
    #[error("command `{command_id}` was already executed")]
    DuplicateCommand {
        /// The command id.
        command_id: String,
    },
    /// An event's payload or metadata could not be serialized (a `Serialize` impl that
    /// fails, a non-finite float such as `NaN`, which JSON cannot hold) or is not JSON.
    /// Fix the value: nothing of the append was stored.
    #[error("event `{event_type}` for stream {stream} could not be encoded as JSON")]
    Encode {
        /// The stream appended to.
        stream: StreamId,
        /// The event type.
        event_type: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The stream would grow past [`Version::MAX`].
    #[error("stream {stream} cannot grow past version {}", Version::MAX)]
    VersionOverflow {
        /// The stream.
        stream: StreamId,
    },
    /// The backend failed before the append was committed, or refused the commit: it
    /// was rolled back (except [`StoreError::Interrupted`], whose outcome is unknown).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The connection broke after COMMIT was sent and before the server answered, and the
    /// store could not find out afterwards (on a new connection) whether the append was
    /// committed: it may or may not be stored. Do not simply retry it, which could store
    /// it twice: reload the stream (or look up the command id or an event id) and check
    /// before appending again. [`Repository::execute`](crate::Repository::execute) returns
    /// it as [`ExecuteError::Append`] and never runs the handler again after it.
    #[error(
        "the outcome of the append to stream {stream} is unknown: the connection was lost after COMMIT was sent"
    )]
    Unknown {
        /// The stream appended to.
        stream: StreamId,
        /// The error that broke the commit.
        #[source]
        source: StoreError,
    },
}

impl AppendError {
    /// Whether the append may succeed if retried: a [`AppendError::Conflict`] (after
    /// reloading and deciding again: the repository does this itself), or a transient
    /// store error ([`StoreError::is_transient`]). Never for [`AppendError::Unknown`]:
    /// the append may be stored, so check before retrying
    /// ([`AppendError::is_outcome_unknown`]).
    ///
    /// ```
    /// use eventsource::{AppendError, ExpectedVersion, StreamId, Version};
    ///
    /// let conflict = AppendError::Conflict {
    ///     stream: StreamId::new("account", "1"),
    ///     expected: ExpectedVersion::Exact(Version::new(1)),
    ///     actual: Version::new(2),
    /// };
    /// assert!(conflict.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            AppendError::Conflict { .. } => true,
            AppendError::Store(e) => e.is_transient(),
            _ => false,
        }
    }

    /// Whether the append may or may not be stored: [`AppendError::Unknown`], or
    /// [`StoreError::Interrupted`]. Reload the stream (or look up the command id or an
    /// event id) before appending again.
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            AppendError::Unknown { .. } => true,
            AppendError::Store(e) => e.is_outcome_unknown(),
            _ => false,
        }
    }
}

/// Why reading or decoding stored events failed. Each variant about a stored event
/// names where it is (position, stream, version, type and event version).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A stored event could not be decoded into the aggregate's events: unknown type,
    /// unsupported version or a payload of the wrong shape. Add an upcaster, or fix the
    /// code that wrote it.
    #[error("cannot decode {at}")]
    Decode {
        /// Where the event is.
        at: Box<EventLocation>,
        /// What went wrong.
        #[source]
        source: DecodeFailure,
    },
    /// An upcaster failed or panicked on a stored event (a panic in a typed chain's
    /// `From` too: [`UpcastError::Panicked`]). Fix the upcaster to handle that payload.
    #[error("cannot upcast {at}")]
    Upcast {
        /// Where the event is.
        at: Box<EventLocation>,
        /// The upcaster's error.
        #[source]
        source: UpcastError,
    },
    /// The stored metadata is not a JSON object.
    #[error("metadata of {at} is not a JSON object")]
    Metadata {
        /// Where the event is.
        at: Box<EventLocation>,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The stored event id is not a UUID.
    #[error("event id of {at} is not a UUID")]
    EventId {
        /// Where the event is.
        at: Box<EventLocation>,
        /// The parser's error.
        #[source]
        source: uuid::Error,
    },
    /// The stream's versions are not 1, 2, 3, ...: rows were removed or inserted by hand.
    #[error("stream {stream} skips from version {after} to {found}")]
    VersionGap {
        /// The stream.
        stream: StreamId,
        /// The last version read before the gap.
        after: Version,
        /// The version found instead of the next one.
        found: Version,
    },
    /// A stored column holds a value out of range (a negative version, for example), or
    /// the recorded outcome of an idempotent command does not match its stream (more
    /// events than its stream version, a version beyond the stream's end, positions that
    /// are not the events'). Written by hand or restored from another backup: a human
    /// must look at it.
    #[error("corrupt row at position {position}: {reason}")]
    Corrupt {
        /// The row's global position (for a command record: its first recorded
        /// position, 0 when it records none).
        position: i64,
        /// What is wrong.
        reason: String,
    },
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReadError {
    /// Whether the read may succeed if retried: only a transient store error
    /// ([`StoreError::is_transient`]). An event that cannot be decoded or upcast, or a
    /// corrupt row, fails the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            ReadError::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Why [`Repository::execute`](crate::Repository::execute) did not commit. Nothing of a
/// failed command is stored, except after [`ExecuteError::Append`] with
/// [`AppendError::Unknown`] (or [`StoreError::Interrupted`]): then its events may or may
/// not be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecuteError<E> {
    /// The command handler refused the command with the user's own error.
    #[error("command rejected: {0}")]
    Domain(#[source] E),
    /// Other writers kept appending to the stream: the handler ran `attempts` times and
    /// each time lost the race. Retry later or report the contention.
    #[error(
        "concurrency conflict on stream {stream} after {attempts} attempts: expected version {expected}, found {actual}"
    )]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// The version the last attempt decided on.
        expected: Version,
        /// The version found when appending.
        actual: Version,
        /// How many times the handler ran.
        attempts: u32,
    },
    /// The command id was already used for a command on another stream. Command ids
    /// must be unique per command, across streams.
    #[error("command id `{command_id}` was already used on stream {stream}")]
    CommandIdReused {
        /// The command id.
        command_id: String,
        /// The stream it was used on.
        stream: StreamId,
    },
    /// Loading the aggregate failed.
    #[error("loading the aggregate failed: {0}")]
    Read(#[source] ReadError),
    /// Appending the events failed for another reason than a conflict. With
    /// [`AppendError::Unknown`] the events may be stored: the handler was not run again;
    /// load the aggregate and check before running the command again (or use
    /// [`Repository::execute_once`](crate::Repository::execute_once), whose rerun returns
    /// the recorded outcome if it was stored).
    #[error("appending the events failed: {0}")]
    Append(#[source] AppendError),
}

impl<E> ExecuteError<E> {
    /// Whether running the same command again may succeed: a
    /// [`ExecuteError::Conflict`] (the stream kept moving; for
    /// [`Repository::execute_expected`](crate::Repository::execute_expected) only after
    /// the caller looked at the new version), or a transient store error while loading
    /// or appending ([`StoreError::is_transient`]). Never for the handler's own error,
    /// an event that cannot be decoded, a reused command id, or an append whose outcome
    /// is unknown ([`ExecuteError::is_outcome_unknown`]: check before retrying).
    ///
    /// | error | HTTP status |
    /// |---|---|
    /// | [`ExecuteError::Domain`] | 422 |
    /// | [`ExecuteError::Conflict`] | 409 (412 from `execute_expected`) |
    /// | `is_transient()` | 503, with `Retry-After` |
    /// | `is_outcome_unknown()` | 500: check whether it was stored |
    /// | anything else (decode errors, corrupt rows) | 500 |
    ///
    /// ```
    /// use eventsource::{ExecuteError, StreamId, Version};
    ///
    /// let domain: ExecuteError<&str> = ExecuteError::Domain("insufficient funds");
    /// assert!(!domain.is_transient());
    /// let conflict: ExecuteError<&str> = ExecuteError::Conflict {
    ///     stream: StreamId::new("account", "1"),
    ///     expected: Version::new(1),
    ///     actual: Version::new(2),
    ///     attempts: 11,
    /// };
    /// assert!(conflict.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            ExecuteError::Conflict { .. } => true,
            ExecuteError::Read(e) => e.is_transient(),
            ExecuteError::Append(e) => e.is_transient(),
            ExecuteError::Domain(_) | ExecuteError::CommandIdReused { .. } => false,
        }
    }

    /// Whether the command's events may or may not be stored: an append that ended
    /// with [`AppendError::is_outcome_unknown`]. Load the aggregate and check before
    /// running the command again (or run it with
    /// [`Repository::execute_once`](crate::Repository::execute_once), whose rerun
    /// returns the recorded outcome if it was stored).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, ExecuteError::Append(e) if e.is_outcome_unknown())
    }
}

/// Why an upcaster could not lift a stored event. Return it from your upcaster
/// functions; the repository wraps it with the event's location.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastError {
    /// The upcaster refused the payload.
    #[error("{0}")]
    Invalid(String),
    /// Upcasters kept producing events that are upcast again: a cycle. (Registered
    /// through a repository, upcasters are checked for cycles before any read.)
    #[error("upcasting did not finish after {steps} steps (a cycle of upcasters?)")]
    TooManySteps {
        /// How many upcaster calls ran.
        steps: usize,
    },
    /// A [`Upcasters::custom`](crate::Upcasters::custom) function produced an event it did not declare: fix the
    /// function or its `outputs`.
    #[error("the upcaster of `{upcaster}` produced `{produced}`, which it does not declare")]
    Undeclared {
        /// The stored (type, version) the upcaster lifts.
        upcaster: EventKey,
        /// What it produced.
        produced: EventKey,
    },
    /// An upcaster panicked on the stored event: a JSON upcaster (indexing a payload
    /// that is not an object, for example) or the decoding of a typed `upcast_from`
    /// chain (a `From` impl, a `Deserialize` impl). The panic was caught; make the code
    /// return an error instead (see [`Upcasters::payload_object`](crate::Upcasters::payload_object)). Caught only when
    /// panics unwind (not with `panic = "abort"`).
    #[error("the upcaster of `{upcaster}` panicked: {message}")]
    Panicked {
        /// The (type, version) being upcast or decoded when it panicked.
        upcaster: EventKey,
        /// The panic's message.
        message: String,
    },
    /// A [`Upcasters::payload_object`](crate::Upcasters::payload_object) upcaster met a payload that is not a JSON object.
    #[error("the payload is {found}, not a JSON object")]
    NotAnObject {
        /// What the payload is instead: `null`, `a boolean`, `a number`, `a string` or
        /// `an array`.
        found: &'static str,
    },
}

impl UpcastError {
    /// An upcaster error with a message.
    pub fn invalid(message: impl fmt::Display) -> Self {
        UpcastError::Invalid(message.to_string())
    }
}

/// Why a set of [`Upcasters`](crate::Upcasters) does not fit an aggregate's events, found by
/// [`Upcasters::validate`](crate::Upcasters::validate) when a repository is built. Fix the registration: no stored
/// event has been read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// Two upcasters are registered for the same stored (type, version): keep one.
    #[error("two upcasters are registered for `{key}`")]
    Duplicate {
        /// The (type, version) registered twice.
        key: EventKey,
    },
    /// An upcaster produces a (type, version) that no other upcaster lifts and the
    /// aggregate does not decode: the chain stops short of the current version.
    #[error(
        "the upcaster of `{upcaster}` produces `{produces}`, which the aggregate does not decode ({})",
        decodable_versions(&produces.event_type, decodable)
    )]
    NotDecodable {
        /// The upcaster's stored (type, version).
        upcaster: EventKey,
        /// What it produces.
        produces: EventKey,
        /// The versions of that type the aggregate decodes (empty: an unknown type).
        decodable: Vec<u32>,
    },
    /// Upcasters lead back to a (type, version) they started from.
    #[error("upcasters form a cycle: {}", show_cycle(cycle))]
    Cycle {
        /// The keys of the cycle, the first repeated at the end.
        cycle: Vec<EventKey>,
    },
}

fn decodable_versions(event_type: &str, versions: &[u32]) -> String {
    if versions.is_empty() {
        return format!("it has no event type `{event_type}`");
    }
    let plural = if versions.len() == 1 { "" } else { "s" };
    let versions: Vec<String> = versions.iter().map(ToString::to_string).collect();
    format!(
        "it decodes `{event_type}` at version{plural} {}",
        versions.join(", ")
    )
}

fn show_cycle(cycle: &[EventKey]) -> String {
    let keys: Vec<String> = cycle.iter().map(|k| format!("`{k}`")).collect();
    keys.join(" -> ")
}

/// Any error of this crate except a command's domain error; convenient with `?`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// See [`AppendError`].
    #[error(transparent)]
    Append(#[from] AppendError),
    /// See [`ReadError`].
    #[error(transparent)]
    Read(#[from] ReadError),
    /// See [`RegistrationError`].
    #[error(transparent)]
    Registration(#[from] RegistrationError),
}

/// `Result` with this crate's umbrella [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::ffi::c_int) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    type Execute = ExecuteError<&'static str>;

    fn stream() -> StreamId {
        StreamId::new("account", "1")
    }

    #[test]
    fn busy_and_locked_sqlite_errors_are_transient_others_are_not() {
        assert!(sqlite(rusqlite::ffi::SQLITE_BUSY).is_transient());
        assert!(sqlite(rusqlite::ffi::SQLITE_LOCKED).is_transient());
        assert!(!sqlite(rusqlite::ffi::SQLITE_FULL).is_transient());
        assert!(!sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).is_transient());
        assert!(!StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows).is_transient());
        assert!(!StoreError::Interrupted.is_transient());
        assert!(StoreError::Interrupted.is_outcome_unknown());
        assert!(!sqlite(rusqlite::ffi::SQLITE_BUSY).is_outcome_unknown());
    }

    #[test]
    fn conflicts_and_transient_store_errors_are_worth_retrying() {
        let conflict = AppendError::Conflict {
            stream: stream(),
            expected: ExpectedVersion::NoStream,
            actual: Version::new(1),
        };
        assert!(conflict.is_transient() && !conflict.is_outcome_unknown());
        assert!(AppendError::Store(sqlite(rusqlite::ffi::SQLITE_BUSY)).is_transient());
        let unknown = AppendError::Unknown {
            stream: stream(),
            source: sqlite(rusqlite::ffi::SQLITE_BUSY),
        };
        assert!(!unknown.is_transient() && unknown.is_outcome_unknown());
        let interrupted = AppendError::Store(StoreError::Interrupted);
        assert!(!interrupted.is_transient() && interrupted.is_outcome_unknown());
        let duplicate = AppendError::DuplicateCommand {
            command_id: "c".into(),
        };
        assert!(!duplicate.is_transient());

        assert!(ReadError::Store(sqlite(rusqlite::ffi::SQLITE_LOCKED)).is_transient());
        let gap = ReadError::VersionGap {
            stream: stream(),
            after: Version::new(1),
            found: Version::new(3),
        };
        assert!(!gap.is_transient());
        let decode = ReadError::Decode {
            at: Box::new(EventLocation {
                position: crate::Position::new(1),
                stream: stream(),
                version: Version::new(1),
                event_type: "x".into(),
                event_version: 1,
            }),
            source: DecodeFailure::UnknownType,
        };
        assert!(!decode.is_transient());

        assert!(!Execute::Domain("no").is_transient());
        assert!(
            Execute::Conflict {
                stream: stream(),
                expected: Version::new(1),
                actual: Version::new(2),
                attempts: 1
            }
            .is_transient()
        );
        assert!(Execute::Read(ReadError::Store(sqlite(rusqlite::ffi::SQLITE_BUSY))).is_transient());
        assert!(!Execute::Read(decode).is_transient());
        assert!(Execute::Append(conflict).is_transient());
        let unknown = Execute::Append(unknown);
        assert!(!unknown.is_transient() && unknown.is_outcome_unknown());
        assert!(
            !Execute::CommandIdReused {
                command_id: "c".into(),
                stream: stream()
            }
            .is_transient()
        );
    }
}
