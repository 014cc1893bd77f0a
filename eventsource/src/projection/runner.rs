//! Running projections: [`Projector`] (catch up, follow live, rebuild), the
//! [`ProjectionStore`] backends implement, and [`ProjectionHandle`] for a runner in a
//! thread of its own.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{Context, Projection, ProjectionError};
use crate::error::StoreError;
use crate::event::Timestamp;
use crate::store::EventStore;
use crate::version::Position;

/// A projection's checkpoint as stored: how far it has applied the global order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The projection's name.
    pub name: String,
    /// The version of the projection that wrote it.
    pub version: u32,
    /// The last position applied (or skipped as not handled): 0 before any.
    pub position: Position,
    /// When the checkpoint last moved.
    pub updated_at: Timestamp,
    /// How many events are stored after the checkpoint (positions are gap-free).
    pub lag: u64,
}

/// What a rebuild reports after each batch (see [`Projector::rebuild`]): turn it into a
/// progress bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Events scanned so far (the checkpoint's position).
    pub done: u64,
    /// Events stored when the rebuild started (the last position then).
    pub total: u64,
    /// Events handled so far (the others were skipped in SQL).
    pub applied: u64,
    /// Time since the rebuild started.
    pub elapsed: Duration,
}

impl Progress {
    /// Events scanned per second so far.
    #[allow(clippy::cast_precision_loss, reason = "a rate for display")]
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunReport {
    /// Events handed to the projection.
    pub applied: u64,
    /// Transactions committed.
    pub batches: u64,
    /// The checkpoint at the end.
    pub checkpoint: Position,
    /// Whether the read model was reset and rebuilt from position 0 (a new projection,
    /// a new version, or [`Projector::rebuild`]).
    pub rebuilt: bool,
}

/// One batch, as the runner asks a backend for it.
#[doc(hidden)]
pub struct Job<'j> {
    /// The projection's name and version.
    pub name: &'static str,
    /// The projection's version.
    pub version: u32,
    /// The stored event types to read.
    pub event_types: &'j [&'static str],
    /// At most this many events.
    pub batch_size: usize,
    /// Reset even when the stored version is the code's (a forced rebuild).
    pub force_reset: bool,
    /// Projects the event the context holds ([`Step::Event`]), or clears the read model
    /// ([`Step::Reset`]).
    pub apply: &'j mut dyn FnMut(Step, &mut Context<'_>) -> Result<(), ProjectionError>,
}

/// What [`Job::apply`] is asked to do.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Clear the read model.
    Reset,
    /// Project the context's event.
    Event,
}

/// What one committed batch did.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events handled.
    pub applied: u64,
    /// The checkpoint committed.
    pub checkpoint: Position,
    /// The last position when the batch read.
    pub head: Position,
    /// Whether the batch reset the read model first.
    pub reset: bool,
}

/// A store that can run projections, with their checkpoints in its own database:
/// [`SqliteStore`](crate::SqliteStore) and `PostgresStore`.
pub trait ProjectionStore: EventStore {
    /// A runner's own resources (PostgreSQL: its connection, which listens for commits
    /// and holds the projection's lock).
    #[doc(hidden)]
    type Session: Send;

    /// Opens a runner's session for the projection `name`; `None` when another runner
    /// (in any process) holds the projection.
    #[doc(hidden)]
    fn open_session(&self, name: &'static str) -> Result<Option<Self::Session>, StoreError>;

    /// Opens a session that only listens for commits (no lock), for a subscription.
    #[doc(hidden)]
    fn listen(&self) -> Result<Self::Session, StoreError>;

    /// Runs one batch in one transaction: reads the checkpoint, resets when asked or when
    /// the version changed, hands each event to `job.handle`, moves the checkpoint, and
    /// commits.
    #[doc(hidden)]
    fn run_batch(
        &self,
        session: &mut Self::Session,
        job: &mut Job<'_>,
    ) -> Result<BatchOutcome, ProjectionError>;

    /// Returns when an append after `after` may have committed, or after `timeout`.
    #[doc(hidden)]
    fn wait_for_commit(
        &self,
        session: &mut Self::Session,
        after: Position,
        timeout: Duration,
    ) -> Result<(), StoreError>;

    /// The last position stored (0 when empty).
    ///
    /// # Errors
    /// When the backend fails.
    fn head(&self) -> Result<Position, StoreError>;

    /// Every projection's checkpoint, by name, with its lag behind [`ProjectionStore::head`].
    ///
    /// # Errors
    /// When the backend fails.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// Waits until the projection `name`, run by any runner in any process, has applied
    /// everything up to `position` (read-your-writes across processes; in the process
    /// that runs it, [`ProjectionHandle::wait_for`] is woken at once instead). Looks at
    /// the stored checkpoint every 5 ms. Returns whether it got there within `timeout`.
    ///
    /// # Errors
    /// When the backend fails.
    fn wait_for_projection(
        &self,
        name: &str,
        position: Position,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let reached = self
                .checkpoints()?
                .iter()
                .any(|c| c.name == name && c.position >= position);
            if reached {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(5).min(deadline - now));
        }
    }
}

