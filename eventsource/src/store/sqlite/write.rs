//! Writing to a SQLite store: one transaction per batch of appends (see
//! `group_commit`), snapshots.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use crate::error::AppendError;
use crate::event::{EventId, NewEvent, Timestamp};
use crate::store::AppendResult;
use crate::store::group_commit::{Outcome, Request};
use crate::version::{Position, StreamId, Version};

pub(super) const INSERT_EVENT: &str = "INSERT INTO events (aggregate_type, stream_id, version, event_type, \
     event_version, event_id, recorded_at, payload, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
pub(super) const STREAM_VERSION: &str = "SELECT version FROM events WHERE aggregate_type = ?1 AND stream_id = ?2 \
     ORDER BY version DESC LIMIT 1";
pub(super) const SAVE_SNAPSHOT: &str = "INSERT OR REPLACE INTO snapshots \
     (aggregate_type, stream_id, state_version, version, state, taken_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
/// Keeps the newest three snapshots of a stream (snapshots are a cache; the events table
/// is never pruned).
pub(super) const PRUNE_SNAPSHOTS: &str = "DELETE FROM snapshots WHERE aggregate_type = ?1 AND stream_id = ?2 \
     AND version < (SELECT min(version) FROM (SELECT version FROM snapshots \
     WHERE aggregate_type = ?1 AND stream_id = ?2 ORDER BY version DESC LIMIT 3))";

pub(super) const COMMAND_DONE: &str = "SELECT 1 FROM commands WHERE command_id = ?1";
pub(super) const INSERT_COMMAND: &str = "INSERT INTO commands (command_id, aggregate_type, \
     stream_id, stream_version, positions, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Whether `e` is the store's own insert colliding with a stored row: a UNIQUE
/// constraint (`SQLITE_CONSTRAINT_UNIQUE`) or the trigger that refuses REPLACE
/// (`SQLITE_CONSTRAINT_TRIGGER`). Once the expected version has been checked under the
/// write lock, the only row an append can collide with is one with the same event id.
pub(super) fn is_collision(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(err, _)
            if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_TRIGGER
    )
}

pub(super) fn current_version(conn: &Connection, stream: &StreamId) -> rusqlite::Result<Version> {
    Ok(conn
        .prepare_cached(STREAM_VERSION)?
        .query_row((stream.aggregate_type(), stream.id()), |r| r.get(0))
        .optional()?
        .unwrap_or(Version::NONE))
}

/// Encodes an event id as hyphenated text without allocating.
pub(super) fn event_id_text<'b>(id: &EventId, buf: &'b mut [u8; 36]) -> &'b str {
    id.as_uuid().hyphenated().encode_lower(buf)
}

/// Checks that a payload is JSON before it is stored.
pub(super) fn check_json(stream: &StreamId, event: &NewEvent) -> Result<(), AppendError> {
    serde_json::from_str::<serde::de::IgnoredAny>(&event.payload)
        .map(drop)
        .map_err(|source| AppendError::Encode {
            stream: stream.clone(),
            event_type: event.event_type.to_string(),
            source,
        })
}

