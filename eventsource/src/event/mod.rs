//! Events: the [`Event`] trait that `#[event]` implements, and the envelope types the
//! stores write ([`NewEvent`]) and read ([`RecordedEvent`], [`RecordedEventRef`]).

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::version::{Position, StreamId, Version};

pub use self::id::EventId;
pub use self::key::EventKey;
pub use self::metadata::Metadata;
#[allow(deprecated)]
pub use self::shape::{EventSchema, EventShape};
pub use self::timestamp::Timestamp;

mod id;
mod key;
mod metadata;
mod shape;
mod timestamp;

/// A domain event: a fact that happened, named in the past tense, with a stable name and
/// a version that are stored next to its JSON payload.
///
/// Implement it with the `#[event]` attribute rather than by hand:
///
/// ```
/// use eventsource::{event, Event};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "account.opened", version = 1)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct AccountOpened {
///     pub owner: String,
/// }
///
/// assert_eq!(AccountOpened::NAME, "account.opened");
/// assert_eq!(AccountOpened::VERSION, 1);
/// assert_eq!(AccountOpened::SHAPE, "{owner: String}");
/// ```
///
/// The name must never change once events of the type are stored (rename the Rust type
/// freely). Bump the version whenever the JSON shape changes, and keep the old shape
/// readable through `upcast_from` or an [`Upcasters`](crate::Upcasters) entry; the
/// [schema lock](crate::schema) fails a test when the shape changes and the version
/// does not.
pub trait Event:
    fmt::Debug + Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The stable name stored with every event of this type.
    const NAME: &'static str;
    /// The current version of the event's JSON shape, starting at 1.
    const VERSION: u32;
    /// The fingerprint of the JSON shape: field names, types as written and the serde
    /// attributes that change the JSON, on one canonical line (named fields sorted), e.g.
    /// `{amount: u64, #[serde(default)] memo: String}`. `#[event]` writes it; the
    /// [schema lock](crate::schema) compares it with the locked one.
    ///
    /// Types are fingerprinted as written, not expanded: a change inside a field's own
    /// struct is not seen here (keep [golden samples](crate::schema::check_samples) for
    /// those).
    const SHAPE: &'static str;
    /// The old name of [`Event::SHAPE`] ("schema" now means the SQL schema only): reading
    /// it still works. An `impl Event` written by hand sets `SHAPE` instead.
    #[deprecated(since = "0.1.0", note = "renamed `SHAPE`")]
    const SCHEMA: &'static str = Self::SHAPE;
    /// Every stored (name, version) this type decodes, with its shape: the current
    /// version first, then each type of its `upcast_from` chain, newest to oldest (their
    /// names may differ: the chain may cross a rename).
    const HISTORY: &'static [EventShape] = &[EventShape::of::<Self>()];

    /// Decodes a payload stored as version `version` of this event.
    ///
    /// The default decodes only the current version. `#[event(upcast_from = Old)]`
    /// overrides it to decode older versions through `Old` and `From<Old>`.
    ///
    /// # Errors
    /// [`DecodeFailure::UnsupportedVersion`] when the version is not one this type knows,
    /// [`DecodeFailure::Payload`] when the JSON does not have the expected shape.
    fn decode_version(version: u32, payload: Payload<'_>) -> Result<Self, DecodeFailure> {
        if version == Self::VERSION {
            payload.deserialize()
        } else {
            Err(DecodeFailure::UnsupportedVersion {
                current: Self::VERSION,
            })
        }
    }
}

/// A stored payload on its way to being decoded: the JSON text as read from the store,
/// or a JSON value produced by an upcaster.
#[derive(Debug, Clone)]
pub enum Payload<'a> {
    /// JSON text, borrowed from the row being read.
    Text(&'a str),
    /// A parsed JSON value (after an upcaster changed it).
    Value(serde_json::Value),
}

impl Payload<'_> {
    /// Deserializes the payload into `T`.
    ///
    /// # Errors
    /// [`DecodeFailure::Payload`] when the JSON is invalid or does not fit `T`.
    ///
    /// ```
    /// use eventsource::Payload;
    ///
    /// let n: u32 = Payload::Text("7").deserialize()?;
    /// assert_eq!(n, 7);
    /// # Ok::<(), eventsource::DecodeFailure>(())
    /// ```
    pub fn deserialize<T: DeserializeOwned>(self) -> Result<T, DecodeFailure> {
        match self {
            Payload::Text(text) => serde_json::from_str(text),
            Payload::Value(value) => serde_json::from_value(value),
        }
        .map_err(DecodeFailure::Payload)
    }
}

