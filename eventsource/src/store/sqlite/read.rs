//! Reading from a SQLite store: the queries, and rows borrowed as events.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::{ReadError, StoreError};
use crate::event::{RecordedEventRef, Timestamp};
use crate::store::{EventFilter, Visitor};
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

/// The columns of a filtered read: those of [`READ_ALL`], in the same order.
const FILTERED_COLUMNS: &str = "position, version, event_type, event_version, event_id, \
     recorded_at, payload, metadata, aggregate_type, stream_id";

/// The most values of one dimension of a filter that get an index scan of their own.
/// SQLite allows 500 arms in a compound SELECT; past a few dozen, a filter is rarely
/// selective enough for the merge to beat a walk along the positions.
pub(super) const MAX_ARMS: usize = 32;

/// A filtered read as SQL and its parameters: `?1` after, `?2` until, `?3` limit, then
/// the JSON arrays of the residual conditions, then one value per arm.
///
/// The plan, per [`EventFilter`] (checked with `EXPLAIN QUERY PLAN` by the tests, which
/// refuse a `USE TEMP B-TREE FOR ORDER BY`):
///
/// - no restriction: the rowid (`position`) range, as [`READ_ALL`];
/// - up to [`MAX_ARMS`] event types (or, without event types, aggregate types): one arm
///   per value, `event_type = ?n AND position > ?1 AND position <= ?2`, each a range of
///   the index `(event_type, position)` (or `(aggregate_type, position)`) and so already
///   in position order, combined by `UNION ALL` under one `ORDER BY position LIMIT ?3`.
///   SQLite runs a compound SELECT with ORDER BY as a merge of co-routines (`MERGE
///   (UNION ALL)`), pulling rows from each arm only as the merge needs them, so a page
///   costs about the rows it returns plus one seek per arm. A single value is the one
///   arm alone. The other dimension, if given, is a residual test on the rows of the
///   arms (`+aggregate_type IN (SELECT value FROM json_each(?4))`; the `+` keeps the
///   planner from trading the ordered arm for a scan of the other index and a sort).
///   The obvious `event_type IN (...) AND position > ? ORDER BY position LIMIT ?` is NOT
///   used: SQLite reads every remaining match of every listed type from the index and
///   sorts them in a temporary B-tree for each page, which makes a paged scan quadratic.
/// - more values than [`MAX_ARMS`] in both dimensions: a walk along the rowid range
///   (`NOT INDEXED`, so the planner cannot pick an index and a sort), testing each row:
///   it costs the events passed over, but never sorts.
#[derive(Debug)]
pub(super) struct FilteredQuery {
    pub(super) sql: String,
    pub(super) params: Vec<rusqlite::types::Value>,
}

impl FilteredQuery {
    pub(super) fn new(
        filter: &EventFilter,
        after: Position,
        until: Position,
        max_count: usize,
    ) -> Result<Self, StoreError> {
        use rusqlite::types::Value;

        let largest = Position::new(i64::MAX.unsigned_abs());
        let mut params = vec![
            Value::Integer(after.min(largest).get() as i64),
            Value::Integer(until.min(largest).get() as i64),
            Value::Integer(i64::try_from(max_count).unwrap_or(i64::MAX)),
        ];
        let range = "position > ?1 AND position <= ?2";
        let events = filter.event_type_set();
        let aggregates = filter.aggregate_type_set();
        let arms = if (1..=MAX_ARMS).contains(&events.len()) {
            Some(("event_type", events, "aggregate_type", aggregates))
        } else if (1..=MAX_ARMS).contains(&aggregates.len()) {
            Some(("aggregate_type", aggregates, "event_type", events))
        } else {
            None
        };
        let mut residual =
            |column: &str, values: &BTreeSet<String>| -> Result<String, StoreError> {
                if values.is_empty() {
                    return Ok(String::new());
                }
                params.push(Value::Text(json_array(values)?));
                Ok(format!(
                    " AND +{column} IN (SELECT value FROM json_each(?{}))",
                    params.len()
                ))
            };
        let Some((column, values, other, others)) = arms else {
            let both = format!(
                "{}{}",
                residual("event_type", events)?,
                residual("aggregate_type", aggregates)?
            );
            let sql = format!(
                "SELECT {FILTERED_COLUMNS} FROM events NOT INDEXED WHERE {range}{both} \
                 ORDER BY position LIMIT ?3"
            );
            return Ok(FilteredQuery { sql, params });
        };
        let residual = residual(other, others)?;
        let first_arm = params.len() + 1;
        params.extend(values.iter().map(|v| Value::Text(v.clone())));
        let arm = |i: usize| {
            format!(
                "SELECT {FILTERED_COLUMNS} FROM events WHERE {column} = ?{} AND {range}{residual}",
                first_arm + i
            )
        };
        let arms: Vec<String> = (0..values.len()).map(arm).collect();
        let sql = format!("{} ORDER BY position LIMIT ?3", arms.join(" UNION ALL "));
        Ok(FilteredQuery { sql, params })
    }
}