impl SqliteStore {
    /// Writes a batch of appends in one transaction, each in a savepoint of its own when
    /// there are several, and returns one outcome per append.
    pub(super) fn commit(&self, batch: &[Request<'_>]) -> Vec<Outcome> {
        let conn = self.writer();
        let recorded_at = Timestamp::now().as_micros();
        // Fast path: an append that fails its checks has written nothing, so the batch
        // needs no savepoints unless an insert itself fails (a duplicate event id, a full
        // disk). Then the whole batch is redone with a savepoint per append.
        match commit_batch(&conn, batch, recorded_at, false) {
            Some(outcomes) => outcomes,
            None => commit_batch(&conn, batch, recorded_at, true)
                .unwrap_or_else(|| batch.iter().map(|_| Err(interrupted())).collect()),
        }
    }
}

/// One transaction for `batch`; `None` when an append failed after writing and the batch
/// must be redone `isolated` (each append in a savepoint).
fn commit_batch(
    conn: &Connection,
    batch: &[Request<'_>],
    recorded_at: i64,
    isolated: bool,
) -> Option<Vec<Outcome>> {
    let tx = match rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return Some(batch.iter().map(|_| Err(copy_error(&e).into())).collect()),
    };
    let savepoint = |sql: &str| -> Result<(), AppendError> {
        tx.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        let outcome = if isolated {
            let outcome = savepoint("SAVEPOINT eventsource_append")
                .and_then(|()| insert(&tx, request, recorded_at).map_err(Failed::into_inner));
            let undo = if outcome.is_err() {
                savepoint("ROLLBACK TO eventsource_append")
            } else {
                Ok(())
            };
            undo.and_then(|()| savepoint("RELEASE eventsource_append"))
                .and(outcome)
        } else {
            match insert(&tx, request, recorded_at) {
                Ok(done) => Ok(done),
                Err(Failed::Clean(e)) => Err(e),
                // A single append fails as a whole: dropping the transaction undoes it.
                Err(Failed::Dirty(e)) if batch.len() == 1 => return Some(vec![Err(e)]),
                Err(Failed::Dirty(_)) => return None,
            }
        };
        outcomes.push(outcome);
    }
    if outcomes.iter().all(Result::is_err) {
        // Nothing to keep: dropping the transaction rolls it back.
        return Some(outcomes);
    }
    if let Err(e) = tx.commit() {
        for outcome in &mut outcomes {
            if outcome.is_ok() {
                *outcome = Err(copy_error(&e).into());
            }
        }
    }
    Some(outcomes)
}

/// Why [`insert`] failed: before writing anything (`Clean`), or after (`Dirty`, the
/// transaction holds part of the append).
enum Failed {
    Clean(AppendError),
    Dirty(AppendError),
}

impl Failed {
    fn into_inner(self) -> AppendError {
        match self {
            Failed::Clean(e) | Failed::Dirty(e) => e,
        }
    }
}

impl From<rusqlite::Error> for Failed {
    fn from(e: rusqlite::Error) -> Self {
        Failed::Clean(e.into())
    }
}

fn interrupted() -> AppendError {
    AppendError::Store(crate::error::StoreError::Interrupted)
}

/// Inserts one append's events inside the caller's transaction: first every check
/// (command id, expected version, version range, metadata), then the writes.
fn insert(
    tx: &Connection,
    request: &Request<'_>,
    recorded_at: i64,
) -> Result<AppendResult, Failed> {
    let Request {
        stream,
        expected,
        events,
        command,
    } = *request;
    if let Some(command_id) = command {
        let done = tx
            .prepare_cached(COMMAND_DONE)?
            .query_row([command_id], |_| Ok(()))
            .optional()?;
        if done.is_some() {
            return Err(Failed::Clean(AppendError::DuplicateCommand {
                command_id: command_id.to_owned(),
            }));
        }
    }
    let actual = current_version(tx, stream)?;
    if !expected.matches(actual) {
        return Err(Failed::Clean(AppendError::Conflict {
            stream: stream.clone(),
            expected,
            actual,
        }));
    }
    if Version::MAX.get() - actual.get() < events.len() as u64 {
        return Err(Failed::Clean(AppendError::VersionOverflow {
            stream: stream.clone(),
        }));
    }
    let metadata = events
        .iter()
        .map(|event| {
            event.metadata.to_json().map_err(|source| {
                Failed::Clean(AppendError::Encode {
                    stream: stream.clone(),
                    event_type: event.event_type.to_string(),
                    source,
                })
            })
        })
        .collect::<Result<Vec<String>, Failed>>()?;
    let dirty = |e: AppendError| Failed::Dirty(e);
    let mut positions = Vec::with_capacity(events.len());
    let mut version = actual;
    let mut insert = tx
        .prepare_cached(INSERT_EVENT)
        .map_err(|e| dirty(e.into()))?;
    let mut id_buf = [0u8; 36];
    for (event, metadata) in events.iter().zip(&metadata) {
        version = version.next();
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
            Err(e) if is_collision(&e) => {
                return Err(dirty(AppendError::DuplicateEventId {
                    stream: stream.clone(),
                    event_id: event.event_id,
                }));
            }
            Err(e) => return Err(dirty(e.into())),
        }
        positions.push(Position::new(tx.last_insert_rowid().unsigned_abs()));
    }
    if let Some(command_id) = command {
        let list: Vec<u64> = positions.iter().map(|p| p.get()).collect();
        let list = serde_json::to_string(&list).map_err(|source| {
            dirty(AppendError::Encode {
                stream: stream.clone(),
                event_type: String::from("(command record)"),
                source,
            })
        })?;
        tx.prepare_cached(INSERT_COMMAND)
            .and_then(|mut stmt| {
                stmt.execute((
                    command_id,
                    stream.aggregate_type(),
                    stream.id(),
                    version,
                    list,
                    recorded_at,
                ))
            })
            .map_err(|e| dirty(e.into()))?;
    }
    Ok(AppendResult {
        stream_version: version,
        positions,
    })
}

/// The same SQLite error again, for every append of a batch whose commit failed.
pub(super) fn copy_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}
