//! Test helpers that keep event shapes from changing silently.
//!
//! - The **schema lock** ([`assert_locked`], [`SchemaLock`]): a committed plain-text file,
//!   e.g. `events.lock`, with the shape of every event version an aggregate has stored
//!   ([`Event::SHAPE`](crate::Event::SHAPE), one line per `name@version`). A test
//!   fails when a shape changed while its version did not (naming the event and the
//!   field), when a new version is not locked yet, and when a locked version no longer
//!   decodes through an `upcast_from` chain or the upcasters.
//!   `EVENTSOURCE_UPDATE_LOCK=1 cargo test` records new versions.
//! - **Golden samples** ([`assert_samples`], [`check_samples`]): example JSON of each
//!   historical version in files such as `tests/golden/account.opened@1.json`, each
//!   proved to decode to the expected current events. They cover what a fingerprint
//!   cannot see: a change inside a field's own type, an upcaster's logic.
//!
//! ```
//! use eventsource::schema::{assert_locked, assert_samples};
//! use eventsource::{event, Aggregate, Apply, Upcasters};
//! use serde::{Deserialize, Serialize};
//!
//! #[event(name = "money.deposited", version = 2)]
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! pub struct Deposited { pub amount: u64, pub currency: String }
//!
//! #[derive(Debug, Default, Aggregate)]
//! #[aggregate(name = "account", events(Deposited))]
//! pub struct Account;
//! # impl Apply<Deposited> for Account { fn apply(&mut self, _: &Deposited) {} }
//!
//! fn upcasters() -> Upcasters {
//!     Upcasters::new().payload("money.deposited", 1, |mut p| {
//!         p["currency"] = "EUR".into();
//!         Ok(p)
//!     })
//! }
//! # let dir = tempfile::tempdir()?;
//! # let lock = dir.path().join("events.lock");
//! # std::fs::write(&lock, "[account]\nmoney.deposited@1 {amount: u64}\nmoney.deposited@2 {amount: u64, currency: String}\n")?;
//! # let golden = dir.path().join("golden");
//! # std::fs::create_dir(&golden)?;
//! # std::fs::write(golden.join("money.deposited@1.json"), r#"{"payload": {"amount": 5}, "expected": [{"type": "money.deposited", "payload": {"amount": 5, "currency": "EUR"}}]}"#)?;
//!
//! // In your test suite (paths relative to your crate's Cargo.toml):
//! assert_locked::<Account>(&lock, &upcasters());               // e.g. "events.lock"
//! assert_samples::<AccountEvent>(&golden, &upcasters());       // e.g. "tests/golden"
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod golden;
mod lock;
mod shape;

use std::path::PathBuf;

pub use self::golden::{SampleFailure, SampleProblem, SampleReport, assert_samples, check_samples};
pub use self::lock::{LockViolation, SchemaLock, UPDATE_ENV, UpdateMode, assert_locked};

/// Why a lock file or a folder of samples could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The file or folder could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the lock file is not in the lock's format (it is written by
    /// [`SchemaLock::write`]; fix or revert the hand edit).
    #[error("line {line} of the schema lock: {reason}")]
    Parse {
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}
