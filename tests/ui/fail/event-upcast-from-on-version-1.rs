use eventsource::event;
use serde::{Deserialize, Serialize};

#[event(name = "account.opened")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenedV0 {
    pub owner: String,
}

#[event(name = "account.opened", upcast_from = OpenedV0)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    pub owner: String,
}

impl From<OpenedV0> for Opened {
    fn from(old: OpenedV0) -> Self {
        Opened { owner: old.owner }
    }
}

fn main() {}
