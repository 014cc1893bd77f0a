//! The async facade for tokio (feature `tokio`): [`AsyncRepository`], [`AsyncStore`]
//! and [`AsyncSubscription`] over the sync core. The design and the cancellation rules
//! are on [`AsyncRepository`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::aggregate::{Aggregate, Decision};
use crate::error::{AppendError, ExecuteError, ReadError, StoreError};
use crate::event::{Metadata, NewEvent, RecordedEvent};
use crate::projection::{ProjectionHandle, ProjectionStore, WaitError};
use crate::repository::{Committed, Loaded, Repository};
use crate::store::{AppendResult, EventStore};
use crate::subscription::Subscription;
use crate::version::{ExpectedVersion, Position, StreamId, Version};

/// Runs `f` on tokio's blocking pool and returns what it returns: for the sync calls
/// that have no async form, such as opening a store (`PostgresStore::connect` would
/// panic on a runtime thread).
///
/// ```
/// use eventsource::{run_blocking, SqliteStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = run_blocking(SqliteStore::in_memory).await??;
/// # drop(store);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`StoreError::ShuttingDown`] when the runtime shuts down before `f` started. A panic
/// in `f` is resumed in the caller.
pub async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    blocking(f).await
}

/// Drops `value` where it cannot block a runtime thread: on a thread of its own when
/// called on one (a `PostgresStore`'s connections close by blocking), here otherwise.
fn drop_off_runtime<T: Send + 'static>(value: T) {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::spawn(move || drop(value));
    } else {
        drop(value);
    }
}

/// Runs `f` on tokio's blocking pool. A panic in `f` is resumed in the caller; a task
/// the runtime cancelled before it started (it is shutting down) did nothing.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::ShuttingDown),
    }
}

/// A [`Repository`] for async code (feature `tokio`). Cheap to clone: clones share the
/// repository (its cache too).
///
/// # Design
/// The stores are synchronous (SQLite is a C library that blocks; the `postgres`
/// client blocks on a runtime of its own, and panics if asked to from a tokio worker).
/// So every call runs on tokio's blocking thread pool (`spawn_blocking`), never on a
/// worker thread: nothing here blocks or panics in async code, on either store. The
/// command handler runs there too. A subscription ([`AsyncStore::subscribe`]) runs on
/// a thread of its own and hands events over a bounded channel. A panic in a handler
/// is resumed in the caller's task, as in sync code.
///
/// # Cancellation
/// A call's future hands its work to the blocking pool when it is first polled.
/// Dropping it before that runs nothing; dropping it after lets the work finish (a
/// blocking task cannot be stopped halfway): an append is then either complete and
/// stored, or never started, and never half-done. Only the caller's view of the result
/// is lost; for an idempotent command, run it again with the same command id
/// ([`AsyncRepository::execute_once`]) to get the recorded outcome.
///
/// ```
/// use eventsource::{event, Aggregate, Apply, AsyncRepository, Repository, SqliteStore};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "counter.incremented")]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct Incremented { pub by: u32 }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "counter", events(Incremented))]
/// pub struct Counter { value: u32 }
/// impl Apply<Incremented> for Counter {
///     fn apply(&mut self, e: &Incremented) { self.value += e.by; }
/// }
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let counters = AsyncRepository::new(Repository::<Counter, _>::new(SqliteStore::in_memory()?));
/// counters.execute("c-1", |_| Incremented { by: 2 }).await?;
/// let counter = counters.load("c-1").await?;
/// assert_eq!(counter.state.value, 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncRepository<A: Send + 'static, S: Send + Sync + 'static> {
    inner: Shared<Repository<A, S>>,
}

impl<A: Send + 'static, S: Send + Sync + 'static> Clone for AsyncRepository<A, S> {
    fn clone(&self) -> Self {
        AsyncRepository {
            inner: self.inner.clone(),
        }
    }
}

/// An `Arc` whose last reference is dropped off the runtime's threads.
#[derive(Debug)]
struct Shared<T: Send + Sync + 'static>(Option<Arc<T>>);

impl<T: Send + Sync + 'static> Shared<T> {
    fn new(value: Arc<T>) -> Self {
        Shared(Some(value))
    }

    fn arc(&self) -> Arc<T> {
        self.0
            .clone()
            .unwrap_or_else(|| unreachable!("only `drop` takes the value"))
    }
}

impl<T: Send + Sync + 'static> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T: Send + Sync + 'static> std::ops::Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0
            .as_deref()
            .unwrap_or_else(|| unreachable!("only `drop` takes the value"))
    }
}

impl<T: Send + Sync + 'static> Drop for Shared<T> {
    fn drop(&mut self) {
        if let Some(last) = self.0.take().and_then(Arc::into_inner) {
            drop_off_runtime(last);
        }
    }
}

