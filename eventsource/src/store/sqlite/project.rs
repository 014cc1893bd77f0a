//! Projections on a SQLite store: each batch in one write transaction on the store's
//! connection, with the read model's writes and the checkpoint.

use std::cell::Cell;
use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use super::read::read_filtered;
use crate::error::{ReadError, StoreError};
use crate::event::Timestamp;
use crate::projection::{
    BatchOutcome, Checkpoint, Context, Job, ProjectionError, ProjectionStore, Step, Tx,
};
use crate::store::EventFilter;
use crate::version::Position;

const READ_CHECKPOINT: &str = "SELECT version, position FROM projections WHERE name = ?1";
const WRITE_CHECKPOINT: &str = "INSERT INTO projections (name, version, position, updated_at) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET version = excluded.version, \
     position = excluded.position, updated_at = excluded.updated_at";
const HEAD: &str = "SELECT coalesce(max(position), 0) FROM events";
const CHECKPOINTS: &str =
    "SELECT name, version, position, updated_at FROM projections ORDER BY name";

thread_local! {
    /// The store (its address) whose projection batch this thread is running: its
    /// handlers must not append to it (the append would wait for the batch's own lock).
    static IN_BATCH: Cell<usize> = const { Cell::new(0) };
}

/// Marks the thread as running a batch of `store` until dropped.
struct InBatch(usize);

impl InBatch {
    fn enter(store: &SqliteStore) -> Self {
        let previous = IN_BATCH.replace(std::ptr::from_ref(store) as usize);
        InBatch(previous)
    }
}

impl Drop for InBatch {
    fn drop(&mut self) {
        IN_BATCH.set(self.0);
    }
}

/// Refuses a write to `store` from inside one of its projection batches, which would
/// otherwise wait forever for the lock the batch holds.
pub(super) fn refuse_inside_batch(store: &SqliteStore) -> Result<(), StoreError> {
    if IN_BATCH.get() == std::ptr::from_ref(store) as usize {
        return Err(StoreError::Unsupported {
            feature: "writing to the store from one of its projection handlers (it would wait for the batch's own lock): write the read model through `Context::sqlite`",
        });
    }
    Ok(())
}

fn sql_position(position: Position) -> i64 {
    i64::try_from(position.get()).unwrap_or(i64::MAX)
}

fn stored_position(position: i64) -> Position {
    Position::new(position.unsigned_abs())
}

impl ProjectionStore for SqliteStore {
    type Session = ();

    fn open_session(&self, _name: &'static str) -> Result<Option<()>, StoreError> {
        Ok(Some(()))
    }

    fn listen(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn run_batch(
        &self,
        _session: &mut (),
        job: &mut Job<'_>,
    ) -> Result<BatchOutcome, ProjectionError> {
        let projection = job.name;
        let store_error = |source: rusqlite::Error| ProjectionError::Store {
            projection,
            source: StoreError::Sqlite(source),
        };
        // The writer connection: appends of this process wait on its mutex rather than
        // in SQLite's busy handler, and other processes wait for the write lock.
        refuse_inside_batch(self)
            .map_err(|source| ProjectionError::Store { projection, source })?;
        let conn = self.writer();
        let _in_batch = InBatch::enter(self);
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)
            .map_err(store_error)?;
        let stored: Option<(i64, i64)> = tx
            .prepare_cached(READ_CHECKPOINT)
            .and_then(|mut stmt| {
                stmt.query_row([projection], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(store_error)?;
        let (reset, after) = match stored {
            Some((version, _)) if version > i64::from(job.version) => {
                return Err(ProjectionError::NewerVersion {
                    projection,
                    stored: u32::try_from(version).unwrap_or(u32::MAX),
                    code: job.version,
                });
            }
            Some((version, position)) if version == i64::from(job.version) && !job.force_reset => {
                (false, stored_position(position))
            }
            // New, of an older version, or a forced rebuild.
            _ => (true, Position::START),
        };
        let head: i64 = tx
            .query_row(HEAD, [], |row| row.get(0))
            .map_err(store_error)?;
        let head = stored_position(head);
        if reset {
            (job.apply)(Step::Reset, &mut Context::new(Tx::Sqlite(&tx)))?;
        }
        let mut applied = 0u64;
        let mut last = after;
        if !job.event_types.is_empty() && head > after {
            let filter = EventFilter::all().event_types(job.event_types.iter().copied());
            let mut failure = None;
            let read = read_filtered(&tx, after, head, &filter, job.batch_size, &mut |event| {
                last = event.position;
                // A context per row: the row lives until the next one is fetched.
                let mut ctx = Context::new(Tx::Sqlite(&tx));
                ctx.set_event(event);
                match (job.apply)(Step::Event, &mut ctx) {
                    Ok(()) => {
                        applied += 1;
                        Ok(())
                    }
                    Err(e) => {
                        failure = Some(e);
                        // Stops the read; `failure` is what is reported.
                        Err(ReadError::Corrupt {
                            position: 0,
                            reason: "the projection stopped".into(),
                        })
                    }
                }
            });
            if let Some(failure) = failure {
                return Err(failure);
            }
            read.map_err(|e| ProjectionError::read(projection, e))?;
        }
        // A short batch read everything up to the head: the checkpoint moves there.
        let batch_full = usize::try_from(applied).unwrap_or(usize::MAX) >= job.batch_size;
        let checkpoint = if batch_full { last } else { head };
        tx.prepare_cached(WRITE_CHECKPOINT)
            .and_then(|mut stmt| {
                stmt.execute((
                    projection,
                    job.version,
                    sql_position(checkpoint),
                    Timestamp::now().as_micros(),
                ))
            })
            .map_err(store_error)?;
        tx.commit().map_err(store_error)?;
        Ok(BatchOutcome {
            applied,
            checkpoint,
            head,
            reset,
        })
    }

    fn wait_for_commit(
        &self,
        _session: &mut (),
        after: Position,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        self.commits.wait(after, timeout);
        Ok(())
    }

    fn head(&self) -> Result<Position, StoreError> {
        self.with_reader(|conn| {
            let head: i64 = conn.prepare_cached(HEAD)?.query_row([], |row| row.get(0))?;
            Ok(stored_position(head))
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.with_reader(|conn| {
            // One read transaction: the head and the checkpoints agree.
            let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
            let head: i64 = tx.prepare_cached(HEAD)?.query_row([], |row| row.get(0))?;
            let head = stored_position(head);
            let mut stmt = tx.prepare_cached(CHECKPOINTS)?;
            let checkpoints = stmt
                .query_map([], |row| {
                    let position = stored_position(row.get(2)?);
                    Ok(Checkpoint {
                        name: row.get(0)?,
                        version: row.get(1)?,
                        position,
                        updated_at: Timestamp::from_micros(row.get(3)?),
                        lag: head.get().saturating_sub(position.get()),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            drop(stmt);
            tx.commit()?;
            Ok(checkpoints)
        })
    }
}
