//! Running the upcasters: [`Upcasters::upcast`] on JSON, [`Upcasters::decode`] and
//! [`Upcasters::decode_recorded`] into an aggregate's events, with user code guarded
//! against panics.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

use super::{RawEvent, Step, Upcasters};
use crate::aggregate::EventSet;
use crate::error::{ReadError, UpcastError};
use crate::event::{DecodeFailure, EventKey, Payload, RecordedEvent, RecordedEventRef};

/// Upcasting stops after this many steps for one stored event: a longer chain is a cycle.
const MAX_STEPS: usize = 1024;

impl Upcasters {
    /// Runs the upcasters on one stored event until none matches, depth first, so the
    /// results come out in order.
    ///
    /// # Errors
    /// The first upcaster error, [`UpcastError::Panicked`] when an upcaster panics,
    /// [`UpcastError::Undeclared`] when a [`custom`](Upcasters::custom) function produces
    /// what it did not declare, or [`UpcastError::TooManySteps`] for a cycle.
    pub fn upcast(&self, event: RawEvent) -> Result<Vec<RawEvent>, UpcastError> {
        let mut done = Vec::new();
        let mut pending = vec![event];
        let mut steps = 0;
        while let Some(raw) = pending.pop() {
            let found = self
                .by_type
                .get_key_value(raw.event_type.as_str())
                .and_then(|(t, versions)| {
                    Some((t, raw.event_version, versions.get(&raw.event_version)?))
                });
            let Some((event_type, version, entry)) = found else {
                done.push(raw);
                continue;
            };
            steps += 1;
            if steps > MAX_STEPS {
                return Err(UpcastError::TooManySteps { steps: MAX_STEPS });
            }
            let produced = guard(
                || EventKey::new(event_type.as_str(), version),
                || entry.step.run(raw),
            )??;
            if entry.check_outputs {
                let undeclared = produced.iter().find(|out| {
                    !entry
                        .outputs
                        .iter()
                        .any(|k| k.is(&out.event_type, out.event_version))
                });
                if let Some(out) = undeclared {
                    return Err(UpcastError::Undeclared {
                        upcaster: EventKey::new(event_type.as_str(), version),
                        produced: EventKey::new(out.event_type.as_str(), out.event_version),
                    });
                }
            }
            // Reversed so that popping yields them in order.
            pending.extend(produced.into_iter().rev());
        }
        trace_debug!(
            steps,
            produced = done.len(),
            "upcast a stored event through JSON upcasters"
        );
        Ok(done)
    }

