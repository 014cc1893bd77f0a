//! Projections on a PostgreSQL store: a runner's own connection, which holds the
//! projection's advisory lock (one runner per projection across processes) and listens
//! for commits; each batch in one transaction with the read model's writes and the
//! checkpoint row, locked `FOR UPDATE`.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel};

use super::read::{filtered_row, query_filtered, saturating_timestamp};
use super::{PostgresStore, sql_int, stored_u64};
use crate::error::StoreError;
use crate::projection::{
    BatchOutcome, Checkpoint, Context, Job, ProjectionError, ProjectionStore, Step, Tx,
};
use crate::store::EventFilter;
use crate::version::Position;

/// A runner's connection: it holds the projection's session advisory lock and listens
/// on the store's channel. Dropping it closes the connection, which releases both.
pub struct PgSession {
    client: Client,
}

impl Drop for PgSession {
    fn drop(&mut self) {
        // The server releases a closed session's locks only once its backend has exited;
        // release them now, so a runner started next (in this process) finds them free.
        let _ = self.client.batch_execute("SELECT pg_advisory_unlock_all()");
    }
}

impl std::fmt::Debug for PgSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSession").finish_non_exhaustive()
    }
}

fn head_sql(schema: &str) -> String {
    format!("SELECT coalesce(max(position), 0) FROM {schema}.events")
}

impl PostgresStore {
    fn projection_error(projection: &'static str) -> impl Fn(postgres::Error) -> ProjectionError {
        move |e| ProjectionError::Store {
            projection,
            source: StoreError::from(e),
        }
    }
}

impl ProjectionStore for PostgresStore {
    type Session = PgSession;

