//! Catch-up subscriptions: every event after a position, in position order, first those
//! stored, then new ones as they commit.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::error::ReadError;
use crate::event::RecordedEvent;
use crate::projection::ProjectionStore;
use crate::store::EventFilter;
use crate::version::Position;

/// How many events a subscription reads per page.
const PAGE_SIZE: usize = 512;

/// A catch-up subscription to the global order: reads the history after a position,
/// then follows new commits, woken by the store (in-process appends on SQLite,
/// `LISTEN/NOTIFY` on PostgreSQL) or by polling every [`Subscription::poll_interval`]
/// (appends of other processes on SQLite). Events come in position order, each once; no
/// event is skipped (positions are gap-free and become visible in order on both stores).
///
/// The subscription keeps no checkpoint: store [`Subscription::position`] where your
/// consumer's state lives and start from it again (delivery is then at least once, or
/// exactly once when the two are stored together). For read models, a
/// [`Projector`](crate::Projector) does this for you.
///
/// ```
/// use std::time::Duration;
/// use eventsource::{EventStore, ExpectedVersion, NewEvent, Position, SqliteStore, StreamId, Subscription};
///
/// let store = SqliteStore::in_memory()?;
/// let stream = StreamId::new("note", "n-1");
/// store.append(&stream, ExpectedVersion::Any, &[NewEvent::new("note.added", 1, "{}")])?;
///
/// let mut subscription = Subscription::new(&store, Position::START).event_types(["note.added"]);
/// let first = subscription.next_timeout(Duration::from_millis(10))?.expect("stored");
/// assert_eq!(first.position, Position::new(1));
/// assert!(subscription.next_timeout(Duration::from_millis(10))?.is_none()); // caught up
///
/// store.append(&stream, ExpectedVersion::Any, &[NewEvent::new("note.added", 1, "{}")])?;
/// let second = subscription.next_timeout(Duration::from_secs(1))?.expect("live");
/// assert_eq!(second.position, Position::new(2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Subscription<S: ProjectionStore> {
    store: S,
    listener: Option<S::Session>,
    /// The position of the last event handed out.
    position: Position,
    filter: EventFilter,
    page: VecDeque<RecordedEvent>,
    poll_interval: Duration,
}

impl<S: ProjectionStore> fmt::Debug for Subscription<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.position)
            .field("filter", &self.filter)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl<S: ProjectionStore> Subscription<S> {
    /// A subscription to every event after `after` (`Position::START` for all).
    pub fn new(store: S, after: Position) -> Self {
        Subscription {
            store,
            listener: None,
            position: after,
            filter: EventFilter::all(),
            page: VecDeque::new(),
            poll_interval: Duration::from_millis(100),
        }
    }

    /// Only events of these stored types.
    #[must_use]
    pub fn event_types<T: Into<String>>(mut self, types: impl IntoIterator<Item = T>) -> Self {
        self.filter = self.filter.event_types(types);
        self
    }

    /// Only the events `filter` matches (by aggregate type and event type), filtered in
    /// SQL.
    #[must_use]
    pub fn filter(mut self, filter: EventFilter) -> Self {
        self.filter = filter;
        self
    }

    /// How often to look for new events when nothing woke the subscription (default
    /// 100 ms).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Where the subscription is: the position of the last event it returned. Start a
    /// new subscription from here to go on.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The next event, waiting at most `timeout` for one to be committed; `None` when
    /// none came.
    ///
    /// # Errors
    /// When reading fails; the subscription can be used again (it goes on from its
    /// position).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.page.pop_front() {
                self.position = event.position;
                return Ok(Some(event));
            }
            // Everything up to `head` is read once this page is: wait for a later commit
            // (waiting for one after `position` would wake on every filtered-out event).
            let head = self.store.head()?;
            if self.fill()? {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            if self.listener.is_none() {
                self.listener = Some(self.store.listen()?);
            }
            if let Some(listener) = &mut self.listener {
                let wait = self.poll_interval.min(deadline - now);
                self.store.wait_for_commit(listener, head, wait)?;
            }
        }
    }

    /// Reads the next page of matching events (filtered in SQL); whether it held one.
    fn fill(&mut self) -> Result<bool, ReadError> {
        let page = &mut self.page;
        let result = self.store.read_all_filtered_with(
            self.position,
            &self.filter,
            PAGE_SIZE,
            &mut |event| {
                page.push_back(event.to_owned()?);
                Ok(())
            },
        );
        if let Err(e) = result {
            // Nothing of a failed page is handed out: it is read again next time.
            self.page.clear();
            return Err(e);
        }
        Ok(!self.page.is_empty())
    }
}

impl<S: ProjectionStore> Iterator for Subscription<S> {
    type Item = Result<RecordedEvent, ReadError>;

    /// Blocks until the next event is committed: an endless iterator (it ends only
    /// when the thread does).
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(self.poll_interval) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
