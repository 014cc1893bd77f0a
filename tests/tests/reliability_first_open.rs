//! Many openers of a store that does not exist yet: threads and OS processes call
//! `SqliteStore::open` on the same new path at the same moment. Every one of them
//! succeeds (none sees a half-created file as "another application's database", none
//! fails with "database is locked"), the file is a sound store, and each opener's
//! append is in it.

use std::error::Error;
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::thread;

use eventsource::{EventStore, ExpectedVersion, NewEvent, Position, SqliteStore, StreamId};
use eventsource_tests::TempStore;
use eventsource_tests::pg::join_all;

type TestResult = Result<(), Box<dyn Error>>;

const THREADS: usize = 8;
const THREAD_ROUNDS: usize = 40;
const PROCESSES: usize = 6;
const PROCESS_ROUNDS: usize = 25;

/// The store at `path` holds one event per opener and nothing else.
fn check(path: &std::path::Path, openers: usize) -> TestResult {
    let store = SqliteStore::open(path)?;
    let events: Vec<_> = store.read_all(Position::START).collect::<Result<_, _>>()?;
    assert_eq!(events.len(), openers);
    for n in 0..openers {
        let stream = StreamId::new("opener", n.to_string());
        assert_eq!(store.stream_version(&stream)?.get(), 1, "opener {n}");
    }
    Ok(())
}

#[test]
fn threads_opening_a_new_store_together_all_succeed() -> TestResult {
    let mut failures = Vec::new();
    for round in 0..THREAD_ROUNDS {
        let tmp = TempStore::new()?;
        let barrier = Barrier::new(THREADS);
        let results: Vec<Result<(), String>> = thread::scope(|s| {
            let handles = (0..THREADS)
                .map(|n| {
                    let (path, barrier) = (&tmp.path, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let store = SqliteStore::open(path).map_err(|e| e.to_string())?;
                        store
                            .append(
                                &StreamId::new("opener", n.to_string()),
                                ExpectedVersion::NoStream,
                                &[NewEvent::new("opener.opened", 1, "{}")],
                            )
                            .map_err(|e| e.to_string())?;
                        Ok(())
                    })
                })
                .collect();
            join_all(handles)
        });
        failures.extend(
            results
                .into_iter()
                .filter_map(Result::err)
                .map(|e| format!("round {round}: {e}")),
        );
        if failures.is_empty() {
            check(&tmp.path, THREADS)?;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed opens: {failures:#?}",
        failures.len()
    );
    Ok(())
}

#[test]
fn processes_opening_a_new_store_together_all_succeed() -> TestResult {
    let mut failures = Vec::new();
    for round in 0..PROCESS_ROUNDS {
        let tmp = TempStore::new()?;
        let children = (0..PROCESSES)
            .map(|n| {
                Command::new(env!("CARGO_BIN_EXE_es_open"))
                    .arg(&tmp.path)
                    .arg(n.to_string())
                    .stdout(Stdio::piped())
                    .spawn()
            })
            .collect::<Result<Vec<_>, _>>()?;
        for child in children {
            let output = child.wait_with_output()?;
            let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if !output.status.success() || text != "ok" {
                failures.push(format!("round {round}: {text}"));
            }
        }
        if failures.is_empty() {
            check(&tmp.path, PROCESSES)?;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed opens: {failures:#?}",
        failures.len()
    );
    Ok(())
}
