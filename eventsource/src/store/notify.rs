//! In-process wakeups: the last position a store committed, and a way to wait for a
//! newer one. Live readers of the same store handle wake as soon as an append commits.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::version::Position;

/// The last position committed through one store handle.
#[derive(Debug, Default)]
pub(crate) struct Commits {
    last: Mutex<Position>,
    changed: Condvar,
}

impl Commits {
    /// Records that `position` is committed, waking every waiter.
    pub(crate) fn committed(&self, position: Position) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if position > *last {
            *last = position;
            self.changed.notify_all();
        }
    }

    /// Returns when a position after `after` was committed through this handle, or after
    /// `timeout`.
    pub(crate) fn wait(&self, after: Position, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        while *last <= after {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            last = self
                .changed
                .wait_timeout(last, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}
