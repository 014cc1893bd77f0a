//! Reading from a PostgreSQL store: the queries, rows streamed from the socket and lent
//! to visitors, commands and snapshots.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, Row, Statement, ToStatement};

use super::{Conn, Sql, Statements, pg, sql_int, stored_u64};
use crate::error::{ReadError, StoreError};
use crate::event::{EventData, RecordedEventRef, Timestamp};
use crate::snapshot::Snapshot;
use crate::store::{AppendResult, CommandRecord};
use crate::version::{Position, StreamId, Version};

pub(super) const STREAM_VERSION: &str = "SELECT coalesce(max(version), 0) FROM {schema}.events \
     WHERE aggregate_type = $1 AND stream_id = $2";
pub(super) const READ_STREAM: &str = "SELECT position, version, event_type, event_version, \
     event_id::text, recorded_at, payload::text, metadata::text FROM {schema}.events \
     WHERE aggregate_type = $1 AND stream_id = $2 AND version >= $3 ORDER BY version LIMIT $4";
/// [`READ_STREAM`] narrowed to what replay decodes.
pub(super) const REPLAY_STREAM: &str = "SELECT position, version, event_type, event_version, \
     payload::text FROM {schema}.events \
     WHERE aggregate_type = $1 AND stream_id = $2 AND version >= $3 ORDER BY version LIMIT $4";
pub(super) const READ_ALL: &str = "SELECT position, version, event_type, event_version, \
     event_id::text, recorded_at, payload::text, metadata::text, aggregate_type, stream_id \
     FROM {schema}.events WHERE position > $1 ORDER BY position LIMIT $2";
pub(super) const READ_COMMAND: &str = "SELECT aggregate_type, stream_id, stream_version, \
     positions, recorded_at FROM {schema}.commands WHERE command_id = $1";
pub(super) const LOAD_SNAPSHOT: &str = "SELECT version, state::text, taken_at \
     FROM {schema}.snapshots WHERE aggregate_type = $1 AND stream_id = $2 \
     AND state_version = $3 AND version <= $4 ORDER BY version DESC LIMIT 1";

impl Conn {
    pub(super) fn stream_version(&mut self, stream: &StreamId) -> Result<Version, postgres::Error> {
        let row = self.client.query_one(
            &self.stmts.stream_version,
            &[&stream.aggregate_type(), &stream.id()],
        )?;
        Ok(Version::new(stored_u64(row.try_get(0)?)))
    }

    /// Streams the rows of a prepared read to `each`, one at a time.
    pub(super) fn read(
        &mut self,
        statement: fn(&Statements) -> &Statement,
        params: &[&(dyn ToSql + Sync)],
        mut each: impl FnMut(&Row) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        let mut rows = self
            .client
            .query_raw(statement(&self.stmts), params.iter().copied())
            .map_err(StoreError::from)?;
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => return Ok(()),
                Err(e) => return Err(pg(e)),
            };
            if let Err(e) = each(&row) {
                // Closing the connection stops the server sending the rest; draining
                // could read a whole table.
                self.discard = true;
                return Err(e);
            }
        }
    }

    pub(super) fn command(
        &mut self,
        command_id: &str,
    ) -> Result<Option<CommandRecord>, StoreError> {
        command(&mut self.client, &self.stmts.read_command, command_id)
    }

    pub(super) fn load_snapshot(
        &mut self,
        sql: &Sql,
        stream: &StreamId,
        at_most: Version,
        state_version: u32,
    ) -> Result<Option<Snapshot>, postgres::Error> {
        let row = self.client.query_opt(
            &sql.load_snapshot,
            &[
                &stream.aggregate_type(),
                &stream.id(),
                &i64::from(state_version),
                &sql_int(at_most.get()),
            ],
        )?;
        let Some(row) = row else { return Ok(None) };
        // Nothing keeps the column non-negative: a negative version is no snapshot.
        let Ok(version) = u64::try_from(row.try_get::<_, i64>(0)?) else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            version: Version::new(version),
            state_version,
            state: row.try_get(1)?,
            taken_at: saturating_timestamp(row.try_get(2)?),
        }))
    }
}

fn corrupt(position: i64, column: &str, e: &dyn fmt::Display) -> ReadError {
    ReadError::Corrupt {
        position,
        reason: format!("column `{column}`: {e}"),
    }
}

fn micros_since_epoch(t: SystemTime) -> Option<i64> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).ok(),
        Err(before) => i64::try_from(before.duration().as_micros())
            .ok()
            .map(|m| -m),
    }
}

