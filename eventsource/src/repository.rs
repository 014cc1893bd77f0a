//! The [`Repository`]: loads aggregates by replaying their streams, runs command
//! handlers and appends the events they return under optimistic concurrency.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use crate::aggregate::{Aggregate, EventSet, IntoEvents};
use crate::error::{AppendError, ExecuteError, ReadError};
use crate::event::{DecodeFailure, EventId, Metadata, NewEvent, Payload, RecordedEventRef};
use crate::store::EventStore;
use crate::upcast::{RawEvent, Upcasters};
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
    /// The aggregate's state with the new events applied.
    pub state: A,
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
    aggregate: PhantomData<fn() -> A>,
}

/// How often [`Repository::execute`] reruns a command after a conflict, by default.
const DEFAULT_RETRIES: u32 = 3;

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository of `A` aggregates in `store`, with no upcasters and 3 retries.
    pub fn new(store: S) -> Self {
        Repository {
            store,
            upcasters: Upcasters::new(),
            retries: DEFAULT_RETRIES,
            aggregate: PhantomData,
        }
    }

    /// Uses `upcasters` to lift old stored events on every read.
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
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
    /// # Errors
    /// [`ExecuteError::Domain`] with the handler's error; [`ExecuteError::Conflict`] when
    /// every attempt lost the race; [`ExecuteError::Read`] or [`ExecuteError::Append`]
    /// when the store fails. Nothing is stored in any of these cases.
    pub fn execute<R, E>(
        &self,
        id: &str,
        handler: impl FnMut(&A) -> Result<R, E>,
    ) -> Result<Committed<A>, ExecuteError<E>>
    where
        R: IntoEvents<A::Event>,
    {
        self.execute_with(id, &Metadata::new(), handler)
    }

    /// [`Repository::execute`], storing `metadata` (correlation id, causation id, actor,
    /// ...) with every event the command produces.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub fn execute_with<R, E>(
        &self,
        id: &str,
        metadata: &Metadata,
        mut handler: impl FnMut(&A) -> Result<R, E>,
    ) -> Result<Committed<A>, ExecuteError<E>>
    where
        R: IntoEvents<A::Event>,
    {
        let stream = self.stream_id(id);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Loaded {
                stream,
                mut state,
                version,
            } = self
                .replay(stream.clone(), Version::MAX)
                .map_err(ExecuteError::Read)?;
            let mut events = Vec::new();
            handler(&state)
                .map_err(ExecuteError::Domain)?
                .into_events(&mut events);
            if events.is_empty() {
                return Ok(Committed {
                    stream,
                    version,
                    events,
                    positions: Vec::new(),
                    state,
                });
            }
            let new_events = encode(&stream, &events, metadata).map_err(ExecuteError::Append)?;
            match self
                .store
                .append(&stream, ExpectedVersion::Exact(version), &new_events)
            {
                Ok(appended) => {
                    for event in &events {
                        state.apply_event(event);
                    }
                    return Ok(Committed {
                        stream,
                        version: appended.stream_version,
                        events,
                        positions: appended.positions,
                        state,
                    });
                }
                Err(AppendError::Conflict { actual, .. }) if attempts > self.retries => {
                    return Err(ExecuteError::Conflict {
                        stream,
                        expected: version,
                        actual,
                        attempts,
                    });
                }
                Err(AppendError::Conflict { .. }) => {}
                Err(e) => return Err(ExecuteError::Append(e)),
            }
        }
    }

    /// Folds the stream's events up to version `to` into a fresh state.
    fn replay(&self, stream: StreamId, to: Version) -> Result<Loaded<A>, ReadError> {
        let mut state = A::default();
        let mut version = Version::NONE;
        let max_count = usize::try_from(to.get()).unwrap_or(usize::MAX);
        self.store
            .read_stream_with(&stream, Version::new(1), max_count, &mut |event| {
                if event.version != version.next() {
                    return Err(ReadError::VersionGap {
                        stream: stream.clone(),
                        after: version,
                        found: event.version,
                    });
                }
                version = event.version;
                self.decode(&event, |e| state.apply_event(&e))
            })?;
        Ok(Loaded {
            stream,
            state,
            version,
        })
    }

    /// Decodes one stored event (through the upcasters, which may turn it into zero or
    /// several events) and hands each result to `f`.
    fn decode(
        &self,
        event: &RecordedEventRef<'_>,
        mut f: impl FnMut(A::Event),
    ) -> Result<(), ReadError> {
        let decode_failed = |source| ReadError::Decode {
            at: Box::new(event.location()),
            source,
        };
        if self.upcasters.is_empty()
            || !self
                .upcasters
                .handles(event.event_type, event.event_version)
        {
            let decoded = A::Event::decode(
                event.event_type,
                event.event_version,
                Payload::Text(event.payload),
            )
            .map_err(decode_failed)?;
            f(decoded);
            return Ok(());
        }
        let payload = serde_json::from_str(event.payload)
            .map_err(|e| decode_failed(DecodeFailure::Payload(e)))?;
        let raw = RawEvent::new(event.event_type, event.event_version, payload);
        let lifted = self
            .upcasters
            .upcast(raw)
            .map_err(|source| ReadError::Upcast {
                at: Box::new(event.location()),
                source,
            })?;
        for raw in lifted {
            let decoded = A::Event::decode(
                &raw.event_type,
                raw.event_version,
                Payload::Value(raw.payload),
            )
            .map_err(decode_failed)?;
            f(decoded);
        }
        Ok(())
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
            .finish()
    }
}
