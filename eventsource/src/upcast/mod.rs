//! Upcasting: lifting stored events written in an old shape to the current shape on
//! read, so old events stay in the table as they were written.
//!
//! Two tools, usable together:
//! - typed: keep the old shape as its own struct and name it in
//!   `#[event(upcast_from = OldStruct)]` with a `From<OldStruct>` impl; chains of any
//!   length (and across renames) decode through each `From` in turn;
//! - on JSON: register functions in [`Upcasters`] that turn a stored
//!   (type, version, JSON) into the next (type', version', JSON'); they chain until
//!   no function is registered for the result.
//!
//! Every JSON upcaster declares what it produces, so the whole registry is checked
//! against the aggregate's events when a repository is built
//! ([`Upcasters::validate`]): two upcasters for one (type, version), a chain that ends
//! at a version the aggregate cannot decode and a cycle are errors before any read.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde_json::Value;

use crate::error::UpcastError;
use crate::event::EventKey;

pub(crate) use self::lift::{LiftError, panic_message};

mod lift;
mod validate;

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

type UpcastFn = dyn Fn(RawEvent) -> Result<Vec<RawEvent>, UpcastError> + Send + Sync;
type PayloadFn = dyn Fn(Value) -> Result<Value, UpcastError> + Send + Sync;

/// What one upcaster does.
enum Step {
    /// The payload changed, the version one up, the type kept: a replay runs a chain of
    /// these on one `Value`, without building a `RawEvent` or a `Vec` per step.
    Payload { f: Box<PayloadFn>, next: u32 },
    /// Anything: none, one or several events.
    Events(Box<UpcastFn>),
}

impl Step {
    /// Runs the step on `raw`.
    fn run(&self, mut raw: RawEvent) -> Result<Vec<RawEvent>, UpcastError> {
        match self {
            Step::Payload { f, next } => {
                raw.payload = f(raw.payload.take())?;
                raw.event_version = *next;
                Ok(vec![raw])
            }
            Step::Events(f) => f(raw),
        }
    }
}

/// One registered upcaster.
struct Registered {
    /// Every (type, version) it may produce.
    outputs: Vec<EventKey>,
    /// Whether its results must be checked against `outputs` (user functions).
    check_outputs: bool,
    /// For `Debug`: payload, rename, custom or discard.
    kind: &'static str,
    step: Step,
}

