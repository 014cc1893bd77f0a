use eventsource::{Context, HandlerResult, Project, Projection, event};
use serde::{Deserialize, Serialize};

#[event(name = "money.deposited")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyDeposited {
    pub amount: u64,
}

#[derive(Projection)]
#[projection(name = "", version = 0, events(MoneyDeposited, MoneyDeposited), rebuild = true)]
pub struct Balances;

impl Project<MoneyDeposited> for Balances {
    fn project(&mut self, _: &MoneyDeposited, _: &mut Context<'_>) -> HandlerResult {
        Ok(())
    }
}

#[derive(Projection)]
pub struct Listless;

// The stubs implement `Projection`: code using the projections reports nothing more.
fn name<P: Projection>() -> &'static str {
    P::NAME
}

fn main() {
    let _ = (name::<Balances>(), name::<Listless>());
}
