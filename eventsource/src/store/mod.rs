//! Event stores: the [`EventStore`] trait and its backends, side by side.
//!
//! - [`SqliteStore`]: the embedded default, one SQLite file (or memory);
//! - `PostgresStore` (feature `postgres`): a PostgreSQL server for several nodes.
//!
//! Every backend keeps every event of every aggregate in ONE append-only table whose
//! UPDATE and DELETE the database itself refuses.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::chain::{ChainHead, VersionGap};
use crate::error::{AppendError, ReadError, StoreError};
use crate::event::{EventData, NewEvent, RecordedEvent, RecordedEventRef, Timestamp};
use crate::snapshot::Snapshot;
use crate::version::{ExpectedVersion, Position, StreamId, Version};

mod encode;
mod filter;
mod group_commit;
mod import;
mod inspect;
mod notify;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

pub use self::filter::EventFilter;
pub use self::import::{Import, ImportError};
pub use self::inspect::{Inspect, StoreSummary};
#[cfg(feature = "tls")]
pub use self::postgres::PostgresTls;
#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresOptions, PostgresStore};
pub use self::sqlite::{SqliteOptions, SqliteStore, Synchronous};

/// What a successful append stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's version after the append (the version of its last event).
    pub stream_version: Version,
    /// The global position of each appended event, in order.
    pub positions: Vec<Position>,
    /// The time stored with every event of the append (and with its command record):
    /// one per append, the `recorded_at` that reads return for these positions. An
    /// append of no events without a command stores nothing; then it is the time the
    /// expected version was checked.
    pub recorded_at: Timestamp,
}

/// One stream of an aggregate type, as [`EventStore::list_streams`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream.
    pub stream: StreamId,
    /// Its current version: the version of its last event.
    pub version: Version,
    /// When its first event (the lowest version) was recorded.
    pub first_recorded_at: Timestamp,
    /// When its last event (version [`StreamInfo::version`]) was recorded.
    pub last_recorded_at: Timestamp,
}

/// What an idempotent command stored, recorded under its command id by
/// [`EventStore::append_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// The command id.
    pub command_id: String,
    /// The stream the command appended to.
    pub stream: StreamId,
    /// The versions and positions it stored.
    pub result: AppendResult,
    /// When it was stored (the same as `result.recorded_at`).
    pub recorded_at: Timestamp,
}

/// The visitor that [`EventStore::read_stream_with`] and [`EventStore::read_all_with`]
/// call once per stored event.
pub type Visitor<'v> = dyn FnMut(RecordedEventRef<'_>) -> Result<(), ReadError> + 'v;

/// The visitor of [`EventStore::replay_stream_with`].
pub type DataVisitor<'v> = dyn FnMut(EventData<'_>) -> Result<(), ReadError> + 'v;

/// What [`EventStore::read_chain_with`] calls for each row: its position, and the event
/// with its stored chain hash (`None`: stored before the chain began, or NULL), or why
/// the row could not be read.
#[doc(hidden)]
pub type ChainVisitor<'v> = dyn FnMut(
        Position,
        Result<(RecordedEventRef<'_>, Option<&[u8]>), ReadError>,
    ) -> Result<(), StoreError>
    + 'v;

