//! [`Metadata`]: the context stored with every event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Context stored with every event: who caused it and why. All fields are optional;
/// `extra` holds any other key the application wants to keep.
///
/// ```
/// use eventsource::Metadata;
///
/// let meta = Metadata::new().correlation_id("req-7").actor("alice").with("ip", "10.0.0.1");
/// assert_eq!(meta.actor.as_deref(), Some("alice"));
/// assert_eq!(meta.extra["ip"], "10.0.0.1");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Ties together every event caused by one request or business process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The id of the command or event that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The user or system that issued the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Any other key-value context.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the actor.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Adds an extra key.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.actor.is_none()
            && self.extra.is_empty()
    }

    /// The metadata as JSON text, as stored (`{}` when empty).
    ///
    /// # Errors
    /// When an `extra` key is one of the named fields (`correlation_id`, `causation_id`,
    /// `actor`): stored, it would be a duplicate key that no reader can trust. (A
    /// non-finite float cannot get in: `serde_json::Value` has no such number, and
    /// `with("k", f64::NAN)` stores `null`, as `serde_json::Value::from` does.)
    ///
    /// ```
    /// use eventsource::Metadata;
    ///
    /// assert!(Metadata::new().with("actor", "mallory").to_json().is_err());
    /// ```
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        if self.is_empty() {
            return Ok(String::from("{}"));
        }
        for key in ["correlation_id", "causation_id", "actor"] {
            if self.extra.contains_key(key) {
                return Err(<serde_json::Error as serde::ser::Error>::custom(format!(
                    "metadata `extra` has the key `{key}`, which is a field of its own: set the field instead"
                )));
            }
        }
        crate::json::to_string(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_metadata_is_an_empty_object() -> Result<(), serde_json::Error> {
        assert_eq!(Metadata::new().to_json()?, "{}");
        let meta = Metadata::new().actor("a").with("k", 1);
        let back: Metadata = serde_json::from_str(&meta.to_json()?)?;
        assert_eq!(back, meta);
        Ok(())
    }
}
