use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

#[event(name = "transfer.made")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferMade {
    pub amount: u64,
}

#[event(name = "money.withdrawn", version = 2, upcast_from = TransferMade)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn {
    pub amount: u64,
}

#[event(name = "money.deposited", version = 2, upcast_from = TransferMade)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    pub amount: u64,
}

impl From<TransferMade> for Withdrawn {
    fn from(t: TransferMade) -> Self {
        Withdrawn { amount: t.amount }
    }
}

impl From<TransferMade> for Deposited {
    fn from(t: TransferMade) -> Self {
        Deposited { amount: t.amount }
    }
}

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Withdrawn, Deposited))]
pub struct Account;

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, _: &Withdrawn) {}
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, _: &Deposited) {}
}

fn main() {}
