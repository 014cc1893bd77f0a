//! Identities and positions: [`StreamId`], [`Version`], [`Position`] and the
//! optimistic-concurrency expectation [`ExpectedVersion`].

use std::fmt;

/// The identity of one event stream: an aggregate type plus the id of one instance.
///
/// Every aggregate type has its own namespace, so the id `"42"` of an `account` and the
/// id `"42"` of an `order` are two different streams.
///
/// ```
/// use eventsource::StreamId;
///
/// let stream = StreamId::new("account", "acc-1");
/// assert_eq!(stream.aggregate_type(), "account");
/// assert_eq!(stream.id(), "acc-1");
/// assert_eq!(stream.to_string(), "account/acc-1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    aggregate_type: String,
    id: String,
}

impl StreamId {
    /// A stream of the aggregate type `aggregate_type` with the instance id `id`.
    pub fn new(aggregate_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            aggregate_type: aggregate_type.into(),
            id: id.into(),
        }
    }

    /// The aggregate type the stream belongs to, e.g. `"account"`.
    pub fn aggregate_type(&self) -> &str {
        &self.aggregate_type
    }

    /// The id of the aggregate instance within its type, e.g. `"acc-1"`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The longest aggregate type, and the longest id, a store accepts: 1,024 bytes each
    /// (UTF-8).
    pub const MAX_LEN: usize = 1024;

    /// Checks that every store can hold this stream id: neither part contains a NUL
    /// character (PostgreSQL's `TEXT` cannot hold one) and neither is longer than
    /// [`StreamId::MAX_LEN`] bytes. Every store checks this before it reads or writes a
    /// stream, so an id behaves the same on SQLite and PostgreSQL: refused with
    /// [`StoreError::InvalidStreamId`](crate::StoreError::InvalidStreamId), nothing read
    /// or stored.
    ///
    /// ```
    /// use eventsource::{InvalidStreamId, StreamId};
    ///
    /// assert!(StreamId::new("account", "acc-1").validate().is_ok());
    /// assert!(matches!(
    ///     StreamId::new("account", "a\0b").validate(),
    ///     Err(InvalidStreamId::Nul { part: "id", .. })
    /// ));
    /// assert!(matches!(
    ///     StreamId::new("account", "x".repeat(StreamId::MAX_LEN + 1)).validate(),
    ///     Err(InvalidStreamId::TooLong { part: "id", len: 1025, .. })
    /// ));
    /// ```
    ///
    /// # Errors
    /// [`InvalidStreamId`] naming the part and the problem.
    pub fn validate(&self) -> Result<(), InvalidStreamId> {
        for (part, text) in [("aggregate type", &self.aggregate_type), ("id", &self.id)] {
            if text.len() > Self::MAX_LEN {
                return Err(InvalidStreamId::TooLong {
                    part,
                    len: text.len(),
                    stream: self.preview(),
                });
            }
            if text.contains('\0') {
                return Err(InvalidStreamId::Nul {
                    part,
                    stream: self.preview(),
                });
            }
        }
        Ok(())
    }

    /// The stream as `type/id`, cut to about 64 characters for error messages.
    fn preview(&self) -> String {
        let full = self.to_string();
        match full.char_indices().nth(64) {
            Some((cut, _)) => format!("{}...", full[..cut].escape_debug()),
            None => full.escape_debug().to_string(),
        }
    }
}

/// Why [`StreamId::validate`] refused a stream id. The `stream` field is the id as
/// `type/id`, escaped and cut to about 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidStreamId {
    /// A part contains a NUL character (`\0`).
    #[error("invalid stream id {stream}: the {part} contains a NUL character")]
    Nul {
        /// `"aggregate type"` or `"id"`.
        part: &'static str,
        /// The stream, cut short.
        stream: String,
    },
    /// A part is longer than [`StreamId::MAX_LEN`] bytes.
    #[error(
        "invalid stream id {stream}: the {part} is {len} bytes long, more than the limit of {} bytes",
        StreamId::MAX_LEN
    )]
    TooLong {
        /// `"aggregate type"` or `"id"`.
        part: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The stream, cut short.
        stream: String,
    },
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.aggregate_type, self.id)
    }
}