impl<A: Aggregate, S: EventStore + 'static> AsyncRepository<A, S> {
    /// The async facade of `repository`. Its store is dropped off the runtime's threads
    /// when the last clone goes.
    pub fn new(repository: Repository<A, S>) -> Self {
        AsyncRepository {
            inner: Shared::new(Arc::new(repository)),
        }
    }

    /// The sync repository underneath (its methods block: call them off the runtime).
    pub fn repository(&self) -> &Repository<A, S> {
        &self.inner
    }

    /// [`Repository::load`].
    ///
    /// # Errors
    /// As [`Repository::load`]; [`StoreError::ShuttingDown`] (in [`ReadError::Store`])
    /// when the runtime shuts down before the load started.
    pub async fn load(&self, id: impl Into<String>) -> Result<Loaded<A>, ReadError> {
        let (inner, id) = (self.inner.arc(), id.into());
        blocking(move || inner.load(&id)).await?
    }

    /// [`Repository::load_at`].
    ///
    /// # Errors
    /// As [`AsyncRepository::load`].
    pub async fn load_at(
        &self,
        id: impl Into<String>,
        version: impl Into<Version>,
    ) -> Result<Loaded<A>, ReadError> {
        let (inner, id, version) = (self.inner.arc(), id.into(), version.into());
        blocking(move || inner.load_at(&id, version)).await?
    }

    /// [`Repository::execute`]: the handler runs on the blocking pool too.
    ///
    /// # Errors
    /// As [`Repository::execute`]; [`StoreError::ShuttingDown`] when the runtime shuts
    /// down before the command started (nothing ran).
    pub async fn execute<D>(
        &self,
        id: impl Into<String>,
        handler: impl FnMut(&A) -> D + Send + 'static,
    ) -> Result<Committed<A>, ExecuteError<D::Error>>
    where
        D: Decision<A::Event>,
        D::Error: Send + 'static,
    {
        self.execute_with(id, Metadata::new(), handler).await
    }

    /// [`Repository::execute_with`].
    ///
    /// # Errors
    /// As [`AsyncRepository::execute`].
    pub async fn execute_with<D>(
        &self,
        id: impl Into<String>,
        metadata: Metadata,
        handler: impl FnMut(&A) -> D + Send + 'static,
    ) -> Result<Committed<A>, ExecuteError<D::Error>>
    where
        D: Decision<A::Event>,
        D::Error: Send + 'static,
    {
        let (inner, id) = (self.inner.arc(), id.into());
        blocking(move || inner.execute_with(&id, &metadata, handler))
            .await
            .map_err(|e| ExecuteError::Read(ReadError::Store(e)))?
    }

    /// [`Repository::execute_expected`]: a command against the version the caller saw.
    ///
    /// # Errors
    /// As [`Repository::execute_expected`] and [`AsyncRepository::execute`].
    pub async fn execute_expected<D>(
        &self,
        id: impl Into<String>,
        expected: impl Into<Version>,
        handler: impl FnMut(&A) -> D + Send + 'static,
    ) -> Result<Committed<A>, ExecuteError<D::Error>>
    where
        D: Decision<A::Event>,
        D::Error: Send + 'static,
    {
        let (inner, id, expected) = (self.inner.arc(), id.into(), expected.into());
        blocking(move || inner.execute_expected(&id, expected, handler))
            .await
            .map_err(|e| ExecuteError::Read(ReadError::Store(e)))?
    }

    /// [`Repository::execute_once`]: at most once per `command_id`, which also makes a
    /// command whose future was dropped safe to run again.
    ///
    /// # Errors
    /// As [`Repository::execute_once`] and [`AsyncRepository::execute`].
    pub async fn execute_once<D>(
        &self,
        id: impl Into<String>,
        command_id: impl Into<String>,
        handler: impl FnMut(&A) -> D + Send + 'static,
    ) -> Result<Committed<A>, ExecuteError<D::Error>>
    where
        D: Decision<A::Event>,
        D::Error: Send + 'static,
    {
        let (inner, id, command_id) = (self.inner.arc(), id.into(), command_id.into());
        blocking(move || inner.execute_once(&id, &command_id, handler))
            .await
            .map_err(|e| ExecuteError::Read(ReadError::Store(e)))?
    }
}

/// An [`EventStore`] for async code: appends and paged reads on tokio's blocking pool,
/// subscriptions on a thread of their own. Cheap to clone.
///
/// ```
/// use eventsource::{AsyncStore, ExpectedVersion, NewEvent, Position, SqliteStore, StreamId};
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = AsyncStore::new(SqliteStore::in_memory()?);
/// let stream = StreamId::new("note", "n-1");
/// store.append(stream.clone(), ExpectedVersion::NoStream, vec![NewEvent::new("note.added", 1, "{}")]).await?;
/// let events = store.read_all(Position::START, 100).await?;
/// assert_eq!(events.len(), 1);
///
/// let mut live = store.subscribe(Position::START, 16);
/// assert_eq!(live.recv().await.transpose()?.map(|e| e.stream), Some(stream));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncStore<S: Send + Sync + 'static> {
    inner: Shared<S>,
}

