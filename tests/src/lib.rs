//! Shared fixtures of the eventsource integration tests: a small bank domain and
//! helpers for temporary stores.

pub mod conformance;
pub mod pg;
pub mod proxy;
pub mod read_model;
pub mod reliability;

use std::fmt;
use std::path::PathBuf;

use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

/// Version 1 of `account.opened`: no currency yet.
#[event(name = "account.opened", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountOpenedV1 {
    /// The owner.
    pub owner: String,
}

/// An account was opened (version 2 added the currency).
#[event(name = "account.opened", version = 2, upcast_from = AccountOpenedV1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountOpened {
    /// The owner.
    pub owner: String,
    /// The currency of the account.
    pub currency: String,
}

impl From<AccountOpenedV1> for AccountOpened {
    fn from(v1: AccountOpenedV1) -> Self {
        AccountOpened {
            owner: v1.owner,
            currency: "EUR".into(),
        }
    }
}

/// Money was paid in.
#[event(name = "money.deposited")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyDeposited {
    /// Amount in cents.
    pub amount: u64,
}

/// Money was paid out.
#[event(name = "money.withdrawn")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyWithdrawn {
    /// Amount in cents.
    pub amount: u64,
}

/// A bank account.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(
    name = "account",
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn)
)]
pub struct Account {
    /// The owner.
    pub owner: String,
    /// The currency.
    pub currency: String,
    /// Balance in cents.
    pub balance: u64,
    /// Whether the account was opened.
    pub open: bool,
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

/// Why the bank refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankError {
    /// The account is already open.
    AlreadyOpen,
    /// The account is not open.
    NotOpen,
    /// Not enough money.
    InsufficientFunds {
        /// The balance.
        balance: u64,
    },
}

impl fmt::Display for BankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BankError::AlreadyOpen => f.write_str("account already open"),
            BankError::NotOpen => f.write_str("account not open"),
            BankError::InsufficientFunds { balance } => {
                write!(f, "insufficient funds (balance {balance})")
            }
        }
    }
}

impl std::error::Error for BankError {}

impl Account {
    /// Opens the account.
    ///
    /// # Errors
    /// [`BankError::AlreadyOpen`].
    pub fn open(&self, owner: &str) -> Result<AccountOpened, BankError> {
        if self.open {
            return Err(BankError::AlreadyOpen);
        }
        Ok(AccountOpened {
            owner: owner.into(),
            currency: "EUR".into(),
        })
    }

    /// Deposits money.
    ///
    /// # Errors
    /// [`BankError::NotOpen`].
    pub fn deposit(&self, amount: u64) -> Result<MoneyDeposited, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        Ok(MoneyDeposited { amount })
    }

    /// Withdraws money.
    ///
    /// # Errors
    /// [`BankError::NotOpen`], [`BankError::InsufficientFunds`].
    pub fn withdraw(&self, amount: u64) -> Result<MoneyWithdrawn, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        if amount > self.balance {
            return Err(BankError::InsufficientFunds {
                balance: self.balance,
            });
        }
        Ok(MoneyWithdrawn { amount })
    }
}

/// A temporary folder with a store file path inside; the folder is removed on drop.
#[derive(Debug)]
pub struct TempStore {
    /// Keeps the folder alive.
    pub dir: tempfile::TempDir,
    /// `<dir>/store.db`.
    pub path: PathBuf,
}

impl TempStore {
    /// A fresh folder.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn new() -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.db");
        Ok(TempStore { dir, path })
    }
}

/// Runs `sql` on the SQLite file at `path` through a plain connection, as a user in the
/// `sqlite3` shell would.
///
/// # Errors
/// SQLite's error.
pub fn raw_sqlite(path: &std::path::Path, sql: &str) -> rusqlite::Result<usize> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute(sql, [])
}
