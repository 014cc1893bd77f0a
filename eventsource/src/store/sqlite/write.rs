//! Writing to a SQLite store: one transaction per batch of appends (see
//! `group_commit`), snapshots.

use std::sync::PoisonError;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use crate::chain::{ChainHash, chain_link};
use crate::error::{AppendError, StoreError};
use crate::event::{EventId, Timestamp};
use crate::store::AppendResult;
use crate::store::group_commit::{Outcome, Request};
use crate::version::{Position, StreamId, Version};

pub(super) const INSERT_EVENT: &str = "INSERT INTO events (aggregate_type, stream_id, version, event_type, \
     event_version, event_id, recorded_at, payload, metadata, position, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
pub(super) const STREAM_VERSION: &str = "SELECT version FROM events WHERE aggregate_type = ?1 AND stream_id = ?2 \
     ORDER BY version DESC LIMIT 1";
pub(super) const SAVE_SNAPSHOT: &str = "INSERT OR REPLACE INTO snapshots \
     (aggregate_type, stream_id, state_version, version, state, taken_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
/// Keeps the newest three snapshots of a stream (snapshots are a cache; the events table
/// is never pruned).
pub(super) const PRUNE_SNAPSHOTS: &str = "DELETE FROM snapshots WHERE aggregate_type = ?1 AND stream_id = ?2 \
     AND version < (SELECT min(version) FROM (SELECT version FROM snapshots \
     WHERE aggregate_type = ?1 AND stream_id = ?2 ORDER BY version DESC LIMIT 3))";

/// The newest event's position and chain hash (NULL for a row stored before the chain).
pub(super) const LAST_EVENT: &str =
    "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1";
/// Moves the chain's head forward to the chained event at `?1` with hash `?2` (every
/// position between is chained: the count grows by the distance). A head already there
/// or past it (moved by another handle) stays.
pub(super) const ADVANCE_CHAIN: &str = "UPDATE chain SET count = count + (?1 - position), \
     position = ?1, hash = ?2 WHERE id = 1 AND position < ?1";
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

/// The newest chained event a commit stored.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tail {
    position: u64,
    hash: ChainHash,
}

/// How far the chain's head lags behind this handle's commits (see
/// `SqliteOptions::chain_head_interval`).
#[derive(Debug, Default)]
pub(super) struct ChainLag {
    /// Commits since the head last moved.
    commits: u32,
    /// The newest event committed since, if any: where the head moves on drop.
    tail: Option<Tail>,
}

/// What the commits of one batch left: the newest chained event, and whether the head
/// moved to it.
#[derive(Debug, Default)]
struct Committed {
    tail: Option<Tail>,
    head_moved: bool,
}

impl SqliteStore {
    /// Moves the chain's head to the newest event this handle committed, if it lags
    /// (when the handle is dropped). A failure leaves the head behind, as a crash would:
    /// `Verify` counts those events in `after_head`.
    pub(super) fn move_lagging_head(&mut self) {
        let lag = self
            .chain_lag
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(tail) = lag.tail.take() else {
            return;
        };
        let conn = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = conn.execute(
            ADVANCE_CHAIN,
            (sql_position(tail.position), tail.hash.as_bytes()),
        );
    }

    /// Writes a batch of appends in one transaction, each in a savepoint of its own when
    /// there are several, and returns one outcome per append, each true: `Ok` only for
    /// an append that is committed, an error only for one that is not.
    pub(super) fn commit(&self, batch: &[Request<'_>]) -> Vec<Outcome> {
        let _span = trace_span!(
            "eventsource.append",
            backend = "sqlite",
            appends = batch.len(),
            events = batch.iter().map(|r| r.events.len()).sum::<usize>(),
        );
        let conn = self.writer();
        let mut lag = self
            .chain_lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = Stamp {
            recorded_at: Timestamp::now().as_micros(),
            move_head: lag.commits.saturating_add(1) >= self.options.chain_head_interval,
        };
        let mut committed = Committed::default();
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        // Fast path: an append that fails its checks has written nothing, so the batch
        // needs no savepoints unless an insert itself fails (a duplicate event id, a full
        // disk). Then the whole batch is redone with a savepoint per append.
        let mut isolated = false;
        let mut outcomes: Vec<Option<Outcome>> =
            std::iter::repeat_with(|| None).take(batch.len()).collect();
        loop {
            match commit_batch(&conn, batch, &pending, at, isolated, &mut committed) {
                Pass::Done(results) => {
                    for (&i, result) in pending.iter().zip(results) {
                        outcomes[i] = Some(result);
                    }
                    break;
                }
                Pass::Redo => isolated = true,
                Pass::Split => {
                    for &i in &pending {
                        let alone = commit_batch(&conn, batch, &[i], at, false, &mut committed);
                        outcomes[i] = Some(match alone {
                            Pass::Done(mut one) => one.pop().unwrap_or_else(|| Err(interrupted())),
                            Pass::Lost { error, .. } => Err(error),
                            // Not returned for a single append.
                            Pass::Redo | Pass::Split => Err(interrupted()),
                        });
                    }
                    break;
                }
                // SQLite rolled the whole transaction back (a full disk can): the append
                // that failed is not stored, nor is any other; redo the others.
                Pass::Lost { index, error } => {
                    outcomes[index] = Some(Err(error));
                    pending.retain(|&i| i != index);
                    if pending.is_empty() {
                        break;
                    }
                }
            }
        }
        if let Some(tail) = committed.tail {
            if committed.head_moved {
                *lag = ChainLag::default();
            } else {
                lag.commits = lag.commits.saturating_add(1);
                lag.tail = Some(tail);
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| Err(interrupted())))
            .collect()
    }
}

/// What every append of one batch is stored with.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// The time, in microseconds since the Unix epoch.
    recorded_at: i64,
    /// Whether the chain's head moves with this commit.
    move_head: bool,
}

