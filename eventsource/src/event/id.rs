//! [`EventId`]: the unique id of one stored event.

use std::cell::Cell;
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// The unique id of one stored event (a UUID, time-ordered version 7 when generated).
///
/// A generated id is the time in milliseconds followed by 74 random bits. The random
/// bits come from a keyed hash (`SipHash`) of a per-thread counter and the time in
/// nanoseconds, keyed once per thread from the operating system's randomness: about 30
/// ns, where asking the operating system for every id took about 700 ns. They make ids
/// unique, not secret: do not use an event id as a password or token. (A process forked
/// from another continues its counter, but not its clock: the nanoseconds tell the two
/// apart.)
///
/// ```
/// use eventsource::EventId;
///
/// let a = EventId::new();
/// let b = EventId::new();
/// assert_ne!(a, b);
/// assert_eq!(a.to_string().len(), 36);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let millis = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let random = ID_BITS.with(|bits| bits.next(now.as_nanos()));
        EventId(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

/// The random part of the ids one thread generates.
struct IdBits {
    /// `SipHash` keyed from the operating system's randomness (by `RandomState`).
    key: DefaultHasher,
    counter: Cell<u64>,
}

impl IdBits {
    /// 80 bits (the builder keeps 74) for the `n`th id of this thread, at `nanos`.
    fn next(&self, nanos: u128) -> [u8; 10] {
        let n = self.counter.get();
        self.counter.set(n.wrapping_add(1));
        let half = |lane: u64| {
            let mut hasher = self.key.clone();
            hasher.write_u64(lane);
            hasher.write_u64(n);
            hasher.write_u128(nanos);
            hasher.finish()
        };
        let (high, low) = (half(0).to_le_bytes(), half(1).to_le_bytes());
        let mut bytes = [0u8; 10];
        bytes[..8].copy_from_slice(&high);
        bytes[8..].copy_from_slice(&low[..2]);
        bytes
    }
}

thread_local! {
    static ID_BITS: IdBits = IdBits {
        key: RandomState::new().build_hasher(),
        counter: Cell::new(0),
    };
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<uuid::Uuid> for EventId {
    fn from(id: uuid::Uuid) -> Self {
        EventId(id)
    }
}

impl std::str::FromStr for EventId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(EventId)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::EventId;

    #[test]
    fn generated_ids_are_version_7_and_carry_the_time() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let id = EventId::new();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.as_uuid().get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = id
            .as_uuid()
            .get_timestamp()
            .map(|t| t.to_unix())
            .unwrap_or_default();
        let millis = u128::from(secs) * 1_000 + u128::from(nanos / 1_000_000);
        assert!(
            (before..=after).contains(&millis),
            "{millis} not in {before}..={after}"
        );
    }

    #[test]
    fn ids_from_many_threads_are_all_different() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..50_000).map(|_| EventId::new()).collect::<Vec<_>>()))
            .collect();
        let mut all = HashSet::new();
        let mut count = 0;
        for thread in threads {
            let ids = thread.join().unwrap_or_default();
            count += ids.len();
            // The random part differs too, not only the time.
            let random: HashSet<[u8; 10]> = ids
                .iter()
                .map(|id| {
                    let bytes = id.as_uuid().as_bytes();
                    let mut tail = [0u8; 10];
                    tail.copy_from_slice(&bytes[6..]);
                    tail
                })
                .collect();
            assert_eq!(random.len(), ids.len());
            all.extend(ids);
        }
        assert_eq!(count, 200_000);
        assert_eq!(all.len(), count);
    }
}
