use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

mod savings {
    use super::*;

    #[event(name = "savings.opened")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Opened;
}

mod checking {
    use super::*;

    #[event(name = "checking.opened")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Opened;
}

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(savings::Opened, checking::Opened))]
pub struct Account;

impl Apply<savings::Opened> for Account {
    fn apply(&mut self, _: &savings::Opened) {}
}

impl Apply<checking::Opened> for Account {
    fn apply(&mut self, _: &checking::Opened) {}
}

fn main() {}
