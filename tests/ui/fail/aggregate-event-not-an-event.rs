use eventsource::{Aggregate, Apply};

#[derive(Debug, Clone, PartialEq)]
pub struct Opened;

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Opened))]
pub struct Account;

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}

fn main() {}
