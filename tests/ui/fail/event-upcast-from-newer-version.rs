use eventsource::event;
use serde::{Deserialize, Serialize};

#[event(name = "account.opened", version = 3)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenedV3 {
    pub owner: String,
}

#[event(name = "account.opened", version = 2, upcast_from = OpenedV3)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    pub owner: String,
}

impl From<OpenedV3> for Opened {
    fn from(old: OpenedV3) -> Self {
        Opened { owner: old.owner }
    }
}

fn main() {}
