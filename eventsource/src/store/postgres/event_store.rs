//! [`EventStore`] for [`PostgresStore`]: each call on a pooled connection.

use postgres::types::ToSql;

use super::read::{
    self, decode_data, decode_row, decode_row_with_stream, filtered_row, query_filtered,
};
use super::{FILTERED_PAGE, PostgresStore, sql_int};
use crate::chain::{ChainHead, VersionGap};
use crate::error::{AppendError, ReadError, StoreError};
use crate::event::{NewEvent, Timestamp};
use crate::snapshot::Snapshot;
use crate::store::encode::{content_digests, encode_metadata};
use crate::store::group_commit::Request;
use crate::store::{
    AppendResult, ChainVisitor, CommandRecord, DataVisitor, EventFilter, EventStore, StreamInfo,
    Visitor,
};
use crate::version::{ExpectedVersion, Position, StreamId, Version};

impl PostgresStore {
    /// Checks the payloads and prepares what the commit writes (metadata as JSON, the
    /// chain's content digests), outside the append lock; then hands the append to the
    /// group commit.
    fn submit(
        &self,
        command: Option<&str>,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        stream.validate().map_err(StoreError::from)?;
        let metadata = encode_metadata(stream, events)?;
        let contents = content_digests(stream, events, &metadata)?;
        let request = Request {
            stream,
            expected,
            events,
            command,
            metadata: &metadata,
            contents: &contents,
        };
        self.group.append(request, &|batch| self.commit(batch))
    }
}

impl EventStore for PostgresStore {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        stream.validate().map_err(StoreError::from)?;
        if events.is_empty() {
            let actual = self.stream_version(stream)?;
            if !expected.matches(actual) {
                return Err(AppendError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual,
                });
            }
            return Ok(AppendResult {
                stream_version: actual,
                positions: Vec::new(),
                recorded_at: Timestamp::now(),
            });
        }
        self.submit(None, stream, expected, events)
    }

    fn append_command(
        &self,
        command_id: &str,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        // Even without events: the command is recorded, under the lock.
        self.submit(Some(command_id), stream, expected, events)
    }

    fn command(&self, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.with_conn(|conn| conn.command(command_id))
    }

    fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        stream.validate()?;
        self.with_conn(|conn| conn.stream_version(stream).map_err(StoreError::from))
    }

    fn read_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        stream.validate().map_err(StoreError::from)?;
        let from = sql_int(from.get().max(1));
        let limit = sql_int(max_count as u64);
        let params: [&(dyn ToSql + Sync); 4] =
            [&stream.aggregate_type(), &stream.id(), &from, &limit];
        self.with_conn(|conn| {
            conn.read(
                |s| &s.read_stream,
                &params,
                |row| visit(decode_row(row, stream.aggregate_type(), stream.id())?),
            )
        })
    }

    fn read_all_with(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        let after = sql_int(after.get());
        let limit = sql_int(max_count as u64);
        let params: [&(dyn ToSql + Sync); 2] = [&after, &limit];
        self.with_conn(|conn| {
            conn.read(
                |s| &s.read_all,
                &params,
                |row| visit(decode_row_with_stream(row)?),
            )
        })
    }

    fn read_all_filtered_with(
        &self,
        after: Position,
        filter: &EventFilter,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        filter.validate().map_err(StoreError::from)?;
        // Pages of owned rows (see `query_filtered`), so memory stays bounded whatever
        // `max_count` is. Each page is a statement of its own: positions become visible
        // in order (see "Global order"), so paging by position misses nothing.
        let until = Position::new(i64::MAX.unsigned_abs());
        let mut after = after;
        let mut left = max_count;
        while left > 0 {
            let page = left.min(FILTERED_PAGE);
            let rows = self.with_conn(|conn| {
                query_filtered(
                    &mut conn.client,
                    &self.sql.schema,
                    after,
                    until,
                    filter,
                    page,
                )
            })?;
            for row in &rows {
                let event = filtered_row(row)?;
                after = event.position;
                visit(event)?;
            }
            if rows.len() < page {
                break;
            }
            left -= rows.len();
        }
        Ok(())
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
        let (statement, after) = match after {
            Some(after) => (&self.sql.list_streams_after, after),
            None => (&self.sql.list_streams_first, ""),
        };
        self.with_conn(|conn| {
            read::list_streams(&mut conn.client, statement, aggregate_type, after, limit)
        })
    }

    fn replay_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut DataVisitor<'_>,
    ) -> Result<(), ReadError> {
        stream.validate().map_err(StoreError::from)?;
        let from = sql_int(from.get().max(1));
        let limit = sql_int(max_count as u64);
        let params: [&(dyn ToSql + Sync); 4] =
            [&stream.aggregate_type(), &stream.id(), &from, &limit];
        self.with_conn(|conn| {
            conn.read(
                |s| &s.replay_stream,
                &params,
                |row| visit(decode_data(row)?),
            )
        })
    }

    fn load_snapshot(
        &self,
        stream: &StreamId,
        at_most: Version,
        state_version: u32,
    ) -> Result<Option<Snapshot>, StoreError> {
        stream.validate()?;
        self.with_conn(|conn| {
            conn.load_snapshot(&self.sql, stream, at_most, state_version)
                .map_err(StoreError::from)
        })
    }

    fn save_snapshot(&self, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError> {
        stream.validate()?;
        self.with_conn(|conn| {
            conn.save_snapshot(&self.sql, stream, snapshot)
                .map_err(StoreError::from)
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
