//! The repository's in-process cache of aggregate states, so a command on a recently
//! used aggregate skips the replay. A cached state is never trusted blindly: the append
//! still expects the cached version, so a state made stale by another writer (thread or
//! process) shows up as a conflict, and the command reruns on a fresh replay.

use std::sync::{Mutex, PoisonError};

use hashlink::LruCache;

use crate::version::Version;

/// Up to `capacity` states by aggregate id; when full, putting a new id evicts the one
/// least recently put, one entry at a time (O(1)).
pub(crate) struct StateCache<A> {
    entries: Mutex<LruCache<String, (A, Version)>>,
    clone: fn(&A) -> A,
}

impl<A> StateCache<A> {
    pub(crate) fn new(capacity: usize, clone: fn(&A) -> A) -> Self {
        StateCache {
            entries: Mutex::new(LruCache::new(capacity.max(1))),
            clone,
        }
    }

    /// Takes the state of `id` out of the cache: while a command runs on it, nobody else
    /// uses it (a concurrent command on the same id replays instead).
    pub(crate) fn take(&self, id: &str) -> Option<(A, Version)> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    }

    /// Puts the state of `id` (back) into the cache, as its most recently used entry.
    pub(crate) fn put(&self, id: &str, state: A, version: Version) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), (state, version));
    }

    /// A copy of `state` to keep, while the original goes back to the caller.
    pub(crate) fn copy(&self, state: &A) -> A {
        (self.clone)(state)
    }

    /// Forgets every state.
    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_removes_and_put_evicts_only_the_least_recently_used() {
        let cache = StateCache::new(4, u32::clone);
        for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.put(id, 0, Version::new(i as u64));
        }
        assert_eq!(cache.take("b"), Some((0, Version::new(1))));
        assert_eq!(cache.take("b"), None);
        cache.put("b", 1, Version::new(9));
        cache.put("e", 2, Version::new(1));
        // Past capacity at "e": only "a" (least recently used) was evicted.
        assert_eq!(cache.take("a"), None);
        assert_eq!(cache.take("c"), Some((0, Version::new(2))));
        assert_eq!(cache.take("d"), Some((0, Version::new(3))));
        assert_eq!(cache.take("b"), Some((1, Version::new(9))));
        assert_eq!(cache.take("e"), Some((2, Version::new(1))));
    }

    #[test]
    fn a_full_cache_evicts_one_entry_per_new_id() {
        let cache = StateCache::new(3, u32::clone);
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            cache.put(id, 0, Version::new(i as u64));
        }
        // Putting an id that is already cached replaces it and makes it the most recent.
        cache.put("a", 7, Version::new(7));
        cache.put("d", 0, Version::new(3));
        assert_eq!(cache.take("b"), None);
        cache.put("e", 0, Version::new(4));
        assert_eq!(cache.take("c"), None);
        for id in ["a", "d", "e"] {
            assert!(cache.take(id).is_some(), "{id}");
        }
    }

    #[test]
    fn a_capacity_of_zero_keeps_one_state() {
        let cache = StateCache::new(0, u32::clone);
        cache.put("a", 1, Version::new(1));
        assert_eq!(cache.take("a"), Some((1, Version::new(1))));
        cache.put("a", 1, Version::new(1));
        cache.put("b", 2, Version::new(1));
        assert_eq!(cache.take("a"), None);
        assert_eq!(cache.take("b"), Some((2, Version::new(1))));
    }
}
