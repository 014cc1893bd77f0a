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
//! given::<Account>([Opened.into()])
//!     .when(|acc| acc.deposit(5))
//!     .then_expect_events([Deposited { amount: 5 }.into()]);
//!
//! given::<Account>([])
//!     .when(|acc| acc.deposit(5))
//!     .then_expect_error(&AccountError::NotOpen);
//! ```

use std::fmt::Debug;

use crate::aggregate::{Aggregate, IntoEvents};

/// Starts a test of `A`: the aggregate as the fold of `events` (its history).
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let mut state = A::default();
    for event in events {
        state.apply_event(&event);
    }
    Given { state }
}

/// An aggregate with its history applied: see [`given`].
#[derive(Debug)]
pub struct Given<A> {
    state: A,
}

impl<A: Aggregate> Given<A> {
    /// Runs a command handler on the state.
    pub fn when<R, E>(self, handler: impl FnOnce(&A) -> Result<R, E>) -> Then<A, E>
    where
        R: IntoEvents<A::Event>,
    {
        let outcome = handler(&self.state).map(|decided| {
            let mut events = Vec::new();
            decided.into_events(&mut events);
            events
        });
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
    /// Asserts that the handler decided exactly `expected`, in order, and returns the
    /// state with them applied.
    ///
    /// # Panics
    /// When the handler failed or decided other events, with both in the message.
    #[track_caller]
    pub fn then_expect_events(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
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
