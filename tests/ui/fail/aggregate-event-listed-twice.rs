use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened;

#[event]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closed;

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Opened, Closed, Opened))]
pub struct Account;

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}

impl Apply<Closed> for Account {
    fn apply(&mut self, _: &Closed) {}
}

fn main() {}
