//! The generated code must not depend on what the user's module names: every std item
//! it uses is reached by absolute path (after serde's `test_gen.rs`).

#![allow(dead_code, non_camel_case_types)]

use serde::{Deserialize, Serialize};

struct Result;
struct Ok;
struct Err;
struct Option;
struct Some;
struct None;
struct Box;
struct Vec;
struct String;
struct From;
struct Into;
struct Default;
struct Clone;
struct Debug;
struct PartialEq;
struct Send;
struct Sync;
struct Event;
struct EventSet;
struct EventType;
struct Apply;
struct Payload;
struct DecodeFailure;
struct serde_json;
struct eventsource_private;
struct u32;
mod core {}
mod std {}
mod __private {}

#[eventsource::event(name = "thing.made")]
#[derive(
    ::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq, Serialize, Deserialize,
)]
pub struct Made {
    count: ::core::primitive::u32,
}

#[eventsource::event(name = "thing.made", version = 2, upcast_from = Made)]
#[derive(
    ::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq, Serialize, Deserialize,
)]
pub struct MadeV2 {
    count: ::core::primitive::u64,
}

impl ::core::convert::From<Made> for MadeV2 {
    fn from(made: Made) -> Self {
        MadeV2 {
            count: made.count.into(),
        }
    }
}

#[eventsource::event]
#[derive(
    ::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq, Serialize, Deserialize,
)]
pub struct Broken;

#[derive(::core::default::Default, eventsource::Aggregate)]
#[aggregate(name = "thing", events(MadeV2, Broken))]
pub struct Thing {
    count: ::core::primitive::u64,
}

impl eventsource::Apply<MadeV2> for Thing {
    fn apply(&mut self, event: &MadeV2) {
        self.count += event.count;
    }
}

impl eventsource::Apply<Broken> for Thing {
    fn apply(&mut self, _: &Broken) {
        self.count = 0;
    }
}

fn main() {
    let mut thing = <Thing as ::core::default::Default>::default();
    eventsource::Aggregate::apply_event(&mut thing, &ThingEvent::MadeV2(MadeV2 { count: 2 }));
    ::std::assert_eq!(thing.count, 2);
}
