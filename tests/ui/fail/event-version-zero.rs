use eventsource::event;
use serde::{Deserialize, Serialize};

#[event(version = 0)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened;

fn main() {}
