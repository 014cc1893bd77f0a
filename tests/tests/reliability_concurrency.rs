//! Many writers, one stream: threads and OS processes run `Repository::execute` deposits
//! on the same account of one store at the same time. Afterwards the stream holds
//! exactly the committed commands, versions 1..=n with no gap and no duplicate, and every
//! command either committed (possibly after retries) or was reported as
//! `ExecuteError::Conflict` and left no trace.
//!
//! The retry budget is kept small (2) on purpose, so that both outcomes happen.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Barrier;
use std::thread;

use eventsource::{EventStore, ExecuteError, Position, Repository, SqliteStore, StreamId, Version};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::reliability::DepositOutcome;
use eventsource_tests::{Account, MoneyDeposited, TempStore};

type TestResult = Result<(), Box<dyn Error>>;
type ThreadResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const ACCOUNT: &str = "shared";
const THREADS: usize = 8;
const THREADS_PER_HANDLE: usize = 2;
const PROCESSES: usize = 4;
const COMMANDS: u64 = 25;
const RETRIES: u32 = 2;

/// What the writers did, as counted by [`check`].
#[derive(Debug, Default)]
struct Tally {
    committed: usize,
    conflicts: usize,
    reruns: u32,
}

/// Runs `COMMANDS` deposits of unique amounts on [`ACCOUNT`] and reports each outcome.
fn deposits<S: EventStore>(store: S, worker: u64) -> ThreadResult<Vec<DepositOutcome>> {
    let accounts = Repository::<Account, _>::new(store).with_retries(RETRIES);
    let mut outcomes = Vec::new();
    for i in 0..COMMANDS {
        let amount = worker * 1_000_000 + i + 1;
        let mut calls = 0;
        let result = accounts.execute(ACCOUNT, |a| {
            calls += 1;
            a.deposit(amount)
        });
        outcomes.push(match result {
            Ok(committed) => DepositOutcome::Committed {
                amount,
                version: committed.version,
                position: *committed.positions.first().ok_or("no position")?,
                calls,
            },
            Err(ExecuteError::Conflict { attempts, .. }) => DepositOutcome::Conflict {
                amount,
                attempts,
                calls,
            },
            Err(e) => return Err(format!("deposit {amount}: {e:?}").into()),
        });
    }
    Ok(outcomes)
}

/// Checks the account's stream against what the writers were told.
fn check<S: EventStore>(store: &S, outcomes: &[DepositOutcome]) -> Result<Tally, Box<dyn Error>> {
    let mut tally = Tally::default();
    // amount -> (version, position) of every committed deposit.
    let mut committed = BTreeMap::new();
    let mut refused = BTreeSet::new();
    for outcome in outcomes {
        match *outcome {
            DepositOutcome::Committed {
                amount,
                version,
                position,
                calls,
            } => {
                assert!((1..=RETRIES + 1).contains(&calls), "{outcome}");
                tally.reruns += calls - 1;
                assert!(
                    committed.insert(amount, (version, position)).is_none(),
                    "{amount} twice"
                );
            }
            DepositOutcome::Conflict {
                amount,
                attempts,
                calls,
            } => {
                assert_eq!((attempts, calls), (RETRIES + 1, RETRIES + 1), "{outcome}");
                refused.insert(amount);
            }
        }
    }
    tally.committed = committed.len();
    tally.conflicts = refused.len();
    assert_eq!(committed.len() + refused.len(), outcomes.len());
    let versions: BTreeSet<u64> = committed.values().map(|(v, _)| v.get()).collect();
    let n = committed.len() as u64;
    assert_eq!(
        versions,
        (2..=n + 1).collect(),
        "acknowledged versions are not 2..=n+1 (1 is the opening)"
    );

    let stream = StreamId::new("account", ACCOUNT);
    let events: Vec<_> = store
        .read_stream(&stream, Version::new(1))
        .collect::<Result<_, _>>()?;
    let read: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
    assert_eq!(read, (1..=n + 1).collect::<Vec<_>>(), "gap or duplicate");
    assert_eq!(events[0].event_type, "account.opened");
    let mut stored = BTreeMap::new();
    let mut last = Position::START;
    for event in &events[1..] {
        assert_eq!(event.event_type, "money.deposited");
        assert!(event.position > last, "positions out of version order");
        last = event.position;
        let deposit: MoneyDeposited = serde_json::from_str(&event.payload)?;
        assert!(
            stored
                .insert(deposit.amount, (event.version, event.position))
                .is_none(),
            "{} stored twice",
            deposit.amount
        );
    }
    assert_eq!(
        stored, committed,
        "the stream differs from the acknowledgements"
    );
    assert!(refused.iter().all(|amount| !stored.contains_key(amount)));

    let loaded = Repository::<Account, _>::new(store).load(ACCOUNT)?;
    assert_eq!(loaded.version, Version::new(n + 1));
    assert_eq!(loaded.state.balance, committed.keys().sum::<u64>());
    Ok(tally)
}

