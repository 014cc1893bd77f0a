//! What every backend does to an append's events before it writes them: the JSON checks,
//! the metadata encoded, and the hash chain's content digests (see `chain`).

use crate::chain::Hasher;
use crate::error::AppendError;
use crate::event::NewEvent;
use crate::version::StreamId;

/// Checks that a payload is JSON before it is stored.
pub(crate) fn check_json(stream: &StreamId, event: &NewEvent) -> Result<(), AppendError> {
    serde_json::from_str::<serde::de::IgnoredAny>(&event.payload)
        .map(drop)
        .map_err(|source| AppendError::Encode {
            stream: stream.clone(),
            event_type: event.event_type.to_string(),
            source,
        })
}

/// Each event's metadata as JSON.
pub(crate) fn encode_metadata(
    stream: &StreamId,
    events: &[NewEvent],
) -> Result<Vec<String>, AppendError> {
    events
        .iter()
        .map(|event| {
            event
                .metadata
                .to_json()
                .map_err(|source| AppendError::Encode {
                    stream: stream.clone(),
                    event_type: event.event_type.to_string(),
                    source,
                })
        })
        .collect()
}

/// Each event's content digest for the hash chain; checks on the way that every payload
/// is JSON (with `serde_json`'s message when it is not).
pub(crate) fn content_digests(
    stream: &StreamId,
    events: &[NewEvent],
    metadata: &[String],
) -> Result<Vec<[u8; 32]>, AppendError> {
    Hasher::with(|hasher| {
        events
            .iter()
            .zip(metadata)
            .map(|(event, metadata)| {
                hasher
                    .content(
                        stream.aggregate_type(),
                        stream.id(),
                        &event.event_type,
                        event.event_version,
                        &event.event_id,
                        &event.payload,
                        metadata,
                    )
                    .map_err(|e| {
                        // serde_json's message for text it refuses too.
                        check_json(stream, event)
                            .err()
                            .unwrap_or_else(|| AppendError::Encode {
                                stream: stream.clone(),
                                event_type: event.event_type.to_string(),
                                source: <serde_json::Error as serde::de::Error>::custom(e),
                            })
                    })
            })
            .collect()
    })
}