macro_rules! forward_projection_store {
    ($($ty:ty),*) => {$(
        impl<S: ProjectionStore + ?Sized> ProjectionStore for $ty {
            type Session = S::Session;
            fn open_session(&self, name: &'static str) -> Result<Option<Self::Session>, StoreError> {
                (**self).open_session(name)
            }
            fn listen(&self) -> Result<Self::Session, StoreError> {
                (**self).listen()
            }
            fn run_batch(&self, session: &mut Self::Session, job: &mut Job<'_>) -> Result<BatchOutcome, ProjectionError> {
                (**self).run_batch(session, job)
            }
            fn wait_for_commit(&self, session: &mut Self::Session, after: Position, timeout: Duration) -> Result<(), StoreError> {
                (**self).wait_for_commit(session, after, timeout)
            }
            fn head(&self) -> Result<Position, StoreError> {
                (**self).head()
            }
            fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
                (**self).checkpoints()
            }
        }
    )*};
}

forward_projection_store!(&S, Arc<S>, Box<S>);

/// Runs a projection over a store: from its checkpoint, in position order, in batches of
/// one transaction each.
///
/// - [`Projector::run_until_caught_up`]: applies everything stored, then returns;
/// - [`Projector::run`]: catches up, then follows new commits until stopped: woken at
///   once by the same store's appends in this process (SQLite) or by `LISTEN/NOTIFY`
///   (PostgreSQL), and by polling every [`Projector::poll_interval`] for appends of
///   other processes on SQLite;
/// - [`Projector::spawn`]: `run` in a thread of its own, with a [`ProjectionHandle`] to
///   wait for a position (read-your-writes) and to stop it;
/// - [`Projector::rebuild`]: resets the read model and applies everything again,
///   reporting [`Progress`].
///
/// On PostgreSQL one runner per projection runs at a time, across processes: a second
/// one stands by (in `run`, taking over when the first stops) or fails with
/// [`ProjectionError::HeldElsewhere`] (`run_until_caught_up`, `rebuild`).
///
/// The projection struct's own fields are not rolled back with a failed batch: keep the
/// read model in the database, or reset such fields after an error.
pub struct Projector<S: ProjectionStore, P: Projection> {
    store: S,
    projection: P,
    batch_size: usize,
    poll_interval: Duration,
    session: Option<S::Session>,
    event_types: Vec<&'static str>,
    /// The checkpoint after the last batch this runner committed.
    checkpoint: Option<Position>,
}

impl<S: ProjectionStore, P: Projection> std::fmt::Debug for Projector<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("projection", &P::NAME)
            .field("version", &P::VERSION)
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .field("checkpoint", &self.checkpoint)
            .finish_non_exhaustive()
    }
}

/// The default number of events per batch (one transaction).
const DEFAULT_BATCH_SIZE: usize = 500;

/// The default interval of the polling fallback.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

impl<S: ProjectionStore, P: Projection> Projector<S, P> {
    /// A runner of `projection` over `store` (a store, a reference or an `Arc` of one).
    pub fn new(store: S, projection: P) -> Self {
        Projector {
            store,
            projection,
            batch_size: DEFAULT_BATCH_SIZE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            session: None,
            event_types: P::event_types(),
            checkpoint: None,
        }
    }

