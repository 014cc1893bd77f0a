//! Event stores: the [`EventStore`] trait and its backends, side by side.
//!
//! - [`SqliteStore`]: the embedded default, one SQLite file (or memory);
//! - `PostgresStore` (feature `postgres`): a PostgreSQL server for several nodes.
//!
//! Every backend keeps every event of every aggregate in ONE append-only table whose
//! UPDATE and DELETE the database itself refuses.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::{AppendError, ReadError, StoreError};
use crate::event::{EventData, NewEvent, RecordedEvent, RecordedEventRef, Timestamp};
use crate::snapshot::Snapshot;
use crate::version::{ExpectedVersion, Position, StreamId, Version};

mod group_commit;
mod notify;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

#[cfg(feature = "postgres")]
pub use self::postgres::PostgresStore;
pub use self::sqlite::{SqliteOptions, SqliteStore, Synchronous};

/// What a successful append stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream's version after the append (the version of its last event).
    pub stream_version: Version,
    /// The global position of each appended event, in order.
    pub positions: Vec<Position>,
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
    /// When it was stored.
    pub recorded_at: Timestamp,
}

/// The visitor that [`EventStore::read_stream_with`] and [`EventStore::read_all_with`]
/// call once per stored event.
pub type Visitor<'v> = dyn FnMut(RecordedEventRef<'_>) -> Result<(), ReadError> + 'v;

/// The visitor of [`EventStore::replay_stream_with`].
pub type DataVisitor<'v> = dyn FnMut(EventData<'_>) -> Result<(), ReadError> + 'v;

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
}

/// How many events the iterators fetch per page.
const PAGE_SIZE: usize = 512;

/// Where a paged read goes on from.
#[derive(Debug)]
enum Cursor {
    Stream { stream: StreamId, next: Version },
    All { after: Position },
}

/// Iterator over stored events, fetched a page at a time: see
/// [`EventStore::read_stream`] and [`EventStore::read_all`].
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
                Cursor::All { after } => *after = event.position,
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
            fn replay_stream_with(&self, stream: &StreamId, from: Version, max_count: usize, visit: &mut DataVisitor<'_>) -> Result<(), ReadError> {
                (**self).replay_stream_with(stream, from, max_count, visit)
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
        }
    )*};
}

forward_event_store!(&S, Arc<S>, Box<S>);
