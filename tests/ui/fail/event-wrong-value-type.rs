use eventsource::event;
use serde::{Deserialize, Serialize};

#[event(name = "account.opened", version = "2")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened;

fn main() {}
