//! A full aggregate: named, tuple and unit events, default and explicit names and
//! versions, a three-version `upcast_from` chain, an `event_enum` override and command
//! handlers returning several events.

use eventsource::{Aggregate, Apply, Event, EventSet, IntoEvents, Payload, event};
use serde::{Deserialize, Serialize};

pub mod opened {
    use super::*;

    /// Version 1: only an owner.
    #[event(name = "account.opened")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct V1 {
        pub owner: String,
    }

    /// Version 2 added the currency.
    #[event(name = "account.opened", version = 2, upcast_from = V1)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct V2 {
        pub owner: String,
        pub currency: String,
    }

    impl From<V1> for V2 {
        fn from(v1: V1) -> Self {
            V2 {
                owner: v1.owner,
                currency: "EUR".into(),
            }
        }
    }
}

/// Version 3 added an overdraft limit.
#[event(name = "account.opened", version = 3, upcast_from = opened::V2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountOpened {
    pub owner: String,
    pub currency: String,
    pub overdraft: u64,
}

impl From<opened::V2> for AccountOpened {
    fn from(v2: opened::V2) -> Self {
        AccountOpened {
            owner: v2.owner,
            currency: v2.currency,
            overdraft: 0,
        }
    }
}

#[event]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyDeposited(pub u64);

#[event(name = "money.withdrawn", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyWithdrawn {
    pub amount: u64,
}

#[event(name = "account.closed")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountClosed;

#[derive(Debug, Default, Aggregate)]
#[aggregate(
    name = "bank-account",
    event_enum = BankEvent,
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed),
)]
pub struct BankAccount {
    balance: u64,
    open: bool,
}

impl Apply<AccountOpened> for BankAccount {
    fn apply(&mut self, _: &AccountOpened) {
        self.open = true;
    }
}

impl Apply<MoneyDeposited> for BankAccount {
    fn apply(&mut self, event: &MoneyDeposited) {
        self.balance += event.0;
    }
}

impl Apply<MoneyWithdrawn> for BankAccount {
    fn apply(&mut self, event: &MoneyWithdrawn) {
        self.balance -= event.amount;
    }
}

impl Apply<AccountClosed> for BankAccount {
    fn apply(&mut self, _: &AccountClosed) {
        self.open = false;
    }
}

impl BankAccount {
    /// Opens the account with a first deposit: two events at once.
    pub fn open(&self, owner: &str, deposit: u64) -> (AccountOpened, Option<MoneyDeposited>) {
        let opened = AccountOpened {
            owner: owner.into(),
            currency: "EUR".into(),
            overdraft: 0,
        };
        (opened, (deposit > 0).then_some(MoneyDeposited(deposit)))
    }

    /// Withdraws everything and closes the account.
    pub fn close(&self) -> (MoneyWithdrawn, AccountClosed) {
        (
            MoneyWithdrawn {
                amount: self.balance,
            },
            AccountClosed,
        )
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    assert_eq!(<BankAccount as Aggregate>::NAME, "bank-account");
    assert_eq!(MoneyDeposited::NAME, "MoneyDeposited");
    assert_eq!(AccountOpened::VERSION, 3);
    assert_eq!(BankEvent::TYPES.len(), 4);

    let mut account = BankAccount::default();
    let mut events: Vec<BankEvent> = Vec::new();
    account.open("ann", 10).into_events(&mut events);
    for event in &events {
        account.apply_event(event);
    }
    let mut closing = Vec::new();
    account.close().into_events(&mut closing);
    for event in &closing {
        account.apply_event(event);
    }
    assert_eq!((account.balance, account.open), (0, false));

    let v1 = BankEvent::decode("account.opened", 1, Payload::Text(r#"{"owner":"bob"}"#))?;
    assert_eq!(
        v1,
        BankEvent::AccountOpened(AccountOpened {
            owner: "bob".into(),
            currency: "EUR".into(),
            overdraft: 0,
        })
    );
    Ok(())
}
