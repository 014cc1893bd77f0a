//! Races that matter: commands that do not commute, so a lost expected-version check
//! shows. A `Sequence` command appends "the number after the last one I saw", so every
//! stored number must equal its stream version; a withdrawal checks the balance, so the
//! account must never be overdrawn. One test forces a race with a barrier inside the
//! handler and asserts that the loser's handler ran again on the new state.
//!
//! Each runs on a SQLite file (one handle shared by the threads, and one handle per
//! thread) and on PostgreSQL.

use std::error::Error;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use eventsource::{
    Aggregate, Apply, EventStore, ExecuteError, Repository, SqliteStore, StreamId, Version, event,
};
use eventsource_tests::pg::{self, TestSchema, join_all};
use eventsource_tests::{Account, BankError, TempStore};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn Error>>;
type ThreadResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The next number of a sequence was taken.
#[event(name = "sequence.numbered")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Numbered {
    /// The number: the count of numbers before it, plus one.
    pub n: u64,
}

/// Hands out 1, 2, 3, ... : a command that does not commute.
#[derive(Debug, Default, Clone, Aggregate)]
#[aggregate(name = "sequence", events(Numbered))]
pub struct Sequence {
    last: u64,
}

impl Apply<Numbered> for Sequence {
    fn apply(&mut self, e: &Numbered) {
        self.last = e.n;
    }
}

impl Sequence {
    /// Handlers return a `Result`; this one cannot fail.
    #[allow(clippy::unnecessary_wraps)]
    fn take(&self) -> Result<Numbered, std::convert::Infallible> {
        Ok(Numbered { n: self.last + 1 })
    }
}

const THREADS: usize = 8;
const TAKES: usize = 25;

/// Every stored number equals its stream version: 1..=n, none twice.
fn assert_numbered<S: EventStore>(store: &S, expected: usize) -> TestResult {
    let stream = StreamId::new("sequence", "s");
    let mut count = 0;
    for event in store.read_stream(&stream, Version::new(1)) {
        let event = event?;
        let n: Numbered = serde_json::from_str(&event.payload)?;
        assert_eq!(
            n.n,
            event.version.get(),
            "number {} at version {}",
            n.n,
            event.version
        );
        count += 1;
    }
    assert_eq!(count, expected);
    Ok(())
}

/// `THREADS` threads, each on `stores[t % stores.len()]`, take `TAKES` numbers each with
/// the repository's defaults (retries and backoff). Returns (committed, conflicts,
/// handler calls).
fn take_numbers<S: EventStore + Sync>(stores: &[S]) -> Result<(usize, usize, u32), Box<dyn Error>> {
    let calls = AtomicU32::new(0);
    let barrier = Barrier::new(THREADS);
    let results: Vec<ThreadResult<(usize, usize)>> = thread::scope(|s| {
        let handles = (0..THREADS)
            .map(|t| {
                let (store, calls, barrier) = (&stores[t % stores.len()], &calls, &barrier);
                s.spawn(move || -> ThreadResult<(usize, usize)> {
                    let sequences = Repository::<Sequence, _>::new(store);
                    barrier.wait();
                    let (mut committed, mut conflicts) = (0, 0);
                    for _ in 0..TAKES {
                        match sequences.execute("s", |seq| {
                            calls.fetch_add(1, Ordering::Relaxed);
                            seq.take()
                        }) {
                            Ok(done) => {
                                // The number handed out is the version it was stored at.
                                let taken = done.events.first().map(|e| match e {
                                    SequenceEvent::Numbered(n) => n.n,
                                });
                                assert_eq!(taken, Some(done.version.get()));
                                committed += 1;
                            }
                            Err(ExecuteError::Conflict { .. }) => conflicts += 1,
                            Err(e) => return Err(e.to_string().into()),
                        }
                    }
                    Ok((committed, conflicts))
                })
            })
            .collect();
        join_all(handles)
    });
    let (mut committed, mut conflicts) = (0, 0);
    for result in results {
        let (c, k) = result.map_err(|e| e.to_string())?;
        committed += c;
        conflicts += k;
    }
    Ok((committed, conflicts, calls.into_inner()))
}

fn many_writers_take_numbers<S: EventStore + Sync>(label: &str, stores: &[S]) -> TestResult {
    let (committed, conflicts, calls) = take_numbers(stores)?;
    eprintln!(
        "{label}: {committed} committed, {conflicts} conflicts, {} handler reruns",
        calls as usize - committed - conflicts
    );
    assert_eq!(committed + conflicts, THREADS * TAKES);
    assert_numbered(&stores[0], committed)
}

