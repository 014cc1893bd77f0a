//! Event-sourced aggregates on an append-only store.
//!
//! Annotate plain domain structs: `#[event]` on each event type, `#[derive(Aggregate)]`
//! on the aggregate root. Command handlers are plain methods that return events; a
//! [`Repository`] loads the aggregate by replaying its stream, runs the handler and
//! appends the new events under optimistic concurrency, all in one append-only table.
//!
//! ```
//! use eventsource::{event, Aggregate, Apply, SqliteStore};
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
//! pub struct Account { owner: String, balance: u64 }
//!
//! impl Apply<AccountOpened> for Account {
//!     fn apply(&mut self, e: &AccountOpened) { self.owner = e.owner.clone(); }
//! }
//! impl Apply<MoneyDeposited> for Account {
//!     fn apply(&mut self, e: &MoneyDeposited) { self.balance += e.amount; }
//! }
//!
//! let accounts = Account::repository(SqliteStore::in_memory()?); // a Repository<Account, _>
//! accounts.execute("acc-1", |_| AccountOpened { owner: "ann".into() })?;
//! accounts.execute("acc-1", |_| MoneyDeposited { amount: 10 })?;
//! let acc = accounts.load("acc-1")?;
//! assert_eq!((acc.state.balance, acc.version.get()), (10, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[macro_use]
mod trace;
mod aggregate;
#[cfg(feature = "tokio")]
mod asynchronous;
mod backoff;
mod cache;
mod error;
mod event;
mod history;
mod json;
mod projection;
mod repository;
pub mod schema;
mod snapshot;
pub mod store;
mod subscription;
pub mod testing;
mod upcast;
mod verify;
mod version;

pub use crate::aggregate::{Aggregate, Apply, Decision, EventSet, EventType, IntoEvents};
#[cfg(feature = "tokio")]
pub use crate::asynchronous::{AsyncRepository, AsyncStore, AsyncSubscription, run_blocking};
pub use crate::backoff::Backoff;
pub use crate::error::{AppendError, Error, ExecuteError, ReadError, Result, StoreError};
pub use crate::event::{
    DecodeFailure, Event, EventData, EventEnvelope, EventId, EventLocation, Metadata, NewEvent,
    Payload, RecordedEvent, RecordedEventRef, Timestamp,
};
pub use crate::history::EventSchema;
pub use crate::projection::{
    Checkpoint, Context, HandleError, HandlerError, HandlerResult, Progress, Project, Projection,
    ProjectionError, ProjectionHandle, ProjectionStore, Projector, RunReport, WaitError,
    WrongBackend,
};
pub use crate::repository::{Committed, Loaded, Repository, TypedEvents};
pub use crate::snapshot::{Snapshot, SnapshotPolicy};
pub use crate::store::{
    AppendResult, CommandRecord, EventFilter, EventStore, SqliteOptions, SqliteStore, StreamInfo,
    Synchronous,
};
pub use crate::store::{Import, ImportError, Inspect, StoreSummary};
#[cfg(feature = "postgres")]
pub use crate::store::{PostgresOptions, PostgresStore};
pub use crate::subscription::Subscription;
pub use crate::upcast::{EventKey, RawEvent, RegistrationError, UpcastError, Upcasters};
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
/// PostgreSQL and tokio; a doctest cannot see the crate's features itself).
#[cfg(all(doctest, feature = "postgres", feature = "tokio"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
