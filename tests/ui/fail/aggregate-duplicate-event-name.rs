use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

#[event(name = "account.opened")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened;

#[event(name = "account.opened")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reopened;

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Opened, Reopened))]
pub struct Account;

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}

impl Apply<Reopened> for Account {
    fn apply(&mut self, _: &Reopened) {}
}

fn main() {}