/// The version of a stream: the number of events in it, and so the stream version of
/// its last event. Stream versions start at 1; [`Version::NONE`] (0) is a stream with
/// no events.
///
/// ```
/// use eventsource::Version;
///
/// assert_eq!(Version::NONE.next(), Version::new(1));
/// assert_eq!(Version::new(3).get(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Version(u64);

impl Version {
    /// The version of a stream that has no events.
    pub const NONE: Version = Version(0);
    /// The largest version a store can hold (`i64::MAX`, the SQL integer limit).
    pub const MAX: Version = Version(i64::MAX as u64);

    /// The version `n`.
    pub const fn new(n: u64) -> Self {
        Version(n)
    }

    /// The version as a number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version after this one, saturating: `Version::new(u64::MAX).next()` is
    /// itself rather than a panic or a wrap to 0. Stores never hold a version past
    /// [`Version::MAX`] (`i64::MAX`), so a version read from a store always has a next.
    ///
    /// ```
    /// use eventsource::Version;
    ///
    /// assert_eq!(Version::MAX.next().get(), i64::MAX as u64 + 1);
    /// assert_eq!(Version::new(u64::MAX).next(), Version::new(u64::MAX));
    /// ```
    #[must_use]
    pub const fn next(self) -> Self {
        Version(self.0.saturating_add(1))
    }
}

impl From<u64> for Version {
    fn from(n: u64) -> Self {
        Version(n)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The place of an event in the global order of a store: strictly increasing in commit
/// order across all streams. Positions start at 1; [`Position::START`] (0) reads from
/// the beginning.
///
/// ```
/// use eventsource::Position;
///
/// assert!(Position::START < Position::new(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position(u64);

impl Position {
    /// Before the first event: reading all events "after" it reads everything.
    pub const START: Position = Position(0);

    /// The position `n`.
    pub const fn new(n: u64) -> Self {
        Position(n)
    }

    /// The position as a number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an append expects the stream to look like; the store refuses the append with a
/// conflict when the stream does not match.
///
/// ```
/// use eventsource::{ExpectedVersion, Version};
///
/// assert!(ExpectedVersion::Exact(Version::new(2)).matches(Version::new(2)));
/// assert!(!ExpectedVersion::NoStream.matches(Version::new(1)));
/// assert!(ExpectedVersion::Any.matches(Version::new(7)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds: no concurrency check.
    Any,
    /// The stream must not exist yet (it has no events).
    NoStream,
    /// The stream must exist (it has at least one event).
    StreamExists,
    /// The stream's last event must have exactly this version
    /// (`Exact(Version::NONE)` is the same as [`ExpectedVersion::NoStream`]).
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn matches(self, actual: Version) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == Version::NONE,
            ExpectedVersion::StreamExists => actual != Version::NONE,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_saturates_instead_of_overflowing() {
        assert_eq!(Version::new(u64::MAX).next(), Version::new(u64::MAX));
        assert_eq!(Version::new(u64::MAX - 1).next(), Version::new(u64::MAX));
        assert_eq!(Version::NONE.next(), Version::new(1));
    }

    #[test]
    fn expectations_match_only_their_versions() {
        let none = Version::NONE;
        let one = Version::new(1);
        assert!(ExpectedVersion::NoStream.matches(none));
        assert!(!ExpectedVersion::NoStream.matches(one));
        assert!(ExpectedVersion::StreamExists.matches(one));
        assert!(!ExpectedVersion::StreamExists.matches(none));
        assert!(ExpectedVersion::Exact(none).matches(none));
        assert!(!ExpectedVersion::Exact(one).matches(Version::new(2)));
        assert_eq!(ExpectedVersion::Exact(one).to_string(), "version 1");
    }
}
