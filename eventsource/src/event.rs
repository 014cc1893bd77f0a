//! Events: the [`Event`] trait that `#[event]` implements, and the envelope types the
//! stores write ([`NewEvent`]) and read ([`RecordedEvent`], [`RecordedEventRef`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::history::EventSchema;
use crate::version::{Position, StreamId, Version};

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
/// assert_eq!(AccountOpened::SCHEMA, "{owner: String}");
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
    const SCHEMA: &'static str;
    /// Every stored (name, version) this type decodes, with its shape: the current
    /// version first, then each type of its `upcast_from` chain, newest to oldest (their
    /// names may differ: the chain may cross a rename).
    const HISTORY: &'static [EventSchema] = &[EventSchema::of::<Self>()];

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

/// The unique id of one stored event (a UUID, time-ordered version 7 when generated).
///
/// ```
/// use eventsource::EventId;
///
/// let a = EventId::new();
/// let b = EventId::new();
/// assert_ne!(a, b);
/// assert_eq!(a.to_string().len(), 36);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        EventId(uuid::Uuid::now_v7())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<uuid::Uuid> for EventId {
    fn from(id: uuid::Uuid) -> Self {
        EventId(id)
    }
}

impl std::str::FromStr for EventId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(EventId)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A point in time in UTC, with microsecond precision, as stored with every event.
///
/// ```
/// use eventsource::Timestamp;
///
/// let t = Timestamp::from_micros(1_700_000_000_123_456);
/// assert_eq!(t.to_string(), "2023-11-14T22:13:20.123456Z");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// The instant `time`, truncated to whole microseconds (towards the epoch), and
    /// clamped to the range of an `i64` of microseconds (about 292,000 years either side
    /// of 1970). Also `Timestamp::from(time)`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// use eventsource::Timestamp;
    ///
    /// let t = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_nanos(1_500));
    /// assert_eq!(t.as_micros(), 1);
    /// let now = SystemTime::now();
    /// let back: SystemTime = Timestamp::from(now).into();
    /// assert!(now.duration_since(back)? < Duration::from_micros(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_system_time(time: SystemTime) -> Self {
        let micros = match time.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        };
        Timestamp(micros)
    }

    /// The time `micros` microseconds after the Unix epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The same instant as a [`SystemTime`]. Also `SystemTime::from(timestamp)`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// use eventsource::Timestamp;
    ///
    /// let t = Timestamp::from_micros(-2_000_001);
    /// assert_eq!(t.to_system_time(), UNIX_EPOCH - Duration::from_micros(2_000_001));
    /// assert_eq!(SystemTime::from(t), t.to_system_time());
    /// ```
    pub fn to_system_time(self) -> SystemTime {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

impl From<SystemTime> for Timestamp {
    /// See [`Timestamp::from_system_time`].
    fn from(time: SystemTime) -> Self {
        Timestamp::from_system_time(time)
    }
}

impl From<Timestamp> for SystemTime {
    /// See [`Timestamp::to_system_time`].
    fn from(t: Timestamp) -> Self {
        t.to_system_time()
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, e.g. `2023-11-14T22:13:20.123456Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian calendar.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

/// Context stored with every event: who caused it and why. All fields are optional;
/// `extra` holds any other key the application wants to keep.
///
/// ```
/// use eventsource::Metadata;
///
/// let meta = Metadata::new().correlation_id("req-7").actor("alice").with("ip", "10.0.0.1");
/// assert_eq!(meta.actor.as_deref(), Some("alice"));
/// assert_eq!(meta.extra["ip"], "10.0.0.1");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Ties together every event caused by one request or business process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the command or event that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The user or system that issued the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Any other key-value context.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the actor.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Adds an extra key.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.actor.is_none()
            && self.extra.is_empty()
    }

    /// The metadata as JSON text, as stored (`{}` when empty).
    ///
    /// # Errors
    /// When an `extra` key is one of the named fields (`correlation_id`, `causation_id`,
    /// `actor`): stored, it would be a duplicate key that no reader can trust. (A
    /// non-finite float cannot get in: `serde_json::Value` has no such number, and
    /// `with("k", f64::NAN)` stores `null`, as `serde_json::Value::from` does.)
    ///
    /// ```
    /// use eventsource::Metadata;
    ///
    /// assert!(Metadata::new().with("actor", "mallory").to_json().is_err());
    /// ```
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        if self.is_empty() {
            return Ok(String::from("{}"));
        }
        for key in ["correlation_id", "causation_id", "actor"] {
            if self.extra.contains_key(key) {
                return Err(<serde_json::Error as serde::ser::Error>::custom(format!(
                    "metadata `extra` has the key `{key}`, which is a field of its own: set the field instead"
                )));
            }
        }
        crate::json::to_string(self)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        assert_eq!(
            Timestamp::from_micros(0).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            Timestamp::from_micros(951_782_400_000_001).to_string(),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            Timestamp::from_micros(-1).to_string(),
            "1969-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn timestamps_convert_to_and_from_system_time() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_001] {
            let t = Timestamp::from_micros(micros);
            let time = SystemTime::from(t);
            assert_eq!(Timestamp::from(time), t, "{micros}");
        }
        // Below a microsecond: truncated towards the epoch, on both sides.
        let after = UNIX_EPOCH + Duration::from_nanos(2_999);
        let before = UNIX_EPOCH - Duration::from_nanos(2_999);
        assert_eq!(Timestamp::from(after).as_micros(), 2);
        assert_eq!(Timestamp::from(before).as_micros(), -2);
    }

    #[test]
    fn empty_metadata_is_an_empty_object() -> Result<(), serde_json::Error> {
        assert_eq!(Metadata::new().to_json()?, "{}");
        let meta = Metadata::new().actor("a").with("k", 1);
        let back: Metadata = serde_json::from_str(&meta.to_json()?)?;
        assert_eq!(back, meta);
        Ok(())
    }
}
