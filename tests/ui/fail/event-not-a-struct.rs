use eventsource::event;
use serde::{Deserialize, Serialize};

#[event(name = "account.changed")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountChanged {
    Opened,
    Closed,
}

fn main() {
    let _ = AccountChanged::Opened;
}