/// `THREADS` threads, two per store handle (so both the handle's own lock and SQLite's
/// file lock are contended), run deposits on one account.
fn threads_on<S: EventStore>(handles: &[S]) -> Result<Tally, Box<dyn Error>> {
    let start = Barrier::new(THREADS);
    let results: Vec<ThreadResult<Vec<DepositOutcome>>> = thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, start) = (&handles[t / THREADS_PER_HANDLE], &start);
                scope.spawn(move || {
                    start.wait();
                    deposits(store, t as u64 + 1)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut outcomes = Vec::new();
    for result in results {
        outcomes.extend(result.map_err(|e| e.to_string())?);
    }
    assert_eq!(outcomes.len() as u64, THREADS as u64 * COMMANDS);
    check(&handles[0], &outcomes)
}

/// Kills the helper processes that are still running when a test fails half-way.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Starts `PROCESSES` `es_deposit` helpers with `store_args` (the store to open), waits
/// until each has opened it, lets them all go at once, and collects their outcomes.
fn processes(store_args: &[&str]) -> Result<Vec<DepositOutcome>, Box<dyn Error>> {
    let mut children = Children(Vec::new());
    for worker in 1..=PROCESSES {
        let child = Command::new(env!("CARGO_BIN_EXE_es_deposit"))
            .args(store_args)
            .args([
                ACCOUNT,
                &worker.to_string(),
                &COMMANDS.to_string(),
                &RETRIES.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        children.0.push(child);
    }
    let mut readers = Vec::new();
    for child in &mut children.0 {
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let first = lines.next().transpose()?.unwrap_or_default();
        assert_eq!(first, "ready", "a helper failed to start");
        readers.push(lines);
    }
    for child in &mut children.0 {
        writeln!(child.stdin.as_mut().ok_or("no stdin")?, "go")?;
    }
    let mut outcomes = Vec::new();
    for lines in readers {
        let mut done = false;
        for line in lines {
            let line = line?;
            if line == "done" {
                done = true;
            } else {
                outcomes.push(line.parse::<DepositOutcome>()?);
            }
        }
        assert!(done, "a helper stopped early");
    }
    for child in &mut children.0 {
        assert!(child.wait()?.success(), "a helper failed");
    }
    assert_eq!(outcomes.len() as u64, PROCESSES as u64 * COMMANDS);
    Ok(outcomes)
}

fn report(what: &str, tally: &Tally) {
    eprintln!(
        "{what}: {} commands committed ({} handler reruns after lost races), {} reported as conflicts",
        tally.committed, tally.reruns, tally.conflicts
    );
}

#[test]
fn threads_on_one_sqlite_file_lose_no_command() -> TestResult {
    let tmp = TempStore::new()?;
    let handles = (0..THREADS / THREADS_PER_HANDLE)
        .map(|_| SqliteStore::open(&tmp.path))
        .collect::<Result<Vec<_>, _>>()?;
    Repository::<Account, _>::new(&handles[0]).execute(ACCOUNT, |a| a.open("ann"))?;
    let tally = threads_on(&handles)?;
    report("sqlite, 8 threads", &tally);
    Ok(())
}

#[test]
fn processes_on_one_sqlite_file_lose_no_command() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    Repository::<Account, _>::new(&store).execute(ACCOUNT, |a| a.open("ann"))?;
    let path = tmp.path.to_str().ok_or("path is not UTF-8")?;
    let outcomes = processes(&["sqlite", path])?;
    let tally = check(&store, &outcomes)?;
    report("sqlite, 4 processes", &tally);
    Ok(())
}

#[test]
fn threads_on_postgres_lose_no_command() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let handles = (0..THREADS / THREADS_PER_HANDLE)
        .map(|_| schema.connect())
        .collect::<Result<Vec<_>, _>>()?;
    Repository::<Account, _>::new(&handles[0]).execute(ACCOUNT, |a| a.open("ann"))?;
    let tally = threads_on(&handles)?;
    report("postgres, 8 threads", &tally);
    drop(handles);
    Ok(())
}

#[test]
fn processes_on_postgres_lose_no_command() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    Repository::<Account, _>::new(&store).execute(ACCOUNT, |a| a.open("ann"))?;
    let outcomes = processes(&["postgres", &url, &schema.name])?;
    let tally = check(&store, &outcomes)?;
    report("postgres, 4 processes", &tally);
    drop(store);
    Ok(())
}
