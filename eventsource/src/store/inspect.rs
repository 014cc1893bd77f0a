//! What a store holds as a whole: [`Inspect`], for tools that look into a store.

use crate::error::StoreError;
use crate::store::EventStore;

/// Store-wide figures: what the `eventsource info` command prints. Implemented by
/// [`SqliteStore`](crate::SqliteStore) and `PostgresStore`.
///
/// ```
/// use eventsource::{EventStore, ExpectedVersion, Inspect, NewEvent, SqliteStore, StreamId};
///
/// let store = SqliteStore::in_memory()?;
/// for id in ["a", "b"] {
///     store.append(&StreamId::new("note", id), ExpectedVersion::Any, &[NewEvent::new("note.added", 1, "{}")])?;
/// }
/// let summary = store.summary()?;
/// assert_eq!((summary.backend, summary.events, summary.streams), ("sqlite", 2, 2));
/// assert_eq!(store.aggregate_types()?, ["note"]);
/// # Ok::<(), eventsource::Error>(())
/// ```
pub trait Inspect: EventStore {
    /// Counts and sizes of the whole store. Counting reads every row's key (an index
    /// scan): it takes a moment on a large store.
    ///
    /// # Errors
    /// When the backend fails.
    fn summary(&self) -> Result<StoreSummary, StoreError>;

    /// Every aggregate type that has events, sorted byte-wise: the names
    /// [`EventStore::list_streams`] takes.
    ///
    /// # Errors
    /// When the backend fails.
    fn aggregate_types(&self) -> Result<Vec<String>, StoreError>;
}

/// What [`Inspect::summary`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreSummary {
    /// `"sqlite"` or `"postgres"`.
    pub backend: &'static str,
    /// The version of the store's SQL schema (its migrations applied).
    pub schema_version: i64,
    /// How many events are stored.
    pub events: u64,
    /// How many streams have events.
    pub streams: u64,
    /// The space the store takes: on SQLite the database (`page_count × page_size`, the
    /// write-ahead log included once checkpointed); on PostgreSQL the events table with
    /// its indexes and TOAST (`pg_total_relation_size`).
    pub size_bytes: u64,
}
