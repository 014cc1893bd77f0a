//! [`EventShape`]: one version of an event type, with the fingerprint of its JSON shape.

use std::fmt;

use super::Event;

/// One version of an event type as the code knows it: its stored name and version and
/// the fingerprint of its JSON shape ([`Event::SHAPE`]). [`Event::HISTORY`] lists one
/// per version a type decodes.
///
/// ```
/// use eventsource::{event, Event, EventShape};
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
/// assert_eq!(NoteAdded::HISTORY[1], EventShape::of::<NoteAddedV1>());
/// assert_eq!(NoteAdded::HISTORY[1].shape, "{text: String}");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventShape {
    /// The stored event name.
    pub name: &'static str,
    /// The stored event version.
    pub version: u32,
    /// The fingerprint of the JSON shape of that version.
    pub shape: &'static str,
}

impl EventShape {
    /// The current version of `E`.
    pub const fn of<E: Event>() -> Self {
        EventShape {
            name: E::NAME,
            version: E::VERSION,
            shape: E::SHAPE,
        }
    }
}

impl fmt::Display for EventShape {
    /// `name@version`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// The old name of [`EventShape`]: "schema" now means the SQL schema only.
#[deprecated(since = "0.1.0", note = "renamed `EventShape`")]
pub type EventSchema = EventShape;
