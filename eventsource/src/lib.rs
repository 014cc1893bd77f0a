//! Event-sourced aggregates on an append-only store.
//!
//! Annotate plain domain structs: `#[event]` on each event type, `#[derive(Aggregate)]`
//! on the aggregate root. Command handlers are plain methods that return events (or
//! your error); a [`Repository`] loads the aggregate by replaying its stream, runs the
//! handler and appends the new events under optimistic concurrency, into one table that
//! the database itself refuses to UPDATE or DELETE. The embedded default is a SQLite
//! file; PostgreSQL is a feature away.
//!
//! ```
//! use eventsource::{event, Aggregate, Apply, ExecuteError, SqliteStore};
//! use serde::{Deserialize, Serialize};
//!
//! #[event(name = "account.opened")]
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! pub struct AccountOpened { pub owner: String }
//!
//! #[event(name = "money.deposited")]
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! pub struct MoneyDeposited { pub amount: u64 }
//!
//! #[derive(Debug, Default, Aggregate)]
//! #[aggregate(name = "account", events(AccountOpened, MoneyDeposited))]
//! pub struct Account { open: bool, balance: u64 }
//!
//! impl Apply<AccountOpened> for Account {
//!     fn apply(&mut self, _: &AccountOpened) { self.open = true; }
//! }
//! impl Apply<MoneyDeposited> for Account {
//!     fn apply(&mut self, e: &MoneyDeposited) { self.balance += e.amount; }
//! }
//!
//! #[derive(Debug, PartialEq, thiserror::Error)]
//! pub enum AccountError {
//!     #[error("the account is not open")]
//!     NotOpen,
//! }
//!
//! // Business rules live in command handlers: they read the state and decide what happens.
//! impl Account {
//!     pub fn deposit(&self, amount: u64) -> Result<MoneyDeposited, AccountError> {
//!         if !self.open { return Err(AccountError::NotOpen); }
//!         Ok(MoneyDeposited { amount })
//!     }
//! }
//!
//! # let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("bank.db"))?; // created on first open
//! let accounts = Account::repository(store);
//!
//! accounts.execute("acc-1", |_| AccountOpened { owner: "ann".into() })?;
//! accounts.execute("acc-1", |acc| acc.deposit(10))?;
//! let refused = accounts.execute("acc-2", |acc| acc.deposit(5));
//! assert!(matches!(refused, Err(ExecuteError::Domain(AccountError::NotOpen))));
//!
//! let acc = accounts.load("acc-1")?;
//! assert_eq!((acc.state.balance, acc.version.get()), (10, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The main types, by task
//!
//! | task | start with |
//! |---|---|
//! | declare events and aggregates | [`event`], [`Event`], [`Aggregate`], [`Apply`], [`Decision`] |
//! | run commands (the write side) | [`Repository::execute`], [`Repository::execute_once`], [`Metadata`], [`ExecuteError`] |
//! | test an aggregate's rules | [`testing::given`] |
//! | open a store | [`SqliteStore`], [`SqliteOptions`], [`EventStore`] |
//! | read the global order | [`Repository::read_all`], [`EventStore::read_all_filtered`], [`EventFilter`] |
//! | keep read models (the read side) | [`Projection`], [`Project`], [`Projector`], [`Subscription`] |
//! | go faster | [`Repository::with_cache`], [`Repository::with_snapshots`], [`SnapshotPolicy`] |
//! | evolve events | `#[event(version, upcast_from)]`, [`Upcasters`], [`schema::assert_locked`], [`schema::check_samples`] |
//! | check a store's events | [`Verify`] |
//! | handle errors | [`Error`] and the per-operation [`StoreError`], [`AppendError`], [`ReadError`] |
//! | async code (feature `tokio`) | `AsyncRepository`, `AsyncStore`, `AsyncSubscription` |
//! | PostgreSQL (feature `postgres`) | `PostgresStore`, `PostgresOptions` |
//!
//! # Further reading
//!
//! The README is a longer tour: [repositories], [handling errors], [the read side],
//! [async services], [speed], [choosing a store] and [evolving events].
//! RELIABILITY.md lists each promise with the test behind it: [concurrency],
//! [unknown commit outcomes], [crashes], [bad data] and [PostgreSQL connections].
//!
//! [repositories]: https://example.invalid/eventsource/blob/main/README.md#repositories
//! [handling errors]: https://example.invalid/eventsource/blob/main/README.md#handling-errors
//! [the read side]: https://example.invalid/eventsource/blob/main/README.md#the-read-side-projections-and-subscriptions
//! [async services]: https://example.invalid/eventsource/blob/main/README.md#in-an-async-service
//! [speed]: https://example.invalid/eventsource/blob/main/README.md#speed-group-commit-the-state-cache-and-snapshots
//! [choosing a store]: https://example.invalid/eventsource/blob/main/README.md#choosing-a-store
//! [evolving events]: https://example.invalid/eventsource/blob/main/README.md#evolving-events
//! [concurrency]: https://example.invalid/eventsource/blob/main/RELIABILITY.md#concurrency-nothing-lost-nothing-doubled
//! [unknown commit outcomes]: https://example.invalid/eventsource/blob/main/RELIABILITY.md#commit-outcome-unknown-an-error-means-nothing-was-stored-unless-it-says-otherwise
//! [crashes]: https://example.invalid/eventsource/blob/main/RELIABILITY.md#crashes-an-acknowledged-append-survives-a-batch-is-all-or-nothing
//! [bad data]: https://example.invalid/eventsource/blob/main/RELIABILITY.md#bad-data-in-the-table-a-precise-error-never-a-panic-never-a-wrong-aggregate
//! [PostgreSQL connections]: https://example.invalid/eventsource/blob/main/RELIABILITY.md#postgresql-connections-bounded-and-a-full-pool-is-a-clean-error

