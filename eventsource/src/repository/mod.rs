//! The [`Repository`]: loads aggregates by replaying their streams, runs command
//! handlers and appends the events they return under optimistic concurrency.

mod execute;
mod snapshots;
mod typed;

pub use self::typed::TypedEvents;

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use self::snapshots::Snapshots;
use crate::aggregate::Aggregate;
use crate::backoff::Backoff;
use crate::cache::StateCache;
#[cfg(doc)]
use crate::error::ExecuteError;
use crate::error::ReadError;
use crate::event::{EventData, EventId, Payload, Timestamp};
use crate::snapshot::SnapshotPolicy;
use crate::store::EventStore;
use crate::upcast::{LiftError, Upcasters};
use crate::version::{Position, StreamId, Version};

/// An aggregate's state as loaded from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The stream the aggregate was loaded from.
    pub stream: StreamId,
    /// The state: the fold of the events read.
    pub state: A,
    /// The version of the last event applied ([`Version::NONE`] for a new aggregate).
    pub version: Version,
}

/// What a successful [`Repository::execute`] stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<A: Aggregate> {
    /// The stream appended to.
    pub stream: StreamId,
    /// The stream's version after the command (unchanged when it returned no events).
    pub version: Version,
    /// The events the handler returned, as stored.
    pub events: Vec<A::Event>,
    /// The global position of each event.
    pub positions: Vec<Position>,
    /// The id stored with each event, in order: with `positions`, enough to publish the
    /// events after the commit without reading them back.
    pub event_ids: Vec<EventId>,
    /// The time stored with the events ([`AppendResult::recorded_at`](crate::AppendResult::recorded_at)); for a command
    /// that already ran, the time recorded then. A command without an id that returned
    /// no events stores nothing: then it is the time it was decided.
    pub recorded_at: Timestamp,
    /// The aggregate's state with the new events applied.
    pub state: A,
    /// Whether this is the recorded outcome of an idempotent command that had already
    /// run ([`Repository::execute_once`]): its handler did not run again and nothing was
    /// appended; `state` is the aggregate as of the command.
    pub already_done: bool,
}

/// Loads and changes aggregates of type `A` stored in `S`.
///
/// ```
/// use eventsource::{event, Aggregate, Apply, ExecuteError, Repository, SqliteStore};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "counter.incremented")]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct Incremented { pub by: u32 }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "counter", events(Incremented))]
/// pub struct Counter { value: u32 }
///
/// impl Apply<Incremented> for Counter {
///     fn apply(&mut self, e: &Incremented) { self.value += e.by; }
/// }
///
/// #[derive(Debug, PartialEq)]
/// pub struct TooBig;
/// # impl std::fmt::Display for TooBig {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("too big") }
/// # }
/// # impl std::error::Error for TooBig {}
///
/// impl Counter {
///     pub fn increment(&self, by: u32) -> Result<Incremented, TooBig> {
///         if self.value + by > 10 { Err(TooBig) } else { Ok(Incremented { by }) }
///     }
/// }
///
/// let counters = Repository::<Counter, _>::new(SqliteStore::in_memory()?);
/// counters.execute("c-1", |c| c.increment(4))?;
/// let committed = counters.execute("c-1", |c| c.increment(5))?;
/// assert_eq!((committed.state.value, committed.version.get()), (9, 2));
///
/// let refused = counters.execute("c-1", |c| c.increment(5));
/// assert!(matches!(refused, Err(ExecuteError::Domain(TooBig))));
///
/// assert_eq!(counters.load_at("c-1", 1)?.state.value, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Repository<A, S> {
    store: S,
    upcasters: Upcasters,
    retries: u32,
    backoff: Backoff,
    cache: Option<StateCache<A>>,
    snapshots: Option<Snapshots<A>>,
    aggregate: PhantomData<fn() -> A>,
}

