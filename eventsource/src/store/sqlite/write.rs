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
        let tx = match rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return batch.iter().map(|_| Err(copy_error(&e).into())).collect(),
        };
        let grouped = batch.len() > 1;
        let recorded_at = Timestamp::now().as_micros();
        let mut outcomes: Vec<Outcome> = batch
            .iter()
            .map(|request| {
                if !grouped {
                    return insert(&tx, request, recorded_at);
                }
                tx.prepare_cached("SAVEPOINT eventsource_append")?
                    .execute([])?;
                let outcome = insert(&tx, request, recorded_at);
                if outcome.is_err() {
                    tx.prepare_cached("ROLLBACK TO eventsource_append")?
                        .execute([])?;
                }
                tx.prepare_cached("RELEASE eventsource_append")?
                    .execute([])?;
                outcome
            })
            .collect();
        if outcomes.iter().all(Result::is_err) {
            // Nothing to keep: dropping the transaction rolls it back.
            return outcomes;
        }
        if let Err(e) = tx.commit() {
            for outcome in &mut outcomes {
                if outcome.is_ok() {
                    *outcome = Err(copy_error(&e).into());
                }
            }
        }
        outcomes
    }
}

/// Inserts one append's events inside the caller's transaction.
pub(super) fn insert(tx: &Connection, request: &Request<'_>, recorded_at: i64) -> Outcome {
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
            return Err(AppendError::DuplicateCommand {
                command_id: command_id.to_owned(),
            });
        }
    }
    let actual = current_version(tx, stream)?;
    if !expected.matches(actual) {
        return Err(AppendError::Conflict {
            stream: stream.clone(),
            expected,
            actual,
        });
    }
    let mut positions = Vec::with_capacity(events.len());
    let mut version = actual;
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
            Err(e) if is_collision(&e) => {
                return Err(AppendError::DuplicateEventId {
                    stream: stream.clone(),
                    event_id: event.event_id,
                });
            }
            Err(e) => return Err(e.into()),
        }
        positions.push(Position::new(tx.last_insert_rowid().unsigned_abs()));
    }
    if let Some(command_id) = command {
        let list = serde_json::to_string(&positions.iter().map(|p| p.get()).collect::<Vec<_>>())
            .map_err(|source| AppendError::Encode {
                stream: stream.clone(),
                event_type: String::from("(command record)"),
                source,
            })?;
        tx.prepare_cached(INSERT_COMMAND)?.execute((
            command_id,
            stream.aggregate_type(),
            stream.id(),
            version,
            list,
            recorded_at,
        ))?;
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