/// Why a stored event could not be turned into a value of the aggregate's event type.
/// The repository wraps it with the event's location in a
/// [`ReadError::Decode`](crate::ReadError::Decode).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeFailure {
    /// No event type of the aggregate has this name.
    #[error("the aggregate has no event type of this name")]
    UnknownType,
    /// The event type is known but this stored version is not: newer than the code,
    /// or older with no upcaster or `upcast_from` to lift it.
    #[error("version not supported (the current version is {current})")]
    UnsupportedVersion {
        /// The event type's current version.
        current: u32,
    },
    /// The JSON payload is not valid JSON or does not have the shape of the event.
    #[error("payload does not match the event")]
    Payload(#[source] serde_json::Error),
}
/// An event ready to be appended: its type, version, JSON payload and metadata.
///
/// Repositories build these from typed events; use [`NewEvent::new`] to append to a
/// store directly.
///
/// ```
/// use eventsource::{Metadata, NewEvent};
///
/// let event = NewEvent::new("note.added", 1, r#"{"text":"hi"}"#).with_metadata(Metadata::new().actor("bob"));
/// assert_eq!(event.event_type, "note.added");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The unique id of the event; a duplicate id is refused by the store.
    pub event_id: EventId,
    /// The event's stable name.
    pub event_type: Cow<'static, str>,
    /// The version of the payload's shape.
    pub event_version: u32,
    /// The payload as JSON text.
    pub payload: String,
    /// Context stored with the event.
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event of type `event_type` at version `event_version` with a JSON payload, a
    /// fresh id and empty metadata. The payload is checked to be JSON when appended.
    pub fn new(
        event_type: impl Into<Cow<'static, str>>,
        event_version: u32,
        payload: impl Into<String>,
    ) -> Self {
        NewEvent {
            event_id: EventId::new(),
            event_type: event_type.into(),
            event_version,
            payload: payload.into(),
            metadata: Metadata::default(),
        }
    }

    /// The event `event` of a type that implements [`Event`], serialized to JSON.
    ///
    /// # Errors
    /// When serde cannot serialize the event, or it holds a non-finite float (`NaN`,
    /// `inf`), which JSON cannot hold.
    pub fn from_event<E: Event>(event: &E) -> Result<Self, serde_json::Error> {
        Ok(Self::new(
            E::NAME,
            E::VERSION,
            crate::json::to_string(event)?,
        ))
    }

    /// Replaces the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Replaces the event id (to make an append idempotent across retries).
    #[must_use]
    pub fn with_id(mut self, id: EventId) -> Self {
        self.event_id = id;
        self
    }
}

/// A stored event as read from a store, borrowing its strings from the row being read.
///
/// Stores hand these to the visitor of
/// [`EventStore::read_stream_with`](crate::EventStore::read_stream_with), so replay
/// decodes straight from the database's buffers without copying.
#[derive(Debug, Clone, Copy)]
pub struct RecordedEventRef<'a> {
    /// Place in the global order.
    pub position: Position,
    /// The aggregate type of the stream.
    pub aggregate_type: &'a str,
    /// The id of the stream within its aggregate type.
    pub stream_id: &'a str,
    /// Version of the event within its stream (1, 2, ...).
    pub version: Version,
    /// The event's stable name.
    pub event_type: &'a str,
    /// The version of the payload's shape when it was written.
    pub event_version: u32,
    /// The event's unique id, as stored.
    pub event_id: &'a str,
    /// When the event was appended.
    pub recorded_at: Timestamp,
    /// The payload as JSON text.
    pub payload: &'a str,
    /// The metadata as JSON text.
    pub metadata: &'a str,
}

impl RecordedEventRef<'_> {
    /// Where the event is, for error messages.
    pub fn location(&self) -> EventLocation {
        EventLocation {
            position: self.position,
            stream: StreamId::new(self.aggregate_type, self.stream_id),
            version: self.version,
            event_type: self.event_type.to_owned(),
            event_version: self.event_version,
        }
    }

    /// Copies the event out of the row.
    ///
    /// # Errors
    /// [`ReadError::Metadata`](crate::ReadError::Metadata) when the metadata is not a JSON
    /// object, [`ReadError::EventId`](crate::ReadError::EventId) when the stored id is
    /// not a UUID.
    pub fn to_owned(&self) -> Result<RecordedEvent, crate::ReadError> {
        let metadata =
            serde_json::from_str(self.metadata).map_err(|source| crate::ReadError::Metadata {
                at: Box::new(self.location()),
                source,
            })?;
        let event_id = self
            .event_id
            .parse()
            .map_err(|source| crate::ReadError::EventId {
                at: Box::new(self.location()),
                source,
            })?;
        Ok(RecordedEvent {
            position: self.position,
            stream: StreamId::new(self.aggregate_type, self.stream_id),
            version: self.version,
            event_type: self.event_type.to_owned(),
            event_version: self.event_version,
            event_id,
            recorded_at: self.recorded_at,
            payload: self.payload.to_owned(),
            metadata,
        })
    }
}

