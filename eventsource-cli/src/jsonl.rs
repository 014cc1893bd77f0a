//! The export format: versioned JSON Lines.
//!
//! The first line is a header, `{"format":"eventsource-export","version":1}`; then one
//! event per line, in position order:
//!
//! ```text
//! {"position":1,"event_id":"0190…","aggregate_type":"account","stream_id":"acc-1","version":1,
//!  "event_type":"account.opened","event_version":1,"recorded_at_micros":1767225600000000,
//!  "payload":"{\"owner\":\"ann\"}","metadata":"{\"actor\":\"ann\"}"}
//! ```
//!
//! `recorded_at_micros` is microseconds since the Unix epoch (UTC), exactly as stored;
//! `payload` and `metadata` are the stored JSON text as strings, byte for byte. A reader
//! refuses a header of another format or of a newer version.

use std::borrow::Cow;

use eventsource::{
    EventId, Metadata, Position, RecordedEvent, RecordedEventRef, StreamId, Timestamp, Version,
};
use serde::{Deserialize, Serialize};

/// The `format` of the header line.
pub const FORMAT: &str = "eventsource-export";
/// The version of the format this build writes and reads.
pub const VERSION: u32 = 1;

/// The first line of an export.
#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
}

impl Header {
    pub fn current() -> Self {
        Header {
            format: FORMAT.into(),
            version: VERSION,
        }
    }
}

/// One event line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line<'a> {
    pub position: u64,
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub aggregate_type: Cow<'a, str>,
    #[serde(borrow)]
    pub stream_id: Cow<'a, str>,
    pub version: u64,
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    pub event_version: u32,
    pub recorded_at_micros: i64,
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
    #[serde(borrow)]
    pub metadata: Cow<'a, str>,
}

impl<'a> Line<'a> {
    /// The line of a stored event, borrowing from the row.
    pub fn of(e: &RecordedEventRef<'a>) -> Self {
        Line {
            position: e.position.get(),
            event_id: Cow::Borrowed(e.event_id),
            aggregate_type: Cow::Borrowed(e.aggregate_type),
            stream_id: Cow::Borrowed(e.stream_id),
            version: e.version.get(),
            event_type: Cow::Borrowed(e.event_type),
            event_version: e.event_version,
            recorded_at_micros: e.recorded_at.as_micros(),
            payload: Cow::Borrowed(e.payload),
            metadata: Cow::Borrowed(e.metadata),
        }
    }

    /// The event the line holds; what is wrong with it otherwise.
    pub fn into_event(self) -> Result<RecordedEvent, String> {
        let event_id: EventId = self
            .event_id
            .parse()
            .map_err(|e| format!("event id `{}` is not a UUID: {e}", self.event_id))?;
        let metadata: Metadata = serde_json::from_str(&self.metadata)
            .map_err(|e| format!("the metadata is not a JSON object: {e}"))?;
        if self.position == 0 || self.version == 0 || self.event_version == 0 {
            return Err("position, version and event_version start at 1".into());
        }
        Ok(RecordedEvent {
            position: Position::new(self.position),
            stream: StreamId::new(self.aggregate_type, self.stream_id),
            version: Version::new(self.version),
            event_type: self.event_type.into_owned(),
            event_version: self.event_version,
            event_id,
            recorded_at: Timestamp::from_micros(self.recorded_at_micros),
            payload: self.payload.into_owned(),
            metadata,
        })
    }
}
