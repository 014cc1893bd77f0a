//! Storing events as they were recorded elsewhere: [`Import`], the write path of
//! backups, restores and copies between stores.
//!
//! An append assigns the position and the time; an import keeps those of the source, so
//! that a restored or copied store reads back event for event as the original did
//! (positions, event ids, versions, timestamps, payloads and metadata).

use std::collections::HashMap;

use crate::chain::{ChainHash, Hasher, Link};
use crate::error::StoreError;
use crate::event::{EventId, RecordedEvent};
use crate::store::EventStore;
use crate::version::{InvalidStreamId, Position, StreamId, Version};

/// A store that can take events with the positions, event ids and timestamps they
/// already have: implemented by [`SqliteStore`](crate::SqliteStore) and `PostgresStore`.
///
/// Each batch goes in whole or not at all, under the same lock appends take, so appends
/// and imports may run side by side: an import never lands before events already stored,
/// and appends after it continue after its last position.
///
/// ```
/// use eventsource::{EventStore, ExpectedVersion, Import, NewEvent, Position, SqliteStore, StreamId};
///
/// let source = SqliteStore::in_memory()?;
/// source.append(&StreamId::new("note", "n-1"), ExpectedVersion::Any, &[
///     NewEvent::new("note.added", 1, r#"{"text":"hi"}"#),
///     NewEvent::new("note.added", 1, r#"{"text":"there"}"#),
/// ])?;
/// let events = source.read_all(Position::START).collect::<Result<Vec<_>, _>>()?;
///
/// let target = SqliteStore::in_memory()?;
/// assert_eq!(target.import_batch(&events)?, Position::new(2));
/// let copied = target.read_all(Position::START).collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(copied, events); // same positions, ids, timestamps, payloads, metadata
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Import: EventStore {
    /// Stores `events` exactly as given (position, event id, stream, version, event type
    /// and version, timestamp, payload, metadata) in one transaction, and returns the
    /// store's last position afterwards (unchanged for an empty batch).
    ///
    /// The batch must continue the store: positions strictly increasing and after the
    /// store's last position (gaps are allowed), and each stream's versions following on
    /// from its stored version without a gap. Anything else is refused, with nothing
    /// stored.
    ///
    /// # Errors
    /// [`ImportError::PositionNotNext`], [`ImportError::VersionGap`],
    /// [`ImportError::Payload`], [`ImportError::Metadata`], [`ImportError::InvalidStreamId`],
    /// [`ImportError::DuplicateEventId`] naming the first event refused;
    /// [`ImportError::Store`] when the backend fails. In every case nothing of the batch
    /// is stored.
    fn import_batch(&self, events: &[RecordedEvent]) -> Result<Position, ImportError>;
}