/// An append-only store of events.
///
/// Streams are read in version order, the whole store in global-position order (commit
/// order). Reads are streamed: a visitor borrows each row in turn, and the iterators
/// ([`EventStore::read_stream`], [`EventStore::read_all`]) fetch pages of bounded size,
/// so no read holds a whole stream in memory.
///
/// ```
/// use eventsource::{EventStore, ExpectedVersion, NewEvent, SqliteStore, StreamId, Version};
///
/// let store = SqliteStore::in_memory()?;
/// let stream = StreamId::new("note", "n-1");
/// let appended = store.append(&stream, ExpectedVersion::NoStream, &[
///     NewEvent::new("note.added", 1, r#"{"text":"hi"}"#),
///     NewEvent::new("note.added", 1, r#"{"text":"there"}"#),
/// ])?;
/// assert_eq!(appended.stream_version, Version::new(2));
///
/// let texts: Vec<String> = store
///     .read_stream(&stream, Version::new(1))
///     .map(|e| e.map(|e| e.payload))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(texts, [r#"{"text":"hi"}"#, r#"{"text":"there"}"#]);
/// # Ok::<(), eventsource::Error>(())
/// ```
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` if the stream matches `expected`, atomically: all of
    /// them or none. An empty `events` stores nothing and still checks `expected`.
    ///
    /// # Errors
    /// [`AppendError::Conflict`] when the stream does not match `expected`;
    /// [`AppendError::DuplicateEventId`] when an event id is already stored;
    /// [`AppendError::Encode`] when a payload or metadata is not JSON;
    /// [`AppendError::Store`] when the backend fails. In each of these cases nothing is
    /// stored. [`AppendError::Unknown`] (a backend whose connection can break after it
    /// asked to commit) and [`StoreError::Interrupted`] are the exceptions: the append
    /// may or may not be stored.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError>;

    /// [`EventStore::append`] for an idempotent command: in the same transaction, records
    /// `command_id` with what was stored. A command id already recorded appends nothing
    /// and fails with [`AppendError::DuplicateCommand`], however often, from however many
    /// processes, across restarts. `events` may be empty: the command is recorded anyway.
    /// The default refuses: [`StoreError::Unsupported`].
    ///
    /// # Errors
    /// As [`EventStore::append`], and [`AppendError::DuplicateCommand`].
    fn append_command(
        &self,
        command_id: &str,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        let _ = (command_id, stream, expected, events);
        Err(AppendError::Store(StoreError::Unsupported {
            feature: "idempotent commands",
        }))
    }

    /// What the command `command_id` stored, if it ran. The default knows none.
    ///
    /// # Errors
    /// When the backend fails.
    fn command(&self, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let _ = command_id;
        Ok(None)
    }

    /// The stream's current version ([`Version::NONE`] for a stream never written).
    ///
    /// # Errors
    /// When the backend fails.
    fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError>;

    /// Calls `visit` with the events of `stream` whose version is at least `from`, in
    /// version order, at most `max_count` of them. Stops at the first error.
    ///
    /// # Errors
    /// The visitor's error, or [`ReadError::Store`] when the backend fails.
    fn read_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError>;

    /// Calls `visit` with every event whose global position is after `after`, in
    /// global order, at most `max_count` of them. Stops at the first error.
    ///
    /// # Errors
    /// The visitor's error, or [`ReadError::Store`] when the backend fails.
    fn read_all_with(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError>;

    /// Calls `visit` with the events after global position `after` that `filter`
    /// matches, in global order, at most `max_count` of them. Stops at the first error.
    ///
    /// The default pages through [`EventStore::read_all_with`] and filters in Rust, so
    /// it reads every event after `after`; [`SqliteStore`] and `PostgresStore` filter in
    /// SQL over the indexes by event type and by aggregate type, so that a read costs
    /// about what it returns.
    ///
    /// ```
    /// use eventsource::{EventFilter, EventStore, ExpectedVersion, NewEvent, Position, SqliteStore, StreamId};
    ///
    /// let store = SqliteStore::in_memory()?;
    /// store.append(&StreamId::new("account", "a-1"), ExpectedVersion::Any, &[
    ///     NewEvent::new("account.opened", 1, "{}"),
    ///     NewEvent::new("money.deposited", 1, r#"{"amount":5}"#),
    /// ])?;
    /// store.append(&StreamId::new("order", "o-1"), ExpectedVersion::Any, &[
    ///     NewEvent::new("order.placed", 1, "{}"),
    /// ])?;
    /// let mut seen = Vec::new();
    /// let deposits = EventFilter::all().event_type("money.deposited");
    /// store.read_all_filtered_with(Position::START, &deposits, 100, &mut |e| {
    ///     seen.push((e.position.get(), e.stream_id.to_owned()));
    ///     Ok(())
    /// })?;
    /// assert_eq!(seen, [(2, "a-1".to_owned())]);
    /// # Ok::<(), eventsource::Error>(())
    /// ```
    ///
    /// # Errors
    /// The visitor's error; [`ReadError::Store`] when the backend fails, or with
    /// [`StoreError::InvalidStreamId`] when an aggregate type of the filter cannot be
    /// stored ([`EventFilter::validate`]).
    fn read_all_filtered_with(
        &self,
        after: Position,
        filter: &EventFilter,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        filter.validate().map_err(StoreError::from)?;
        let mut after = after;
        let mut left = max_count;
        while left > 0 {
            let mut seen = 0;
            self.read_all_with(after, PAGE_SIZE, &mut |event| {
                seen += 1;
                after = event.position;
                if left > 0 && filter.matches(event.aggregate_type, event.event_type) {
                    left -= 1;
                    visit(event)?;
                }
                Ok(())
            })?;
            if seen < PAGE_SIZE {
                break;
            }
        }
        Ok(())
    }

    /// Up to `limit` streams of the aggregate type `aggregate_type` whose id sorts after
    /// `after` (byte-wise; `None`: from the first), in that order: the next page of a
    /// listing, whose last id is the `after` of the page after it. The default refuses
    /// with [`StoreError::Unsupported`].
    ///
    /// ```
    /// use eventsource::{EventStore, ExpectedVersion, NewEvent, SqliteStore, StreamId, Version};
    ///
    /// let store = SqliteStore::in_memory()?;
    /// for id in ["c", "a", "b"] {
    ///     store.append(&StreamId::new("note", id), ExpectedVersion::Any, &[NewEvent::new("note.added", 1, "{}")])?;
    /// }
    /// let first = store.list_streams("note", None, 2)?;
    /// let ids: Vec<&str> = first.iter().map(|s| s.stream.id()).collect();
    /// assert_eq!(ids, ["a", "b"]);
    /// assert_eq!(first[0].version, Version::new(1));
    /// let next = store.list_streams("note", Some(ids[1]), 2)?;
    /// assert_eq!(next.len(), 1);
    /// assert_eq!(next[0].stream, StreamId::new("note", "c"));
    /// # Ok::<(), eventsource::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the backend fails; [`StoreError::InvalidStreamId`] when `aggregate_type` or
    /// `after` cannot be part of a stream id ([`StreamId::validate`]).
    fn list_streams(
        &self,
        aggregate_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamInfo>, StoreError> {
        let _ = (aggregate_type, after, limit);
        Err(StoreError::Unsupported {
            feature: "listing streams",
        })
    }

    /// [`EventStore::read_stream_with`] for replay: the visitor sees only what decoding
    /// needs ([`EventData`]), so a backend can read fewer columns. The default forwards to
    /// `read_stream_with`.
    ///
    /// # Errors
    /// As [`EventStore::read_stream_with`].
    fn replay_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut DataVisitor<'_>,
    ) -> Result<(), ReadError> {
        self.read_stream_with(stream, from, max_count, &mut |e| visit(e.into()))
    }

    /// Not public API: [`EventStore::replay_stream_with`] for a repository's load, whose
    /// visitor only decodes and applies events and never writes to the store. A SQLite
    /// store runs it on its writer connection when that is idle (its page cache survives
    /// commits); a visitor that appended to the same store there would wait for itself.
    /// The default forwards to `replay_stream_with`.
    ///
    /// # Errors
    /// As [`EventStore::read_stream_with`].
    #[doc(hidden)]
    fn load_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut DataVisitor<'_>,
    ) -> Result<(), ReadError> {
        self.replay_stream_with(stream, from, max_count, visit)
    }

    /// The newest snapshot of `stream` taken at or before version `at_most`, with state
    /// version `state_version`. Snapshots live beside the events table, as a disposable
    /// cache. The default keeps no snapshots: it returns `None`. A stored row that is no
    /// snapshot (a negative version, for example) is `None` too, not an error; the
    /// repository checks the version against the stream.
    ///
    /// # Errors
    /// When the backend fails.
    fn load_snapshot(
        &self,
        stream: &StreamId,
        at_most: Version,
        state_version: u32,
    ) -> Result<Option<Snapshot>, StoreError> {
        let _ = (stream, at_most, state_version);
        Ok(None)
    }

    /// Not public API: the rows after `after` (at most `max_count`) with their chain
    /// hashes, for [`Verify::chain`](crate::Verify::chain).
    #[doc(hidden)]
    fn read_chain_with(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut ChainVisitor<'_>,
    ) -> Result<(), StoreError> {
        let _ = (after, max_count, visit);
        Err(StoreError::Unsupported {
            feature: "the hash chain",
        })
    }

    /// Not public API: the chain's head as the store keeps it apart from the events.
    #[doc(hidden)]
    fn chain_head(&self) -> Result<Option<ChainHead>, StoreError> {
        Err(StoreError::Unsupported {
            feature: "the hash chain",
        })
    }

    /// Not public API: up to `limit` events whose stream lacks the version before
    /// theirs (a stream's versions must run 1, 2, 3, ...).
    #[doc(hidden)]
    fn version_gaps(&self, limit: usize) -> Result<Vec<VersionGap>, StoreError> {
        let _ = limit;
        Err(StoreError::Unsupported {
            feature: "the hash chain",
        })
    }

    /// Stores `snapshot` of `stream`, replacing one of the same version and state
    /// version; a backend may drop older snapshots of the stream. The default keeps
    /// nothing.
    ///
    /// # Errors
    /// When the backend fails.
    fn save_snapshot(&self, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError> {
        let _ = (stream, snapshot);
        Ok(())
    }

    /// The events of `stream` from version `from` on, as an iterator that reads pages of
    /// bounded size.
    fn read_stream(&self, stream: &StreamId, from: Version) -> Events<'_, Self>
    where
        Self: Sized,
    {
        Events {
            store: self,
            cursor: Cursor::Stream {
                stream: stream.clone(),
                next: from,
            },
            page: VecDeque::new(),
            done: false,
        }
    }

    /// Every event after global position `after`, in global order, as an iterator that
    /// reads pages of bounded size.
    fn read_all(&self, after: Position) -> Events<'_, Self>
    where
        Self: Sized,
    {
        Events {
            store: self,
            cursor: Cursor::All { after },
            page: VecDeque::new(),
            done: false,
        }
    }

    /// The events after global position `after` that `filter` matches, in global order,
    /// as an iterator that reads pages of bounded size (see
    /// [`EventStore::read_all_filtered_with`]).
    ///
    /// ```
    /// use eventsource::{EventFilter, EventStore, ExpectedVersion, NewEvent, Position, SqliteStore, StreamId};
    ///
    /// let store = SqliteStore::in_memory()?;
    /// for (ty, id) in [("account", "a-1"), ("order", "o-1"), ("account", "a-2")] {
    ///     store.append(&StreamId::new(ty, id), ExpectedVersion::Any, &[NewEvent::new(format!("{ty}.created"), 1, "{}")])?;
    /// }
    /// let accounts: Vec<u64> = store
    ///     .read_all_filtered(Position::START, EventFilter::all().aggregate_type("account"))
    ///     .map(|e| e.map(|e| e.position.get()))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(accounts, [1, 3]);
    /// # Ok::<(), eventsource::Error>(())
    /// ```
    fn read_all_filtered(&self, after: Position, filter: EventFilter) -> Events<'_, Self>
    where
        Self: Sized,
    {
        Events {
            store: self,
            cursor: Cursor::Filtered { after, filter },
            page: VecDeque::new(),
            done: false,
        }
    }
}

