//! The [`Repository`]: loads aggregates by replaying their streams, runs command
//! handlers and appends the events they return under optimistic concurrency.

use std::borrow::Cow;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::marker::PhantomData;

use crate::aggregate::{Aggregate, Decision, EventSet};
use crate::backoff::Backoff;
use crate::error::{AppendError, ExecuteError, ReadError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::EventType;
use crate::cache::StateCache;
use crate::event::{EventData, EventEnvelope, EventId, Metadata, NewEvent, Payload, Timestamp};
use crate::snapshot::{SnapshotPolicy, Snapshots};
use crate::store::{AppendResult, EventFilter, EventStore, Events};
use crate::upcast::{LiftError, Upcasters};
use crate::version::{ExpectedVersion, Position, StreamId, Version};

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
    ) -> Result<Self, crate::upcast::RegistrationError> {
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

    /// Runs a command: loads the aggregate `id`, calls `handler` with its state, and
    /// appends the events it returns under the version it saw. When another writer
    /// appended in between, reloads and calls `handler` again, up to the configured
    /// number of retries.
    ///
    /// `handler` returns a [`Decision`]: events (one, an `Option`, a `Vec`, an array, a
    /// tuple, `()`), or `Result<events, YourError>` when it may refuse the command.
    ///
    /// # Errors
    /// [`ExecuteError::Domain`] with the handler's error; [`ExecuteError::Conflict`] when
    /// every attempt lost the race; [`ExecuteError::Read`] or [`ExecuteError::Append`]
    /// when the store fails. Nothing is stored in any of these cases, except after
    /// [`ExecuteError::Append`] with [`AppendError::Unknown`] (or
    /// [`StoreError::Interrupted`](crate::StoreError::Interrupted)): the store lost the
    /// answer to its commit and could not find out whether the events are stored. The
    /// handler is never run again after that (a rerun could store the command twice):
    /// load the aggregate and check before running the command again.
    pub fn execute<D>(
        &self,
        id: &str,
        handler: impl FnMut(&A) -> D,
    ) -> Result<Committed<A>, ExecuteError<D::Error>>
    where
        D: Decision<A::Event>,
    {
        self.execute_with(id, &Metadata::new(), handler)
    }

    /// [`Repository::execute`], storing `metadata` (correlation id, causation id, actor,
    /// ...) with every event the command produces.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub fn execute_with<D>(
        &self,
        id: &str,
        metadata: &Metadata,
        handler: impl FnMut(&A) -> D,
    ) -> Result<Committed<A>, ExecuteError<D::Error>>
    where
        D: Decision<A::Event>,
    {
        self.run(id, None, None, metadata, handler)
    }

    /// [`Repository::execute`] against the version the caller saw, not the latest one
    /// (Marten's `FetchForWriting(id, version)`): for a client that read the aggregate at
    /// `expected` (an HTTP `If-Match`, say) and decided on what it saw. When the stream
    /// is at another version, the handler does not run and nothing is stored:
    /// [`ExecuteError::Conflict`] with `expected` and the `actual` version. A conflict at
    /// the append is not retried either: the caller must look again.
    ///
    /// ```
    /// use eventsource::{event, Aggregate, Apply, ExecuteError, Repository, SqliteStore, Version};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[event(name = "ticked")]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct Ticked;
    ///
    /// #[derive(Debug, Default, Aggregate)]
    /// #[aggregate(name = "clock", events(Ticked))]
    /// pub struct Clock;
    /// impl Apply<Ticked> for Clock { fn apply(&mut self, _: &Ticked) {} }
    ///
    /// let clocks = Repository::<Clock, _>::new(SqliteStore::in_memory()?);
    /// let tick = |_: &Clock| Ticked;
    /// clocks.execute_expected("c-1", Version::new(0), tick)?;            // as seen: stored
    /// match clocks.execute_expected("c-1", Version::new(0), tick) {       // stale: refused
    ///     Err(ExecuteError::Conflict { expected, actual, .. }) => {
    ///         assert_eq!((expected.get(), actual.get()), (0, 1));
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Repository::execute`]; [`ExecuteError::Conflict`] at once when the stream is
    /// not at `expected`.
    pub fn execute_expected<D>(
        &self,
        id: &str,
        expected: impl Into<Version>,
        handler: impl FnMut(&A) -> D,
    ) -> Result<Committed<A>, ExecuteError<D::Error>>
    where
        D: Decision<A::Event>,
    {
        self.run(id, None, Some(expected.into()), &Metadata::new(), handler)
    }

    /// Runs a command at most once: messages are delivered at least once in real
    /// systems, so a caller can name each command with an id (a message id, a request
    /// id). The first run appends the events and records the id with them, in one
    /// transaction. Any later run with the same id, from any process, after any restart,
    /// does not call `handler` and appends nothing: it returns the recorded outcome (same
    /// versions, positions and events, `already_done` set).
    ///
    /// ```
    /// # use eventsource::{event, Aggregate, Apply, Repository, SqliteStore};
    /// # use serde::{Deserialize, Serialize};
    /// # #[event(name = "ticked")] #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Ticked;
    /// # #[derive(Debug, Default, Aggregate)] #[aggregate(name = "clock", events(Ticked))] pub struct Clock { ticks: u64 }
    /// # impl Apply<Ticked> for Clock { fn apply(&mut self, _: &Ticked) { self.ticks += 1; } }
    /// let clocks = Repository::<Clock, _>::new(SqliteStore::in_memory()?);
    /// let tick = |_: &Clock| Ticked;
    /// let first = clocks.execute_once("c", "msg-17", tick)?;
    /// let again = clocks.execute_once("c", "msg-17", tick)?; // redelivered
    /// assert_eq!((first.already_done, again.already_done), (false, true));
    /// assert_eq!(again.positions, first.positions);
    /// assert_eq!(clocks.load("c")?.state.ticks, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Repository::execute`]; [`ExecuteError::CommandIdReused`] when the id was used
    /// for a command on another stream; [`ExecuteError::Read`] with
    /// [`ReadError::Corrupt`] when the id's stored record does not match its stream (the
    /// recorded outcome is never reported unless it is true); [`ExecuteError::Append`] with
    /// [`StoreError::Unsupported`](crate::StoreError::Unsupported) for a store without
    /// idempotent commands.
    pub fn execute_once<D>(
        &self,
        id: &str,
        command_id: &str,
        handler: impl FnMut(&A) -> D,
    ) -> Result<Committed<A>, ExecuteError<D::Error>>
    where
        D: Decision<A::Event>,
    {
        self.run(id, Some(command_id), None, &Metadata::new(), handler)
    }

    /// [`Repository::execute_once`] with `metadata` stored with every event.
    ///
    /// # Errors
    /// As [`Repository::execute_once`].
    pub fn execute_once_with<D>(
        &self,
        id: &str,
        command_id: &str,
        metadata: &Metadata,
        handler: impl FnMut(&A) -> D,
    ) -> Result<Committed<A>, ExecuteError<D::Error>>
    where
        D: Decision<A::Event>,
    {
        self.run(id, Some(command_id), None, metadata, handler)
    }

    /// Load, decide, append, retry on conflict; with a command id, at most once; with an
    /// expected version, once, against that version only.
    fn run<D>(
        &self,
        id: &str,
        command: Option<&str>,
        expected: Option<Version>,
        metadata: &Metadata,
        mut handler: impl FnMut(&A) -> D,
    ) -> Result<Committed<A>, ExecuteError<D::Error>>
    where
        D: Decision<A::Event>,
    {
        let stream = self.stream_id(id);
        let span = trace_span!(
            "eventsource.execute",
            aggregate = A::NAME,
            stream = %stream,
            command_id = command,
            expected = expected.map(Version::get),
            attempts = tracing::field::Empty,
            events = tracing::field::Empty,
            version = tracing::field::Empty,
        );
        if let Some(command_id) = command
            && let Some(done) = self.recorded(&stream, command_id)?
        {
            trace_debug!(command_id, "the command already ran: its recorded outcome");
            return Ok(done);
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            trace_record!(span, "attempts", attempts);
            let (state, version) = self
                .current(id, &stream, attempts, expected)
                .map_err(ExecuteError::Read)?;
            if let Some(expected) = expected
                && expected != version
            {
                // The caller decided on another version: the handler does not run.
                self.keep(id, state, version);
                return Err(ExecuteError::Conflict {
                    stream,
                    expected,
                    actual: version,
                    attempts,
                });
            }
            let mut events = Vec::new();
            match handler(&state).decide(&mut events) {
                Ok(()) => {}
                Err(e) => {
                    self.keep(id, state, version);
                    return Err(ExecuteError::Domain(e));
                }
            }
            // Without a command id, no events means nothing to store; an idempotent
            // command is recorded even when it decided nothing.
            if events.is_empty() && command.is_none() {
                let state = self.keep_copy(id, state, version);
                return Ok(Committed {
                    stream,
                    version,
                    events,
                    positions: Vec::new(),
                    event_ids: Vec::new(),
                    recorded_at: Timestamp::now(),
                    state,
                    already_done: false,
                });
            }
            let new_events = encode(&stream, &events, metadata).map_err(ExecuteError::Append)?;
            let exact = ExpectedVersion::Exact(version);
            let appended = match command {
                None => self.store.append(&stream, exact, &new_events),
                Some(command_id) => {
                    self.store
                        .append_command(command_id, &stream, exact, &new_events)
                }
            };
            trace_record!(span, "events", events.len());
            match appended {
                Ok(appended) => {
                    trace_record!(span, "version", appended.stream_version.get());
                    let event_ids = new_events.iter().map(|e| e.event_id).collect();
                    return Ok(
                        self.committed(id, stream, state, version, events, event_ids, appended)
                    );
                }
                Err(AppendError::Conflict { actual, .. })
                    if attempts > self.retries || expected.is_some() =>
                {
                    return Err(ExecuteError::Conflict {
                        stream,
                        expected: version,
                        actual,
                        attempts,
                    });
                }
                Err(AppendError::Conflict { actual, .. }) => {
                    self.pause_after_conflict(attempts, version, actual);
                }
                Err(AppendError::DuplicateCommand { command_id }) => {
                    // Another process ran the same command in between.
                    return match self.recorded(&stream, &command_id)? {
                        Some(done) => Ok(done),
                        None => Err(ExecuteError::Append(AppendError::DuplicateCommand {
                            command_id,
                        })),
                    };
                }
                // Never retried, `Unknown` least of all: its events may be stored.
                Err(e) => return Err(ExecuteError::Append(e)),
            }
        }
    }

    /// Applies a command's stored events to the state it decided on, saves a snapshot
    /// if one is due, keeps the state in the cache, and reports what was stored.
    #[allow(clippy::too_many_arguments, reason = "the parts of one commit")]
    fn committed(
        &self,
        id: &str,
        stream: StreamId,
        mut state: A,
        before: Version,
        events: Vec<A::Event>,
        event_ids: Vec<EventId>,
        appended: AppendResult,
    ) -> Committed<A> {
        for event in &events {
            state.apply_event(event);
        }
        self.snapshot_if_due(&stream, &state, before, appended.stream_version);
        let state = self.keep_copy(id, state, appended.stream_version);
        Committed {
            stream,
            version: appended.stream_version,
            events,
            positions: appended.positions,
            event_ids,
            recorded_at: appended.recorded_at,
            state,
            already_done: false,
        }
    }

    /// Waits, after attempt `attempts` lost a race at `version` to a writer that
    /// reached `actual`, before the command decides again.
    fn pause_after_conflict(&self, attempts: u32, version: Version, actual: Version) {
        let delay = self.backoff.delay(attempts);
        trace_debug!(
            attempt = attempts,
            expected = version.get(),
            actual = actual.get(),
            delay_us = delay.as_micros(),
            "conflict: reloading and deciding again"
        );
        let _ = (version, actual);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }

    /// The state a command's attempt decides on: the cached one on the first attempt
    /// (when it is at the version the caller expects, if any), else a replay.
    fn current(
        &self,
        id: &str,
        stream: &StreamId,
        attempts: u32,
        expected: Option<Version>,
    ) -> Result<(A, Version), ReadError> {
        // Only the first attempt may trust the cache: after a conflict it is stale.
        let cached = match (&self.cache, attempts) {
            (Some(cache), 1) => cache.take(id),
            _ => None,
        };
        // A cached state at another version than the caller's is of no use to it.
        if let Some(cached) = cached.filter(|(_, v)| expected.is_none_or(|e| e == *v)) {
            return Ok(cached);
        }
        let loaded = self.replay(stream.clone(), Version::MAX)?;
        Ok((loaded.state, loaded.version))
    }

    /// The recorded outcome of `command_id`, rebuilt from the store, if it ran.
    fn recorded<E>(
        &self,
        stream: &StreamId,
        command_id: &str,
    ) -> Result<Option<Committed<A>>, ExecuteError<E>> {
        let record = self
            .store
            .command(command_id)
            .map_err(|e| ExecuteError::Read(ReadError::Store(e)))?;
        let Some(record) = record else {
            return Ok(None);
        };
        if record.stream != *stream {
            return Err(ExecuteError::CommandIdReused {
                command_id: command_id.to_owned(),
                stream: record.stream,
            });
        }
        let version = record.result.stream_version;
        let positions = &record.result.positions;
        let corrupt = |reason: String| {
            let position = positions.first().map_or(0, |p| p.get() as i64);
            ExecuteError::Read(ReadError::Corrupt {
                position,
                reason: format!("command `{command_id}` of stream {stream}: {reason}"),
            })
        };
        // The record's events are the last `count` of the stream as of `version`.
        let count = positions.len();
        let Some(before) = version.get().checked_sub(count as u64) else {
            return Err(corrupt(format!(
                "the record names {count} events at stream version {version}"
            )));
        };
        let loaded = self
            .replay(stream.clone(), version)
            .map_err(ExecuteError::Read)?;
        if loaded.version != version {
            return Err(corrupt(format!(
                "the record names stream version {version}, the stream ends at {}",
                loaded.version
            )));
        }
        let mut events = Vec::with_capacity(count);
        let mut event_ids = Vec::with_capacity(count);
        let mut read = 0;
        let mut mismatch = None;
        self.store
            .read_stream_with(stream, Version::new(before + 1), count, &mut |event| {
                if positions.get(read) != Some(&event.position) {
                    mismatch = mismatch.or(Some((event.version, event.position)));
                    return Ok(());
                }
                read += 1;
                let id = event
                    .event_id
                    .parse()
                    .map_err(|source| ReadError::EventId {
                        at: Box::new(event.location()),
                        source,
                    })?;
                event_ids.push(id);
                self.decode(stream, &event.into(), |e| events.push(e))
            })
            .map_err(ExecuteError::Read)?;
        if let Some((at, position)) = mismatch {
            return Err(corrupt(format!(
                "the event at version {at} is at position {position}, not where the record says"
            )));
        }
        if read != count {
            return Err(corrupt(format!(
                "the record names {count} events, the stream holds {read} of them"
            )));
        }
        Ok(Some(Committed {
            stream: stream.clone(),
            version,
            events,
            positions: record.result.positions,
            event_ids,
            recorded_at: record.result.recorded_at,
            state: loaded.state,
            already_done: true,
        }))
    }

    /// Every event of every aggregate of type `A` after global position `after`, in
    /// global order, decoded through the repository's upcasters: an iterator that reads
    /// pages of bounded size, filtered in SQL to the aggregate type `A::NAME` (see
    /// [`EventStore::read_all_filtered`]).
    ///
    /// An upcaster may turn one stored event into several envelopes (in the order it
    /// produced them) or none. A stored event that cannot be decoded yields its
    /// [`ReadError`] in place of its envelopes; the iterator goes on with the next one
    /// if called again. A store error ends it.
    ///
    /// ```
    /// use eventsource::{event, Aggregate, Apply, Position, Repository, SqliteStore};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[event(name = "counter.incremented")]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct Incremented { pub by: u32 }
    ///
    /// #[derive(Debug, Default, Aggregate)]
    /// #[aggregate(name = "counter", events(Incremented))]
    /// pub struct Counter { value: u32 }
    /// # impl Apply<Incremented> for Counter { fn apply(&mut self, e: &Incremented) { self.value += e.by; } }
    ///
    /// let counters = Repository::<Counter, _>::new(SqliteStore::in_memory()?);
    /// counters.execute("a", |_| Incremented { by: 1 })?;
    /// counters.execute("b", |_| Incremented { by: 2 })?;
    /// let mut total = 0;
    /// for envelope in counters.read_all(Position::START) {
    ///     let CounterEvent::Incremented(e) = envelope?.event;
    ///     total += e.by;
    /// }
    /// assert_eq!(total, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all(&self, after: Position) -> TypedEvents<'_, A, S> {
        let filter = EventFilter::all().aggregate_type(A::NAME);
        TypedEvents::new(
            self.store.read_all_filtered(after, filter),
            &self.upcasters,
            None,
        )
    }

    /// [`Repository::read_all`] narrowed to the events of the types `event_types`
    /// (typically `EventType::of::<E>()` of some of `A`'s events). The read is filtered in
    /// SQL to the stored types that can decode into them: each type's own name, the names
    /// of its typed `upcast_from` chain, and the types from which the repository's
    /// upcasters lead to one of those; the decoded events of other types (an upcaster
    /// that splits a stored event may produce some) are skipped.
    ///
    /// ```
    /// use eventsource::{event, Aggregate, Apply, EventType, Position, Repository, SqliteStore};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[event(name = "account.opened")]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct Opened;
    ///
    /// #[event(name = "money.deposited")]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct Deposited { pub amount: u64 }
    ///
    /// #[derive(Debug, Default, Aggregate)]
    /// #[aggregate(name = "account", events(Opened, Deposited))]
    /// pub struct Account;
    /// # impl Apply<Opened> for Account { fn apply(&mut self, _: &Opened) {} }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, _: &Deposited) {} }
    ///
    /// let accounts = Repository::<Account, _>::new(SqliteStore::in_memory()?);
    /// accounts.execute("a", |_| (Opened, Deposited { amount: 5 }))?;
    /// let deposits: Vec<_> = accounts
    ///     .read_all_filtered(Position::START, &[EventType::of::<Deposited>()])
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(deposits.len(), 1);
    /// assert_eq!(deposits[0].event, AccountEvent::Deposited(Deposited { amount: 5 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_filtered(
        &self,
        after: Position,
        event_types: &[EventType],
    ) -> TypedEvents<'_, A, S> {
        let wanted: BTreeSet<&'static str> = event_types.iter().map(|t| t.name).collect();
        let mut stored: BTreeSet<String> = wanted.iter().map(|&n| n.to_owned()).collect();
        for (ty, history) in <A::Event as EventSet>::TYPES
            .iter()
            .zip(<A::Event as EventSet>::HISTORIES)
        {
            if wanted.contains(ty.name) {
                stored.extend(history.iter().map(|schema| schema.name.to_owned()));
            }
        }
        self.upcasters.sources_of(&mut stored);
        let filter = EventFilter::all()
            .aggregate_type(A::NAME)
            .event_types(stored);
        TypedEvents::new(
            self.store.read_all_filtered(after, filter),
            &self.upcasters,
            Some(wanted),
        )
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
            .replay_stream_with(&stream, Version::new(1), max_count, &mut |event| {
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
            .replay_stream_with(stream, at, max_count, &mut |event| {
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

/// The typed events of one aggregate type in global order: see
/// [`Repository::read_all`] and [`Repository::read_all_filtered`].
pub struct TypedEvents<'r, A: Aggregate, S> {
    stored: Events<'r, S>,
    upcasters: &'r Upcasters,
    /// The names of the event types to keep (`None`: all).
    keep: Option<BTreeSet<&'static str>>,
    /// The decoded envelopes of the last stored event not yet yielded.
    ready: VecDeque<EventEnvelope<A::Event>>,
}

impl<'r, A: Aggregate, S> TypedEvents<'r, A, S> {
    fn new(
        stored: Events<'r, S>,
        upcasters: &'r Upcasters,
        keep: Option<BTreeSet<&'static str>>,
    ) -> Self {
        TypedEvents {
            stored,
            upcasters,
            keep,
            ready: VecDeque::new(),
        }
    }
}

impl<A: Aggregate, S: EventStore> Iterator for TypedEvents<'_, A, S> {
    type Item = Result<EventEnvelope<A::Event>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(envelope) = self.ready.pop_front() {
                return Some(Ok(envelope));
            }
            let stored = match self.stored.next()? {
                Ok(stored) => stored,
                Err(e) => return Some(Err(e)),
            };
            let mut decoded = Vec::new();
            if let Err(e) = self
                .upcasters
                .decode_recorded::<A::Event>(&stored, |e| decoded.push(e))
            {
                return Some(Err(e));
            }
            let keep = &self.keep;
            self.ready.extend(
                decoded
                    .into_iter()
                    .filter(|e| {
                        keep.as_ref()
                            .is_none_or(|k| k.contains(e.event_type().name))
                    })
                    .map(|event| EventEnvelope {
                        position: stored.position,
                        stream: stored.stream.clone(),
                        version: stored.version,
                        event_id: stored.event_id,
                        recorded_at: stored.recorded_at,
                        metadata: stored.metadata.clone(),
                        event,
                    }),
            );
        }
    }
}

impl<A: Aggregate, S: fmt::Debug> fmt::Debug for TypedEvents<'_, A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedEvents")
            .field("aggregate", &std::any::type_name::<A>())
            .field("stored", &self.stored)
            .field("keep", &self.keep)
            .field("ready", &self.ready.len())
            .finish()
    }
}

/// Turns typed events into what the store appends.
fn encode<E: EventSet>(
    stream: &StreamId,
    events: &[E],
    metadata: &Metadata,
) -> Result<Vec<NewEvent>, AppendError> {
    events
        .iter()
        .map(|event| {
            let ty = event.event_type();
            let payload = event.encode().map_err(|source| AppendError::Encode {
                stream: stream.clone(),
                event_type: ty.name.to_owned(),
                source,
            })?;
            Ok(NewEvent {
                event_id: EventId::new(),
                event_type: Cow::Borrowed(ty.name),
                event_version: ty.version,
                payload,
                metadata: metadata.clone(),
            })
        })
        .collect()
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
