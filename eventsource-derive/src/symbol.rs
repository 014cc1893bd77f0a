//! The names of the attributes and keys the macros accept.

use std::fmt;

use syn::{Ident, Path};

/// A key of `#[event(...)]`, `#[aggregate(...)]` or `#[projection(...)]`, compared against parsed paths.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) struct Symbol(&'static str);

/// The derive's helper attribute.
pub(crate) const AGGREGATE: Symbol = Symbol("aggregate");
/// The runtime crate's path.
pub(crate) const CRATE: Symbol = Symbol("crate");
/// The aggregate's event types.
pub(crate) const EVENTS: Symbol = Symbol("events");
/// The generated event enum's name.
pub(crate) const EVENT_ENUM: Symbol = Symbol("event_enum");
/// The stable name of an event or aggregate.
pub(crate) const NAME: Symbol = Symbol("name");
/// The older event type an event decodes through.
pub(crate) const UPCAST_FROM: Symbol = Symbol("upcast_from");
/// The derive's helper attribute for projections.
pub(crate) const PROJECTION: Symbol = Symbol("projection");
/// A projection's reset function.
pub(crate) const RESET: Symbol = Symbol("reset");
/// An event's version.
pub(crate) const VERSION: Symbol = Symbol("version");

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.0)
    }
}
