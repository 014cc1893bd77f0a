use eventsource::{Aggregate, event};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened;

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Opened))]
pub struct Account<T> {
    owner: T,
}

fn main() {}