impl<S: Send + Sync + 'static> Clone for AsyncStore<S> {
    fn clone(&self) -> Self {
        AsyncStore {
            inner: self.inner.clone(),
        }
    }
}

impl<S: EventStore + 'static> AsyncStore<S> {
    /// The async facade of `store`.
    pub fn new(store: S) -> Self {
        AsyncStore {
            inner: Shared::new(Arc::new(store)),
        }
    }

    /// The async facade of a shared store.
    pub fn from_arc(store: Arc<S>) -> Self {
        AsyncStore {
            inner: Shared::new(store),
        }
    }

    /// The sync store underneath (its methods block: call them off the runtime).
    pub fn store(&self) -> Arc<S> {
        self.inner.arc()
    }

    /// [`EventStore::append`].
    ///
    /// # Errors
    /// As [`EventStore::append`]; [`StoreError::ShuttingDown`] when the runtime shuts
    /// down before the append started (nothing stored).
    pub async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let inner = self.inner.arc();
        blocking(move || inner.append(&stream, expected, &events)).await?
    }

    /// At most `max_count` events of `stream` from version `from` on.
    ///
    /// # Errors
    /// As [`EventStore::read_stream_with`].
    pub async fn read_stream(
        &self,
        stream: StreamId,
        from: Version,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let inner = self.inner.arc();
        blocking(move || {
            let mut page = Vec::new();
            inner.read_stream_with(&stream, from, max_count, &mut |e| {
                page.push(e.to_owned()?);
                Ok(())
            })?;
            Ok(page)
        })
        .await?
    }

    /// At most `max_count` events after `after`, in global order: page through the
    /// store by passing the last position back.
    ///
    /// # Errors
    /// As [`EventStore::read_all_with`].
    pub async fn read_all(
        &self,
        after: Position,
        max_count: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let inner = self.inner.arc();
        blocking(move || {
            let mut page = Vec::new();
            inner.read_all_with(after, max_count, &mut |e| {
                page.push(e.to_owned()?);
                Ok(())
            })?;
            Ok(page)
        })
        .await?
    }

    /// [`EventStore::stream_version`].
    ///
    /// # Errors
    /// As [`EventStore::stream_version`].
    pub async fn stream_version(&self, stream: StreamId) -> Result<Version, StoreError> {
        let inner = self.inner.arc();
        blocking(move || inner.stream_version(&stream)).await?
    }
}

impl<S: ProjectionStore + Send + Sync + 'static> AsyncStore<S> {
    /// A catch-up subscription to every event after `after`, delivered through a
    /// channel of `buffer` events (see [`AsyncStore::subscribe_with`]).
    pub fn subscribe(&self, after: Position, buffer: usize) -> AsyncSubscription {
        self.subscribe_with(Subscription::new(self.inner.arc(), after), buffer)
    }

    /// Runs `subscription` (of this store, built with its filter and poll interval) on
    /// a thread of its own, which hands each event over a channel of `buffer` events
    /// (back-pressure: the thread waits while the channel is full). The thread ends
    /// when the [`AsyncSubscription`] is dropped (within one poll interval) or after a
    /// read error, which it hands over first.
    pub fn subscribe_with(
        &self,
        subscription: Subscription<Arc<S>>,
        buffer: usize,
    ) -> AsyncSubscription {
        let (sender, receiver) = mpsc::channel(buffer.max(1));
        let mut subscription = subscription;
        std::thread::spawn(move || {
            while !sender.is_closed() {
                match subscription.next_timeout(Duration::from_millis(100)) {
                    Ok(None) => {}
                    Ok(Some(event)) => {
                        if sender.blocking_send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = sender.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        AsyncSubscription { receiver }
    }
}

/// The receiving end of a subscription run on a thread of its own
/// ([`AsyncStore::subscribe`]): events in position order, each once.
#[derive(Debug)]
pub struct AsyncSubscription {
    receiver: mpsc::Receiver<Result<RecordedEvent, ReadError>>,
}

impl AsyncSubscription {
    /// The next event, waiting for one to be committed; `None` once the subscription's
    /// thread has ended (after handing over a read error). Cancel-safe: dropping the
    /// future loses no event (use it in `tokio::select!`).
    pub async fn recv(&mut self) -> Option<Result<RecordedEvent, ReadError>> {
        self.receiver.recv().await
    }
}

impl<P: Send + 'static> ProjectionHandle<P> {
    /// [`ProjectionHandle::wait_for`] for async code (on the blocking pool).
    ///
    /// # Errors
    /// As [`ProjectionHandle::wait_for`]; [`WaitError::Stopped`] when the runtime shuts
    /// down first.
    pub async fn wait_for_async(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let waiter = self.waiter();
        match blocking(move || waiter.wait_for(position, timeout)).await {
            Ok(result) => result,
            Err(e) => Err(WaitError::Stopped {
                error: Some(e.to_string()),
            }),
        }
    }
}
