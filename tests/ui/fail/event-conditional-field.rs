use eventsource::event;
use serde::{Deserialize, Serialize};

#[event(name = "account.opened")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    pub owner: String,
    #[cfg(debug_assertions)]
    pub vip: bool,
}

fn main() {}