/// What replaying an aggregate needs of a stored event: where it is and what it says,
/// borrowed from the row being read. Handed to the visitor of
/// [`EventStore::replay_stream_with`](crate::EventStore::replay_stream_with), which lets
/// a backend skip the columns replay does not need (id, timestamp, metadata).
#[derive(Debug, Clone, Copy)]
pub struct EventData<'a> {
    /// Place in the global order.
    pub position: Position,
    /// Version of the event within its stream (1, 2, ...).
    pub version: Version,
    /// The event's stable name.
    pub event_type: &'a str,
    /// The version of the payload's shape when it was written.
    pub event_version: u32,
    /// The payload as JSON text.
    pub payload: &'a str,
}

impl EventData<'_> {
    /// Where the event is, for error messages.
    pub fn location(&self, stream: &StreamId) -> EventLocation {
        EventLocation {
            position: self.position,
            stream: stream.clone(),
            version: self.version,
            event_type: self.event_type.to_owned(),
            event_version: self.event_version,
        }
    }
}

impl<'a> From<RecordedEventRef<'a>> for EventData<'a> {
    fn from(e: RecordedEventRef<'a>) -> Self {
        EventData {
            position: e.position,
            version: e.version,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload,
        }
    }
}

/// A stored event, owning its data.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Place in the global order.
    pub position: Position,
    /// The stream the event belongs to.
    pub stream: StreamId,
    /// Version of the event within its stream (1, 2, ...).
    pub version: Version,
    /// The event's stable name.
    pub event_type: String,
    /// The version of the payload's shape when it was written.
    pub event_version: u32,
    /// The event's unique id.
    pub event_id: EventId,
    /// When the event was appended.
    pub recorded_at: Timestamp,
    /// The payload as JSON text.
    pub payload: String,
    /// Context stored with the event.
    pub metadata: Metadata,
}

impl RecordedEvent {
    /// Where the event is, for error messages.
    pub fn location(&self) -> EventLocation {
        EventLocation {
            position: self.position,
            stream: self.stream.clone(),
            version: self.version,
            event_type: self.event_type.clone(),
            event_version: self.event_version,
        }
    }
}

/// A stored event decoded into a typed event `E` (an aggregate's event enum), with
/// where and when it was stored: what
/// [`Repository::read_all`](crate::Repository::read_all) yields.
///
/// An upcaster may turn one stored event into several (or none): then several envelopes
/// share the stored event's position, version, id, time and metadata, in the order the
/// upcaster produced them.
///
/// ```
/// use eventsource::{event, Aggregate, Apply, Position, Repository, SqliteStore};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "note.added")]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct NoteAdded { pub text: String }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "note", events(NoteAdded))]
/// pub struct Note;
/// # impl Apply<NoteAdded> for Note { fn apply(&mut self, _: &NoteAdded) {} }
///
/// let notes = Repository::<Note, _>::new(SqliteStore::in_memory()?);
/// let committed = notes.execute("n-1", |_| NoteAdded { text: "hi".into() })?;
/// let read: Vec<_> = notes.read_all(Position::START).collect::<Result<_, _>>()?;
/// assert_eq!(read[0].event_id, committed.event_ids[0]);
/// assert_eq!(read[0].recorded_at, committed.recorded_at);
/// assert_eq!(read[0].event, NoteEvent::NoteAdded(NoteAdded { text: "hi".into() }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope<E> {
    /// The stored event's place in the global order.
    pub position: Position,
    /// The stream the event belongs to.
    pub stream: StreamId,
    /// The stored event's version within its stream.
    pub version: Version,
    /// The stored event's unique id.
    pub event_id: EventId,
    /// When the stored event was appended.
    pub recorded_at: Timestamp,
    /// The stored event's metadata.
    pub metadata: Metadata,
    /// The event, decoded (through the upcasters).
    pub event: E,
}

/// Where a stored event is: named in every error about a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLocation {
    /// Place in the global order.
    pub position: Position,
    /// The stream.
    pub stream: StreamId,
    /// Version within the stream.
    pub version: Version,
    /// The stored event type.
    pub event_type: String,
    /// The stored event version.
    pub event_version: u32,
}

impl fmt::Display for EventLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event `{}` v{} at position {} (stream {}, version {})",
            self.event_type, self.event_version, self.position, self.stream, self.version
        )
    }
}