/// How many events the iterators fetch per page.
const PAGE_SIZE: usize = 512;

/// Where a paged read goes on from.
#[derive(Debug)]
enum Cursor {
    Stream {
        stream: StreamId,
        next: Version,
    },
    All {
        after: Position,
    },
    Filtered {
        after: Position,
        filter: EventFilter,
    },
}

/// Iterator over stored events, fetched a page at a time: see
/// [`EventStore::read_stream`], [`EventStore::read_all`] and
/// [`EventStore::read_all_filtered`].
#[derive(Debug)]
pub struct Events<'s, S> {
    store: &'s S,
    cursor: Cursor,
    page: VecDeque<Result<RecordedEvent, ReadError>>,
    done: bool,
}

impl<S: EventStore> Iterator for Events<'_, S> {
    type Item = Result<RecordedEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            let mut count = 0;
            let page = &mut self.page;
            let mut visit = |event: RecordedEventRef<'_>| {
                count += 1;
                page.push_back(event.to_owned());
                Ok(())
            };
            let result = match &self.cursor {
                Cursor::Stream { stream, next } => self
                    .store
                    .read_stream_with(stream, *next, PAGE_SIZE, &mut visit),
                Cursor::All { after } => self.store.read_all_with(*after, PAGE_SIZE, &mut visit),
                Cursor::Filtered { after, filter } => self
                    .store
                    .read_all_filtered_with(*after, filter, PAGE_SIZE, &mut visit),
            };
            self.done = count < PAGE_SIZE;
            if let Err(e) = result {
                self.page.push_back(Err(e));
            }
        }
        let item = self.page.pop_front()?;
        if let Ok(event) = &item {
            match &mut self.cursor {
                Cursor::Stream { next, .. } => *next = event.version.next(),
                Cursor::All { after } | Cursor::Filtered { after, .. } => *after = event.position,
            }
        } else {
            // After an error the position is unknown: stop.
            self.done = true;
            self.page.clear();
        }
        Some(item)
    }
}