/// The upcasters of a repository: functions keyed by the stored (type, version) they
/// lift, each declaring what it produces.
///
/// | method | stored event | becomes |
/// |---|---|---|
/// | [`payload_object`](Upcasters::payload_object) | `type@v` | `type@v+1`, fields changed by your function |
/// | [`payload`](Upcasters::payload) | `type@v` | `type@v+1`, JSON changed by your function |
/// | [`rename`](Upcasters::rename) | `old@v` | `new@w`, same JSON |
/// | [`custom`](Upcasters::custom) | `type@v` | any number of the declared outputs (split) |
/// | [`discard`](Upcasters::discard) | `type@v` | nothing (an obsolete event) |
///
/// ```
/// use eventsource::{RawEvent, Upcasters};
/// use serde_json::json;
///
/// let upcasters = Upcasters::new()
///     // v1 had no currency: add one.
///     .payload_object("money.deposited", 1, |fields| {
///         fields.insert("currency".into(), json!("EUR"));
///         Ok(())
///     })
///     // the type was once called `AccountCreated`.
///     .rename("AccountCreated", 1, "account.opened", 1)
///     // a transfer is now two events.
///     .custom("transfer.made", 1, &[("money.withdrawn", 1), ("money.deposited", 2)], |raw| {
///         let amount = raw.payload["amount"].clone();
///         Ok(vec![
///             RawEvent::new("money.withdrawn", 1, json!({ "amount": amount })),
///             RawEvent::new("money.deposited", 2, json!({ "amount": amount, "currency": "EUR" })),
///         ])
///     })
///     .discard("account.audited", 1);
///
/// let out = upcasters.upcast(RawEvent::new("money.deposited", 1, json!({"amount": 5})))?;
/// assert_eq!(out, vec![RawEvent::new("money.deposited", 2, json!({"amount": 5, "currency": "EUR"}))]);
/// assert_eq!(upcasters.upcast(RawEvent::new("transfer.made", 1, json!({"amount": 3})))?.len(), 2);
/// assert!(upcasters.upcast(RawEvent::new("account.audited", 1, json!({})))?.is_empty());
/// # Ok::<(), eventsource::UpcastError>(())
/// ```
#[derive(Default)]
pub struct Upcasters {
    // Keyed by type, then version: lookups on the read path borrow the stored `&str`.
    by_type: HashMap<String, HashMap<u32, Registered>>,
    // Registered again after the first: reported by `validate`.
    duplicates: Vec<EventKey>,
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lifts the payload of `event_type` from `from_version` to `from_version + 1` with
    /// `f` (add a field with a default, rename or retype one, ...).
    ///
    /// `f` meets stored data, which may not have the shape you expect: return an
    /// [`UpcastError`] rather than panic. Indexing a `Value` for writing
    /// (`p["name"] = ...`) panics when the payload is neither an object nor `null`; use
    /// [`Upcasters::payload_object`], or `as_object_mut` as here. (A panic is caught and
    /// reported as [`UpcastError::Panicked`], naming the stored event.)
    ///
    /// ```
    /// use eventsource::{RawEvent, UpcastError, Upcasters};
    /// use serde_json::json;
    ///
    /// let up = Upcasters::new().payload("user.named", 1, |mut p| {
    ///     let fields = p.as_object_mut().ok_or_else(|| UpcastError::invalid("not an object"))?;
    ///     let first = fields.remove("first").ok_or_else(|| UpcastError::invalid("no `first`"))?;
    ///     fields.insert("name".into(), first); // renamed field
    ///     Ok(p)
    /// });
    /// let out = up.upcast(RawEvent::new("user.named", 1, json!({"first": "ann"})))?;
    /// assert_eq!(out[0].payload["name"], "ann");
    /// assert!(up.upcast(RawEvent::new("user.named", 1, json!(["ann"]))).is_err());
    /// # Ok::<(), UpcastError>(())
    /// ```
    #[must_use]
    pub fn payload<F>(self, event_type: &str, from_version: u32, f: F) -> Self
    where
        F: Fn(Value) -> Result<Value, UpcastError> + Send + Sync + 'static,
    {
        let next = from_version.saturating_add(1);
        let outputs = vec![EventKey::new(event_type, next)];
        let step = Step::Payload {
            f: Box::new(f),
            next,
        };
        self.register_step(event_type, from_version, outputs, false, "payload", step)
    }

    /// [`Upcasters::payload`] for payloads that are JSON objects, the usual case: `f`
    /// changes the payload's fields in place. A stored payload that is not an object is
    /// [`UpcastError::NotAnObject`], where indexing a `Value` (`p["a"] = ...`) would
    /// panic.
    ///
    /// ```
    /// use eventsource::{RawEvent, UpcastError, Upcasters};
    /// use serde_json::json;
    ///
    /// let up = Upcasters::new().payload_object("order.placed", 1, |fields| {
    ///     // Renamed field: `order` is now `order_id`.
    ///     if let Some(order) = fields.remove("order") {
    ///         fields.insert("order_id".into(), order);
    ///     }
    ///     fields.entry("currency").or_insert(json!("EUR")); // new field with a default
    ///     Ok(())
    /// });
    /// let out = up.upcast(RawEvent::new("order.placed", 1, json!({"order": 7})))?;
    /// assert_eq!(out[0].payload, json!({"order_id": 7, "currency": "EUR"}));
    /// assert!(matches!(
    ///     up.upcast(RawEvent::new("order.placed", 1, json!([7]))),
    ///     Err(UpcastError::NotAnObject { found: "an array" })
    /// ));
    /// # Ok::<(), UpcastError>(())
    /// ```
    #[must_use]
    pub fn payload_object<F>(self, event_type: &str, from_version: u32, f: F) -> Self
    where
        F: Fn(&mut serde_json::Map<String, Value>) -> Result<(), UpcastError>
            + Send
            + Sync
            + 'static,
    {
        self.payload(event_type, from_version, move |mut payload| {
            let Value::Object(fields) = &mut payload else {
                return Err(UpcastError::NotAnObject {
                    found: json_kind(&payload),
                });
            };
            f(fields)?;
            Ok(payload)
        })
    }

