//! Projections: read models built from the global order of events.
//!
//! A projection is a plain struct that handles only the events it cares about, across
//! aggregate types: `#[derive(Projection)]` with `#[projection(name = "...", version =
//! N, events(A, B, ...))]`, and one [`Project`] impl per listed event. A [`Projector`]
//! runs it: it reads the events after the projection's checkpoint in position order,
//! in batches, and hands each to the projection with a [`Context`] that carries the
//! event's envelope and the database transaction of the batch.
//!
//! # Delivery
//! - **Exactly once** for a read model in the same database as the events (a table in
//!   the same SQLite file, or in the same PostgreSQL database): write it through
//!   [`Context::sqlite`] / [`Context::postgres`]. Those writes and the checkpoint commit
//!   in ONE transaction, so a crash at any point never applies an event twice or skips
//!   one.
//! - **At least once** for a read model elsewhere (another database, a search index, a
//!   message bus): the checkpoint commits after the handlers returned, so a crash
//!   between the two delivers the batch again. Make such writes idempotent, keyed by
//!   [`Context::position`].
//!
//! Events a projection does not list are never read: the runner filters them out in SQL,
//! so their payloads are never decoded.
//!
//! ```
//! use eventsource::{event, Aggregate, Apply, Context, Project, Projection, Projector, Repository, SqliteStore};
//! use serde::{Deserialize, Serialize};
//!
//! #[event(name = "money.deposited")]
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! pub struct Deposited { pub amount: i64 }
//!
//! #[derive(Debug, Default, Aggregate)]
//! #[aggregate(name = "account", events(Deposited))]
//! pub struct Account;
//! impl Apply<Deposited> for Account { fn apply(&mut self, _: &Deposited) {} }
//!
//! /// Balances in a table of the same SQLite file.
//! #[derive(Projection)]
//! #[projection(name = "balances", version = 1, events(Deposited))]
//! pub struct Balances;
//!
//! impl Project<Deposited> for Balances {
//!     fn project(&mut self, e: &Deposited, ctx: &mut Context<'_>) -> eventsource::HandlerResult {
//!         let id = ctx.stream_id().to_owned();
//!         ctx.sqlite()?.execute(
//!             "INSERT INTO balances (id, balance) VALUES (?1, ?2) \
//!              ON CONFLICT (id) DO UPDATE SET balance = balance + excluded.balance",
//!             (id, e.amount),
//!         )?;
//!         Ok(())
//!     }
//! }
//!
//! # let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("bank.db"))?;
//! store.write(|tx| tx.execute_batch("CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, balance INTEGER NOT NULL)"))?;
//! let accounts = Repository::<Account, _>::new(&store);
//! accounts.execute("a-1", |_| Deposited { amount: 5 })?;
//! accounts.execute("a-1", |_| Deposited { amount: 7 })?;
//!
//! let mut projector = Projector::new(&store, Balances);
//! let caught_up = projector.run_until_caught_up()?;
//! assert_eq!(caught_up.applied, 2);
//! let balance: i64 = store.read(|conn| conn.query_row("SELECT balance FROM balances WHERE id = 'a-1'", [], |r| r.get(0)))?;
//! assert_eq!(balance, 12);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod context;
mod runner;

use std::fmt;

pub(crate) use self::context::Tx;
pub use self::context::{Context, WrongBackend};
#[doc(hidden)]
pub use self::runner::{BatchOutcome, Job, Step};
pub use self::runner::{
    Checkpoint, Progress, ProjectionHandle, ProjectionStore, Projector, RunReport, WaitError,
};

use crate::error::{ReadError, StoreError};
use crate::event::{DecodeFailure, EventLocation, Payload};

/// What a projection's handlers return: any error, boxed (`?` converts `rusqlite` and
/// `postgres` errors, and your own).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a handler: [`Project::project`] and a projection's reset.
pub type HandlerResult = Result<(), HandlerError>;

/// A read model built from events: what `#[derive(Projection)]` implements.
///
/// The derive lists the events handled; implement [`Project`] once for each. Bump
/// `version` whenever the read model changes shape or meaning: the runner then calls
/// the projection's reset (`#[projection(reset = path)]`, a function
/// `fn(&mut Self, &mut Context<'_>) -> HandlerResult` that clears the read model) and
/// rebuilds it from position 0, in the same transaction as the first batch.
pub trait Projection: Send {
    /// The projection's stable name: the key of its checkpoint.
    const NAME: &'static str;
    /// The version of the read model; a new version rebuilds it from the start.
    const VERSION: u32;

    /// Every stored event type the projection reads: the names of every version its
    /// events decode (their `upcast_from` chains included).
    fn event_types() -> Vec<&'static str>;

