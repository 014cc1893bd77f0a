//! Reading from a SQLite store: the queries, and rows borrowed as events.

use std::fmt;

use crate::error::ReadError;
use crate::event::{RecordedEventRef, Timestamp};
use crate::version::{Position, Version};

pub(super) const READ_STREAM: &str = "SELECT position, version, event_type, event_version, event_id, recorded_at, \
     payload, metadata FROM events WHERE aggregate_type = ?1 AND stream_id = ?2 AND version >= ?3 \
     ORDER BY version LIMIT ?4";
pub(super) const REPLAY_STREAM: &str = "SELECT position, version, event_type, event_version, payload FROM events \
     WHERE aggregate_type = ?1 AND stream_id = ?2 AND version >= ?3 ORDER BY version LIMIT ?4";
pub(super) const LOAD_SNAPSHOT: &str = "SELECT version, state, taken_at FROM snapshots \
     WHERE aggregate_type = ?1 AND stream_id = ?2 AND state_version = ?3 AND version <= ?4 \
     ORDER BY version DESC LIMIT 1";
pub(super) const READ_COMMAND: &str = "SELECT aggregate_type, stream_id, stream_version, positions, \
     recorded_at FROM commands WHERE command_id = ?1";
pub(super) const READ_ALL: &str = "SELECT position, version, event_type, event_version, event_id, recorded_at, \
     payload, metadata, aggregate_type, stream_id FROM events WHERE position > ?1 \
     ORDER BY position LIMIT ?2";

pub(super) fn text<'r>(
    row: &'r rusqlite::Row<'_>,
    idx: usize,
    position: i64,
    column: &str,
) -> Result<&'r str, ReadError> {
    row.get_ref(idx)?
        .as_str()
        .map_err(|e| corrupt(position, column, &e))
}

pub(super) fn corrupt(position: i64, column: &str, e: &dyn fmt::Display) -> ReadError {
    ReadError::Corrupt {
        position,
        reason: format!("column `{column}`: {e}"),
    }
}

/// Reads the first four columns every read selects: position, version, event type and
/// event version.
pub(super) fn row_head<'r>(
    row: &'r rusqlite::Row<'_>,
) -> Result<(Position, Version, &'r str, u32), ReadError> {
    let raw_position: i64 = row.get(0)?;
    let int = |idx: usize, column: &str| -> Result<i64, ReadError> {
        row.get_ref(idx)?
            .as_i64()
            .map_err(|e| corrupt(raw_position, column, &e))
    };
    let position =
        u64::try_from(raw_position).map_err(|e| corrupt(raw_position, "position", &e))?;
    let version =
        u64::try_from(int(1, "version")?).map_err(|e| corrupt(raw_position, "version", &e))?;
    let event_version = u32::try_from(int(3, "event_version")?)
        .map_err(|e| corrupt(raw_position, "event_version", &e))?;
    Ok((
        Position::new(position),
        Version::new(version),
        text(row, 2, raw_position, "event_type")?,
        event_version,
    ))
}

/// Borrows one row of [`READ_STREAM`] or [`READ_ALL`] (same first eight columns).
pub(super) fn decode_row<'r>(
    row: &'r rusqlite::Row<'_>,
    aggregate_type: &'r str,
    stream_id: &'r str,
) -> Result<RecordedEventRef<'r>, ReadError> {
    let (position, version, event_type, event_version) = row_head(row)?;
    let raw_position = position.get() as i64;
    let recorded_at = row
        .get_ref(5)?
        .as_i64()
        .map_err(|e| corrupt(raw_position, "recorded_at", &e))?;
    Ok(RecordedEventRef {
        position,
        aggregate_type,
        stream_id,
        version,
        event_type,
        event_version,
        event_id: text(row, 4, raw_position, "event_id")?,
        recorded_at: Timestamp::from_micros(recorded_at),
        payload: text(row, 6, raw_position, "payload")?,
        metadata: text(row, 7, raw_position, "metadata")?,
    })
}