/// Why [`Import::import_batch`] refused a batch. Nothing of the batch was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The event's position is not the one right after the store's last position (or
    /// after the previous event of the batch): the batch overlaps what is stored, or
    /// leaves a gap, which the hash chain would report as deleted events. Import into an
    /// empty store from position 1, or go on right after its last position.
    #[error(
        "cannot import position {position} (stream {stream}, version {version}): the next position is {expected}"
    )]
    PositionNotNext {
        /// The refused event's position.
        position: Position,
        /// Its stream.
        stream: StreamId,
        /// Its version in the stream.
        version: Version,
        /// The position it had to have.
        expected: Position,
    },
    /// The event's stream version does not follow the stream's stored version (or the
    /// previous event of the stream in the batch): importing it would leave a gap or a
    /// duplicate in the stream.
    #[error(
        "cannot import position {position}: stream {stream} is at version {current}, so its next event is version {}, not {version}",
        current.next()
    )]
    VersionGap {
        /// The refused event's position.
        position: Position,
        /// Its stream.
        stream: StreamId,
        /// Its version.
        version: Version,
        /// The stream's version before it.
        current: Version,
    },
    /// The event's payload is not JSON.
    #[error(
        "cannot import position {position} (stream {stream}, version {version}): the payload is not JSON"
    )]
    Payload {
        /// The refused event's position.
        position: Position,
        /// Its stream.
        stream: StreamId,
        /// Its version.
        version: Version,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The event's metadata could not be encoded as JSON.
    #[error("cannot import position {position}: the metadata could not be encoded as JSON")]
    Metadata {
        /// The refused event's position.
        position: Position,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The event's stream id cannot be stored ([`StreamId::validate`]).
    #[error("cannot import position {position}")]
    InvalidStreamId {
        /// The refused event's position.
        position: Position,
        /// Why the stream id is refused.
        #[source]
        source: InvalidStreamId,
    },
    /// An event with this id is already stored.
    #[error("cannot import position {position}: event id {event_id} is already stored")]
    DuplicateEventId {
        /// The refused event's position.
        position: Position,
        /// The id already stored.
        event_id: EventId,
    },
    /// The backend failed; the transaction was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The checks of a batch that need no store: valid stream ids, JSON payloads, positions
/// one after the other.
pub(crate) fn check_batch(events: &[RecordedEvent]) -> Result<(), ImportError> {
    let mut last: Option<Position> = None;
    for event in events {
        if let Some(last) = last.filter(|&last| event.position.get() != last.get() + 1) {
            return Err(ImportError::PositionNotNext {
                position: event.position,
                stream: event.stream.clone(),
                version: event.version,
                expected: Position::new(last.get() + 1),
            });
        }
        last = Some(event.position);
        event
            .stream
            .validate()
            .map_err(|source| ImportError::InvalidStreamId {
                position: event.position,
                source,
            })?;
        serde_json::from_str::<serde::de::IgnoredAny>(&event.payload).map_err(|source| {
            ImportError::Payload {
                position: event.position,
                stream: event.stream.clone(),
                version: event.version,
                source,
            }
        })?;
    }
    Ok(())
}

/// Checks, against the store's last position `last` and its stream versions (`stored`,
/// asked once per stream), that the batch continues the store.
pub(crate) fn check_continues(
    events: &[RecordedEvent],
    last: Position,
    mut stored: impl FnMut(&StreamId) -> Result<Version, StoreError>,
) -> Result<(), ImportError> {
    if let Some(first) = events
        .first()
        .filter(|first| first.position.get() != last.get() + 1)
    {
        return Err(ImportError::PositionNotNext {
            position: first.position,
            stream: first.stream.clone(),
            version: first.version,
            expected: Position::new(last.get() + 1),
        });
    }
    let mut versions: HashMap<&StreamId, Version> = HashMap::new();
    for event in events {
        let current = match versions.get(&event.stream) {
            Some(&version) => version,
            None => stored(&event.stream)?,
        };
        if event.version != current.next() || current == Version::MAX {
            return Err(ImportError::VersionGap {
                position: event.position,
                stream: event.stream.clone(),
                version: event.version,
                current,
            });
        }
        versions.insert(&event.stream, event.version);
    }
    Ok(())
}

/// The chain hash of each event of a batch that continues a store whose newest event
/// has hash `prev` (see `chain`): computed from the events as given, so a store copied
/// from one whose chain starts at position 1 gets the same hashes.
pub(crate) fn chain_links(
    prev: ChainHash,
    events: &[RecordedEvent],
    metadata: &[String],
) -> Result<Vec<ChainHash>, ImportError> {
    let mut hasher = Hasher::default();
    let mut prev = prev;
    let mut links = Vec::with_capacity(events.len());
    for (event, metadata) in events.iter().zip(metadata) {
        let link = Link {
            position: event.position.get(),
            aggregate_type: event.stream.aggregate_type(),
            stream_id: event.stream.id(),
            version: event.version.get(),
            event_type: &event.event_type,
            event_version: event.event_version,
            event_id: &event.event_id,
            recorded_at: event.recorded_at.as_micros(),
            payload: &event.payload,
            metadata,
        };
        prev = hasher
            .link(&prev, &link)
            .map_err(|e| ImportError::Payload {
                position: event.position,
                stream: event.stream.clone(),
                version: event.version,
                source: <serde_json::Error as serde::de::Error>::custom(e),
            })?;
        links.push(prev);
    }
    Ok(links)
}
