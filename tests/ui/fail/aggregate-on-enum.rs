use eventsource::{Aggregate, event};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened;

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Opened))]
pub enum Account {
    #[default]
    Open,
    Closed,
}

fn main() {}
