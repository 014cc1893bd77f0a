//! [`EventFilter`]: which events a filtered read of the global order returns.

use std::collections::BTreeSet;

use crate::version::{InvalidStreamId, StreamId};

/// Which events a filtered read of the global order
/// ([`EventStore::read_all_filtered`](crate::EventStore::read_all_filtered)) returns:
/// those of any of a set of aggregate types and of any of a set of event types.
///
/// An empty set does not restrict its dimension; when both sets are given an event must
/// match both. [`EventFilter::all`] matches every event. Event types are matched as
/// stored, before any upcaster runs: to follow a renamed event type, name the old name
/// too (or read through [`Repository::read_all_filtered`](crate::Repository::read_all_filtered),
/// which does that for you).
///
/// ```
/// use eventsource::EventFilter;
///
/// let filter = EventFilter::all()
///     .aggregate_type("account")
///     .event_types(["money.deposited", "money.withdrawn"]);
/// assert!(filter.matches("account", "money.deposited"));
/// assert!(!filter.matches("account", "account.opened"));
/// assert!(!filter.matches("order", "money.deposited"));
/// assert!(EventFilter::all().matches("order", "order.placed"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    aggregate_types: BTreeSet<String>,
    event_types: BTreeSet<String>,
}

impl EventFilter {
    /// A filter that matches every event.
    ///
    /// ```
    /// use eventsource::EventFilter;
    ///
    /// assert!(EventFilter::all().is_all());
    /// ```
    pub fn all() -> Self {
        Self::default()
    }

    /// Also matches events of streams of the aggregate type `aggregate_type`.
    ///
    /// ```
    /// use eventsource::EventFilter;
    ///
    /// let filter = EventFilter::all().aggregate_type("account").aggregate_type("order");
    /// assert!(filter.matches("order", "order.placed"));
    /// assert!(!filter.matches("invoice", "invoice.sent"));
    /// ```
    #[must_use]
    pub fn aggregate_type(mut self, aggregate_type: impl Into<String>) -> Self {
        self.aggregate_types.insert(aggregate_type.into());
        self
    }

    /// Also matches events of the aggregate types in `aggregate_types`.
    ///
    /// ```
    /// use eventsource::EventFilter;
    ///
    /// let filter = EventFilter::all().aggregate_types(["account", "order"]);
    /// assert_eq!(filter.aggregate_type_set().len(), 2);
    /// ```
    #[must_use]
    pub fn aggregate_types<T: Into<String>>(
        mut self,
        aggregate_types: impl IntoIterator<Item = T>,
    ) -> Self {
        self.aggregate_types
            .extend(aggregate_types.into_iter().map(Into::into));
        self
    }

    /// Also matches events stored with the type `event_type`.
    ///
    /// ```
    /// use eventsource::EventFilter;
    ///
    /// let filter = EventFilter::all().event_type("account.opened");
    /// assert!(filter.matches("account", "account.opened"));
    /// assert!(!filter.matches("account", "money.deposited"));
    /// ```
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_types.insert(event_type.into());
        self
    }

    /// Also matches events stored with any type in `event_types`.
    ///
    /// ```
    /// use eventsource::EventFilter;
    ///
    /// let filter = EventFilter::all().event_types(["a", "b"]);
    /// assert!(filter.matches("x", "b"));
    /// ```
    #[must_use]
    pub fn event_types<T: Into<String>>(
        mut self,
        event_types: impl IntoIterator<Item = T>,
    ) -> Self {
        self.event_types
            .extend(event_types.into_iter().map(Into::into));
        self
    }

    /// The aggregate types the filter accepts (empty: any).
    ///
    /// ```
    /// use eventsource::EventFilter;
    ///
    /// assert!(EventFilter::all().aggregate_type_set().is_empty());
    /// ```
    pub fn aggregate_type_set(&self) -> &BTreeSet<String> {
        &self.aggregate_types
    }

    /// The event types the filter accepts (empty: any).
    ///
    /// ```
    /// use eventsource::EventFilter;
    ///
    /// let filter = EventFilter::all().event_type("a");
    /// assert!(filter.event_type_set().contains("a"));
    /// ```
    pub fn event_type_set(&self) -> &BTreeSet<String> {
        &self.event_types
    }

    /// Whether the filter matches every event.
    ///
    /// ```
    /// use eventsource::EventFilter;
    ///
    /// assert!(!EventFilter::all().event_type("a").is_all());
    /// ```
    pub fn is_all(&self) -> bool {
        self.aggregate_types.is_empty() && self.event_types.is_empty()
    }

    /// Whether an event of a stream of `aggregate_type`, stored with the type
    /// `event_type`, passes the filter.
    ///
    /// ```
    /// use eventsource::EventFilter;
    ///
    /// let both = EventFilter::all().aggregate_type("account").event_type("account.opened");
    /// assert!(both.matches("account", "account.opened"));
    /// assert!(!both.matches("order", "account.opened"));
    /// ```
    pub fn matches(&self, aggregate_type: &str, event_type: &str) -> bool {
        (self.aggregate_types.is_empty() || self.aggregate_types.contains(aggregate_type))
            && (self.event_types.is_empty() || self.event_types.contains(event_type))
    }

    /// Checks that every store can look the filter's aggregate types up: as
    /// [`StreamId::validate`] checks the aggregate type of a stream (no NUL character, at
    /// most [`StreamId::MAX_LEN`] bytes). The stores check this before a filtered read.
    ///
    /// ```
    /// use eventsource::{EventFilter, InvalidStreamId};
    ///
    /// assert!(EventFilter::all().aggregate_type("account").validate().is_ok());
    /// assert!(matches!(
    ///     EventFilter::all().aggregate_type("acc\0ount").validate(),
    ///     Err(InvalidStreamId::Nul { part: "aggregate type", .. })
    /// ));
    /// ```
    ///
    /// # Errors
    /// [`InvalidStreamId`] for the first aggregate type that no stream can have.
    pub fn validate(&self) -> Result<(), InvalidStreamId> {
        for aggregate_type in &self.aggregate_types {
            StreamId::new(aggregate_type.as_str(), "").validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sets_do_not_restrict_and_both_sets_must_match() {
        let all = EventFilter::all();
        assert!(all.matches("a", "x"));
        let by_type = EventFilter::all().event_types(["x", "y"]);
        assert!(by_type.matches("a", "y") && !by_type.matches("a", "z"));
        let by_aggregate = EventFilter::all().aggregate_types(["a"]);
        assert!(by_aggregate.matches("a", "z") && !by_aggregate.matches("b", "x"));
        let both = by_type.aggregate_type("a");
        assert!(both.matches("a", "x"));
        assert!(!both.matches("b", "x"));
        assert!(!both.matches("a", "z"));
    }

    #[test]
    fn validation_names_the_aggregate_type() {
        let long = "t".repeat(StreamId::MAX_LEN + 1);
        assert!(matches!(
            EventFilter::all().aggregate_type(long).validate(),
            Err(InvalidStreamId::TooLong {
                part: "aggregate type",
                ..
            })
        ));
        // Event types are not stream ids: any string is looked up as it is.
        assert!(EventFilter::all().event_type("a\0b").validate().is_ok());
    }
}
