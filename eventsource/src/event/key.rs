//! [`EventKey`]: a stored (event type, event version).

use std::fmt;

/// A stored (event type, event version), shown as `type@version`.
///
/// ```
/// use eventsource::EventKey;
///
/// assert_eq!(EventKey::new("account.opened", 2).to_string(), "account.opened@2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    /// The event type.
    pub event_type: String,
    /// The event version.
    pub version: u32,
}

impl EventKey {
    /// The key of `event_type` at `version`.
    pub fn new(event_type: impl Into<String>, version: u32) -> Self {
        EventKey {
            event_type: event_type.into(),
            version,
        }
    }

    pub(crate) fn is(&self, event_type: &str, version: u32) -> bool {
        self.version == version && self.event_type == event_type
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.event_type, self.version)
    }
}
