//! [`EventStore`] for [`SqliteStore`]: appends through the group commit, reads, replays,
//! snapshots and commands.

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::read::{
    FilteredQuery, LIST_STREAMS_AFTER, LIST_STREAMS_FIRST, LOAD_SNAPSHOT, READ_ALL, READ_COMMAND,
    READ_STREAM, REPLAY_STREAM, decode_row, read_filtered, row_head, text,
};
use super::write::{PRUNE_SNAPSHOTS, SAVE_SNAPSHOT, current_version};
use super::{SqliteStore, project};
use crate::chain::{ChainHead, VersionGap};
use crate::error::{AppendError, ReadError, StoreError};
use crate::event::{EventData, NewEvent, Timestamp};
use crate::snapshot::Snapshot;
use crate::store::encode::{check_json, content_digests, encode_metadata};
use crate::store::group_commit::Request;
use crate::store::{
    AppendResult, ChainVisitor, CommandRecord, DataVisitor, EventFilter, EventStore, StreamInfo,
    Visitor,
};
use crate::version::{ExpectedVersion, Position, StreamId, Version};

/// A `snapshots` row as a snapshot, or `None` when it is none: a snapshot is a cache, so a
/// negative version, a state that is not text or a timestamp that is not an integer
/// make the row no snapshot rather than an error.
fn snapshot_row(row: &rusqlite::Row<'_>, state_version: u32) -> Option<Snapshot> {
    let version = u64::try_from(row.get::<_, i64>(0).ok()?).ok()?;
    let state = row.get_ref(1).ok()?.as_str().ok()?.to_owned();
    let taken_at = Timestamp::from_micros(row.get(2).ok()?);
    Some(Snapshot {
        version: Version::new(version),
        state_version,
        state,
        taken_at,
    })
}

