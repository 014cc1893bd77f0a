//! A bank account, event-sourced into a SQLite file.
//!
//! ```text
//! cargo run --example bank                 # writes ./bank.db
//! cargo run --example bank -- /tmp/my.db   # any path
//! cargo run --example bank -- "host=127.0.0.1 user=postgres dbname=test"   # PostgreSQL
//! ```
//!
//! Running it again continues with the same accounts: every run appends, nothing is
//! ever overwritten.

// A binary: its items are read, not linked against.
#![allow(missing_docs, clippy::missing_errors_doc)]

use std::error::Error;
use std::fmt;

use eventsource::{
    Aggregate, Apply, EventStore, ExecuteError, ExpectedVersion, Metadata, NewEvent, PostgresStore,
    Repository, SqliteStore, event,
};
use serde::{Deserialize, Serialize};

// ---- The domain: plain structs, no persistence code. ----

/// How `account.opened` looked before accounts had a currency. Old events in the store
/// keep this shape forever; `upcast_from` below reads them as the current version.
#[event(name = "account.opened", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountOpenedV1 {
    /// Who opened it.
    pub owner: String,
}

/// An account was opened (version 2 added the currency).
#[event(name = "account.opened", version = 2, upcast_from = AccountOpenedV1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountOpened {
    /// Who opened it.
    pub owner: String,
    /// The account's currency.
    pub currency: String,
}

impl From<AccountOpenedV1> for AccountOpened {
    fn from(old: AccountOpenedV1) -> Self {
        AccountOpened {
            owner: old.owner,
            currency: "EUR".into(),
        }
    }
}

/// Money was paid in.
#[event(name = "money.deposited")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyDeposited {
    /// In cents.
    pub amount: u64,
}

/// Money was paid out.
#[event(name = "money.withdrawn")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyWithdrawn {
    /// In cents.
    pub amount: u64,
}

/// The aggregate: its state is the fold of its events.
#[derive(Debug, Default, Aggregate)]
#[aggregate(
    name = "account",
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn)
)]
pub struct Account {
    owner: String,
    currency: String,
    balance: u64,
    open: bool,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, e: &AccountOpened) {
        self.open = true;
        self.owner.clone_from(&e.owner);
        self.currency.clone_from(&e.currency);
    }
}

impl Apply<MoneyDeposited> for Account {
    fn apply(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }
}

impl Apply<MoneyWithdrawn> for Account {
    fn apply(&mut self, e: &MoneyWithdrawn) {
        self.balance -= e.amount;
    }
}

/// Why the account refused a command.
#[derive(Debug, PartialEq)]
pub enum AccountError {
    /// No `account.opened` yet.
    NotOpen,
    /// The balance is too low.
    InsufficientFunds { balance: u64, requested: u64 },
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::NotOpen => f.write_str("the account is not open"),
            AccountError::InsufficientFunds { balance, requested } => {
                write!(f, "cannot withdraw {requested} from a balance of {balance}")
            }
        }
    }
}

impl Error for AccountError {}

// Command handlers: look at the state, decide, return events.
impl Account {
    /// Opens the account.
    pub fn open(&self, owner: &str) -> Result<Option<AccountOpened>, AccountError> {
        // Opening twice is a no-op, so the example can run again on the same file.
        Ok((!self.open).then(|| AccountOpened {
            owner: owner.into(),
            currency: "EUR".into(),
        }))
    }

    /// Pays money in.
    pub fn deposit(&self, amount: u64) -> Result<MoneyDeposited, AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        Ok(MoneyDeposited { amount })
    }

    /// Pays money out, if the balance allows.
    pub fn withdraw(&self, amount: u64) -> Result<MoneyWithdrawn, AccountError> {
        if !self.open {
            return Err(AccountError::NotOpen);
        }
        if amount > self.balance {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(MoneyWithdrawn { amount })
    }
}

// ---- The application: a repository over a store. ----

fn main() -> Result<(), Box<dyn Error>> {
    let target = std::env::args().nth(1).unwrap_or_else(|| "bank.db".into());
    // A PostgreSQL connection string (URL or key=value form), or a SQLite file path.
    let is_postgres = target.starts_with("postgres://")
        || target.starts_with("postgresql://")
        || target.contains("host=");
    if is_postgres {
        println!("store: PostgreSQL ({target})");
        let store = PostgresStore::connect_with_schema(&target, "bank_example")?;
        run(&Repository::<Account, _>::new(store))?;
        let mut raw = postgres::Client::connect(&target, postgres::NoTls)?;
        refuse_rewrites(|sql| {
            raw.batch_execute(&format!("SET search_path TO bank_example; {sql}"))
                .map_err(|e| {
                    e.as_db_error()
                        .map_or(e.to_string(), |db| db.message().to_owned())
                })
        });
    } else {
        println!("store: {target} (SQLite)");
        run(&Repository::<Account, _>::new(SqliteStore::open(&target)?))?;
        let raw = rusqlite::Connection::open(&target)?;
        refuse_rewrites(|sql| raw.execute_batch(sql).map_err(|e| e.to_string()));
    }
    Ok(())
}

/// The table is append-only: the database itself refuses to rewrite history.
fn refuse_rewrites(mut execute: impl FnMut(&str) -> Result<(), String>) {
    for sql in ["UPDATE events SET payload = '{}'", "DELETE FROM events"] {
        match execute(sql) {
            Ok(()) => println!("`{sql}` succeeded (unexpected!)"),
            Err(e) => println!("`{sql}` refused: {e}"),
        }
    }
}

fn run<S: EventStore>(accounts: &Repository<Account, S>) -> Result<(), Box<dyn Error>> {
    // Load, decide, append: one call per command.
    let teller = Metadata::new()
        .actor("teller-7")
        .correlation_id("morning-shift");
    accounts.execute_with("acc-1", &teller, |acc| acc.open("Ada"))?;
    accounts.execute_with("acc-1", &teller, |acc| acc.deposit(100))?;
    let committed = accounts.execute_with("acc-1", &teller, |acc| acc.withdraw(30))?;
    println!(
        "acc-1 after the commands: balance {} {} at version {} (last event at position {})",
        committed.state.balance,
        committed.state.currency,
        committed.version,
        committed.positions.last().map_or(0, |p| p.get()),
    );

    // The domain refuses a command with its own error; nothing is stored.
    match accounts.execute("acc-1", |acc| acc.withdraw(1_000_000)) {
        Err(ExecuteError::Domain(e)) => println!("refused: {e}"),
        other => println!("unexpected: {other:?}"),
    }

    // State at any point in time is a replay.
    let now = accounts.load("acc-1")?;
    let then = accounts.load_at("acc-1", 2)?;
    println!(
        "acc-1 now: {} at version {}; as of version 2: {}",
        now.state.balance, now.version, then.state.balance
    );

    // An event written by last year's code, in the old shape (version 1). It stays in
    // the table as written; reading lifts it through `upcast_from`.
    let legacy = accounts.stream_id("acc-legacy");
    if accounts.store().stream_version(&legacy)?.get() == 0 {
        accounts.store().append(
            &legacy,
            ExpectedVersion::NoStream,
            &[NewEvent::new("account.opened", 1, r#"{"owner":"Grace"}"#)],
        )?;
    }
    let old = accounts.load("acc-legacy")?;
    println!(
        "acc-legacy: stored as account.opened v1 {{\"owner\":\"Grace\"}}, read as owner {} with currency {}",
        old.state.owner, old.state.currency
    );

    Ok(())
}
