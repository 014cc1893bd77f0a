use eventsource::{Event, event};
use serde::{Deserialize, Serialize};

#[event(name = "account.opened", schema = "v1")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened;

fn main() {
    assert_eq!(Opened::NAME, "account.opened");
}
