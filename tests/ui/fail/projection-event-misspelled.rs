use eventsource::{Context, HandlerResult, Project, Projection, event};
use serde::{Deserialize, Serialize};

#[event(name = "stock.received")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockReceived {
    pub quantity: u32,
}

// `StockRecieved` is a typo: reported once, at the typo.
#[derive(Default, Projection)]
#[projection(name = "stock_levels", events(StockRecieved))]
pub struct StockLevels {
    pub total: u64,
}

impl Project<StockReceived> for StockLevels {
    fn project(&mut self, event: &StockReceived, _: &mut Context<'_>) -> HandlerResult {
        self.total += u64::from(event.quantity);
        Ok(())
    }
}

fn main() {}