impl SqliteStore {
    /// Runs a stream query (`sql` takes the aggregate type, stream id, first version and
    /// limit) and hands each row to `each`, which returns the row's version.
    ///
    /// `on_writer`: start on the writer connection when it is idle. Its page cache stays
    /// warm across commits, where a read connection's is dropped after every write made
    /// through another connection (so replaying before a command on a reader re-reads
    /// every page). When an append starts waiting for the writer, the read hands over to
    /// a read connection after the row it is at: a stream's events never change, so the
    /// rest, read from a newer snapshot, continues the same stream.
    fn stream_rows(
        &self,
        sql: &str,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        on_writer: bool,
        mut each: impl FnMut(&rusqlite::Row<'_>) -> Result<Version, ReadError>,
    ) -> Result<(), ReadError> {
        stream.validate().map_err(StoreError::from)?;
        let mut from = from.clamp(Version::new(1), Version::MAX);
        let mut left = max_count;
        let query = |conn: &rusqlite::Connection,
                     from: &mut Version,
                     left: &mut usize,
                     each: &mut dyn FnMut(&rusqlite::Row<'_>) -> Result<Version, ReadError>,
                     stop: &dyn Fn() -> bool|
         -> Result<bool, ReadError> {
            let mut stmt = conn.prepare_cached(sql)?;
            let limit = i64::try_from(*left).unwrap_or(i64::MAX);
            let mut rows = stmt.query((stream.aggregate_type(), stream.id(), *from, limit))?;
            while let Some(row) = rows.next()? {
                let version = each(row)?;
                *left -= 1;
                *from = version.next();
                if stop() {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        if on_writer
            && left > 0
            && let Some(writer) = self.idle_writer()
        {
            let waiting = || self.writer_wanted();
            if query(&writer, &mut from, &mut left, &mut each, &waiting)? || left == 0 {
                return Ok(());
            }
        }
        self.with_reader(|conn| {
            query(conn, &mut from, &mut left, &mut each, &|| false)?;
            Ok(())
        })
    }

    /// The rows of a replay: what decoding needs of each event.
    fn replay_rows(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        on_writer: bool,
        visit: &mut DataVisitor<'_>,
    ) -> Result<(), ReadError> {
        self.stream_rows(REPLAY_STREAM, stream, from, max_count, on_writer, |row| {
            let (position, version, event_type, event_version) = row_head(row)?;
            visit(EventData {
                position,
                version,
                event_type,
                event_version,
                payload: text(row, 4, position.get() as i64, "payload")?,
            })?;
            Ok(version)
        })
    }

    /// Checks the payloads and prepares what the commit writes (metadata as JSON, the
    /// chain's content digests), outside the writer's lock; then hands the append to the
    /// group commit.
    fn submit(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
        command: Option<&str>,
    ) -> Result<AppendResult, AppendError> {
        project::refuse_inside_batch(self)?;
        stream.validate().map_err(StoreError::from)?;
        let metadata = encode_metadata(stream, events)?;
        let contents = if self.options.hash_chain {
            content_digests(stream, events, &metadata)?
        } else {
            for event in events {
                check_json(stream, event)?;
            }
            Vec::new()
        };
        let request = Request {
            stream,
            expected,
            events,
            command,
            metadata: &metadata,
            contents: &contents,
        };
        let appended = self.group.append(request, &|batch| self.commit(batch))?;
        if let Some(last) = appended.positions.last() {
            self.commits.committed(*last);
        }
        Ok(appended)
    }
}

impl EventStore for SqliteStore {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        self.submit(stream, expected, events, None)
    }

    fn append_command(
        &self,
        command_id: &str,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        self.submit(stream, expected, events, Some(command_id))
    }

    fn command(&self, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.with_reader(|conn| {
            let row = conn
                .prepare_cached(READ_COMMAND)?
                .query_row([command_id], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Version>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, i64>(4)?,
                    ))
                })
                .optional()?;
            let Some((aggregate_type, stream_id, stream_version, positions, recorded_at)) = row
            else {
                return Ok(None);
            };
            let positions: Vec<u64> = serde_json::from_str(&positions).map_err(|e| {
                StoreError::Sqlite(rusqlite::Error::FromSqlConversionFailure(
                    3,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                ))
            })?;
            Ok(Some(CommandRecord {
                command_id: command_id.to_owned(),
                stream: StreamId::new(aggregate_type, stream_id),
                result: AppendResult {
                    stream_version,
                    positions: positions.into_iter().map(Position::new).collect(),
                    recorded_at: Timestamp::from_micros(recorded_at),
                },
                recorded_at: Timestamp::from_micros(recorded_at),
            }))
        })
    }

    fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        stream.validate()?;
        self.with_reader(|conn| Ok(current_version(conn, stream)?))
    }

