//! Proves the macros work when `eventsource` is a dependency under another name: this
//! crate depends on it as `es`, so the generated code must use the `crate = "es"` path
//! instead of `::eventsource`.

use es::{Apply, event};
use serde::{Deserialize, Serialize};

/// A counter was started.
#[event(name = "counter.started", crate = "es")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    /// The initial value.
    pub at: u64,
}

/// The counter was incremented (version 2: the step is explicit).
#[es::event(name = "counter.incremented", version = 2, upcast_from = IncrementedV1, crate = "es")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incremented {
    /// How much was added.
    pub by: u64,
}

/// Version 1 of [`Incremented`]: always a step of one.
#[es::event(name = "counter.incremented", crate = "es")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncrementedV1;

impl From<IncrementedV1> for Incremented {
    fn from(_: IncrementedV1) -> Self {
        Incremented { by: 1 }
    }
}

/// A counter, the fold of its events.
#[derive(Debug, Default, es::Aggregate)]
#[aggregate(crate = "es", name = "counter", events(Started, Incremented))]
pub struct Counter {
    /// The current value.
    pub value: u64,
}

impl Apply<Started> for Counter {
    fn apply(&mut self, event: &Started) {
        self.value = event.at;
    }
}

impl Apply<Incremented> for Counter {
    fn apply(&mut self, event: &Incremented) {
        self.value += event.by;
    }
}

#[cfg(test)]
mod tests {
    use es::{Aggregate, DecodeFailure, Event, EventSet, EventType, Payload};

    use super::{Counter, CounterEvent, Incremented, Started};

    #[test]
    fn constants_come_from_the_renamed_crate() {
        assert_eq!(<Counter as Aggregate>::NAME, "counter");
        assert_eq!(
            (Incremented::NAME, Incremented::VERSION),
            ("counter.incremented", 2)
        );
        assert_eq!(
            CounterEvent::TYPES,
            [
                EventType {
                    name: "counter.started",
                    version: 1
                },
                EventType {
                    name: "counter.incremented",
                    version: 2
                },
            ]
        );
    }

    #[test]
    fn decodes_and_applies() -> Result<(), Box<dyn std::error::Error>> {
        let mut counter = Counter::default();
        let stored = [
            ("counter.started", 1, r#"{"at":10}"#),
            ("counter.incremented", 1, "null"),
            ("counter.incremented", 2, r#"{"by":5}"#),
        ];
        for (name, version, json) in stored {
            let event = CounterEvent::decode(name, version, Payload::Text(json))?;
            counter.apply_event(&event);
        }
        assert_eq!(counter.value, 16);

        let event = CounterEvent::from(Started { at: 3 });
        let json = event.encode()?;
        assert_eq!(
            CounterEvent::decode("counter.started", 1, Payload::Text(&json))?,
            event
        );
        assert!(matches!(
            CounterEvent::decode("counter.reset", 1, Payload::Text("{}")),
            Err(DecodeFailure::UnknownType)
        ));
        Ok(())
    }
}