#[macro_use]
mod trace;
mod aggregate;
#[cfg(feature = "tokio")]
mod asynchronous;
mod backoff;
mod cache;
mod chain;
mod error;
mod event;
mod history;
mod json;
mod projection;
mod repository;
pub mod schema;
mod snapshot;
mod store;
mod subscription;
pub mod testing;
mod upcast;
mod verify;
mod version;

pub use crate::aggregate::{Aggregate, Apply, Decision, EventSet, EventType, IntoEvents};
#[cfg(feature = "tokio")]
pub use crate::asynchronous::{AsyncRepository, AsyncStore, AsyncSubscription, run_blocking};
pub use crate::backoff::Backoff;
pub use crate::chain::{
    ChainHash, ChainHashError, ChainHead, ChainProblem, ChainProblemKind, ChainProgress,
    ChainReport, ChainVerify, VersionGap,
};
pub use crate::error::{
    AppendError, Error, ExecuteError, ReadError, RegistrationError, Result, StoreError, UpcastError,
};
#[allow(deprecated)]
pub use crate::event::EventSchema;
pub use crate::event::{
    DecodeFailure, Event, EventData, EventEnvelope, EventId, EventKey, EventLocation, EventShape,
    Metadata, NewEvent, Payload, RecordedEvent, RecordedEventRef, Timestamp,
};
pub use crate::projection::{
    Checkpoint, Context, HandleError, HandlerError, HandlerResult, Progress, Project, Projection,
    ProjectionError, ProjectionHandle, ProjectionStore, Projector, RunReport, WaitError,
    WrongBackend,
};
pub use crate::repository::{Committed, Loaded, Repository, TypedEvents};
pub use crate::snapshot::{Snapshot, SnapshotPolicy};
/// Not public API: what [`EventStore`]'s hidden hash-chain method takes.
#[doc(hidden)]
pub use crate::store::ChainVisitor;
#[cfg(feature = "tls")]
pub use crate::store::PostgresTls;
pub use crate::store::{
    AppendResult, CommandRecord, DataVisitor, EventFilter, EventStore, Events, SqliteOptions,
    SqliteStore, StreamInfo, Synchronous, Visitor,
};
pub use crate::store::{Import, ImportError, Inspect, StoreSummary};
#[cfg(feature = "postgres")]
pub use crate::store::{PostgresOptions, PostgresStore};
pub use crate::subscription::Subscription;
pub use crate::upcast::{RawEvent, Upcasters};
pub use crate::verify::{Verify, VerifyCount, VerifyFailure, VerifyReport};
pub use crate::version::{ExpectedVersion, InvalidStreamId, Position, StreamId, Version};

/// The SQLite driver the store is built on, at the version it uses: for
/// [`SqliteOptions::on_connect`] and [`Context::sqlite`] without pinning a matching
/// `rusqlite` of your own.
pub use rusqlite;

/// The PostgreSQL driver [`PostgresStore`] is built on, at the version it uses: for
/// [`Context::postgres`] without pinning a matching `postgres` of your own.
#[cfg(feature = "postgres")]
pub use postgres;

/// The TLS library [`PostgresTls`] is built on (feature `tls`), at the version it uses:
/// for [`PostgresTls::from_rustls`] without pinning a matching `rustls` of your own.
#[cfg(feature = "tls")]
pub use rustls;

/// `#[derive(Aggregate)]` with `#[aggregate(name = "...", events(A, B, ...))]`.
#[cfg(feature = "derive")]
pub use eventsource_derive::Aggregate;
/// `#[derive(Projection)]` with `#[projection(name = "...", version = N, events(A, B, ...))]`.
#[cfg(feature = "derive")]
pub use eventsource_derive::Projection;
/// `#[event(name = "...", version = N, upcast_from = Old)]`: implements [`Event`].
#[cfg(feature = "derive")]
pub use eventsource_derive::event;

/// Not public API: what the macros' generated code refers to.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    /// Canonical JSON, as the hash chain covers payloads (for the tests that compare
    /// the backends).
    pub use crate::chain::canonical_json;

    pub use crate::history::{Found, find_in_history, histories_overlap, prepend_history};
    /// What `EventSet::encode` calls: JSON that refuses non-finite floats.
    pub use crate::json::to_string as encode;
    pub use crate::projection::{not_projected, project_as};

    /// Byte-wise string equality usable in constants (duplicate event names are found at
    /// compile time).
    pub const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
}

/// The README's Rust snippets, compiled and run as doctests so they cannot rot (with
/// every feature on, as `cargo test --workspace` builds this crate: the snippets use
/// PostgreSQL, TLS and tokio; a doctest cannot see the crate's features itself).
#[cfg(all(doctest, feature = "postgres", feature = "tokio", feature = "tls"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
