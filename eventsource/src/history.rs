//! The versions an event type decodes: [`EventSchema`], one per stored (name, version),
//! listed by [`Event::HISTORY`] and, per aggregate, by
//! [`EventSet::HISTORIES`](crate::EventSet::HISTORIES), and the constant helpers the
//! macros build and search them with.

use std::fmt;

use crate::event::Event;

/// One version of an event type as the code knows it: its stored name and version and
/// the fingerprint of its JSON shape ([`Event::SCHEMA`]). [`Event::HISTORY`] lists one
/// per version a type decodes.
///
/// ```
/// use eventsource::{event, Event, EventSchema};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "note.added")]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct NoteAddedV1 { pub text: String }
///
/// #[event(name = "note.added", version = 2, upcast_from = NoteAddedV1)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct NoteAdded { pub text: String, pub pinned: bool }
///
/// impl From<NoteAddedV1> for NoteAdded {
///     fn from(v1: NoteAddedV1) -> Self { NoteAdded { text: v1.text, pinned: false } }
/// }
///
/// let versions: Vec<String> = NoteAdded::HISTORY.iter().map(ToString::to_string).collect();
/// assert_eq!(versions, ["note.added@2", "note.added@1"]);
/// assert_eq!(NoteAdded::HISTORY[1], EventSchema::of::<NoteAddedV1>());
/// assert_eq!(NoteAdded::HISTORY[1].shape, "{text: String}");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventSchema {
    /// The stored event name.
    pub name: &'static str,
    /// The stored event version.
    pub version: u32,
    /// The fingerprint of the JSON shape of that version.
    pub shape: &'static str,
}

impl EventSchema {
    /// The current version of `E`.
    pub const fn of<E: Event>() -> Self {
        EventSchema {
            name: E::NAME,
            version: E::VERSION,
            shape: E::SCHEMA,
        }
    }
}

impl fmt::Display for EventSchema {
    /// `name@version`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// `first` followed by `rest`, as the array `#[event(upcast_from)]` builds its
/// [`Event::HISTORY`] from (`N` is `rest.len() + 1`).
#[doc(hidden)]
pub const fn prepend_history<const N: usize>(
    first: EventSchema,
    rest: &[EventSchema],
) -> [EventSchema; N] {
    assert!(rest.len() + 1 == N, "N must be rest.len() + 1");
    let mut out = [first; N];
    let mut i = 0;
    while i < rest.len() {
        out[i + 1] = rest[i];
        i += 1;
    }
    out
}

/// What a history holds of a stored (name, version).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// That exact version: the type decodes it.
    Version,
    /// The name at other versions only.
    Name,
    /// Neither.
    Nothing,
}

/// Looks a stored (name, version) up in a history (the generated `EventSet::decode`).
#[doc(hidden)]
pub fn find_in_history(history: &[EventSchema], name: &str, version: u32) -> Found {
    let mut found = Found::Nothing;
    for entry in history {
        if entry.name == name {
            if entry.version == version {
                return Found::Version;
            }
            found = Found::Name;
        }
    }
    found
}

/// Whether two histories share a (name, version): both types would claim the stored
/// events of that version.
#[doc(hidden)]
pub const fn histories_overlap(a: &[EventSchema], b: &[EventSchema]) -> bool {
    let mut i = 0;
    while i < a.len() {
        let mut j = 0;
        while j < b.len() {
            if a[i].version == b[j].version && crate::__private::str_eq(a[i].name, b[j].name) {
                return true;
            }
            j += 1;
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn schema(name: &'static str, version: u32) -> EventSchema {
        EventSchema {
            name,
            version,
            shape: "",
        }
    }

    #[test]
    fn histories_are_prepended_and_searched() {
        const OLD: &[EventSchema] = &[schema("a", 2), schema("created", 1)];
        const NEW: [EventSchema; 3] = prepend_history::<3>(schema("a", 3), OLD);
        assert_eq!(NEW, [schema("a", 3), schema("a", 2), schema("created", 1)]);
        assert_eq!(find_in_history(&NEW, "a", 3), Found::Version);
        assert_eq!(find_in_history(&NEW, "created", 1), Found::Version);
        assert_eq!(find_in_history(&NEW, "a", 1), Found::Name);
        assert_eq!(find_in_history(&NEW, "b", 3), Found::Nothing);
        assert!(histories_overlap(&NEW, &[schema("created", 1)]));
        assert!(!histories_overlap(
            &NEW,
            &[schema("created", 2), schema("b", 1)]
        ));
    }
}