    /// Reads events stored as `old_type` at `old_version` as `new_type` at `new_version`
    /// with the same payload.
    ///
    /// ```
    /// use eventsource::{RawEvent, Upcasters};
    /// use serde_json::json;
    ///
    /// let up = Upcasters::new().rename("AccountCreated", 1, "account.opened", 1);
    /// let out = up.upcast(RawEvent::new("AccountCreated", 1, json!({"owner": "ann"})))?;
    /// assert_eq!(out, [RawEvent::new("account.opened", 1, json!({"owner": "ann"}))]);
    /// # Ok::<(), eventsource::UpcastError>(())
    /// ```
    #[must_use]
    pub fn rename(
        self,
        old_type: &str,
        old_version: u32,
        new_type: &str,
        new_version: u32,
    ) -> Self {
        let target = new_type.to_owned();
        let f = move |mut raw: RawEvent| {
            raw.event_type.clone_from(&target);
            raw.event_version = new_version;
            Ok(vec![raw])
        };
        let outputs = vec![EventKey::new(new_type, new_version)];
        self.register(old_type, old_version, outputs, false, "rename", f)
    }

    /// The general form: turns one stored event into any number of events (several
    /// split it, none drops it), each of a (type, version) listed in `outputs`. Each
    /// result is upcast again if an upcaster matches it.
    ///
    /// The declared outputs are what [`Upcasters::validate`] follows; producing anything
    /// else is [`UpcastError::Undeclared`] at read time.
    ///
    /// ```
    /// use eventsource::{RawEvent, Upcasters};
    /// use serde_json::json;
    ///
    /// let up = Upcasters::new().custom("order.placed", 1, &[("order.placed", 2), ("line.added", 1)], |raw| {
    ///     let mut out = vec![RawEvent::new("order.placed", 2, json!({ "id": raw.payload["id"] }))];
    ///     for line in raw.payload["lines"].as_array().into_iter().flatten() {
    ///         out.push(RawEvent::new("line.added", 1, line.clone()));
    ///     }
    ///     Ok(out)
    /// });
    /// let out = up.upcast(RawEvent::new("order.placed", 1, json!({"id": 7, "lines": [{"sku": "a"}, {"sku": "b"}]})))?;
    /// assert_eq!(out.len(), 3);
    /// assert_eq!(out[2], RawEvent::new("line.added", 1, json!({"sku": "b"})));
    /// # Ok::<(), eventsource::UpcastError>(())
    /// ```
    #[must_use]
    pub fn custom<F>(self, event_type: &str, version: u32, outputs: &[(&str, u32)], f: F) -> Self
    where
        F: Fn(RawEvent) -> Result<Vec<RawEvent>, UpcastError> + Send + Sync + 'static,
    {
        let outputs = outputs
            .iter()
            .map(|&(event_type, version)| EventKey::new(event_type, version))
            .collect();
        self.register(event_type, version, outputs, true, "custom", f)
    }

    /// Drops every event stored as `event_type` at `version` on read (an obsolete event
    /// that no longer means anything). Stream versions are still counted as stored.
    ///
    /// ```
    /// use eventsource::{RawEvent, Upcasters};
    ///
    /// let up = Upcasters::new().discard("account.audited", 1);
    /// assert!(up.upcast(RawEvent::new("account.audited", 1, serde_json::json!({})))?.is_empty());
    /// # Ok::<(), eventsource::UpcastError>(())
    /// ```
    #[must_use]
    pub fn discard(self, event_type: &str, version: u32) -> Self {
        self.register(event_type, version, Vec::new(), false, "discard", |_| {
            Ok(Vec::new())
        })
    }

