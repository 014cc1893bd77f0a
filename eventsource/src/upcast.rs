//! Upcasting: lifting stored events written in an old shape to the current shape on
//! read, so old events stay in the table as they were written.
//!
//! Two tools, usable together:
//! - typed: keep the old shape as its own struct and name it in
//!   `#[event(upcast_from = OldStruct)]` with a `From<OldStruct>` impl; chains of any
//!   length decode through each `From` in turn;
//! - on JSON: register functions in [`Upcasters`] that turn a stored
//!   (type, version, JSON) into the next (type', version', JSON'); they chain until
//!   no function is registered for the result.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

/// A stored event on its way through the upcasters: type, version and JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    /// The event type.
    pub event_type: String,
    /// The version of the payload's shape.
    pub event_version: u32,
    /// The payload.
    pub payload: Value,
}

impl RawEvent {
    /// An event of type `event_type` at `event_version` with `payload`.
    pub fn new(event_type: impl Into<String>, event_version: u32, payload: Value) -> Self {
        RawEvent {
            event_type: event_type.into(),
            event_version,
            payload,
        }
    }
}

/// Why an upcaster could not lift a stored event. Return it from your upcaster
/// functions; the repository wraps it with the event's location.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastError {
    /// The upcaster refused the payload.
    #[error("{0}")]
    Invalid(String),
    /// Upcasters kept producing events that are upcast again: a cycle.
    #[error("upcasting did not finish after {steps} steps (a cycle of upcasters?)")]
    TooManySteps {
        /// How many upcaster calls ran.
        steps: usize,
    },
}

impl UpcastError {
    /// An upcaster error with a message.
    pub fn invalid(message: impl fmt::Display) -> Self {
        UpcastError::Invalid(message.to_string())
    }
}

type UpcastFn = dyn Fn(RawEvent) -> Result<Vec<RawEvent>, UpcastError> + Send + Sync;

/// The upcasters of a repository: functions keyed by the stored (type, version) they
/// lift.
///
/// ```
/// use eventsource::{RawEvent, Upcasters};
/// use serde_json::json;
///
/// let upcasters = Upcasters::new()
///     // v1 had no currency: add one.
///     .payload("money.deposited", 1, |mut p| {
///         p["currency"] = json!("EUR");
///         Ok(p)
///     })
///     // the type was once called `AccountCreated`.
///     .rename("AccountCreated", 1, "account.opened", 1);
///
/// let out = upcasters.upcast(RawEvent::new("money.deposited", 1, json!({"amount": 5})))?;
/// assert_eq!(out, vec![RawEvent::new("money.deposited", 2, json!({"amount": 5, "currency": "EUR"}))]);
/// # Ok::<(), eventsource::UpcastError>(())
/// ```
#[derive(Default)]
pub struct Upcasters {
    // Keyed by type, then version: lookups on the read path borrow the stored `&str`.
    by_type: HashMap<String, HashMap<u32, Box<UpcastFn>>>,
}

/// Upcasting stops after this many steps for one stored event: a longer chain is a cycle.
const MAX_STEPS: usize = 1024;

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lifts the payload of `event_type` from `from_version` to `from_version + 1`.
    #[must_use]
    pub fn payload<F>(self, event_type: &str, from_version: u32, f: F) -> Self
    where
        F: Fn(Value) -> Result<Value, UpcastError> + Send + Sync + 'static,
    {
        let next = from_version.saturating_add(1);
        let ty = event_type.to_owned();
        self.custom(event_type, from_version, move |raw| {
            Ok(vec![RawEvent::new(ty.clone(), next, f(raw.payload)?)])
        })
    }

    /// Reads events stored as `old_type` at `old_version` as `new_type` at `new_version`
    /// with the same payload.
    #[must_use]
    pub fn rename(
        self,
        old_type: &str,
        old_version: u32,
        new_type: &str,
        new_version: u32,
    ) -> Self {
        let new_type = new_type.to_owned();
        self.custom(old_type, old_version, move |raw| {
            Ok(vec![RawEvent::new(
                new_type.clone(),
                new_version,
                raw.payload,
            )])
        })
    }

    /// The general form: turns one stored event into any number of events (none drops it,
    /// several split it). Each result is upcast again if an upcaster matches it.
    /// Registering the same (type, version) twice replaces the earlier function.
    #[must_use]
    pub fn custom<F>(mut self, event_type: &str, version: u32, f: F) -> Self
    where
        F: Fn(RawEvent) -> Result<Vec<RawEvent>, UpcastError> + Send + Sync + 'static,
    {
        self.by_type
            .entry(event_type.to_owned())
            .or_default()
            .insert(version, Box::new(f));
        self
    }

    /// Whether no upcaster is registered.
    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// Whether an upcaster is registered for a stored (type, version).
    pub fn handles(&self, event_type: &str, event_version: u32) -> bool {
        self.by_type
            .get(event_type)
            .is_some_and(|versions| versions.contains_key(&event_version))
    }

    /// Runs the upcasters on one stored event until none matches, depth first, so the
    /// results come out in order.
    ///
    /// # Errors
    /// The first upcaster error, or [`UpcastError::TooManySteps`] for a cycle.
    pub fn upcast(&self, event: RawEvent) -> Result<Vec<RawEvent>, UpcastError> {
        let mut done = Vec::new();
        let mut pending = vec![event];
        let mut steps = 0;
        while let Some(raw) = pending.pop() {
            let f = self
                .by_type
                .get(raw.event_type.as_str())
                .and_then(|versions| versions.get(&raw.event_version));
            match f {
                None => done.push(raw),
                Some(f) => {
                    steps += 1;
                    if steps > MAX_STEPS {
                        return Err(UpcastError::TooManySteps { steps: MAX_STEPS });
                    }
                    // Reversed so that popping yields them in order.
                    pending.extend(f(raw)?.into_iter().rev());
                }
            }
        }
        Ok(done)
    }
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self
            .by_type
            .iter()
            .flat_map(|(t, vs)| vs.keys().map(move |v| format!("{t}@{v}")))
            .collect();
        keys.sort();
        f.debug_struct("Upcasters")
            .field("registered", &keys)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chains_run_in_order_and_splits_keep_order() -> Result<(), UpcastError> {
        let up = Upcasters::new()
            .rename("Old", 1, "new", 1)
            .payload("new", 1, |mut p| {
                p["b"] = json!(2);
                Ok(p)
            })
            .custom("pair", 1, |raw| {
                Ok(vec![
                    RawEvent::new("first", 1, raw.payload.clone()),
                    RawEvent::new("Old", 1, raw.payload),
                ])
            })
            .custom("gone", 1, |_| Ok(vec![]));
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
}