macro_rules! forward_event_store {
    ($($ty:ty),*) => {$(
        impl<S: EventStore + ?Sized> EventStore for $ty {
            fn append(&self, stream: &StreamId, expected: ExpectedVersion, events: &[NewEvent]) -> Result<AppendResult, AppendError> {
                (**self).append(stream, expected, events)
            }
            fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
                (**self).stream_version(stream)
            }
            fn read_stream_with(&self, stream: &StreamId, from: Version, max_count: usize, visit: &mut Visitor<'_>) -> Result<(), ReadError> {
                (**self).read_stream_with(stream, from, max_count, visit)
            }
            fn read_all_with(&self, after: Position, max_count: usize, visit: &mut Visitor<'_>) -> Result<(), ReadError> {
                (**self).read_all_with(after, max_count, visit)
            }
            fn read_all_filtered_with(&self, after: Position, filter: &EventFilter, max_count: usize, visit: &mut Visitor<'_>) -> Result<(), ReadError> {
                (**self).read_all_filtered_with(after, filter, max_count, visit)
            }
            fn list_streams(&self, aggregate_type: &str, after: Option<&str>, limit: usize) -> Result<Vec<StreamInfo>, StoreError> {
                (**self).list_streams(aggregate_type, after, limit)
            }
            fn replay_stream_with(&self, stream: &StreamId, from: Version, max_count: usize, visit: &mut DataVisitor<'_>) -> Result<(), ReadError> {
                (**self).replay_stream_with(stream, from, max_count, visit)
            }
            fn load_stream_with(&self, stream: &StreamId, from: Version, max_count: usize, visit: &mut DataVisitor<'_>) -> Result<(), ReadError> {
                (**self).load_stream_with(stream, from, max_count, visit)
            }
            fn append_command(&self, command_id: &str, stream: &StreamId, expected: ExpectedVersion, events: &[NewEvent]) -> Result<AppendResult, AppendError> {
                (**self).append_command(command_id, stream, expected, events)
            }
            fn command(&self, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
                (**self).command(command_id)
            }
            fn load_snapshot(&self, stream: &StreamId, at_most: Version, state_version: u32) -> Result<Option<Snapshot>, StoreError> {
                (**self).load_snapshot(stream, at_most, state_version)
            }
            fn save_snapshot(&self, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError> {
                (**self).save_snapshot(stream, snapshot)
            }
            fn read_chain_with(&self, after: Position, max_count: usize, visit: &mut ChainVisitor<'_>) -> Result<(), StoreError> {
                (**self).read_chain_with(after, max_count, visit)
            }
            fn chain_head(&self) -> Result<Option<ChainHead>, StoreError> {
                (**self).chain_head()
            }
            fn version_gaps(&self, limit: usize) -> Result<Vec<VersionGap>, StoreError> {
                (**self).version_gaps(limit)
            }
        }
    )*};
}

forward_event_store!(&S, Arc<S>, Box<S>);
