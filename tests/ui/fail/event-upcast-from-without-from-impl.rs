use eventsource::event;
use serde::{Deserialize, Serialize};

mod v1 {
    use super::*;

    #[event(name = "account.opened")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Opened {
        pub owner: String,
    }
}

#[event(name = "account.opened", version = 2, upcast_from = v1::Opened)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    pub owner: String,
    pub currency: String,
}

fn main() {}