    fn open_session(&self, name: &'static str) -> Result<Option<PgSession>, StoreError> {
        let mut client = self.connector.connect(&self.config)?;
        // One key per (schema, projection): a 64-bit hash, in the one-key space (the
        // append and DDL locks use the two-key space or other constants).
        let key = format!("{}.{name}", self.sql.schema);
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&key],
            )?
            .try_get(0)?;
        if !locked {
            return Ok(None);
        }
        client.batch_execute(&format!("LISTEN {}", self.sql.channel))?;
        Ok(Some(PgSession { client }))
    }

    fn listen(&self) -> Result<PgSession, StoreError> {
        let mut client = self.connector.connect(&self.config)?;
        client.batch_execute(&format!("LISTEN {}", self.sql.channel))?;
        Ok(PgSession { client })
    }

    fn run_batch(
        &self,
        session: &mut PgSession,
        job: &mut Job<'_>,
    ) -> Result<BatchOutcome, ProjectionError> {
        let projection = job.name;
        let failed = Self::projection_error(projection);
        let schema = &self.sql.schema;
        let code_version = i64::from(job.version);
        let mut tx = session
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(&failed)?;
        let (inserted, version, position) =
            lock_checkpoint(&mut tx, schema, projection, code_version).map_err(&failed)?;
        if version > code_version {
            return Err(ProjectionError::NewerVersion {
                projection,
                stored: u32::try_from(version).unwrap_or(u32::MAX),
                code: job.version,
            });
        }
        // A new projection resets too: its read model may hold rows written under a
        // checkpoint that was deleted.
        let reset = inserted || version < code_version || job.force_reset;
        let after = if reset {
            Position::START
        } else {
            Position::new(stored_u64(position))
        };
        let head: i64 = tx
            .query_one(&head_sql(schema), &[])
            .and_then(|row| row.try_get(0))
            .map_err(&failed)?;
        let head = Position::new(stored_u64(head));
        let rows = if job.event_types.is_empty() || head <= after {
            Vec::new()
        } else {
            let filter = EventFilter::all().event_types(job.event_types.iter().copied());
            query_filtered(&mut tx, schema, after, head, &filter, job.batch_size)
                .map_err(|e| ProjectionError::read(projection, e))?
        };
        let mut ctx = Context::new(Tx::Postgres(tx));
        if reset {
            (job.apply)(Step::Reset, &mut ctx)?;
        }
        let mut last = after;
        for row in &rows {
            let event = filtered_row(row).map_err(|e| ProjectionError::read(projection, e))?;
            last = event.position;
            ctx.set_event(event);
            (job.apply)(Step::Event, &mut ctx)?;
        }
        let Tx::Postgres(mut tx) = ctx.into_tx() else {
            return Err(ProjectionError::Store {
                projection,
                source: StoreError::Unsupported {
                    feature: "a PostgreSQL batch outside a PostgreSQL transaction",
                },
            });
        };
        let applied = rows.len() as u64;
        let checkpoint = if rows.len() >= job.batch_size {
            last
        } else {
            head
        };
        tx.execute(
            &format!(
                "UPDATE {schema}.projections SET version = $2, position = $3, updated_at = now() \
                 WHERE name = $1"
            ),
            &[&projection, &code_version, &sql_int(checkpoint.get())],
        )
        .map_err(&failed)?;
        tx.commit().map_err(&failed)?;
        Ok(BatchOutcome {
            applied,
            checkpoint,
            head,
            reset,
        })
    }

    fn wait_for_commit(
        &self,
        session: &mut PgSession,
        _after: Position,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let mut notifications = session.client.notifications();
        // Wait for one, then take the others already here: one batch serves them all.
        if notifications.timeout_iter(timeout).next()?.is_some() {
            while notifications.iter().next()?.is_some() {}
        }
        Ok(())
    }

    fn head(&self) -> Result<Position, StoreError> {
        let sql = head_sql(&self.sql.schema);
        self.with_conn(|conn| {
            let head: i64 = conn.client.query_one(&sql, &[])?.try_get(0)?;
            Ok(Position::new(stored_u64(head)))
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let schema = &self.sql.schema;
        let sql = format!(
            "SELECT name, version, position, updated_at, \
             (SELECT coalesce(max(position), 0) FROM {schema}.events) \
             FROM {schema}.projections ORDER BY name"
        );
        self.with_conn(|conn| {
            conn.client
                .query(&sql, &[])?
                .iter()
                .map(|row| {
                    let position = stored_u64(row.try_get(2)?);
                    let head = stored_u64(row.try_get(4)?);
                    let updated_at: std::time::SystemTime = row.try_get(3)?;
                    Ok(Checkpoint {
                        name: row.try_get(0)?,
                        version: u32::try_from(row.try_get::<_, i64>(1)?).unwrap_or(u32::MAX),
                        position: Position::new(position),
                        updated_at: saturating_timestamp(updated_at),
                        lag: head.saturating_sub(position),
                    })
                })
                .collect()
        })
    }
}

/// Reads and locks (`FOR UPDATE`) the projection's checkpoint row, inserting it at
/// position 0 when there is none: (whether this call inserted it, version, position).
fn lock_checkpoint(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    projection: &str,
    code_version: i64,
) -> Result<(bool, i64, i64), postgres::Error> {
    let read =
        format!("SELECT version, position FROM {schema}.projections WHERE name = $1 FOR UPDATE");
    let mut stored = tx.query_opt(&read, &[&projection])?;
    let mut inserted = false;
    if stored.is_none() {
        // Another runner may insert it meanwhile: then ours does nothing, and the row
        // is read (and locked) again.
        inserted = tx.execute(
            &format!(
                "INSERT INTO {schema}.projections (name, version, position, updated_at) \
                         VALUES ($1, $2, 0, now()) ON CONFLICT (name) DO NOTHING"
            ),
            &[&projection, &code_version],
        )? == 1;
        stored = tx.query_opt(&read, &[&projection])?;
    }
    let (version, position): (i64, i64) = match &stored {
        Some(row) => (row.try_get(0)?, row.try_get(1)?),
        None => (code_version, 0),
    };
    Ok((inserted, version, position))
}
