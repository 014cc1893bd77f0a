//! A given/when/then harness for testing aggregates without a store: given past events,
//! when a command handler runs, then expect these events (or this error).
//!
//! ```
//! use eventsource::{event, Aggregate, Apply};
//! use eventsource::testing::given;
//! use serde::{Deserialize, Serialize};
//!
//! #[event(name = "account.opened")]
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! pub struct Opened;
//!
//! #[event(name = "money.deposited")]
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! pub struct Deposited { pub amount: u64 }
//!
//! #[derive(Debug, Default, Aggregate)]
//! #[aggregate(name = "account", events(Opened, Deposited))]
//! pub struct Account { open: bool, balance: u64 }
//! impl Apply<Opened> for Account { fn apply(&mut self, _: &Opened) { self.open = true; } }
//! impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.balance += e.amount; } }
//!
//! #[derive(Debug, PartialEq)]
//! pub enum AccountError { NotOpen }
//!
//! impl Account {
//!     pub fn deposit(&self, amount: u64) -> Result<Deposited, AccountError> {
//!         if !self.open { return Err(AccountError::NotOpen); }
//!         Ok(Deposited { amount })
//!     }
//! }
//!
//! given::<Account>(Opened)
//!     .when(|acc| acc.deposit(5))
//!     .then_expect_events(Deposited { amount: 5 });
//!
//! given::<Account>((Opened, Deposited { amount: 1 }, vec![Deposited { amount: 2 }]))
//!     .when(|acc| acc.deposit(5))
//!     .then_expect_events([Deposited { amount: 5 }]);
//!
//! given::<Account>(()) // no history
//!     .when(|acc| acc.deposit(5))
//!     .then_expect_error(&AccountError::NotOpen);
//!
//! let state = given::<Account>(Opened).when(|_| Deposited { amount: 7 }).then_expect_events(Deposited { amount: 7 });
//! assert_eq!(state.balance, 7);
//! ```

use std::fmt::Debug;

use crate::aggregate::{Aggregate, Decision, IntoEvents};

/// Starts a test of `A`: the aggregate as the fold of `events` (its history), given as
/// anything a command handler may return ([`IntoEvents`]): one event, a tuple, a `Vec`
/// or an array of events, `()` for none.
pub fn given<A: Aggregate>(events: impl IntoEvents<A::Event>) -> Given<A> {
    let mut history = Vec::new();
    events.into_events(&mut history);
    let mut state = A::default();
    for event in &history {
        state.apply_event(event);
    }
    Given { state }
}

/// An aggregate with its history applied: see [`given`].
#[derive(Debug)]
pub struct Given<A> {
    state: A,
}

impl<A: Aggregate> Given<A> {
    /// Runs a command handler on the state. It returns what a handler given to
    /// [`Repository::execute`](crate::Repository::execute) returns (a [`Decision`]):
    /// events, or `Result<events, YourError>`.
    pub fn when<D>(self, handler: impl FnOnce(&A) -> D) -> Then<A, D::Error>
    where
        D: Decision<A::Event>,
    {
        let mut events = Vec::new();
        let outcome = handler(&self.state).decide(&mut events).map(|()| events);
        Then {
            state: self.state,
            outcome,
        }
    }

    /// The state after the history, for assertions of your own.
    pub fn state(&self) -> &A {
        &self.state
    }
}

/// The outcome of a handler: see [`Given::when`].
#[derive(Debug)]
pub struct Then<A: Aggregate, E> {
    state: A,
    outcome: Result<Vec<A::Event>, E>,
}

impl<A: Aggregate, E: Debug> Then<A, E> {
    /// Asserts that the handler decided exactly `expected` (one event, a tuple, a `Vec`
    /// or an array of events, `()` for none), in order, and returns the state with them
    /// applied.
    ///
    /// # Panics
    /// When the handler failed or decided other events, with both in the message.
    #[track_caller]
    pub fn then_expect_events(self, expected: impl IntoEvents<A::Event>) -> A {
        let mut decided = Vec::new();
        expected.into_events(&mut decided);
        let expected = decided;
        match self.outcome {
            Ok(events) => {
                assert!(
                    events == expected,
                    "the handler decided other events\n  expected: {expected:?}\n  decided:  {events:?}"
                );
                let mut state = self.state;
                for event in &events {
                    state.apply_event(event);
                }
                state
            }
            Err(e) => panic!("the handler failed with {e:?}\n  expected events: {expected:?}"),
        }
    }

    /// Asserts that the handler failed with `expected`.
    ///
    /// # Panics
    /// When the handler decided events, or failed with another error.
    #[track_caller]
    pub fn then_expect_error(self, expected: &E)
    where
        E: PartialEq,
    {
        match self.outcome {
            Ok(events) => {
                panic!("the handler decided {events:?}\n  expected the error {expected:?}")
            }
            Err(e) => assert!(
                &e == expected,
                "the handler failed with another error\n  expected: {expected:?}\n  got:      {e:?}"
            ),
        }
    }

    /// The handler's outcome, for assertions of your own.
    pub fn outcome(&self) -> &Result<Vec<A::Event>, E> {
        &self.outcome
    }
}
