//! Running commands: load (or take from the cache), decide, append under the version
//! loaded, retry on conflict; at most once per command id; against a given version.

use std::borrow::Cow;

use super::{Committed, Repository};
use crate::aggregate::{Aggregate, Decision, EventSet};
use crate::error::{AppendError, ExecuteError, ReadError};
use crate::event::{EventId, Metadata, NewEvent, Timestamp};
use crate::store::{AppendResult, EventStore};
use crate::version::{ExpectedVersion, StreamId, Version};

impl<A: Aggregate, S: EventStore> Repository<A, S> {
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
