use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

#[event(name = "stock.received")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockReceived {
    pub quantity: u32,
}

#[event(name = "stock.reserved")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockReserved {
    pub quantity: u32,
}

// `StockResreved` is a typo for `StockReserved`: reported once, at the typo. (rustc's
// "there is an enum variant" help comes from the generated variant of that name: any
// enum variant with the missing name is offered, and on stable no span hides one.)
#[derive(Default, Aggregate)]
#[aggregate(name = "stock", events(StockReceived, StockResreved))]
pub struct StockItem {
    pub on_hand: u32,
}

impl Apply<StockReceived> for StockItem {
    fn apply(&mut self, event: &StockReceived) {
        self.on_hand += event.quantity;
    }
}

impl Apply<StockReserved> for StockItem {
    fn apply(&mut self, event: &StockReserved) {
        self.on_hand -= event.quantity;
    }
}

fn main() {}