    /// Decodes one stored event into the aggregate's events `E`, through the upcasters
    /// (which may turn it into none or several), handing each to `f` in order: what a
    /// repository does on every read, for projections and checks of your own over
    /// [`EventStore::read_all_with`](crate::EventStore::read_all_with).
    ///
    /// # Errors
    /// [`ReadError::Upcast`] when an upcaster fails or panics (a typed chain's `From`
    /// too), [`ReadError::Decode`] when a result does not decode; both name the stored
    /// event.
    ///
    /// ```
    /// use eventsource::{event, Aggregate, Apply, EventStore, Position, SqliteStore, StreamId, ExpectedVersion, NewEvent, Upcasters};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[event(name = "note.added")]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct NoteAdded { pub text: String }
    ///
    /// #[derive(Debug, Default, Aggregate)]
    /// #[aggregate(name = "note", events(NoteAdded))]
    /// pub struct Note;
    /// # impl Apply<NoteAdded> for Note { fn apply(&mut self, _: &NoteAdded) {} }
    ///
    /// let store = SqliteStore::in_memory()?;
    /// store.append(&StreamId::new("note", "1"), ExpectedVersion::Any, &[NewEvent::new("memo", 1, r#"{"text":"hi"}"#)])?;
    /// let upcasters = Upcasters::new().rename("memo", 1, "note.added", 1);
    /// let mut texts = Vec::new();
    /// store.read_all_with(Position::new(0), 100, &mut |stored| {
    ///     upcasters.decode(&stored, |NoteEvent::NoteAdded(e)| texts.push(e.text))
    /// })?;
    /// assert_eq!(texts, ["hi"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode<E: EventSet>(
        &self,
        event: &RecordedEventRef<'_>,
        mut f: impl FnMut(E),
    ) -> Result<(), ReadError> {
        let payload = Payload::Text(event.payload);
        self.lift(event.event_type, event.event_version, payload, &mut f)
            .map_err(|failure| match failure {
                LiftError::Upcast(source) => ReadError::Upcast {
                    at: Box::new(event.location()),
                    source,
                },
                LiftError::Decode(source) => ReadError::Decode {
                    at: Box::new(event.location()),
                    source,
                },
            })
    }

    /// [`Upcasters::decode`] for an event read into memory ([`RecordedEvent`], as the
    /// iterators [`EventStore::read_all`](crate::EventStore::read_all) and
    /// [`EventStore::read_all_filtered`](crate::EventStore::read_all_filtered) yield).
    ///
    /// # Errors
    /// As [`Upcasters::decode`].
    ///
    /// ```
    /// use eventsource::{event, Aggregate, Apply, EventFilter, EventStore, ExpectedVersion, NewEvent, Position, SqliteStore, StreamId, Upcasters};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[event(name = "note.added")]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct NoteAdded { pub text: String }
    ///
    /// #[derive(Debug, Default, Aggregate)]
    /// #[aggregate(name = "note", events(NoteAdded))]
    /// pub struct Note;
    /// # impl Apply<NoteAdded> for Note { fn apply(&mut self, _: &NoteAdded) {} }
    ///
    /// let store = SqliteStore::in_memory()?;
    /// store.append(&StreamId::new("note", "1"), ExpectedVersion::Any, &[NewEvent::new("memo", 1, r#"{"text":"hi"}"#)])?;
    /// let upcasters = Upcasters::new().rename("memo", 1, "note.added", 1);
    /// let mut texts = Vec::new();
    /// for stored in store.read_all_filtered(Position::START, EventFilter::all().aggregate_type("note")) {
    ///     upcasters.decode_recorded(&stored?, |NoteEvent::NoteAdded(e)| texts.push(e.text))?;
    /// }
    /// assert_eq!(texts, ["hi"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_recorded<E: EventSet>(
        &self,
        event: &RecordedEvent,
        mut f: impl FnMut(E),
    ) -> Result<(), ReadError> {
        let payload = Payload::Text(&event.payload);
        self.lift(&event.event_type, event.event_version, payload, &mut f)
            .map_err(|failure| match failure {
                LiftError::Upcast(source) => ReadError::Upcast {
                    at: Box::new(event.location()),
                    source,
                },
                LiftError::Decode(source) => ReadError::Decode {
                    at: Box::new(event.location()),
                    source,
                },
            })
    }

    /// [`Upcasters::decode`] without a location: upcasts a stored (type, version,
    /// payload) and decodes each result.
    pub(crate) fn lift<E: EventSet>(
        &self,
        event_type: &str,
        version: u32,
        payload: Payload<'_>,
        f: &mut impl FnMut(E),
    ) -> Result<(), LiftError> {
        // The fast path of every replay: no upcaster (or none for this event).
        let first = if self.is_empty() {
            None
        } else {
            self.entry(event_type, version)
        };
        let Some(mut entry) = first else {
            let decoded = guard(
                || EventKey::new(event_type, version),
                || E::decode(event_type, version, payload),
            )
            .map_err(LiftError::Upcast)?;
            f(decoded.map_err(LiftError::Decode)?);
            return Ok(());
        };
        let mut payload = match payload {
            Payload::Text(text) => serde_json::from_str(text)
                .map_err(|e| LiftError::Decode(DecodeFailure::Payload(e)))?,
            Payload::Value(value) => value,
        };
        // A chain of payload steps runs on the one `Value`; anything else goes through
        // `upcast` from where the chain is.
        let mut version = version;
        let mut steps = 0;
        while let Step::Payload { f: step, next } = &entry.step {
            steps += 1;
            if steps > MAX_STEPS {
                return Err(LiftError::Upcast(UpcastError::TooManySteps {
                    steps: MAX_STEPS,
                }));
            }
            payload = guard(|| EventKey::new(event_type, version), || step(payload))
                .and_then(|lifted| lifted)
                .map_err(LiftError::Upcast)?;
            version = *next;
            let Some(following) = self.entry(event_type, version) else {
                let decoded = guard(
                    || EventKey::new(event_type, version),
                    || E::decode(event_type, version, Payload::Value(payload)),
                )
                .map_err(LiftError::Upcast)?;
                f(decoded.map_err(LiftError::Decode)?);
                return Ok(());
            };
            entry = following;
        }
        let lifted = self
            .upcast(RawEvent::new(event_type, version, payload))
            .map_err(LiftError::Upcast)?;
        for raw in lifted {
            let payload = Payload::Value(raw.payload);
            let decoded = guard(
                || EventKey::new(raw.event_type.as_str(), raw.event_version),
                || E::decode(&raw.event_type, raw.event_version, payload),
            )
            .map_err(LiftError::Upcast)?;
            f(decoded.map_err(LiftError::Decode)?);
        }
        Ok(())
    }
}