/// `values` as a JSON array of strings, for `json_each`.
fn json_array(values: &BTreeSet<String>) -> Result<String, StoreError> {
    serde_json::to_string(values)
        .map_err(|e| StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
}

/// The events with `after < position <= until` that `filter` matches, in position
/// order, at most `max_count`, lent to `visit` one by one; on `conn` as it is (inside
/// the caller's transaction, if it has one). See [`FilteredQuery`] for the plan.
pub(super) fn read_filtered(
    conn: &rusqlite::Connection,
    after: Position,
    until: Position,
    filter: &EventFilter,
    max_count: usize,
    visit: &mut Visitor<'_>,
) -> Result<(), ReadError> {
    filter.validate().map_err(StoreError::from)?;
    if max_count == 0 || after >= until {
        return Ok(());
    }
    let query = FilteredQuery::new(filter, after, until, max_count)?;
    let mut stmt = conn.prepare_cached(&query.sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(&query.params))?;
    while let Some(row) = rows.next()? {
        let position: i64 = row.get(0)?;
        let aggregate_type = text(row, 8, position, "aggregate_type")?;
        let stream_id = text(row, 9, position, "stream_id")?;
        visit(decode_row(row, aggregate_type, stream_id)?)?;
    }
    Ok(())
}

/// The streams of an aggregate type (`?1`) after an id (`?2`), at most `?3`, as a loose
/// index scan of the unique index `(aggregate_type, stream_id, version)`: the recursive
/// CTE seeks the next stream id after the last one (one seek per stream, however many
/// events it holds), then three seeks per stream read its last version and the
/// timestamps of its first and last events. A page costs about four seeks per stream.
/// The rows come out in id order without an ORDER BY (which would add a sort): a
/// recursive CTE without ORDER BY runs its queue first in, first out (SQLite's
/// documentation of `WITH RECURSIVE`), and the outer query reads it as a co-routine.
macro_rules! list_streams_sql {
    ($first:literal) => {
        concat!(
            "WITH RECURSIVE ids(stream_id, n) AS (",
            "SELECT (SELECT stream_id FROM events WHERE aggregate_type = ?1 AND stream_id ",
            $first,
            " ?2 ORDER BY stream_id LIMIT 1), 1 ",
            "UNION ALL SELECT (SELECT e.stream_id FROM events e WHERE e.aggregate_type = ?1 ",
            "AND e.stream_id > ids.stream_id ORDER BY e.stream_id LIMIT 1), ids.n + 1 ",
            "FROM ids WHERE ids.stream_id IS NOT NULL AND ids.n < ?3) ",
            "SELECT ids.stream_id, ",
            "(SELECT version FROM events WHERE aggregate_type = ?1 AND stream_id = ids.stream_id ",
            "ORDER BY version DESC LIMIT 1), ",
            "(SELECT recorded_at FROM events WHERE aggregate_type = ?1 AND stream_id = ids.stream_id ",
            "ORDER BY version LIMIT 1), ",
            "(SELECT recorded_at FROM events WHERE aggregate_type = ?1 AND stream_id = ids.stream_id ",
            "ORDER BY version DESC LIMIT 1) ",
            "FROM ids WHERE ids.stream_id IS NOT NULL"
        )
    };
}

/// The first page of a listing: ids from `''` (the smallest text) on.
pub(super) const LIST_STREAMS_FIRST: &str = list_streams_sql!(">=");
/// A later page: ids after the last one listed.
pub(super) const LIST_STREAMS_AFTER: &str = list_streams_sql!(">");
