//! The hash chain of a PostgreSQL store, read back for
//! [`Verify::chain`](crate::Verify::chain): the rows with their hashes, the chain's head,
//! and gaps in stream versions.

use postgres::types::ToSql;

use super::read::decode_row_with_stream;
use super::{PostgresStore, sql_int, stored_u64};
use crate::chain::{ChainHash, ChainHead, VersionGap};
use crate::error::{ReadError, StoreError};
use crate::store::ChainVisitor;
use crate::version::{Position, StreamId, Version};

const READ_CHAIN: &str = "SELECT position, version, event_type, event_version, \
     event_id::text, recorded_at, payload::text, metadata::text, aggregate_type, stream_id, hash \
     FROM {schema}.events WHERE position > $1 ORDER BY position LIMIT $2";

const CHAIN_HEAD: &str =
    "SELECT encoding, starts_at, position, hash, count FROM {schema}.chain WHERE id";

/// Events whose stream lacks the version before theirs: one probe of the stream index
/// per event, in constant memory.
const VERSION_GAPS: &str = "SELECT e.position, e.aggregate_type, e.stream_id, e.version \
     FROM {schema}.events e WHERE e.version > 1 AND NOT EXISTS (SELECT 1 FROM {schema}.events p \
     WHERE p.aggregate_type = e.aggregate_type AND p.stream_id = e.stream_id \
     AND p.version = e.version - 1) ORDER BY e.position LIMIT $1";

impl PostgresStore {
    fn spell(&self, sql: &str) -> String {
        sql.replace("{schema}", &self.sql.schema)
    }

    pub(super) fn read_chain(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut ChainVisitor<'_>,
    ) -> Result<(), StoreError> {
        let after = sql_int(after.get());
        let limit = sql_int(max_count as u64);
        let params: [&(dyn ToSql + Sync); 2] = [&after, &limit];
        let statement = self.spell(READ_CHAIN);
        self.with_conn(|conn| {
            // One page at a time: at most `max_count` rows in memory.
            let rows = conn.client.query(&statement, &params)?;
            for row in &rows {
                let position = Position::new(stored_u64(row.try_get(0)?));
                let decoded = decode_row_with_stream(row).and_then(|event| {
                    let hash: Option<&[u8]> = row.try_get(10).map_err(StoreError::from)?;
                    Ok::<_, ReadError>((event, hash))
                });
                visit(position, decoded)?;
            }
            Ok(())
        })
    }

    pub(super) fn read_chain_head(&self) -> Result<Option<ChainHead>, StoreError> {
        let statement = self.spell(CHAIN_HEAD);
        self.with_conn(|conn| {
            let Some(row) = conn.client.query_opt(&statement, &[])? else {
                return Ok(None);
            };
            let encoding: i32 = row.try_get(0)?;
            let hash: &[u8] = row.try_get(3)?;
            Ok(u32::try_from(encoding).ok().and_then(|encoding| {
                Some(ChainHead {
                    encoding,
                    starts_at: Position::new(stored_u64(row.try_get(1).ok()?)),
                    position: Position::new(stored_u64(row.try_get(2).ok()?)),
                    hash: ChainHash::from_slice(hash)?,
                    count: stored_u64(row.try_get(4).ok()?),
                })
            }))
        })
    }

    pub(super) fn read_version_gaps(&self, limit: usize) -> Result<Vec<VersionGap>, StoreError> {
        let statement = self.spell(VERSION_GAPS);
        let limit = sql_int(limit as u64);
        self.with_conn(|conn| {
            conn.client
                .query(&statement, &[&limit])?
                .iter()
                .map(|row| {
                    Ok(VersionGap {
                        position: Position::new(stored_u64(row.try_get(0)?)),
                        stream: StreamId::new(
                            row.try_get::<_, String>(1)?,
                            row.try_get::<_, String>(2)?,
                        ),
                        version: Version::new(stored_u64(row.try_get(3)?)),
                    })
                })
                .collect()
        })
    }
}