/// What one attempt at committing a batch came to.
enum Pass {
    /// One outcome per pending append, in order.
    Done(Vec<Outcome>),
    /// An append failed after writing: redo the batch with a savepoint per append.
    Redo,
    /// The append at `index` failed and SQLite ended the whole transaction: nothing of
    /// this attempt is stored.
    Lost { index: usize, error: AppendError },
    /// The COMMIT failed: nothing of this attempt is stored; commit each append alone.
    Split,
}

/// One transaction for the `pending` appends of `batch`; `isolated`: each in a
/// savepoint, so that a failed one is undone alone.
fn commit_batch(
    conn: &Connection,
    batch: &[Request<'_>],
    pending: &[usize],
    at: Stamp,
    isolated: bool,
    committed: &mut Committed,
) -> Pass {
    let mut tail = None;
    let mut tx = match rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return Pass::Done(pending.iter().map(|_| Err(copy_error(&e).into())).collect()),
    };
    let mut outcomes = Vec::with_capacity(pending.len());
    for &index in pending {
        let request = &batch[index];
        let outcome = if isolated {
            match insert_in_savepoint(&mut tx, request, at, &mut tail) {
                Ok(outcome) => outcome,
                Err(error) => return Pass::Lost { index, error },
            }
        } else {
            match insert(&tx, request, at, &mut tail) {
                Ok(done) => Ok(done),
                Err(Failed::Clean(e)) if !tx.is_autocommit() => Err(e),
                // A single append fails as a whole: dropping the transaction undoes it.
                Err(Failed::Clean(e) | Failed::Dirty(e)) if pending.len() == 1 => {
                    return Pass::Done(vec![Err(e)]);
                }
                Err(Failed::Clean(_) | Failed::Dirty(_)) => return Pass::Redo,
            }
        };
        outcomes.push(outcome);
    }
    if outcomes.iter().all(Result::is_err) {
        // Nothing to keep: dropping the transaction rolls it back.
        return Pass::Done(outcomes);
    }
    // Moving the head is the transaction's last write; when it fails, nothing of the
    // batch is stored, as when the COMMIT fails.
    let head = match tail {
        Some(Tail { position, hash }) if at.move_head => tx
            .prepare_cached(ADVANCE_CHAIN)
            .and_then(|mut stmt| stmt.execute((sql_position(position), hash.as_bytes())))
            .map(drop),
        _ => Ok(()),
    };
    // A failed COMMIT leaves the transaction rolled back (rusqlite rolls back what is
    // still open on drop): nothing of the batch is stored. Which append did not fit is
    // unknown, so the caller commits each on its own.
    match head.and_then(|()| tx.commit()) {
        Ok(()) => {
            if tail.is_some() {
                *committed = Committed {
                    tail,
                    head_moved: at.move_head,
                };
            }
            Pass::Done(outcomes)
        }
        Err(_) if pending.len() > 1 => Pass::Split,
        Err(e) => Pass::Done(vec![Err(e.into())]),
    }
}

/// Inserts one append in a savepoint of `tx`, undoing it alone when it fails. `Err`
/// when SQLite ended the whole transaction (then nothing of it is stored, and the
/// savepoints are gone: going on would run outside any transaction).
fn insert_in_savepoint(
    tx: &mut rusqlite::Transaction<'_>,
    request: &Request<'_>,
    at: Stamp,
    tail: &mut Option<Tail>,
) -> Result<Outcome, AppendError> {
    let outcome = match tx.savepoint() {
        Ok(savepoint) => in_savepoint(savepoint, request, at, tail),
        Err(e) => Err(e.into()),
    };
    match outcome {
        Err(e) if tx.is_autocommit() => Err(e),
        outcome => Ok(outcome),
    }
}