/// How often [`Repository::execute`] reruns a command after a conflict, by default.
/// With the default [`Backoff`], 8 threads running commands on one stream rarely need
/// more than a few.
const DEFAULT_RETRIES: u32 = 10;

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository of `A` aggregates in `store`, with no upcasters, 10 retries and the
    /// default [`Backoff`] between them.
    pub fn new(store: S) -> Self {
        Repository {
            store,
            upcasters: Upcasters::new(),
            retries: DEFAULT_RETRIES,
            backoff: Backoff::default(),
            cache: None,
            snapshots: None,
            aggregate: PhantomData,
        }
    }

    /// Keeps the states of up to `capacity` recently used aggregates in memory, so a
    /// command on one of them skips the replay. Safe with other writers: the append still
    /// expects the cached version, and a stale state costs one conflict and a replay.
    ///
    /// ```
    /// # use eventsource::{event, Aggregate, Apply, Repository, SqliteStore};
    /// # use serde::{Deserialize, Serialize};
    /// # #[event(name = "ticked")] #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Ticked;
    /// # #[derive(Debug, Default, Clone, Aggregate)] #[aggregate(name = "clock", events(Ticked))] pub struct Clock { ticks: u64 }
    /// # impl Apply<Ticked> for Clock { fn apply(&mut self, _: &Ticked) { self.ticks += 1; } }
    /// let clocks = Repository::<Clock, _>::new(SqliteStore::in_memory()?).with_cache(10_000);
    /// for _ in 0..3 {
    ///     clocks.execute("c", |_| Ticked)?;
    /// }
    /// assert_eq!(clocks.load("c")?.state.ticks, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_cache(mut self, capacity: usize) -> Self
    where
        A: Clone,
    {
        self.cache = Some(StateCache::new(capacity, A::clone));
        self
    }

    /// Takes a snapshot of an aggregate's state whenever `policy` says it is due, and
    /// starts loads from the newest usable snapshot instead of the first event. Snapshots
    /// are a cache beside the events table: one that cannot be read (another state
    /// version, a changed struct) or cannot be right (at version 0 or a negative one,
    /// beyond the stream's last event) is ignored and the stream replayed from its first
    /// event, and failing to save one (or a state holding a non-finite float, which JSON
    /// cannot hold) does not fail the command: no snapshot is saved.
    ///
    /// ```
    /// # use eventsource::{event, Aggregate, Apply, EventStore, Repository, SnapshotPolicy, SqliteStore, Version};
    /// # use serde::{Deserialize, Serialize};
    /// # #[event(name = "ticked")] #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Ticked;
    /// # #[derive(Debug, Default, Serialize, Deserialize, Aggregate)] #[aggregate(name = "clock", events(Ticked))] pub struct Clock { ticks: u64 }
    /// # impl Apply<Ticked> for Clock { fn apply(&mut self, _: &Ticked) { self.ticks += 1; } }
    /// let clocks = Repository::<Clock, _>::new(SqliteStore::in_memory()?)
    ///     .with_snapshots(SnapshotPolicy::every(2));
    /// for _ in 0..5 {
    ///     clocks.execute("c", |_| Ticked)?;
    /// }
    /// let stream = clocks.stream_id("c");
    /// let snapshot = clocks.store().load_snapshot(&stream, Version::MAX, 1)?;
    /// assert_eq!(snapshot.map(|s| s.version), Some(Version::new(4)));
    /// assert_eq!(clocks.load("c")?.state.ticks, 5); // snapshot at 4, then event 5
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        self.snapshots = Some(Snapshots::new(policy));
        self
    }

    /// Uses `upcasters` to lift old stored events on every read, after checking them
    /// against the aggregate's events ([`Upcasters::validate`]), so a registration
    /// mistake fails here and not at the first read.
    ///
    /// # Errors
    /// [`RegistrationError`](crate::RegistrationError) when two upcasters lift the same
    /// stored (type, version), a chain ends at a version the aggregate does not decode,
    /// or upcasters form a cycle.
    pub fn with_upcasters(
        mut self,
        upcasters: Upcasters,
    ) -> Result<Self, crate::error::RegistrationError> {
        upcasters.validate::<A::Event>()?;
        self.upcasters = upcasters;
        Ok(self)
    }

    /// [`Repository::with_upcasters`] without the check: registration mistakes surface
    /// at read time as [`ReadError::Upcast`] or [`ReadError::Decode`]. For tests of the
    /// read path's defences; use [`Repository::with_upcasters`] otherwise.
    #[must_use]
    pub fn with_upcasters_unchecked(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// How many times [`Repository::execute`] reloads and reruns a command after losing
    /// a race to another writer (0: never) before giving up with
    /// [`ExecuteError::Conflict`].
    #[must_use]
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// How long [`Repository::execute`] waits before it reruns a command that lost a
    /// race: [`Backoff::default`] (jittered, up to 5, 10, 20, ... 200 ms), or
    /// [`Backoff::NONE`] to retry at once. The handler never runs while the wait lasts
    /// and the wait holds no lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// # use eventsource::{event, Aggregate, Apply, Backoff, Repository, SqliteStore};
    /// # use serde::{Deserialize, Serialize};
    /// # #[event(name = "ticked")] #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Ticked;
    /// # #[derive(Debug, Default, Clone, Aggregate)] #[aggregate(name = "clock", events(Ticked))] pub struct Clock { ticks: u64 }
    /// # impl Apply<Ticked> for Clock { fn apply(&mut self, _: &Ticked) { self.ticks += 1; } }
    /// let clocks = Repository::<Clock, _>::new(SqliteStore::in_memory()?)
    ///     .with_retries(20)
    ///     .with_backoff(Backoff::exponential(Duration::from_millis(2), Duration::from_millis(100)));
    /// clocks.execute("c", |_| Ticked)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream of the aggregate with id `id`.
    pub fn stream_id(&self, id: &str) -> StreamId {
        StreamId::new(A::NAME, id)
    }

    /// Loads the aggregate `id` by replaying its whole stream. A stream never written
    /// loads as `A::default()` at [`Version::NONE`].
    ///
    /// # Errors
    /// [`ReadError`] when the store fails or a stored event cannot be decoded (naming its
    /// position, stream, version and type).
    pub fn load(&self, id: &str) -> Result<Loaded<A>, ReadError> {
        self.replay(self.stream_id(id), Version::MAX)
    }

    /// Loads the aggregate `id` as it was at `version`: the fold of its events up to and
    /// including that version (or the whole stream, if it is shorter).
    ///
    /// # Errors
    /// As [`Repository::load`].
    pub fn load_at(&self, id: &str, version: impl Into<Version>) -> Result<Loaded<A>, ReadError> {
        self.replay(self.stream_id(id), version.into())
    }

    /// Returns a state to the cache (if there is one).
    fn keep(&self, id: &str, state: A, version: Version) {
        if let Some(cache) = &self.cache {
            cache.put(id, state, version);
        }
    }

    /// Puts a copy of `state` in the cache (if there is one) and gives `state` back.
    fn keep_copy(&self, id: &str, state: A, version: Version) -> A {
        if let Some(cache) = &self.cache {
            cache.put(id, cache.copy(&state), version);
        }
        state
    }

    /// Forgets every cached state (see [`Repository::with_cache`]).
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// The newest readable snapshot at or before `to`, if snapshots are on.
    fn snapshot(&self, stream: &StreamId, to: Version) -> Result<Option<(A, Version)>, ReadError> {
        match &self.snapshots {
            Some(snapshots) => Ok(snapshots.load(&self.store, stream, to)?),
            None => Ok(None),
        }
    }

    /// Saves a snapshot if the policy says the stream is due after growing from `before`.
    fn snapshot_if_due(&self, stream: &StreamId, state: &A, before: Version, after: Version) {
        if let Some(snapshots) = &self.snapshots {
            snapshots.save_if_due(&self.store, stream, state, before, after);
        }
    }

    /// Folds the stream's events up to version `to` into a state, starting from the
    /// newest usable snapshot.
    fn replay(&self, stream: StreamId, to: Version) -> Result<Loaded<A>, ReadError> {
        let span = trace_span!(
            "eventsource.load",
            aggregate = A::NAME,
            stream = %stream,
            snapshot = tracing::field::Empty,
            version = tracing::field::Empty,
        );
        if let Some((state, at)) = self.snapshot(&stream, to)?
            && let Some(loaded) = self.replay_after_snapshot(&stream, to, state, at)?
        {
            trace_record!(span, "snapshot", at.get());
            trace_record!(span, "version", loaded.version.get());
            return Ok(loaded);
        }
        let mut state = A::default();
        let mut version = Version::NONE;
        let max_count = usize::try_from(to.get()).unwrap_or(usize::MAX);
        self.store
            .load_stream_with(&stream, Version::new(1), max_count, &mut |event| {
                self.apply_next(&stream, &mut state, &mut version, &event)
            })?;
        trace_record!(span, "version", version.get());
        Ok(Loaded {
            stream,
            state,
            version,
        })
    }

    /// Folds the events after a snapshot of the state at version `at` into it, or `None`
    /// when the snapshot cannot be right: at version 0, beyond `to`, or beyond the
    /// stream's end (the event at `at` is not stored). The same query reads that event
    /// too, so checking costs one row and no round trip.
    fn replay_after_snapshot(
        &self,
        stream: &StreamId,
        to: Version,
        mut state: A,
        at: Version,
    ) -> Result<Option<Loaded<A>>, ReadError> {
        if at == Version::NONE || at > to {
            return Ok(None);
        }
        let max_count = usize::try_from(to.get() - at.get())
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let mut version = at;
        let mut at_found = false;
        let mut beyond = false;
        let read = self
            .store
            .load_stream_with(stream, at, max_count, &mut |event| {
                if !at_found {
                    if event.version != at {
                        // A gap at `at`: the replay from the start reports it exactly.
                        beyond = true;
                        return Err(ReadError::VersionGap {
                            stream: stream.clone(),
                            after: Version::new(at.get() - 1),
                            found: event.version,
                        });
                    }
                    at_found = true;
                    return Ok(());
                }
                self.apply_next(stream, &mut state, &mut version, &event)
            });
        match read {
            Err(_) if beyond => Ok(None),
            Err(e) => Err(e),
            Ok(()) if !at_found => Ok(None),
            Ok(()) => Ok(Some(Loaded {
                stream: stream.clone(),
                state,
                version,
            })),
        }
    }

    /// Applies `event`, which must be the one after `version`, to `state`.
    fn apply_next(
        &self,
        stream: &StreamId,
        state: &mut A,
        version: &mut Version,
        event: &EventData<'_>,
    ) -> Result<(), ReadError> {
        if event.version != version.next() {
            return Err(ReadError::VersionGap {
                stream: stream.clone(),
                after: *version,
                found: event.version,
            });
        }
        *version = event.version;
        self.decode(stream, event, |e| state.apply_event(&e))
    }

    /// Decodes one stored event (through the upcasters, which may turn it into zero or
    /// several events) and hands each result to `f`.
    fn decode(
        &self,
        stream: &StreamId,
        event: &EventData<'_>,
        mut f: impl FnMut(A::Event),
    ) -> Result<(), ReadError> {
        self.upcasters
            .lift(
                event.event_type,
                event.event_version,
                Payload::Text(event.payload),
                &mut f,
            )
            .map_err(|failure| match failure {
                LiftError::Upcast(source) => ReadError::Upcast {
                    at: Box::new(event.location(stream)),
                    source,
                },
                LiftError::Decode(source) => ReadError::Decode {
                    at: Box::new(event.location(stream)),
                    source,
                },
            })
    }
}

impl<A, S: fmt::Debug> fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &std::any::type_name::<A>())
            .field("store", &self.store)
            .field("upcasters", &self.upcasters)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("cache", &self.cache.is_some())
            .field("snapshots", &self.snapshots.as_ref().map(Snapshots::policy))
            .finish()
    }
}