    /// Decodes the event of `ctx` with the listed event type whose history holds its
    /// stored (type, version) and calls that type's [`Project`] impl.
    ///
    /// # Errors
    /// [`HandleError::Decode`] when the payload does not decode (or no listed type
    /// decodes its stored type and version), [`HandleError::Handler`] when the handler
    /// fails.
    fn handle(&mut self, ctx: &mut Context<'_>) -> Result<(), HandleError>;

    /// Clears the read model before a rebuild. The default does nothing.
    ///
    /// # Errors
    /// The reset's own error.
    fn reset(&mut self, ctx: &mut Context<'_>) -> HandlerResult {
        let _ = ctx;
        Ok(())
    }
}

/// How a projection reacts to one event type. Implement it once for each event listed
/// in `#[projection(events(...))]`.
#[diagnostic::on_unimplemented(
    message = "projection `{Self}` lists event `{E}` but does not project it",
    label = "missing `impl Project<{E}> for {Self}`",
    note = "add `impl eventsource::Project<{E}> for {Self} {{ fn project(&mut self, event: &{E}, ctx: &mut eventsource::Context<'_>) -> eventsource::HandlerResult {{ ... }} }}`"
)]
pub trait Project<E> {
    /// Updates the read model for `event`; `ctx` holds its envelope and the
    /// transaction to write through.
    ///
    /// # Errors
    /// Any error stops the runner at this event: the batch is rolled back, the
    /// checkpoint stays before the event, and the next run retries it.
    fn project(&mut self, event: &E, ctx: &mut Context<'_>) -> HandlerResult;
}

/// Why a projection could not handle one event (see [`Projection::handle`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The stored payload does not decode into the listed event type.
    #[error("cannot decode the payload: {0}")]
    Decode(#[source] DecodeFailure),
    /// The handler returned an error.
    #[error("{0}")]
    Handler(#[source] HandlerError),
}

/// What the generated [`Projection::handle`] calls: projects the event of `ctx` as `E`
/// when `E`'s history holds its stored (type, version), decoding it (through the
/// `upcast_from` chain); otherwise notes in `known` whether `E` has the type at other
/// versions, and returns `None`.
#[doc(hidden)]
pub fn project_as<P: Project<E>, E: crate::Event>(
    projection: &mut P,
    ctx: &mut Context<'_>,
    known: &mut Option<u32>,
) -> Option<Result<(), HandleError>> {
    let (event_type, event_version) = ctx.stored_type();
    match crate::history::find_in_history(E::HISTORY, event_type, event_version) {
        crate::history::Found::Version => {}
        crate::history::Found::Name => {
            known.get_or_insert(E::VERSION);
            return None;
        }
        crate::history::Found::Nothing => return None,
    }
    let payload = ctx.payload();
    Some(
        E::decode_version(event_version, Payload::Text(payload))
            .map_err(HandleError::Decode)
            .and_then(|decoded| {
                projection
                    .project(&decoded, ctx)
                    .map_err(HandleError::Handler)
            }),
    )
}

/// What the generated [`Projection::handle`] returns when no listed event decodes the
/// stored (type, version): `known` is the current version of a listed type with that
/// name, if any.
#[doc(hidden)]
pub fn not_projected(known: Option<u32>) -> Result<(), HandleError> {
    Err(HandleError::Decode(match known {
        Some(current) => DecodeFailure::UnsupportedVersion { current },
        None => DecodeFailure::UnknownType,
    }))
}

/// A projection that failed or could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A handler failed on an event, or its payload did not decode: the runner stopped
    /// with the checkpoint before the event. Fix the handler (or the data) and run again.
    #[error("projection `{projection}` stopped at {at}: {source}")]
    Failed {
        /// The projection's name.
        projection: &'static str,
        /// The event it failed on.
        at: Box<EventLocation>,
        /// Why.
        #[source]
        source: HandleError,
    },
    /// A handler (or the reset) panicked; the batch was rolled back.
    #[error("projection `{projection}` panicked {}: {message}", match at.as_ref() { Some(at) => format!("at {at}"), None => "in its reset".to_owned() })]
    Panicked {
        /// The projection's name.
        projection: &'static str,
        /// The event being handled (`None`: the reset).
        at: Box<Option<EventLocation>>,
        /// The panic's message.
        message: String,
    },
    /// The projection's reset failed before a rebuild.
    #[error("projection `{projection}` could not reset its read model: {source}")]
    Reset {
        /// The projection's name.
        projection: &'static str,
        /// Why.
        #[source]
        source: HandlerError,
    },
    /// The stored checkpoint belongs to a newer version of the projection than this
    /// code: a newer build of the service runs it. Nothing was changed.
    #[error(
        "projection `{projection}` is at version {stored} in the store, newer than this code's {code}"
    )]
    NewerVersion {
        /// The projection's name.
        projection: &'static str,
        /// The version in the store.
        stored: u32,
        /// The version of this code.
        code: u32,
    },
    /// Another runner holds the projection (PostgreSQL: one runner per projection at a
    /// time, across processes); nothing was done. [`Projector::run`] waits instead.
    #[error("projection `{projection}` is being run by another runner")]
    HeldElsewhere {
        /// The projection's name.
        projection: &'static str,
    },
    /// Reading an event failed (a row that is not a well-formed event).
    #[error("projection `{projection}`: {source}")]
    Read {
        /// The projection's name.
        projection: &'static str,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// The store failed (the batch was rolled back, or its commit's outcome is unknown:
    /// either way the read model and the checkpoint agree, and the next run goes on from
    /// the checkpoint stored).
    #[error("projection `{projection}`: {source}")]
    Store {
        /// The projection's name.
        projection: &'static str,
        /// Why.
        #[source]
        source: StoreError,
    },
}

impl ProjectionError {
    /// Wraps a read error, keeping a store error a store error.
    pub(crate) fn read(projection: &'static str, e: ReadError) -> Self {
        match e {
            ReadError::Store(source) => ProjectionError::Store { projection, source },
            source => ProjectionError::Read { projection, source },
        }
    }
}

/// A projection's progress through the global order: see
/// [`ProjectionStore::checkpoints`].
impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} at position {} (lag {})",
            self.name, self.version, self.position, self.lag
        )
    }
}