/// Inserts one append in `savepoint`: released when it succeeded, rolled back to and
/// released when it failed. `tail` moves only with a released savepoint.
fn in_savepoint(
    mut savepoint: rusqlite::Savepoint<'_>,
    request: &Request<'_>,
    at: Stamp,
    tail: &mut Option<Tail>,
) -> Outcome {
    let mut inserted = *tail;
    match insert(&savepoint, request, at, &mut inserted) {
        Ok(done) => {
            savepoint.commit()?;
            *tail = inserted;
            Ok(done)
        }
        Err(failed) => {
            // When SQLite already ended the transaction these fail too; the caller
            // sees that.
            if savepoint.rollback().is_ok() {
                let _ = savepoint.commit();
            }
            Err(failed.into_inner())
        }
    }
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
    AppendError::Store(StoreError::Interrupted)
}

/// Inserts one append's events inside the caller's transaction: first every check
/// (command id, expected version, version range, metadata), then the writes; `tail`
/// becomes its newest event (when the events are chained).
fn insert(
    tx: &Connection,
    request: &Request<'_>,
    at: Stamp,
    tail: &mut Option<Tail>,
) -> Result<AppendResult, Failed> {
    let Request {
        stream,
        expected,
        events,
        command,
        metadata,
        contents,
    } = *request;
    if let Some(command_id) = command {
        check_command_new(tx, command_id)?;
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
    let (last_position, mut prev) = chain_tail(tx, events.len())?;
    let recorded_at = at.recorded_at;
    // Every link is computed before the first row is written, from the digests the
    // appending thread computed.
    let links: Vec<ChainHash> = contents
        .iter()
        .enumerate()
        .map(|(i, content)| {
            let n = 1 + i as u64;
            prev = chain_link(
                &prev,
                last_position + n,
                actual.get() + n,
                recorded_at,
                content,
            );
            prev
        })
        .collect();
    let mut id_buf = [0u8; 36];
    let dirty = |e: AppendError| Failed::Dirty(e);
    let mut positions = Vec::with_capacity(events.len());
    let mut version = actual;
    let mut insert = tx
        .prepare_cached(INSERT_EVENT)
        .map_err(|e| dirty(e.into()))?;
    for (i, (event, metadata)) in events.iter().zip(metadata).enumerate() {
        let hash = links.get(i).map(ChainHash::as_bytes);
        version = version.next();
        let position = sql_position(last_position + 1 + i as u64);
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
            position,
            hash,
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
        positions.push(Position::new(position.unsigned_abs()));
    }
    if let Some(command_id) = command {
        record_command(tx, command_id, stream, version, &positions, recorded_at)?;
    }
    if !links.is_empty() {
        *tail = Some(Tail {
            position: last_position + events.len() as u64,
            hash: prev,
        });
    }
    Ok(AppendResult {
        stream_version: version,
        positions,
        recorded_at: Timestamp::from_micros(recorded_at),
    })
}

/// Records the command id of an append (inside its transaction, after its events).
fn record_command(
    tx: &Connection,
    command_id: &str,
    stream: &StreamId,
    version: Version,
    positions: &[Position],
    recorded_at: i64,
) -> Result<(), Failed> {
    let list: Vec<u64> = positions.iter().map(|p| p.get()).collect();
    let list = serde_json::to_string(&list).map_err(|source| {
        Failed::Dirty(AppendError::Encode {
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
        .map_err(|e| Failed::Dirty(e.into()))?;
    Ok(())
}

/// Refuses a command whose id is already recorded.
fn check_command_new(tx: &Connection, command_id: &str) -> Result<(), Failed> {
    let done = tx
        .prepare_cached(COMMAND_DONE)?
        .query_row([command_id], |_| Ok(()))
        .optional()?;
    match done {
        Some(()) => Err(Failed::Clean(AppendError::DuplicateCommand {
            command_id: command_id.to_owned(),
        })),
        None => Ok(()),
    }
}

/// The newest event's position and the hash the next event links to; refuses an append
/// of `count` events that would pass the largest position (positions are SQLite rowids).
fn chain_tail(tx: &Connection, count: usize) -> Result<(u64, ChainHash), Failed> {
    // A row stored before the chain (or with a damaged hash, which `Verify` reports)
    // links to nothing.
    let last: Option<(i64, Option<ChainHash>)> = tx
        .prepare_cached(LAST_EVENT)?
        .query_row([], |r| {
            let hash = r.get_ref(1)?.as_blob_or_null().ok().flatten();
            Ok((r.get(0)?, hash.and_then(ChainHash::from_slice)))
        })
        .optional()?;
    let (last_position, prev) = last.unwrap_or((0, None));
    if i64::MAX - last_position < count as i64 {
        return Err(Failed::Clean(AppendError::Store(
            StoreError::PositionsExhausted {
                last: last_position.unsigned_abs(),
                count,
            },
        )));
    }
    Ok((
        last_position.unsigned_abs(),
        prev.unwrap_or(ChainHash::GENESIS),
    ))
}

/// A position as SQLite stores it (checked against `i64::MAX` by [`chain_tail`]).
fn sql_position(position: u64) -> i64 {
    i64::try_from(position).unwrap_or(i64::MAX)
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
