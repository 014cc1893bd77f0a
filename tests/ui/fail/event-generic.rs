use eventsource::event;
use serde::{Deserialize, Serialize};

#[event(name = "value.set")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueSet<T> {
    pub value: T,
}

fn main() {}