/// Runs user code on stored data (an upcaster, a typed chain's decoding), turning a
/// panic into [`UpcastError::Panicked`] for the (type, version) `key` names: stored data
/// never makes a read panic. Unwinding costs nothing when nothing panics.
fn guard<T>(key: impl FnOnce() -> EventKey, f: impl FnOnce() -> T) -> Result<T, UpcastError> {
    // The repository drops whatever the panicking code was working on: no broken state
    // outlives the call.
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| UpcastError::Panicked {
        upcaster: key(),
        message: panic_message(payload.as_ref()),
    })
}

/// The message of a panic: its `&str` or `String` payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        String::from("a panic without a message")
    }
}

/// Why [`Upcasters::lift`] failed.
#[derive(Debug)]
pub(crate) enum LiftError {
    Upcast(UpcastError),
    Decode(DecodeFailure),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn chains_run_in_order_and_splits_keep_order() -> Result<(), UpcastError> {
        let up = Upcasters::new()
            .rename("Old", 1, "new", 1)
            .payload("new", 1, |mut p| {
                p["b"] = json!(2);
                Ok(p)
            })
            .custom("pair", 1, &[("first", 1), ("Old", 1)], |raw| {
                Ok(vec![
                    RawEvent::new("first", 1, raw.payload.clone()),
                    RawEvent::new("Old", 1, raw.payload),
                ])
            })
            .discard("gone", 1);
        assert_eq!(
            up.upcast(RawEvent::new("Old", 1, json!({"a": 1})))?,
            vec![RawEvent::new("new", 2, json!({"a": 1, "b": 2}))]
        );
        let split = up.upcast(RawEvent::new("pair", 1, json!({})))?;
        assert_eq!(split[0].event_type, "first");
        assert_eq!(split[1], RawEvent::new("new", 2, json!({"b": 2})));
        assert!(up.upcast(RawEvent::new("gone", 1, json!(null)))?.is_empty());
        Ok(())
    }

    #[test]
    fn a_cycle_is_an_error_not_a_hang() {
        let up = Upcasters::new()
            .rename("a", 1, "b", 1)
            .rename("b", 1, "a", 1);
        assert!(matches!(
            up.upcast(RawEvent::new("a", 1, json!({}))),
            Err(UpcastError::TooManySteps { .. })
        ));
    }

    #[test]
    fn custom_outputs_are_checked_at_read_time() {
        let up = Upcasters::new().custom("a", 1, &[("a", 2)], |raw| {
            Ok(vec![RawEvent::new("b", 2, raw.payload)])
        });
        match up.upcast(RawEvent::new("a", 1, json!({}))) {
            Err(UpcastError::Undeclared { upcaster, produced }) => {
                assert_eq!(
                    (upcaster, produced),
                    (EventKey::new("a", 1), EventKey::new("b", 2))
                );
            }
            other => panic!("expected an undeclared output, got {other:?}"),
        }
    }
}
