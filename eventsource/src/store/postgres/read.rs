//! Reading from a PostgreSQL store: the queries, rows streamed from the socket and lent
//! to visitors, commands and snapshots.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement, ToStatement};

use super::{Conn, Sql, Statements, pg, sql_int, stored_u64};
use crate::error::{ReadError, StoreError};
use crate::event::{EventData, RecordedEventRef, Timestamp};
use crate::snapshot::Snapshot;
use crate::store::{AppendResult, CommandRecord, EventFilter, StreamInfo};
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
            recorded_at: saturating_timestamp(row.try_get(4)?),
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

/// The columns of a filtered read: those of [`READ_ALL`], in the same order.
const FILTERED_COLUMNS: &str = "position, version, event_type, event_version, \
     event_id::text, recorded_at, payload::text, metadata::text, aggregate_type, stream_id";

/// The most values of one dimension of a filter that get an index scan of their own.
pub(super) const MAX_ARMS: usize = 32;

/// A filtered read: the SQL of one dimension of the filter, `{schema}` spelled in, with
/// its parameters (`$1` after, `$2` until, `$3` limit, then one value per arm), and the
/// rest of the filter, tested in Rust on the rows it returns.
///
/// The plan (checked with `EXPLAIN` by the tests, which refuse a Sort over more rows
/// than a page):
///
/// - up to [`MAX_ARMS`] event types (or, without event types, aggregate types): one arm
///   per value, `(SELECT ... WHERE event_type = $4 AND position > $1 AND position <= $2
///   ORDER BY position LIMIT $3)`, an ordered scan of the index `(event_type, position)`
///   (or `(aggregate_type, position)`) under a `Limit`, combined by `UNION ALL ... ORDER
///   BY position LIMIT $3`, which PostgreSQL plans as a `Merge Append` that pulls from
///   each arm only what the merge needs. A single value is its arm alone. The obvious
///   `event_type = ANY($4) ... ORDER BY position LIMIT $3` is NOT used: PostgreSQL answers
///   it with a bitmap scan of every remaining match and a sort, for every page.
/// - otherwise (no restriction, or more values than [`MAX_ARMS`] in both dimensions):
///   the primary key range, as [`READ_ALL`].
///
/// The other dimension is tested in Rust, not in SQL: in SQL, PostgreSQL estimates an
/// event type and an aggregate type as independent (they rarely are: an event type
/// usually belongs to one aggregate type), expects few rows, and answers with a
/// `BitmapAnd` of both indexes and a sort of every remaining match, for every page. The
/// caller ([`query_filtered`]) reads on from the last row scanned until it has a page
/// of matches, so a scan costs the rows of the arms' values it passes over.
struct FilteredQuery<'f> {
    sql: String,
    arm_values: Vec<&'f str>,
    /// The aggregate types a row must have (empty: any), when they are not the arms.
    aggregate_types: Option<&'f BTreeSet<String>>,
    /// The event types a row must have (empty: any), when they are not the arms.
    event_types: Option<&'f BTreeSet<String>>,
}

