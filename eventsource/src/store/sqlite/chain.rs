//! The hash chain of a SQLite store, read back for [`Verify::chain`](crate::Verify::chain):
//! the rows with their hashes, the chain's head, and gaps in stream versions.

use rusqlite::OptionalExtension;

use super::SqliteStore;
use super::read::{corrupt, decode_row, text};
use crate::chain::{ChainHash, ChainHead, VersionGap};
use crate::error::{ReadError, StoreError};
use crate::store::ChainVisitor;
use crate::version::{Position, StreamId, Version};

const READ_CHAIN: &str = "SELECT position, version, event_type, event_version, event_id, recorded_at, \
     payload, metadata, aggregate_type, stream_id, hash FROM events WHERE position > ?1 \
     ORDER BY position LIMIT ?2";

const CHAIN_HEAD: &str =
    "SELECT encoding, starts_at, position, hash, count FROM chain WHERE id = 1";

/// Events whose stream lacks the version before theirs: one probe of the stream index
/// per event, in constant memory.
const VERSION_GAPS: &str = "SELECT e.position, e.aggregate_type, e.stream_id, e.version FROM events e \
     WHERE e.version > 1 AND NOT EXISTS (SELECT 1 FROM events p \
     WHERE p.aggregate_type = e.aggregate_type AND p.stream_id = e.stream_id AND p.version = e.version - 1) \
     ORDER BY e.position LIMIT ?1";

impl SqliteStore {
    pub(super) fn read_chain(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut ChainVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(READ_CHAIN)?;
            let limit = i64::try_from(max_count).unwrap_or(i64::MAX);
            let after = after.min(Position::new(i64::MAX.unsigned_abs()));
            let mut rows = stmt.query((after, limit))?;
            while let Some(row) = rows.next()? {
                let raw: i64 = row.get(0)?;
                let position = Position::new(raw.unsigned_abs());
                let decoded = (|| {
                    let aggregate_type = text(row, 8, raw, "aggregate_type")?;
                    let stream_id = text(row, 9, raw, "stream_id")?;
                    let event = decode_row(row, aggregate_type, stream_id)?;
                    let hash = row
                        .get_ref(10)?
                        .as_blob_or_null()
                        .map_err(|e| corrupt(raw, "hash", &e))?;
                    Ok::<_, ReadError>((event, hash))
                })();
                visit(position, decoded)?;
            }
            Ok(())
        })
    }

    pub(super) fn read_chain_head(&self) -> Result<Option<ChainHead>, StoreError> {
        self.with_reader(|conn| {
            let row = conn
                .prepare_cached(CHAIN_HEAD)?
                .query_row([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .optional()?;
            Ok(
                row.and_then(|(encoding, starts_at, position, hash, count)| {
                    Some(ChainHead {
                        encoding: u32::try_from(encoding).ok()?,
                        starts_at: Position::new(starts_at.unsigned_abs()),
                        position: Position::new(position.unsigned_abs()),
                        hash: ChainHash::from_slice(&hash)?,
                        count: count.unsigned_abs(),
                    })
                }),
            )
        })
    }

    pub(super) fn read_version_gaps(&self, limit: usize) -> Result<Vec<VersionGap>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(VERSION_GAPS)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let gaps = stmt
                .query_map([limit], |r| {
                    Ok(VersionGap {
                        position: Position::new(r.get::<_, i64>(0)?.unsigned_abs()),
                        stream: StreamId::new(r.get::<_, String>(1)?, r.get::<_, String>(2)?),
                        version: Version::new(r.get::<_, i64>(3)?.unsigned_abs()),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(gaps)
        })
    }
}
