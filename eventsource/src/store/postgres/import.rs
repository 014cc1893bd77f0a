//! [`Import`] and [`Inspect`] for [`PostgresStore`]: a batch inserted in one statement
//! under the append lock, and store-wide counts.
//!
//! Appends take `max(position) + 1` under the append lock (there is no sequence), so an
//! import that takes the same lock and inserts after the last position leaves the next
//! append continuing after the imported positions, with nothing to advance.

use std::collections::HashMap;
use std::time::SystemTime;

use postgres::Client;
use postgres::error::SqlState;

use super::schema::EVENT_ID_KEY;
use super::{PostgresStore, sql_int, stored_u64};
use crate::chain::ChainHash;
use crate::error::StoreError;
use crate::event::RecordedEvent;
use crate::store::import::{Import, ImportError, chain_links, check_batch, check_continues};
use crate::store::inspect::{Inspect, StoreSummary};
use crate::version::{Position, StreamId, Version};

/// The last position and the stored versions of the streams `$1`/`$2`, in one snapshot,
/// with the newest event's chain hash.
const HEAD: &str = "SELECT (SELECT coalesce(max(position), 0) FROM {schema}.events), \
     k.a, k.s, (SELECT coalesce(max(version), 0) FROM {schema}.events \
       WHERE aggregate_type = k.a AND stream_id = k.s), \
     (SELECT hash FROM {schema}.events ORDER BY position DESC LIMIT 1) \
     FROM unnest($1::text[], $2::text[]) AS k(a, s)";

/// Moves the chain's head past an imported batch.
const ADVANCE_CHAIN: &str =
    "UPDATE {schema}.chain SET position = $1, hash = $2, count = count + $3 WHERE id";

const INSERT: &str = "INSERT INTO {schema}.events (position, aggregate_type, stream_id, \
     version, event_type, event_version, event_id, recorded_at, payload, metadata, hash) \
     SELECT p, a, s, v, t, ev, id::uuid, r, pl::jsonb, m::jsonb, h \
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
       $6::bigint[], $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::bytea[]) \
       AS e(p, a, s, v, t, ev, id, r, pl, m, h)";

const STORED_IDS: &str = "SELECT event_id::text FROM {schema}.events \
     WHERE event_id = ANY($1::text[]::uuid[])";

/// The columns of a batch, as arrays for `unnest`.
#[derive(Default)]
struct Columns {
    positions: Vec<i64>,
    aggregate_types: Vec<String>,
    stream_ids: Vec<String>,
    versions: Vec<i64>,
    event_types: Vec<String>,
    event_versions: Vec<i64>,
    event_ids: Vec<String>,
    recorded_at: Vec<SystemTime>,
    payloads: Vec<String>,
    metadata: Vec<String>,
}

impl Columns {
    fn new(events: &[RecordedEvent]) -> Result<Self, ImportError> {
        let mut c = Columns::default();
        for e in events {
            c.metadata
                .push(serde_json::to_string(&e.metadata).map_err(|source| {
                    ImportError::Metadata {
                        position: e.position,
                        source,
                    }
                })?);
            c.positions.push(sql_int(e.position.get()));
            c.aggregate_types.push(e.stream.aggregate_type().to_owned());
            c.stream_ids.push(e.stream.id().to_owned());
            c.versions.push(sql_int(e.version.get()));
            c.event_types.push(e.event_type.clone());
            c.event_versions.push(i64::from(e.event_version));
            c.event_ids.push(e.event_id.to_string());
            c.recorded_at.push(e.recorded_at.to_system_time());
            c.payloads.push(e.payload.clone());
        }
        Ok(c)
    }
}