impl<'f> FilteredQuery<'f> {
    /// `None` when nothing can match: every event type of the filter holds a NUL
    /// character, which no stored type can (PostgreSQL's TEXT cannot hold one).
    fn new(schema: &str, filter: &'f EventFilter) -> Option<Self> {
        let events: Vec<&str> = filter
            .event_type_set()
            .iter()
            .map(String::as_str)
            .filter(|t| !t.contains('\0'))
            .collect();
        if events.is_empty() && !filter.event_type_set().is_empty() {
            return None;
        }
        let aggregates: Vec<&str> = filter
            .aggregate_type_set()
            .iter()
            .map(String::as_str)
            .collect();
        let from = format!("{schema}.events");
        let range = "position > $1 AND position <= $2";
        let (column, arm_values, aggregate_types, event_types) =
            if (1..=MAX_ARMS).contains(&events.len()) {
                (
                    "event_type",
                    events,
                    Some(filter.aggregate_type_set()),
                    None,
                )
            } else if (1..=MAX_ARMS).contains(&aggregates.len()) {
                (
                    "aggregate_type",
                    aggregates,
                    None,
                    Some(filter.event_type_set()),
                )
            } else {
                let sql = format!(
                    "SELECT {FILTERED_COLUMNS} FROM {from} WHERE {range} ORDER BY position LIMIT $3"
                );
                return Some(FilteredQuery {
                    sql,
                    arm_values: Vec::new(),
                    aggregate_types: Some(filter.aggregate_type_set()),
                    event_types: Some(filter.event_type_set()),
                });
            };
        let arm = |i: usize| {
            format!(
                "SELECT {FILTERED_COLUMNS} FROM {from} WHERE {column} = ${}::text AND {range} \
                 ORDER BY position LIMIT $3",
                i + 4
            )
        };
        let sql = if arm_values.len() == 1 {
            arm(0)
        } else {
            let arms: Vec<String> = (0..arm_values.len())
                .map(|i| format!("({})", arm(i)))
                .collect();
            format!("{} ORDER BY position LIMIT $3", arms.join(" UNION ALL "))
        };
        Some(FilteredQuery {
            sql,
            arm_values,
            aggregate_types,
            event_types,
        })
    }

    fn params<'p>(&'p self, bounds: &'p [i64; 3]) -> Vec<&'p (dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> =
            bounds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        params.extend(self.arm_values.iter().map(|v| v as &(dyn ToSql + Sync)));
        params
    }

    /// Whether a row of the query passes the rest of the filter.
    fn keeps(&self, row: &Row) -> Result<bool, ReadError> {
        let passes = |set: Option<&BTreeSet<String>>, idx: usize| -> Result<bool, ReadError> {
            match set {
                Some(set) if !set.is_empty() => {
                    let value: &str = row.try_get(idx).map_err(StoreError::from)?;
                    Ok(set.contains(value))
                }
                _ => Ok(true),
            }
        };
        Ok(passes(self.aggregate_types, 8)? && passes(self.event_types, 2)?)
    }
}

/// The events with `after < position <= until` that `filter` matches, in position
/// order, at most `max_count`, read on `client` as it is (inside the caller's
/// transaction, if it has one) in the store whose schema is `schema` (quoted). The rows
/// come back owned, so that the caller can use `client` again between them; borrow each
/// as an event with [`filtered_row`]. See [`FilteredQuery`] for the plan: when part of
/// the filter is tested here, several statements may run, each going on from the last
/// row the one before scanned.
pub(super) fn query_filtered(
    client: &mut impl GenericClient,
    schema: &str,
    after: Position,
    until: Position,
    filter: &EventFilter,
    max_count: usize,
) -> Result<Vec<Row>, ReadError> {
    filter.validate().map_err(StoreError::from)?;
    let mut kept = Vec::new();
    let Some(query) = FilteredQuery::new(schema, filter) else {
        return Ok(kept);
    };
    let until = sql_int(until.get());
    let mut from = sql_int(after.get());
    while kept.len() < max_count && from < until {
        let want = sql_int((max_count - kept.len()) as u64);
        let bounds = [from, until, want];
        let rows = client
            .query(query.sql.as_str(), &query.params(&bounds))
            .map_err(StoreError::from)?;
        let scanned = rows.len();
        if let Some(last) = rows.last() {
            from = last.try_get(0).map_err(StoreError::from)?;
        }
        for row in rows {
            if query.keeps(&row)? {
                kept.push(row);
            }
        }
        if (scanned as i64) < want {
            break; // nothing left after the last row scanned
        }
    }
    Ok(kept)
}