/// Two threads load the same version (a barrier inside the first handler call holds
/// both until each has decided), then append: exactly one loses, its handler runs
/// again on the state that includes the winner's number, and the stream is 1, 2.
fn a_forced_race_reruns_the_loser<S: EventStore + Sync>(stores: &[S]) -> TestResult {
    let barrier = Barrier::new(2);
    let results: Vec<ThreadResult<(u32, u64)>> = thread::scope(|s| {
        let handles = (0..2)
            .map(|t| {
                let (store, barrier) = (&stores[t % stores.len()], &barrier);
                s.spawn(move || -> ThreadResult<(u32, u64)> {
                    let sequences = Repository::<Sequence, _>::new(store);
                    let mut calls = 0;
                    let done = sequences
                        .execute("s", |seq| {
                            calls += 1;
                            if calls == 1 {
                                barrier.wait();
                            }
                            seq.take()
                        })
                        .map_err(|e| e.to_string())?;
                    Ok((calls, done.version.get()))
                })
            })
            .collect();
        join_all(handles)
    });
    let mut outcomes = results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    outcomes.sort_by_key(|&(_, version)| version);
    // The winner decided once and stored 1; the loser decided twice and stored 2.
    assert_eq!(outcomes, [(1, 1), (2, 2)]);
    assert_numbered(&stores[0], 2)
}

/// 100 in the account; 8 threads try to withdraw 10 three times each (240 in all).
/// Exactly ten withdrawals succeed, the others are refused by the domain, and the
/// balance is never overdrawn (the fold would underflow).
fn withdrawals_never_overdraw<S: EventStore + Sync>(stores: &[S]) -> TestResult {
    let accounts = Repository::<Account, _>::new(&stores[0]);
    accounts.execute("acc", |a| a.open("ann"))?;
    accounts.execute("acc", |a| a.deposit(100))?;
    let barrier = Barrier::new(THREADS);
    let results: Vec<ThreadResult<(usize, usize)>> = thread::scope(|s| {
        let handles = (0..THREADS)
            .map(|t| {
                let (store, barrier) = (&stores[t % stores.len()], &barrier);
                s.spawn(move || -> ThreadResult<(usize, usize)> {
                    let accounts = Repository::<Account, _>::new(store).with_retries(1_000);
                    barrier.wait();
                    let (mut paid, mut refused) = (0, 0);
                    for _ in 0..3 {
                        match accounts.execute("acc", |a| a.withdraw(10)) {
                            Ok(_) => paid += 1,
                            Err(ExecuteError::Domain(BankError::InsufficientFunds { balance })) => {
                                assert!(balance < 10);
                                refused += 1;
                            }
                            Err(e) => return Err(e.to_string().into()),
                        }
                    }
                    Ok((paid, refused))
                })
            })
            .collect();
        join_all(handles)
    });
    let (mut paid, mut refused) = (0, 0);
    for result in results {
        let (p, r) = result.map_err(|e| e.to_string())?;
        paid += p;
        refused += r;
    }
    assert_eq!((paid, refused), (10, THREADS * 3 - 10));
    let account = accounts.load("acc")?;
    assert_eq!((account.state.balance, account.version.get()), (0, 12));
    Ok(())
}

/// A SQLite file shared by the threads through one handle, and through one handle each.
fn sqlite(test: impl Fn(&[SqliteStore]) -> TestResult) -> TestResult {
    let shared = TempStore::new()?;
    test(&[SqliteStore::open(&shared.path)?])?;
    let own = TempStore::new()?;
    let handles = (0..THREADS)
        .map(|_| SqliteStore::open(&own.path))
        .collect::<Result<Vec<_>, _>>()?;
    test(&handles)
}

/// A fresh PostgreSQL schema, a store handle per thread.
fn postgres(test: impl Fn(&[eventsource::PostgresStore]) -> TestResult) -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let handles = (0..THREADS)
        .map(|_| schema.connect())
        .collect::<Result<Vec<_>, _>>()?;
    let result = test(&handles);
    drop(handles);
    result
}

#[test]
fn sqlite_many_writers_take_numbers_in_order() -> TestResult {
    sqlite(|stores| many_writers_take_numbers(&format!("sqlite, {} handles", stores.len()), stores))
}

#[test]
fn postgres_many_writers_take_numbers_in_order() -> TestResult {
    postgres(|stores| many_writers_take_numbers("postgres", stores))
}

#[test]
fn sqlite_a_forced_race_reruns_the_loser() -> TestResult {
    sqlite(a_forced_race_reruns_the_loser)
}

#[test]
fn postgres_a_forced_race_reruns_the_loser() -> TestResult {
    postgres(a_forced_race_reruns_the_loser)
}

#[test]
fn sqlite_withdrawals_never_overdraw() -> TestResult {
    sqlite(withdrawals_never_overdraw)
}

#[test]
fn postgres_withdrawals_never_overdraw() -> TestResult {
    postgres(withdrawals_never_overdraw)
}