/// The import's transaction, begun with the append lock (and the commit notification)
/// exactly as an append's; rolled back on drop unless committed.
struct Locked<'c> {
    client: &'c mut Client,
    open: bool,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if self.open {
            // Fails only on a broken connection, which the pool then drops.
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

impl Import for PostgresStore {
    fn import_batch(&self, events: &[RecordedEvent]) -> Result<Position, ImportError> {
        check_batch(events)?;
        let columns = Columns::new(events)?;
        let spell = |template: &str| template.replace("{schema}", &self.sql.schema);
        self.with_conn(|conn| {
            conn.client
                .batch_execute(&self.sql.begin_append)
                .map_err(StoreError::from)?;
            let mut tx = Locked {
                client: &mut conn.client,
                open: true,
            };
            let (last, prev, stored) = store_head(tx.client, &spell, events)?;
            let Some(imported) = events.last() else {
                return Ok(last);
            };
            check_continues(events, last, |stream| {
                Ok(stored.get(stream).copied().unwrap_or(Version::NONE))
            })?;
            let links = chain_links(prev, events, &columns.metadata)?;
            let hashes: Vec<&[u8]> = links.iter().map(|h| &h.as_bytes()[..]).collect();
            let c = &columns;
            let inserted = tx.client.execute(
                &spell(INSERT),
                &[
                    &c.positions,
                    &c.aggregate_types,
                    &c.stream_ids,
                    &c.versions,
                    &c.event_types,
                    &c.event_versions,
                    &c.event_ids,
                    &c.recorded_at,
                    &c.payloads,
                    &c.metadata,
                    &hashes,
                ],
            );
            if let Err(e) = inserted {
                let duplicate_id = e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    && e.as_db_error().and_then(|db| db.constraint()) == Some(EVENT_ID_KEY);
                drop(tx);
                if duplicate_id {
                    return Err(self.duplicate(&mut conn.client, events, e));
                }
                return Err(StoreError::from(e).into());
            }
            if let Some(head) = links.last() {
                let count = sql_int(events.len() as u64);
                tx.client
                    .execute(
                        &spell(ADVANCE_CHAIN),
                        &[
                            &sql_int(imported.position.get()),
                            &&head.as_bytes()[..],
                            &count,
                        ],
                    )
                    .map_err(StoreError::from)?;
            }
            tx.open = false;
            tx.client
                .batch_execute("COMMIT")
                .map_err(StoreError::from)?;
            Ok(imported.position)
        })
    }
}

/// The store's last position, its newest chain hash and the stored versions of the
/// batch's streams, read under the append lock.
fn store_head(
    client: &mut Client,
    spell: &dyn Fn(&str) -> String,
    events: &[RecordedEvent],
) -> Result<(Position, ChainHash, HashMap<StreamId, Version>), ImportError> {
    let mut streams: Vec<&StreamId> = events.iter().map(|e| &e.stream).collect();
    streams.sort_unstable();
    streams.dedup();
    let (types, ids): (Vec<&str>, Vec<&str>) =
        streams.iter().map(|s| (s.aggregate_type(), s.id())).unzip();
    let rows = client
        .query(&spell(HEAD), &[&types, &ids])
        .map_err(StoreError::from)?;
    let mut stored = HashMap::with_capacity(rows.len());
    let mut last = None;
    let mut prev = ChainHash::GENESIS;
    for row in &rows {
        last = Some(stored_u64(row.try_get(0).map_err(StoreError::from)?));
        let hash: Option<&[u8]> = row.try_get(4).map_err(StoreError::from)?;
        prev = hash
            .and_then(ChainHash::from_slice)
            .unwrap_or(ChainHash::GENESIS);
        let stream = StreamId::new(
            row.try_get::<_, String>(1).map_err(StoreError::from)?,
            row.try_get::<_, String>(2).map_err(StoreError::from)?,
        );
        let version = stored_u64(row.try_get(3).map_err(StoreError::from)?);
        stored.insert(stream, Version::new(version));
    }
    let last = match last {
        Some(last) => Position::new(last),
        // An empty batch: no stream was looked up.
        None => Position::new(stored_u64(
            client
                .query_one(
                    &spell("SELECT coalesce(max(position), 0) FROM {schema}.events"),
                    &[],
                )
                .and_then(|row| row.try_get(0))
                .map_err(StoreError::from)?,
        )),
    };
    Ok((last, prev, stored))
}

impl PostgresStore {
    /// The first event of `events` whose id is already stored, looked up after the
    /// insert that violated the unique key was rolled back; `error` when none is found.
    fn duplicate(
        &self,
        client: &mut Client,
        events: &[RecordedEvent],
        error: postgres::Error,
    ) -> ImportError {
        let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
        let found = client
            .query(&STORED_IDS.replace("{schema}", &self.sql.schema), &[&ids])
            .ok()
            .and_then(|rows| {
                let stored: Vec<String> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
                events
                    .iter()
                    .find(|e| stored.contains(&e.event_id.to_string()))
            });
        match found {
            Some(event) => ImportError::DuplicateEventId {
                position: event.position,
                event_id: event.event_id,
            },
            None => StoreError::from(error).into(),
        }
    }
}

impl Inspect for PostgresStore {
    fn summary(&self) -> Result<StoreSummary, StoreError> {
        let schema = &self.sql.schema;
        let sql = format!(
            "SELECT (SELECT schema_version FROM {schema}.eventsource_meta), \
             (SELECT count(*) FROM {schema}.events), \
             (SELECT count(*) FROM (SELECT DISTINCT aggregate_type, stream_id FROM {schema}.events) AS s), \
             pg_total_relation_size($1::text::regclass)"
        );
        self.with_conn(|conn| {
            let row = conn
                .client
                .query_one(&sql, &[&format!("{schema}.events")])?;
            Ok(StoreSummary {
                backend: "postgres",
                schema_version: row.try_get(0)?,
                events: stored_u64(row.try_get(1)?),
                streams: stored_u64(row.try_get(2)?),
                size_bytes: stored_u64(row.try_get(3)?),
            })
        })
    }

    fn aggregate_types(&self) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT aggregate_type FROM (SELECT DISTINCT aggregate_type FROM {}.events) AS t \
             ORDER BY aggregate_type COLLATE \"C\"",
            self.sql.schema
        );
        self.with_conn(|conn| {
            conn.client
                .query(&sql, &[])?
                .iter()
                .map(|row| Ok(row.try_get(0)?))
                .collect()
        })
    }
}
