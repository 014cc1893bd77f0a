use eventsource::{Context, HandlerResult, Project, Projection, event};
use serde::{Deserialize, Serialize};

#[event(name = "money.deposited")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyDeposited {
    pub amount: u64,
}

#[event(name = "money.withdrawn")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyWithdrawn {
    pub amount: u64,
}

#[derive(Projection)]
#[projection(name = "balances", events(MoneyDeposited, MoneyWithdrawn))]
pub struct Balances;

impl Project<MoneyDeposited> for Balances {
    fn project(&mut self, _: &MoneyDeposited, _: &mut Context<'_>) -> HandlerResult {
        Ok(())
    }
}

fn main() {}