/// A time the server wrote (a command's or a snapshot's), saturating at the ends of
/// [`Timestamp`]'s range, which are far beyond any clock.
pub(super) fn saturating_timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from_micros(micros_since_epoch(t).unwrap_or(if t < UNIX_EPOCH {
        i64::MIN
    } else {
        i64::MAX
    }))
}

/// The record of `command_id`, read with `read_command` ([`READ_COMMAND`], prepared or
/// not).
pub(super) fn command<T: ToStatement + ?Sized>(
    client: &mut Client,
    read_command: &T,
    command_id: &str,
) -> Result<Option<CommandRecord>, StoreError> {
    let Some(row) = client.query_opt(read_command, &[&command_id])? else {
        return Ok(None);
    };
    let positions: Vec<i64> = row.try_get(3)?;
    Ok(Some(CommandRecord {
        command_id: command_id.to_owned(),
        stream: StreamId::new(row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?),
        result: AppendResult {
            stream_version: Version::new(stored_u64(row.try_get(2)?)),
            positions: positions
                .into_iter()
                .map(|p| Position::new(stored_u64(p)))
                .collect(),
        },
        recorded_at: saturating_timestamp(row.try_get(4)?),
    }))
}

/// Reads the first four columns every read selects: position, version, event type and
/// event version.
fn decode_head(row: &Row) -> Result<(i64, Position, Version, &str, u32), ReadError> {
    let position: i64 = row.try_get(0).map_err(StoreError::from)?;
    let get_u64 = |idx: usize, column: &str| -> Result<u64, ReadError> {
        let n: i64 = row.try_get(idx).map_err(StoreError::from)?;
        u64::try_from(n).map_err(|e| corrupt(position, column, &e))
    };
    Ok((
        position,
        Position::new(get_u64(0, "position")?),
        Version::new(get_u64(1, "version")?),
        row.try_get(2).map_err(StoreError::from)?,
        u32::try_from(get_u64(3, "event_version")?)
            .map_err(|e| corrupt(position, "event_version", &e))?,
    ))
}

/// Borrows one row of [`READ_STREAM`] or [`READ_ALL`] (the same first eight columns).
pub(super) fn decode_row<'r>(
    row: &'r Row,
    aggregate_type: &'r str,
    stream_id: &'r str,
) -> Result<RecordedEventRef<'r>, ReadError> {
    let (raw_position, position, version, event_type, event_version) = decode_head(row)?;
    let text = |idx: usize| -> Result<&'r str, ReadError> {
        Ok(row.try_get(idx).map_err(StoreError::from)?)
    };
    let recorded_at: SystemTime = row.try_get(5).map_err(StoreError::from)?;
    Ok(RecordedEventRef {
        position,
        aggregate_type,
        stream_id,
        version,
        event_type,
        event_version,
        event_id: text(4)?,
        recorded_at: Timestamp::from_micros(
            micros_since_epoch(recorded_at)
                .ok_or_else(|| corrupt(raw_position, "recorded_at", &"out of range"))?,
        ),
        payload: text(6)?,
        metadata: text(7)?,
    })
}

/// Borrows one row of [`READ_ALL`] (its stream in columns 8 and 9).
pub(super) fn decode_row_with_stream(row: &Row) -> Result<RecordedEventRef<'_>, ReadError> {
    let aggregate_type = row.try_get(8).map_err(StoreError::from)?;
    let stream_id = row.try_get(9).map_err(StoreError::from)?;
    decode_row(row, aggregate_type, stream_id)
}

/// Borrows one row of [`REPLAY_STREAM`].
pub(super) fn decode_data(row: &Row) -> Result<EventData<'_>, ReadError> {
    let (_, position, version, event_type, event_version) = decode_head(row)?;
    Ok(EventData {
        position,
        version,
        event_type,
        event_version,
        payload: row.try_get(4).map_err(StoreError::from)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_on_both_sides_of_the_epoch() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -1_700_000_000_123_456] {
            let t = Timestamp::from_micros(micros).to_system_time();
            assert_eq!(micros_since_epoch(t), Some(micros));
            assert_eq!(saturating_timestamp(t).as_micros(), micros);
        }
    }

    #[test]
    fn the_read_queries_select_the_columns_their_decoders_read() {
        let columns = |query: &str| {
            let list = &query["SELECT ".len()..query.find(" FROM").unwrap_or(0)];
            list.split(", ").count()
        };
        assert_eq!(columns(READ_STREAM), 8);
        assert_eq!(columns(READ_ALL), 10);
        assert_eq!(columns(REPLAY_STREAM), 5);
        assert!(READ_STREAM.ends_with(&REPLAY_STREAM[REPLAY_STREAM.find(" FROM").unwrap_or(0)..]));
    }
}
