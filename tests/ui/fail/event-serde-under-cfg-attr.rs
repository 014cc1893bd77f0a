use eventsource::event;
use serde::{Deserialize, Serialize};

#[event(name = "account.opened")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    #[cfg_attr(debug_assertions, serde(rename = "ownerName"))]
    pub owner_name: String,
}

fn main() {}
