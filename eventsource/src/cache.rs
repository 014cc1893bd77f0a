//! The repository's in-process cache of aggregate states, so a command on a recently
//! used aggregate skips the replay. A cached state is never trusted blindly: the append
//! still expects the cached version, so a state made stale by another writer (thread or
//! process) shows up as a conflict, and the command reruns on a fresh replay.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::version::Version;

struct Entry<A> {
    state: A,
    version: Version,
    used: u64,
}

struct Inner<A> {
    entries: HashMap<String, Entry<A>>,
    clock: u64,
}

/// Up to `capacity` states by aggregate id; when full, the least recently used half is
/// dropped at once, so eviction costs O(1) per insertion on average.
pub(crate) struct StateCache<A> {
    inner: Mutex<Inner<A>>,
    capacity: usize,
    clone: fn(&A) -> A,
}

impl<A> StateCache<A> {
    pub(crate) fn new(capacity: usize, clone: fn(&A) -> A) -> Self {
        StateCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(1),
            clone,
        }
    }

    /// Takes the state of `id` out of the cache: while a command runs on it, nobody else
    /// uses it (a concurrent command on the same id replays instead).
    pub(crate) fn take(&self, id: &str) -> Option<(A, Version)> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .entries
            .remove(id)
            .map(|entry| (entry.state, entry.version))
    }

    /// Puts the state of `id` (back) into the cache.
    pub(crate) fn put(&self, id: &str, state: A, version: Version) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.clock += 1;
        let used = inner.clock;
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(id) {
            let mut ages: Vec<u64> = inner.entries.values().map(|e| e.used).collect();
            let half = ages.len() / 2;
            if half == 0 {
                inner.entries.clear();
            } else {
                let (_, cutoff, _) = ages.select_nth_unstable(half - 1);
                let cutoff = *cutoff;
                inner.entries.retain(|_, e| e.used > cutoff);
            }
        }
        inner.entries.insert(
            id.to_owned(),
            Entry {
                state,
                version,
                used,
            },
        );
    }

    /// A copy of `state` to keep, while the original goes back to the caller.
    pub(crate) fn copy(&self, state: &A) -> A {
        (self.clone)(state)
    }

    /// Forgets every state.
    pub(crate) fn clear(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_removes_and_put_evicts_the_oldest_half() {
        let cache = StateCache::new(4, u32::clone);
        for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.put(id, 0, Version::new(i as u64));
        }
        assert_eq!(cache.take("b"), Some((0, Version::new(1))));
        assert_eq!(cache.take("b"), None);
        cache.put("b", 1, Version::new(9));
        cache.put("e", 2, Version::new(1));
        // Full at "e": "a" and "c" (least recently used) were dropped.
        assert_eq!(cache.take("a"), None);
        assert_eq!(cache.take("c"), None);
        assert_eq!(cache.take("d"), Some((0, Version::new(3))));
        assert_eq!(cache.take("b"), Some((1, Version::new(9))));
        assert_eq!(cache.take("e"), Some((2, Version::new(1))));
    }
}
