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

// `v1::Openned` is a typo: reported once, at the typo.
#[event(name = "account.opened", version = 2, upcast_from = v1::Openned)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    pub owner: String,
    pub currency: String,
}

impl From<v1::Opened> for Opened {
    fn from(v1: v1::Opened) -> Self {
        Opened {
            owner: v1.owner,
            currency: "EUR".into(),
        }
    }
}

fn main() {}