/// `EXPLAIN (ANALYZE, TIMING OFF)` of the (first) statement [`query_filtered`] runs,
/// one line per plan line: the planner's estimates and the rows each node really
/// produced (the statement runs, on a read).
pub(super) fn explain_filtered(
    client: &mut impl GenericClient,
    schema: &str,
    after: Position,
    filter: &EventFilter,
) -> Result<String, StoreError> {
    let Some(query) = FilteredQuery::new(schema, filter) else {
        return Ok(String::new());
    };
    let bounds = [sql_int(after.get()), i64::MAX, 512];
    let rows = client.query(
        format!("EXPLAIN (ANALYZE, TIMING OFF) {}", query.sql).as_str(),
        &query.params(&bounds),
    )?;
    let lines = rows
        .iter()
        .map(|row| row.try_get::<_, String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lines.join("\n"))
}

/// Borrows one row of [`query_filtered`] as an event.
pub(super) fn filtered_row(row: &Row) -> Result<RecordedEventRef<'_>, ReadError> {
    decode_row_with_stream(row)
}

/// The streams of an aggregate type (`$1`) after an id (`$2`), at most `$3`, as a loose
/// index scan of the unique index `(aggregate_type, stream_id, version)`: the recursive
/// CTE seeks the next stream id after the last one (one index probe per stream, however
/// many events it holds), then three probes per stream read its last version and the
/// times of its first and last events. A page costs about four probes per stream.
macro_rules! list_streams_sql {
    ($first:literal) => {
        concat!(
            "WITH RECURSIVE ids(stream_id, n) AS (",
            "SELECT (SELECT stream_id FROM {schema}.events WHERE aggregate_type = $1 AND stream_id ",
            $first,
            " $2 ORDER BY stream_id LIMIT 1), 1::bigint ",
            "UNION ALL SELECT (SELECT e.stream_id FROM {schema}.events e WHERE e.aggregate_type = $1 ",
            "AND e.stream_id > ids.stream_id ORDER BY e.stream_id LIMIT 1), ids.n + 1 ",
            "FROM ids WHERE ids.stream_id IS NOT NULL AND ids.n < $3) ",
            "SELECT ids.stream_id, ",
            "(SELECT version FROM {schema}.events WHERE aggregate_type = $1 ",
            "AND stream_id = ids.stream_id ORDER BY version DESC LIMIT 1), ",
            "(SELECT recorded_at FROM {schema}.events WHERE aggregate_type = $1 ",
            "AND stream_id = ids.stream_id ORDER BY version LIMIT 1), ",
            "(SELECT recorded_at FROM {schema}.events WHERE aggregate_type = $1 ",
            "AND stream_id = ids.stream_id ORDER BY version DESC LIMIT 1) ",
            "FROM ids WHERE ids.stream_id IS NOT NULL ORDER BY ids.n"
        )
    };
}

/// The first page of a listing: ids from `''` (the smallest text) on.
pub(super) const LIST_STREAMS_FIRST: &str = list_streams_sql!(">=");
/// A later page: ids after the last one listed.
pub(super) const LIST_STREAMS_AFTER: &str = list_streams_sql!(">");

/// The streams of `aggregate_type` after `after`, at most `limit`, read with
/// `statement` ([`LIST_STREAMS_FIRST`] or [`LIST_STREAMS_AFTER`], spelled).
pub(super) fn list_streams(
    client: &mut Client,
    statement: &str,
    aggregate_type: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<StreamInfo>, StoreError> {
    let limit = sql_int(limit as u64);
    let rows = client.query(statement, &[&aggregate_type, &after, &limit])?;
    rows.iter()
        .map(|row| {
            Ok(StreamInfo {
                stream: StreamId::new(aggregate_type, row.try_get::<_, String>(0)?),
                version: Version::new(stored_u64(row.try_get(1)?)),
                first_recorded_at: saturating_timestamp(row.try_get(2)?),
                last_recorded_at: saturating_timestamp(row.try_get(3)?),
            })
        })
        .collect()
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