    /// At most `events` events per batch (default 500): larger batches commit less
    /// often; on SQLite each batch holds the write lock while it runs.
    #[must_use]
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self
    }

    /// How often [`Projector::run`] looks for new events when nothing woke it (default
    /// 100 ms): the latency of appends made by other processes on SQLite, and of
    /// stopping.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection, mutably.
    pub fn projection_mut(&mut self) -> &mut P {
        &mut self.projection
    }

    /// The projection, giving up the runner.
    pub fn into_projection(self) -> P {
        self.projection
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The projection's stored checkpoint (`None` before its first batch).
    ///
    /// # Errors
    /// When the backend fails.
    pub fn status(&self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .store
            .checkpoints()?
            .into_iter()
            .find(|c| c.name == P::NAME))
    }

    /// Applies every event stored after the checkpoint, in batches, then returns.
    ///
    /// # Errors
    /// The first failure: a handler's (with the event), a panic, a store error. The
    /// failing batch is rolled back; batches before it stay committed.
    pub fn run_until_caught_up(&mut self) -> Result<RunReport, ProjectionError> {
        self.catch_up(false, &mut |_| {})?
            .ok_or(ProjectionError::HeldElsewhere {
                projection: P::NAME,
            })
    }

    /// Resets the read model (the projection's reset, in the first batch's transaction)
    /// and applies every event from position 0, calling `progress` after each batch.
    ///
    /// # Errors
    /// As [`Projector::run_until_caught_up`].
    pub fn rebuild(
        &mut self,
        mut progress: impl FnMut(Progress),
    ) -> Result<RunReport, ProjectionError> {
        self.catch_up(true, &mut progress)?
            .ok_or(ProjectionError::HeldElsewhere {
                projection: P::NAME,
            })
    }

    /// Catches up, then follows new commits until `stop` is set (checked at least every
    /// poll interval).
    ///
    /// # Errors
    /// The first failure, as [`Projector::run_until_caught_up`]; the runner stops there.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<RunReport, ProjectionError> {
        self.run_observed(stop, &mut |_| {})
    }

    fn run_observed(
        &mut self,
        stop: &AtomicBool,
        observe: &mut dyn FnMut(Position),
    ) -> Result<RunReport, ProjectionError> {
        let mut total = RunReport::default();
        while !stop.load(Ordering::Acquire) {
            let Some(report) = self.catch_up(false, &mut |p| observe(Position::new(p.done)))?
            else {
                // Another runner holds the projection: stand by.
                thread::sleep(self.poll_interval);
                continue;
            };
            total.applied += report.applied;
            total.batches += report.batches;
            total.rebuilt |= report.rebuilt;
            total.checkpoint = report.checkpoint;
            let after = report.checkpoint;
            observe(after);
            if let Some(session) = &mut self.session {
                self.store
                    .wait_for_commit(session, after, self.poll_interval)
                    .map_err(|source| ProjectionError::Store {
                        projection: P::NAME,
                        source,
                    })?;
            }
        }
        Ok(total)
    }

    /// Runs [`Projector::run`] in a thread of its own.
    pub fn spawn(self) -> ProjectionHandle<P>
    where
        S: Send + 'static,
        P: 'static,
    {
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            let mut runner = self;
            thread::spawn(move || {
                let result = runner.run_observed(&stop, &mut |position| shared.advance(position));
                shared.finish(result.as_ref().err().map(ToString::to_string));
                result.map(|_| runner.into_projection())
            })
        };
        ProjectionHandle {
            shared,
            stop,
            thread: Some(thread),
        }
    }

    fn store_error(source: StoreError) -> ProjectionError {
        ProjectionError::Store {
            projection: P::NAME,
            source,
        }
    }

    /// Runs batches until one finds nothing more to read; `None` when another runner
    /// holds the projection.
    fn catch_up(
        &mut self,
        force_reset: bool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<RunReport>, ProjectionError> {
        let mut report = RunReport::default();
        if self.session.is_none() {
            self.session = self
                .store
                .open_session(P::NAME)
                .map_err(Self::store_error)?;
        }
        let Some(session) = &mut self.session else {
            self.checkpoint = None;
            return Ok(None);
        };
        // Nothing to do when the head has not moved since our last batch: no write lock.
        if !force_reset
            && let Some(checkpoint) = self.checkpoint
            && self.store.head().map_err(Self::store_error)? <= checkpoint
        {
            report.checkpoint = checkpoint;
            return Ok(Some(report));
        }
        let started = Instant::now();
        let total = self.store.head().map_err(Self::store_error)?.get();
        let projection = &mut self.projection;
        let mut force_reset = force_reset;
        loop {
            let mut apply = |step: Step, ctx: &mut Context<'_>| match step {
                Step::Event => handle_one(&mut *projection, ctx),
                Step::Reset => reset_one(&mut *projection, ctx),
            };
            let mut job = Job {
                name: P::NAME,
                version: P::VERSION,
                event_types: &self.event_types,
                batch_size: self.batch_size,
                force_reset,
                apply: &mut apply,
            };
            let outcome = {
                let span = trace_span!(
                    "eventsource.projection.batch",
                    projection = P::NAME,
                    version = P::VERSION,
                    applied = tracing::field::Empty,
                    checkpoint = tracing::field::Empty,
                    reset = tracing::field::Empty,
                );
                let outcome = self.store.run_batch(session, &mut job)?;
                trace_record!(span, "applied", outcome.applied);
                trace_record!(span, "checkpoint", outcome.checkpoint.get());
                trace_record!(span, "reset", outcome.reset);
                outcome
            };
            force_reset = false;
            report.applied += outcome.applied;
            report.batches += 1;
            report.rebuilt |= outcome.reset;
            report.checkpoint = outcome.checkpoint;
            self.checkpoint = Some(outcome.checkpoint);
            progress(Progress {
                done: outcome.checkpoint.get(),
                total: total.max(outcome.head.get()),
                applied: report.applied,
                elapsed: started.elapsed(),
            });
            if outcome.checkpoint >= outcome.head {
                return Ok(Some(report));
            }
        }
    }
}

