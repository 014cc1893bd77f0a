//! The read side: a balances table kept in the same SQLite file as the events, by a
//! projection running in a thread of its own, queried with read-your-writes.
//!
//! ```text
//! cargo run --example read_model                # writes ./read_model.db
//! cargo run --example read_model -- /tmp/x.db   # any path
//! ```
//!
//! Running it again goes on from the projection's checkpoint: events already applied are
//! never applied again.

// A binary: its items are read, not linked against.
#![allow(missing_docs, clippy::missing_errors_doc)]

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use eventsource::{
    Aggregate, Apply, Context, HandlerResult, Project, Projection, ProjectionStore, Projector,
    Repository, SqliteStore, event,
};
use serde::{Deserialize, Serialize};

// ---- The write side: an account aggregate. ----

#[event(name = "account.opened")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountOpened {
    pub owner: String,
}

#[event(name = "money.deposited")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyDeposited {
    pub amount: i64,
}

#[event(name = "money.withdrawn")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyWithdrawn {
    pub amount: i64,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(
    name = "account",
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn)
)]
pub struct Account {
    balance: i64,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, _: &AccountOpened) {}
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

// ---- The read side: one table, written in the projection's transaction. ----

/// `accounts (id, owner, balance, updated_at)`: one row per account.
#[derive(Debug, Projection)]
#[projection(
    name = "accounts",
    version = 1,
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn),
    reset = Self::clear
)]
pub struct Accounts;

impl Accounts {
    /// Runs before a rebuild (a new projection, or a new `version`).
    fn clear(_: &mut Self, ctx: &mut Context<'_>) -> HandlerResult {
        ctx.sqlite()?.execute("DELETE FROM accounts", ())?;
        Ok(())
    }

    fn add(ctx: &mut Context<'_>, delta: i64) -> HandlerResult {
        let at = ctx.recorded_at().to_string();
        ctx.sqlite()?.execute(
            "UPDATE accounts SET balance = balance + ?2, updated_at = ?3 WHERE id = ?1",
            (ctx.stream_id(), delta, at),
        )?;
        Ok(())
    }
}

impl Project<AccountOpened> for Accounts {
    fn project(&mut self, e: &AccountOpened, ctx: &mut Context<'_>) -> HandlerResult {
        let at = ctx.recorded_at().to_string();
        ctx.sqlite()?.execute(
            "INSERT INTO accounts (id, owner, balance, updated_at) VALUES (?1, ?2, 0, ?3)",
            (ctx.stream_id(), &e.owner, at),
        )?;
        Ok(())
    }
}

impl Project<MoneyDeposited> for Accounts {
    fn project(&mut self, e: &MoneyDeposited, ctx: &mut Context<'_>) -> HandlerResult {
        Self::add(ctx, e.amount)
    }
}

impl Project<MoneyWithdrawn> for Accounts {
    fn project(&mut self, e: &MoneyWithdrawn, ctx: &mut Context<'_>) -> HandlerResult {
        Self::add(ctx, -e.amount)
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "read_model.db".into());
    let store = Arc::new(SqliteStore::open(&path)?);
    // The read model's table lives in the store's file, beside the events.
    store.write(|tx| {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, owner TEXT NOT NULL, \
             balance INTEGER NOT NULL, updated_at TEXT NOT NULL)",
        )
    })?;

    // Catch up on everything stored so far, then follow new commits in a thread.
    let projection = Projector::new(Arc::clone(&store), Accounts)
        .poll_interval(Duration::from_millis(50))
        .spawn();

    let accounts = Repository::<Account, _>::new(Arc::clone(&store));
    let run = store.head()?.get();
    let id = format!("acc-{run}");
    accounts.execute(&id, |_| AccountOpened {
        owner: format!("owner of {id}"),
    })?;
    accounts.execute(&id, |_| MoneyDeposited { amount: 120 })?;
    let done = accounts.execute(&id, |_| MoneyWithdrawn { amount: 45 })?;

    // Read-your-writes: wait until the projection has applied the command's events.
    let last = *done.positions.last().ok_or("the command stored no event")?;
    projection.wait_for(last, Duration::from_secs(5))?;

    let balance: i64 = store.read(|conn| {
        conn.query_row("SELECT balance FROM accounts WHERE id = ?1", [&id], |row| {
            row.get(0)
        })
    })?;
    println!("{id}: balance {balance} (from the read model, at position {last})");
    assert_eq!(balance, 75);

    let (count, total): (i64, i64) = store.read(|conn| {
        conn.query_row(
            "SELECT count(*), coalesce(sum(balance), 0) FROM accounts",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
    })?;
    println!("{count} accounts hold {total} in all");
    for checkpoint in store.checkpoints()? {
        println!("projection {checkpoint}");
    }
    projection.join()?;
    Ok(())
}
