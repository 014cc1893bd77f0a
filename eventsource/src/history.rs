//! The versions an event type decodes: [`EventShape`], one per stored (name, version),
//! listed by [`Event::HISTORY`](crate::Event::HISTORY) and, per aggregate, by
//! [`EventSet::HISTORIES`](crate::EventSet::HISTORIES), and the constant helpers the
//! macros build and search them with.

use crate::event::EventShape;

/// `first` followed by `rest`, as the array `#[event(upcast_from)]` builds its
/// [`Event::HISTORY`](crate::Event::HISTORY) from (`N` is `rest.len() + 1`).
#[doc(hidden)]
pub const fn prepend_history<const N: usize>(
    first: EventShape,
    rest: &[EventShape],
) -> [EventShape; N] {
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
pub fn find_in_history(history: &[EventShape], name: &str, version: u32) -> Found {
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
pub const fn histories_overlap(a: &[EventShape], b: &[EventShape]) -> bool {
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

    const fn shape(name: &'static str, version: u32) -> EventShape {
        EventShape {
            name,
            version,
            shape: "",
        }
    }

    #[test]
    fn histories_are_prepended_and_searched() {
        const OLD: &[EventShape] = &[shape("a", 2), shape("created", 1)];
        const NEW: [EventShape; 3] = prepend_history::<3>(shape("a", 3), OLD);
        assert_eq!(NEW, [shape("a", 3), shape("a", 2), shape("created", 1)]);
        assert_eq!(find_in_history(&NEW, "a", 3), Found::Version);
        assert_eq!(find_in_history(&NEW, "created", 1), Found::Version);
        assert_eq!(find_in_history(&NEW, "a", 1), Found::Name);
        assert_eq!(find_in_history(&NEW, "b", 3), Found::Nothing);
        assert!(histories_overlap(&NEW, &[shape("created", 1)]));
        assert!(!histories_overlap(
            &NEW,
            &[shape("created", 2), shape("b", 1)]
        ));
    }
}