    fn register<F>(
        self,
        event_type: &str,
        version: u32,
        outputs: Vec<EventKey>,
        check_outputs: bool,
        kind: &'static str,
        f: F,
    ) -> Self
    where
        F: Fn(RawEvent) -> Result<Vec<RawEvent>, UpcastError> + Send + Sync + 'static,
    {
        let step = Step::Events(Box::new(f));
        self.register_step(event_type, version, outputs, check_outputs, kind, step)
    }

    fn register_step(
        mut self,
        event_type: &str,
        version: u32,
        outputs: Vec<EventKey>,
        check_outputs: bool,
        kind: &'static str,
        step: Step,
    ) -> Self {
        let versions = self.by_type.entry(event_type.to_owned()).or_default();
        match versions.entry(version) {
            // The first registration stays; `validate` reports the second.
            Entry::Occupied(_) => self.duplicates.push(EventKey::new(event_type, version)),
            Entry::Vacant(slot) => {
                slot.insert(Registered {
                    outputs,
                    check_outputs,
                    kind,
                    step,
                });
            }
        }
        self
    }

    /// Whether no upcaster is registered.
    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// Whether an upcaster is registered for a stored (type, version).
    pub fn handles(&self, event_type: &str, event_version: u32) -> bool {
        self.entry(event_type, event_version).is_some()
    }

    /// Every registered stored (type, version), sorted.
    ///
    /// ```
    /// use eventsource::{EventKey, Upcasters};
    ///
    /// let up = Upcasters::new().discard("b", 1).rename("a", 1, "b", 2);
    /// assert_eq!(up.registered(), [EventKey::new("a", 1), EventKey::new("b", 1)]);
    /// ```
    pub fn registered(&self) -> Vec<EventKey> {
        let mut keys: Vec<EventKey> = self
            .by_type
            .iter()
            .flat_map(|(t, vs)| vs.keys().map(move |&v| EventKey::new(t.as_str(), v)))
            .collect();
        keys.sort();
        keys
    }

    fn entry(&self, event_type: &str, version: u32) -> Option<&Registered> {
        self.by_type.get(event_type)?.get(&version)
    }

    /// The stored event types that may decode, through these upcasters, into an event
    /// whose type is named in `names`: the names themselves and every registered type
    /// from which a chain of declared outputs leads to one of them (by name, whatever
    /// the versions: a superset is harmless, the reader keeps only what it asked for).
    pub(crate) fn sources_of(&self, names: &mut BTreeSet<String>) {
        loop {
            let before = names.len();
            for (event_type, versions) in &self.by_type {
                if names.contains(event_type) {
                    continue;
                }
                let leads_in = versions.values().any(|entry| {
                    entry
                        .outputs
                        .iter()
                        .any(|out| names.contains(&out.event_type))
                });
                if leads_in {
                    names.insert(event_type.clone());
                }
            }
            if names.len() == before {
                return;
            }
        }
    }
}

/// What kind of JSON value `value` is, for messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown: Vec<(EventKey, String)> = self
            .by_type
            .iter()
            .flat_map(|(t, versions)| versions.iter().map(move |(&v, entry)| (t, v, entry)))
            .map(|(t, v, entry)| {
                let key = EventKey::new(t.as_str(), v);
                let outputs: Vec<String> = entry.outputs.iter().map(ToString::to_string).collect();
                let shown = format!("{key} -({})-> [{}]", entry.kind, outputs.join(", "));
                (key, shown)
            })
            .collect();
        shown.sort();
        let shown: Vec<String> = shown.into_iter().map(|(_, s)| s).collect();
        f.debug_struct("Upcasters")
            .field("registered", &shown)
            .field("duplicates", &self.duplicates)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn debug_lists_each_upcaster_and_what_it_produces() {
        let up = Upcasters::new().rename("a", 1, "b", 2).discard("c", 1);
        assert_eq!(
            format!("{up:?}"),
            r#"Upcasters { registered: ["a@1 -(rename)-> [b@2]", "c@1 -(discard)-> []"], duplicates: [] }"#
        );
    }
}
