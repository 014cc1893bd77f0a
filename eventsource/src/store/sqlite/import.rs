//! [`Import`] and [`Inspect`] for [`SqliteStore`]: rows inserted with the positions,
//! ids and times they already have, and store-wide counts.
//!
//! Positions are the table's `INTEGER PRIMARY KEY` (the rowid, no `AUTOINCREMENT`), so
//! an append after an import takes `max(position) + 1`: it continues after the imported
//! positions with nothing to advance.

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use super::project::refuse_inside_batch;
use super::write::{ADVANCE_CHAIN, LAST_EVENT, current_version, event_id_text, is_collision};
use crate::chain::ChainHash;
use crate::error::StoreError;
use crate::event::RecordedEvent;
use crate::store::import::{Import, ImportError, chain_links, check_batch, check_continues};
use crate::store::inspect::{Inspect, StoreSummary};
use crate::version::{Position, StreamId};

const INSERT_IMPORTED: &str = "INSERT INTO events (position, aggregate_type, stream_id, version, \
     event_type, event_version, event_id, recorded_at, payload, metadata, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

impl Import for SqliteStore {
    fn import_batch(&self, events: &[RecordedEvent]) -> Result<Position, ImportError> {
        check_batch(events)?;
        refuse_inside_batch(self)?;
        let conn = self.writer();
        let tx = rusqlite::Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let tail: Option<(i64, Option<Vec<u8>>)> = tx
            .query_row(LAST_EVENT, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(StoreError::from)?;
        let (last, prev) = tail.unwrap_or((0, None));
        let last = Position::new(last.unsigned_abs());
        let prev = prev
            .as_deref()
            .and_then(ChainHash::from_slice)
            .unwrap_or(ChainHash::GENESIS);
        let Some(imported) = events.last() else {
            return Ok(last);
        };
        check_continues(events, last, |stream: &StreamId| {
            Ok(current_version(&tx, stream)?)
        })?;
        let metadata = events
            .iter()
            .map(|event| {
                serde_json::to_string(&event.metadata).map_err(|source| ImportError::Metadata {
                    position: event.position,
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let links = chain_links(prev, events, &metadata)?;
        {
            let mut insert = tx
                .prepare_cached(INSERT_IMPORTED)
                .map_err(StoreError::from)?;
            let mut id = [0_u8; 36];
            for ((event, metadata), hash) in events.iter().zip(&metadata).zip(&links) {
                let inserted = insert.execute((
                    event.position,
                    event.stream.aggregate_type(),
                    event.stream.id(),
                    event.version,
                    &event.event_type,
                    event.event_version,
                    event_id_text(&event.event_id, &mut id),
                    event.recorded_at.as_micros(),
                    &event.payload,
                    metadata,
                    hash.as_bytes(),
                ));
                match inserted {
                    Ok(_) => {}
                    // Positions and versions were checked under the write lock: only the
                    // event id can collide.
                    Err(e) if is_collision(&e) => {
                        return Err(ImportError::DuplicateEventId {
                            position: event.position,
                            event_id: event.event_id,
                        });
                    }
                    Err(e) => return Err(StoreError::from(e).into()),
                }
            }
        }
        if let Some(head) = links.last() {
            tx.execute(ADVANCE_CHAIN, (imported.position, head.as_bytes()))
                .map_err(StoreError::from)?;
        }
        tx.commit().map_err(StoreError::from)?;
        drop(conn);
        self.commits.committed(imported.position);
        Ok(imported.position)
    }
}

impl Inspect for SqliteStore {
    fn summary(&self) -> Result<StoreSummary, StoreError> {
        self.read(|conn| {
            let schema_version: i64 =
                conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            let page_count: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
            let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let (events, streams): (i64, i64) = conn.query_row(
                "SELECT (SELECT count(*) FROM events), \
                 (SELECT count(*) FROM (SELECT DISTINCT aggregate_type, stream_id FROM events))",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(StoreSummary {
                backend: "sqlite",
                schema_version,
                events: events.unsigned_abs(),
                streams: streams.unsigned_abs(),
                size_bytes: page_count.unsigned_abs() * page_size.unsigned_abs(),
            })
        })
    }

    fn aggregate_types(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            conn.prepare("SELECT DISTINCT aggregate_type FROM events ORDER BY aggregate_type")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventId, Metadata, NewEvent, Timestamp};
    use crate::store::EventStore;
    use crate::version::{ExpectedVersion, Version};

    fn event(position: u64, stream: &str, version: u64) -> RecordedEvent {
        RecordedEvent {
            position: Position::new(position),
            stream: StreamId::new("note", stream),
            version: Version::new(version),
            event_type: "note.added".into(),
            event_version: 1,
            event_id: EventId::new(),
            recorded_at: Timestamp::from_micros(1_700_000_000_000_000 + position.cast_signed()),
            payload: format!(r#"{{"n": {position}}}"#),
            metadata: Metadata::new().actor("ann"),
        }
    }

    fn all(store: &SqliteStore) -> Result<Vec<RecordedEvent>, crate::ReadError> {
        store.read_all(Position::START).collect()
    }

    #[test]
    fn imported_events_read_back_as_given_and_appends_continue_after_them()
    -> Result<(), Box<dyn std::error::Error>> {
        let store = SqliteStore::in_memory()?;
        let batch = [event(1, "a", 1), event(2, "b", 1), event(3, "a", 2)];
        assert_eq!(store.import_batch(&batch)?, Position::new(3));
        assert_eq!(all(&store)?, batch);
        assert_eq!(store.import_batch(&[])?, Position::new(3));
        let appended = store.append(
            &StreamId::new("note", "a"),
            ExpectedVersion::Exact(Version::new(2)),
            &[NewEvent::new("note.added", 1, "{}")],
        )?;
        assert_eq!(appended.positions, [Position::new(4)]);
        // Imported and appended events are one chain.
        // The import moved the head; the append's commit has not yet (the head moves
        // every few commits): its event is past the head.
        let report = crate::Verify::chain(&store).run()?;
        assert!(report.is_sound(), "{report}");
        assert_eq!(
            report.head.map(|h| (h.position, h.count)),
            Some((Position::new(3), 3))
        );
        assert_eq!(report.after_head, 1);
        Ok(())
    }

    #[test]
    fn a_batch_that_does_not_continue_the_store_is_refused_whole()
    -> Result<(), Box<dyn std::error::Error>> {
        let store = SqliteStore::in_memory()?;
        store.import_batch(&[event(1, "a", 1), event(2, "a", 2)])?;
        let overlap = store.import_batch(&[event(2, "b", 1)]);
        assert!(matches!(
            overlap,
            Err(ImportError::PositionNotNext { position, expected, .. })
                if position == Position::new(2) && expected == Position::new(3)
        ));
        let gap = store.import_batch(&[event(4, "b", 1)]);
        assert!(matches!(
            gap,
            Err(ImportError::PositionNotNext { position, expected, .. })
                if position == Position::new(4) && expected == Position::new(3)
        ));
        let gap = store.import_batch(&[event(3, "b", 1), event(4, "a", 4)]);
        assert!(matches!(
            gap,
            Err(ImportError::VersionGap { position, current, .. })
                if position == Position::new(4) && current == Version::new(2)
        ));
        let unordered = store.import_batch(&[event(5, "b", 1), event(5, "c", 1)]);
        assert!(matches!(
            unordered,
            Err(ImportError::PositionNotNext { .. })
        ));
        let mut not_json = event(3, "b", 1);
        not_json.payload = "{nope".into();
        assert!(matches!(
            store.import_batch(&[not_json]),
            Err(ImportError::Payload { .. })
        ));
        let stored = all(&store)?;
        let mut again = event(4, "c", 1);
        again.event_id = stored[0].event_id;
        let duplicate = store.import_batch(&[event(3, "b", 1), again]);
        assert!(matches!(
            duplicate,
            Err(ImportError::DuplicateEventId { position, .. }) if position == Position::new(4)
        ));
        assert_eq!(
            all(&store)?.len(),
            2,
            "nothing of a refused batch is stored"
        );
        Ok(())
    }
}
