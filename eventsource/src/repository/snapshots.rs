//! How a repository takes and reads snapshots through its store ([`Snapshots`]); the
//! snapshot types themselves live in `snapshot.rs`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::event::Timestamp;
use crate::snapshot::{Snapshot, SnapshotPolicy};
use crate::store::EventStore;
use crate::version::{StreamId, Version};

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
