//! Snapshots: an aggregate's serialized state at a stream version, kept beside the events
//! as a disposable cache. The events stay the only source of truth: dropping every
//! snapshot loses nothing but the time to replay.

use std::num::NonZeroU64;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::event::Timestamp;
use crate::store::EventStore;
use crate::version::{StreamId, Version};

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

/// How a repository takes and reads snapshots of `A`: the policy, and the state's
/// serde functions captured where `A: Serialize + DeserializeOwned` is known.
pub(crate) struct Snapshots<A> {
    policy: SnapshotPolicy,
    encode: fn(&A) -> serde_json::Result<String>,
    decode: fn(&str) -> serde_json::Result<A>,
}

impl<A> Snapshots<A> {
    pub(crate) fn new(policy: SnapshotPolicy) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        Snapshots {
            policy,
            encode: crate::json::to_string::<A>,
            decode: |json| serde_json::from_str(json),
        }
    }

    pub(crate) fn policy(&self) -> SnapshotPolicy {
        self.policy
    }

    /// The newest snapshot of `stream` at or before `to` that still deserializes.
    pub(crate) fn load<S: EventStore>(
        &self,
        store: &S,
        stream: &StreamId,
        to: Version,
    ) -> Result<Option<(A, Version)>, StoreError> {
        let state_version = self.policy.current_state_version();
        let Some(snapshot) = store.load_snapshot(stream, to, state_version)? else {
            return Ok(None);
        };
        // A snapshot that no longer fits the struct is ignored: the events decide.
        match (self.decode)(&snapshot.state) {
            Ok(state) => Ok(Some((state, snapshot.version))),
            Err(e) => {
                trace_warn!(
                    stream = %stream,
                    version = snapshot.version.get(),
                    error = %e,
                    "a snapshot no longer decodes: ignored, the events are replayed (bump its state_version?)"
                );
                let _ = e;
                Ok(None)
            }
        }
    }

    /// Saves a snapshot of `state` if the stream is due after growing from `before` to
    /// `after`. Snapshots are a cache: failing to write one costs a longer replay later,
    /// so it does not fail the command that has already been committed.
    pub(crate) fn save_if_due<S: EventStore>(
        &self,
        store: &S,
        stream: &StreamId,
        state: &A,
        before: Version,
        after: Version,
    ) {
        if !self.policy.is_due(before, after) {
            return;
        }
        let json = match (self.encode)(state) {
            Ok(json) => json,
            Err(e) => {
                trace_warn!(stream = %stream, version = after.get(), error = %e, "the snapshot could not be encoded: not saved");
                let _ = e;
                return;
            }
        };
        let snapshot = Snapshot {
            version: after,
            state_version: self.policy.current_state_version(),
            state: json,
            taken_at: Timestamp::now(),
        };
        if let Err(e) = store.save_snapshot(stream, &snapshot) {
            trace_warn!(stream = %stream, version = after.get(), error = %e, "the snapshot could not be saved (the command is committed)");
            let _ = e;
        }
    }
}
