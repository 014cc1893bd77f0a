//! Group commit: appends that arrive while another append is committing are gathered
//! and written by one thread in one transaction, so one disk flush acknowledges many
//! appends.
//!
//! There is no background thread. The first caller to find no commit under way becomes
//! the leader: it takes every append queued so far (its own first), hands them to the
//! backend's `commit` function, which writes them in one transaction with a savepoint
//! each (so one append's conflict does not fail the others), and distributes the
//! results. Callers that arrive meanwhile queue a copy of their events and sleep until a
//! leader has committed them, or until they can lead themselves. A result is only ever
//! handed out after the backend's commit returned, so nothing is acknowledged before it
//! is durable.
//!
//! A leader may wait a little before taking the queue: when the threads that appended in
//! the last two batches are not all queued yet (typically they are back in their command
//! handlers), it waits for them, at most half as long as the last commit took. One
//! thread alone never waits, and under `synchronous=NORMAL` commits are so short that the
//! wait is too; under `FULL` it turns alternating half-batches into whole ones.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::error::{AppendError, StoreError};
use crate::event::NewEvent;
use crate::store::AppendResult;
use crate::version::{ExpectedVersion, StreamId};

/// One append, as the backend's commit function sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub stream: &'a StreamId,
    pub expected: ExpectedVersion,
    pub events: &'a [NewEvent],
    /// The id of the command the events record, for idempotent commands.
    pub command: Option<&'a str>,
    /// Each event's metadata as JSON, encoded before the batch.
    pub metadata: &'a [String],
    /// Each event's content digest for the hash chain (see `chain`), computed before the
    /// batch so that the commit only links them; empty when the chain is off.
    pub contents: &'a [[u8; 32]],
}

/// The outcome of one append.
pub(crate) type Outcome = Result<AppendResult, AppendError>;

/// An append queued by a caller that is waiting for a leader.
#[derive(Debug)]
struct Queued {
    thread: ThreadId,
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    command: Option<String>,
    metadata: Vec<String>,
    contents: Vec<[u8; 32]>,
    outcome: Mutex<Option<Outcome>>,
}

impl Queued {
    fn request(&self) -> Request<'_> {
        Request {
            stream: &self.stream,
            expected: self.expected,
            events: &self.events,
            command: self.command.as_deref(),
            metadata: &self.metadata,
            contents: &self.contents,
        }
    }

    fn finish(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
    }

    fn take(&self) -> Option<Outcome> {
        self.outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[derive(Debug, Default)]
struct State {
    leading: bool,
    queue: Vec<Arc<Queued>>,
    /// The threads of the last two batches: how many callers to expect.
    recent: [Vec<ThreadId>; 2],
    /// How long the last commit took.
    last_commit: Duration,
}

impl State {
    /// How many distinct threads appended in the last two batches.
    fn expected(&self) -> usize {
        let [older, newer] = &self.recent;
        newer.len() + older.iter().filter(|t| !newer.contains(t)).count()
    }
}

/// The longest a leader waits for more appends.
const MAX_WAIT: Duration = Duration::from_millis(2);

/// The queue of appends waiting for a commit, shared by the threads of one store.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    /// Signalled when a batch was committed.
    committed: Condvar,
    /// Signalled when an append was queued.
    queued: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `own`, alone or together with whatever else is queued. `commit` writes a
    /// batch in one transaction and returns one outcome per request, in order.
    pub(crate) fn append(
        &self,
        own: Request<'_>,
        commit: &dyn Fn(&[Request<'_>]) -> Vec<Outcome>,
    ) -> Outcome {
        let mut state = self.lock();
        if !state.leading {
            // Nobody is committing: lead at once, with our events borrowed, not copied.
            state.leading = true;
            drop(state);
            return self.lead(Some(own), commit).unwrap_or_else(interrupted);
        }
        let queued = Arc::new(Queued {
            thread: thread::current().id(),
            stream: own.stream.clone(),
            expected: own.expected,
            events: own.events.to_vec(),
            command: own.command.map(str::to_owned),
            metadata: own.metadata.to_vec(),
            contents: own.contents.to_vec(),
            outcome: Mutex::new(None),
        });
        state.queue.push(Arc::clone(&queued));
        self.queued.notify_one();
        loop {
            if let Some(outcome) = queued.take() {
                return outcome;
            }
            if state.leading {
                state = self
                    .committed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            } else {
                state.leading = true;
                drop(state);
                self.lead(None, commit);
                state = self.lock();
            }
        }
    }

    /// Commits `own` (if any) and everything queued; returns `own`'s outcome.
    fn lead(
        &self,
        own: Option<Request<'_>>,
        commit: &dyn Fn(&[Request<'_>]) -> Vec<Outcome>,
    ) -> Option<Outcome> {
        let batch = self.gather(own.is_some());
        let guard = Leading {
            group: self,
            batch: &batch,
        };
        let requests: Vec<Request<'_>> = own
            .into_iter()
            .chain(batch.iter().map(|queued| queued.request()))
            .collect();
        let started = Instant::now();
        let mut outcomes = commit(&requests).into_iter();
        let took = started.elapsed();
        let own_outcome = if own.is_some() { outcomes.next() } else { None };
        for queued in &batch {
            queued.finish(outcomes.next().unwrap_or_else(interrupted));
        }
        {
            let mut state = self.lock();
            state.last_commit = took;
            let mut threads: Vec<ThreadId> = batch.iter().map(|q| q.thread).collect();
            if own.is_some() {
                threads.push(thread::current().id());
            }
            state.recent.swap(0, 1);
            state.recent[1] = threads;
        }
        drop(guard);
        own_outcome
    }

    /// Takes the queue, first waiting (briefly) for the callers of the last batches.
    fn gather(&self, own: bool) -> Vec<Arc<Queued>> {
        let mut state = self.lock();
        let expected = state.expected();
        let present = |state: &State| state.queue.len() + usize::from(own);
        if expected > 1 && present(&state) < expected {
            let deadline = Instant::now() + (state.last_commit / 2).min(MAX_WAIT);
            while present(&state) < expected {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = self
                    .queued
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        std::mem::take(&mut state.queue)
    }
}

/// Ends a leader's turn, even if the commit panicked: every append of its batch that got
/// no outcome is told it was interrupted, and the waiting callers are woken.
struct Leading<'g> {
    group: &'g GroupCommit,
    batch: &'g [Arc<Queued>],
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            for queued in self.batch {
                let mut outcome = queued
                    .outcome
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if outcome.is_none() {
                    *outcome = Some(interrupted());
                }
            }
        }
        self.group.lock().leading = false;
        self.group.committed.notify_all();
    }
}

fn interrupted() -> Outcome {
    Err(AppendError::Store(StoreError::Interrupted))
}