/// Hands the event of `ctx` to the projection, catching a panic.
fn handle_one<P: Projection>(
    projection: &mut P,
    ctx: &mut Context<'_>,
) -> Result<(), ProjectionError> {
    match panic::catch_unwind(AssertUnwindSafe(|| projection.handle(ctx))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(ProjectionError::Failed {
            projection: P::NAME,
            at: Box::new(ctx.location()),
            source,
        }),
        Err(payload) => Err(ProjectionError::Panicked {
            projection: P::NAME,
            at: Box::new(Some(ctx.location())),
            message: crate::upcast::panic_message(payload.as_ref()),
        }),
    }
}

/// Runs the projection's reset, catching a panic.
fn reset_one<P: Projection>(
    projection: &mut P,
    ctx: &mut Context<'_>,
) -> Result<(), ProjectionError> {
    match panic::catch_unwind(AssertUnwindSafe(|| projection.reset(ctx))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(ProjectionError::Reset {
            projection: P::NAME,
            source,
        }),
        Err(payload) => Err(ProjectionError::Panicked {
            projection: P::NAME,
            at: Box::new(None),
            message: crate::upcast::panic_message(payload.as_ref()),
        }),
    }
}

/// What a spawned runner shares with its handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    state: Mutex<SharedState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct SharedState {
    checkpoint: Position,
    /// Set when the runner stopped.
    stopped: Option<Stopped>,
}

/// How a runner stopped: asked to (`None`), or by a failure (its message).
#[derive(Debug, Clone)]
struct Stopped(Option<String>);

impl Shared {
    /// See [`ProjectionHandle::wait_for`].
    pub(crate) fn wait_for(&self, position: Position, timeout: Duration) -> Result<(), WaitError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if state.checkpoint >= position {
                return Ok(());
            }
            if let Some(Stopped(error)) = &state.stopped {
                return Err(WaitError::Stopped {
                    error: error.clone(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::TimedOut {
                    position,
                    checkpoint: state.checkpoint,
                });
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn advance(&self, position: Position) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if position > state.checkpoint {
            state.checkpoint = position;
            self.changed.notify_all();
        }
    }

    fn finish(&self, error: Option<String>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.stopped = Some(Stopped(error));
        self.changed.notify_all();
    }
}

/// Why [`ProjectionHandle::wait_for`] returned without the projection reaching the
/// position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed first.
    #[error("the projection reached position {checkpoint}, not {position}, within the timeout")]
    TimedOut {
        /// The position waited for.
        position: Position,
        /// Where the projection was.
        checkpoint: Position,
    },
    /// The runner stopped (asked to, or failed: the message says why).
    #[error("the projection's runner stopped{}", .error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Stopped {
        /// The failure that stopped it, if any.
        error: Option<String>,
    },
}

/// A projection running in a thread of its own ([`Projector::spawn`]).
#[derive(Debug)]
pub struct ProjectionHandle<P> {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<P, ProjectionError>>>,
}

impl<P> ProjectionHandle<P> {
    /// The checkpoint the runner last committed (in this process).
    pub fn checkpoint(&self) -> Position {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .checkpoint
    }

    /// Waits until the projection has applied everything up to `position` (for
    /// example, the last position of a command that was just committed), so a query of
    /// the read model sees it: read-your-writes.
    ///
    /// # Errors
    /// [`WaitError::TimedOut`] after `timeout`, [`WaitError::Stopped`] when the runner
    /// stopped first.
    pub fn wait_for(&self, position: Position, timeout: Duration) -> Result<(), WaitError> {
        self.shared.wait_for(position, timeout)
    }

    /// What waits for the runner's progress, shareable with another thread.
    #[cfg(feature = "tokio")]
    pub(crate) fn waiter(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Asks the runner to stop (it finishes its batch first).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Stops the runner and waits for it: the projection back, or the failure that had
    /// stopped it.
    ///
    /// # Errors
    /// The runner's failure. A runner that panicked outside a handler is reported as
    /// [`ProjectionError::Panicked`].
    pub fn join(mut self) -> Result<P, ProjectionError>
    where
        P: Projection,
    {
        self.stop();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(payload)) => Err(ProjectionError::Panicked {
                projection: P::NAME,
                at: Box::new(None),
                message: crate::upcast::panic_message(payload.as_ref()),
            }),
            None => Err(ProjectionError::Panicked {
                projection: P::NAME,
                at: Box::new(None),
                message: "the runner was already joined".into(),
            }),
        }
    }
}

impl<P> Drop for ProjectionHandle<P> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
