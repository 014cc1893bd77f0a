//! Snapshots: an aggregate's serialized state at a stream version, kept beside the events
//! as a disposable cache. The events stay the only source of truth: dropping every
//! snapshot loses nothing but the time to replay.

use std::num::NonZeroU64;

use crate::event::Timestamp;
use crate::version::Version;

/// An aggregate's state as of a stream version, serialized as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The version of the last event folded into the state.
    pub version: Version,
    /// The version of the state's shape ([`SnapshotPolicy::state_version`]): a snapshot
    /// of another shape is ignored, never misread.
    pub state_version: u32,
    /// The state as JSON.
    pub state: String,
    /// When the snapshot was taken.
    pub taken_at: Timestamp,
}

/// When a repository takes snapshots, and which shape of the state they hold.
///
/// ```
/// use eventsource::{SnapshotPolicy, Version};
///
/// let policy = SnapshotPolicy::every(100).state_version(2);
/// assert!(policy.is_due(Version::new(99), Version::new(100)));
/// assert!(policy.is_due(Version::new(150), Version::new(260)));
/// assert!(!policy.is_due(Version::new(100), Version::new(199)));
/// assert_eq!(policy.current_state_version(), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    every: NonZeroU64,
    state_version: u32,
}

impl SnapshotPolicy {
    /// A snapshot each time a stream's version passes a multiple of `events` (at least
    /// 1), of state version 1.
    pub fn every(events: u64) -> Self {
        SnapshotPolicy {
            every: NonZeroU64::new(events).unwrap_or(NonZeroU64::MIN),
            state_version: 1,
        }
    }

    /// The version of the aggregate state's shape. Bump it whenever the aggregate's
    /// struct changes in a way its serialized form would not survive: snapshots of other
    /// versions are then ignored (and replaced as new ones are taken).
    #[must_use]
    pub fn state_version(mut self, version: u32) -> Self {
        self.state_version = version;
        self
    }

    /// The state version snapshots are written and read with.
    pub fn current_state_version(&self) -> u32 {
        self.state_version
    }

    /// Whether a stream that went from `before` to `after` is due for a snapshot.
    pub fn is_due(&self, before: Version, after: Version) -> bool {
        after.get() / self.every.get() > before.get() / self.every.get()
    }
}