    fn read_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        self.stream_rows(READ_STREAM, stream, from, max_count, false, |row| {
            let event = decode_row(row, stream.aggregate_type(), stream.id())?;
            let version = event.version;
            visit(event)?;
            Ok(version)
        })
    }

    fn replay_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut DataVisitor<'_>,
    ) -> Result<(), ReadError> {
        self.replay_rows(stream, from, max_count, false, visit)
    }

    fn load_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut DataVisitor<'_>,
    ) -> Result<(), ReadError> {
        self.replay_rows(stream, from, max_count, true, visit)
    }

    fn load_snapshot(
        &self,
        stream: &StreamId,
        at_most: Version,
        state_version: u32,
    ) -> Result<Option<Snapshot>, StoreError> {
        stream.validate()?;
        self.with_reader(|conn| {
            let at_most = at_most.min(Version::MAX);
            let snapshot = conn
                .prepare_cached(LOAD_SNAPSHOT)?
                .query_row(
                    (stream.aggregate_type(), stream.id(), state_version, at_most),
                    |row| Ok(snapshot_row(row, state_version)),
                )
                .optional()?;
            Ok(snapshot.flatten())
        })
    }

    fn save_snapshot(&self, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError> {
        stream.validate()?;
        project::refuse_inside_batch(self)?;
        let conn = self.writer();
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        tx.prepare_cached(SAVE_SNAPSHOT)?.execute((
            stream.aggregate_type(),
            stream.id(),
            snapshot.state_version,
            snapshot.version,
            snapshot.state.as_str(),
            snapshot.taken_at.as_micros(),
        ))?;
        tx.prepare_cached(PRUNE_SNAPSHOTS)?
            .execute((stream.aggregate_type(), stream.id()))?;
        tx.commit()?;
        Ok(())
    }

    fn read_all_filtered_with(
        &self,
        after: Position,
        filter: &EventFilter,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        let until = Position::new(i64::MAX.unsigned_abs());
        self.with_reader(|conn| read_filtered(conn, after, until, filter, max_count, visit))
    }

    fn list_streams(
        &self,
        aggregate_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamInfo>, StoreError> {
        StreamId::new(aggregate_type, after.unwrap_or_default()).validate()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (sql, after) = match after {
            Some(after) => (LIST_STREAMS_AFTER, after),
            None => (LIST_STREAMS_FIRST, ""),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map((aggregate_type, after, limit), |row| {
                Ok(StreamInfo {
                    stream: StreamId::new(aggregate_type, row.get::<_, String>(0)?),
                    version: row.get(1)?,
                    first_recorded_at: Timestamp::from_micros(row.get(2)?),
                    last_recorded_at: Timestamp::from_micros(row.get(3)?),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn read_all_with(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(READ_ALL)?;
            let limit = i64::try_from(max_count).unwrap_or(i64::MAX);
            let after = after.min(Position::new(i64::MAX.unsigned_abs()));
            let mut rows = stmt.query((after, limit))?;
            while let Some(row) = rows.next()? {
                let position: i64 = row.get(0)?;
                let aggregate_type = text(row, 8, position, "aggregate_type")?;
                let stream_id = text(row, 9, position, "stream_id")?;
                visit(decode_row(row, aggregate_type, stream_id)?)?;
            }
            Ok(())
        })
    }

    fn read_chain_with(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut ChainVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.read_chain(after, max_count, visit)
    }

    fn chain_head(&self) -> Result<Option<ChainHead>, StoreError> {
        self.read_chain_head()
    }

    fn version_gaps(&self, limit: usize) -> Result<Vec<VersionGap>, StoreError> {
        self.read_version_gaps(limit)
    }
}

impl SqliteStore {
    /// `EXPLAIN QUERY PLAN` of the statement [`EventStore::read_all_filtered_with`] runs
    /// for `filter`, one line per step. Not public API: for the tests that check that a
    /// filtered read never sorts.
    ///
    /// # Errors
    /// When SQLite fails.
    #[doc(hidden)]
    pub fn explain_filtered(&self, filter: &EventFilter) -> Result<String, StoreError> {
        let query = FilteredQuery::new(
            filter,
            Position::START,
            Position::new(i64::MAX.unsigned_abs()),
            512,
        )?;
        self.explain(&query.sql, rusqlite::params_from_iter(&query.params))
    }

    /// `EXPLAIN QUERY PLAN` of the statement [`EventStore::list_streams`] runs. Not public
    /// API: for the tests of its plan.
    ///
    /// # Errors
    /// When SQLite fails.
    #[doc(hidden)]
    pub fn explain_list_streams(&self) -> Result<String, StoreError> {
        self.explain(LIST_STREAMS_AFTER, ("t", "a", 10))
    }

    fn explain(&self, sql: &str, params: impl rusqlite::Params) -> Result<String, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let lines = stmt
                .query_map(params, |row| row.get::<_, String>(3))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(lines.join("\n"))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn note(text: &str) -> NewEvent {
        NewEvent::new("note.added", 1, format!(r#"{{"text":"{text}"}}"#))
    }

    #[test]
    fn expected_versions_are_enforced() -> Result<(), Box<dyn std::error::Error>> {
        let store = SqliteStore::in_memory()?;
        let s = StreamId::new("note", "1");
        store.append(&s, ExpectedVersion::NoStream, &[note("a")])?;
        let err = store.append(&s, ExpectedVersion::NoStream, &[note("b")]);
        assert!(matches!(
            err,
            Err(AppendError::Conflict { actual, .. }) if actual == Version::new(1)
        ));
        let ok = store.append(
            &s,
            ExpectedVersion::Exact(Version::new(1)),
            &[note("b"), note("c")],
        )?;
        assert_eq!(ok.stream_version, Version::new(3));
        assert_eq!(ok.positions, [Position::new(2), Position::new(3)]);
        Ok(())
    }

    #[test]
    fn a_duplicate_event_id_rolls_back_the_whole_batch() -> Result<(), Box<dyn std::error::Error>> {
        let store = SqliteStore::in_memory()?;
        let s = StreamId::new("note", "1");
        let first = note("a");
        store.append(&s, ExpectedVersion::Any, std::slice::from_ref(&first))?;
        let batch = [note("b"), note("c").with_id(first.event_id)];
        let err = store.append(&s, ExpectedVersion::Any, &batch);
        assert!(
            matches!(err, Err(AppendError::DuplicateEventId { event_id, .. }) if event_id == first.event_id)
        );
        assert_eq!(store.stream_version(&s)?, Version::new(1));
        Ok(())
    }

    #[test]
    fn a_payload_that_is_not_json_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let store = SqliteStore::in_memory()?;
        let s = StreamId::new("note", "1");
        let err = store.append(
            &s,
            ExpectedVersion::Any,
            &[note("a"), NewEvent::new("x", 1, "{nope")],
        );
        assert!(
            matches!(err, Err(AppendError::Encode { ref event_type, .. }) if event_type == "x")
        );
        assert_eq!(store.stream_version(&s)?, Version::NONE);
        Ok(())
    }

    #[test]
    fn concurrent_appends_each_get_their_own_outcome() -> Result<(), Box<dyn std::error::Error>> {
        let store = Arc::new(SqliteStore::in_memory()?);
        let shared = StreamId::new("note", "shared");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                let shared = shared.clone();
                std::thread::spawn(move || -> Result<(u32, u32), AppendError> {
                    let own = StreamId::new("note", format!("t{t}"));
                    let (mut won, mut lost) = (0, 0);
                    for i in 0..50u64 {
                        let done = store.append(
                            &own,
                            ExpectedVersion::Exact(Version::new(i)),
                            &[note("x")],
                        )?;
                        assert_eq!(done.stream_version, Version::new(i + 1));
                        assert_eq!(done.positions.len(), 1);
                        // Everyone races for the same version of the shared stream.
                        match store.append(
                            &shared,
                            ExpectedVersion::Exact(Version::new(i)),
                            &[note("y")],
                        ) {
                            Ok(_) => won += 1,
                            Err(AppendError::Conflict { .. }) => lost += 1,
                            Err(e) => return Err(e),
                        }
                    }
                    Ok((won, lost))
                })
            })
            .collect();
        let mut won = 0;
        for t in threads {
            let (w, l) = t.join().map_err(|_| "thread panicked")??;
            assert_eq!(w + l, 50);
            won += w;
        }
        let shared_version = store.stream_version(&shared)?;
        assert_eq!(shared_version, Version::new(u64::from(won)));
        for t in 0..8 {
            assert_eq!(
                store.stream_version(&StreamId::new("note", format!("t{t}")))?,
                Version::new(50)
            );
        }
        let positions: Vec<u64> = store
            .read_all(Position::START)
            .map(|e| e.map(|e| e.position.get()))
            .collect::<Result<_, _>>()?;
        let expected: Vec<u64> = (1..=positions.len() as u64).collect();
        assert_eq!(positions, expected);
        Ok(())
    }
}
