use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

mod events {
    use super::*;

    #[event]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Opened;

    #[event]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct MoneyDeposited {
        pub amount: u64,
    }
}

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(events::Opened, events::MoneyDeposited))]
pub struct Account {
    balance: u64,
}

impl Apply<events::Opened> for Account {
    fn apply(&mut self, _: &events::Opened) {}
}

fn main() {}
