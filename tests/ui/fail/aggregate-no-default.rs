use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened;

#[derive(Aggregate)]
#[aggregate(name = "account", events(Opened))]
pub struct Account {
    owner: String,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {
        self.owner.clear();
    }
}

fn main() {}
