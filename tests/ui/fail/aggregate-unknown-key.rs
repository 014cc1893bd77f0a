use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

#[event]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened;

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Opened), snapshot_every = 100)]
pub struct Account;

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}

fn main() {
    // The derive's stub keeps the aggregate and its event enum usable: no second error.
    let _ = <Account as Aggregate>::NAME;
    let _: Option<AccountEvent> = None;
}
