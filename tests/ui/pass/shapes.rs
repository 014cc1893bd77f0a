//! Tuple and unit aggregates, raw identifiers, events from other modules and a
//! private aggregate.

use eventsource::{Aggregate, Apply, Event, EventSet, event};
use serde::{Deserialize, Serialize};

mod events {
    use super::*;

    #[event]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Ticked;

    #[event(name = "r#type")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct r#Typed(pub String);
}

#[derive(Default, Aggregate)]
#[aggregate(name = "counter", events(events::Ticked, events::Typed))]
pub struct Counter(u32);

impl Apply<events::Ticked> for Counter {
    fn apply(&mut self, _: &events::Ticked) {
        self.0 += 1;
    }
}

impl Apply<events::Typed> for Counter {
    fn apply(&mut self, _: &events::Typed) {}
}

#[derive(Default, Aggregate)]
#[aggregate(name = "nothing", events(events::Ticked))]
struct Nothing;

impl Apply<events::Ticked> for Nothing {
    fn apply(&mut self, _: &events::Ticked) {}
}

fn main() {
    let mut counter = Counter::default();
    counter.apply_event(&CounterEvent::from(events::Ticked));
    counter.apply_event(&CounterEvent::Typed(events::Typed("x".into())));
    assert_eq!(counter.0, 1);
    assert_eq!(<Counter as Aggregate>::NAME, "counter");
    assert_eq!(events::Typed::NAME, "r#type");
    assert_eq!(<Nothing as Aggregate>::NAME, "nothing");
    assert_eq!(NothingEvent::TYPES[0].name, "Ticked");
}
