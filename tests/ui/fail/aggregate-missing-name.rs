use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

#[event(name = "account.opened")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened;

// No `name`: the struct's name is not a default, since renaming the struct would start
// new, empty streams.
#[derive(Default, Aggregate)]
#[aggregate(events(Opened))]
pub struct Account;

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}

fn main() {
    // The stub emitted beside the error keeps this compiling: one error, not two.
    let _ = <Account as Aggregate>::NAME;
}
