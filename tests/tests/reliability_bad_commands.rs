//! Bad rows in the `commands` table (the recorded outcomes of idempotent commands),
//! inserted through a plain connection: a record that cannot describe the stream (more
//! events than its version, a version beyond the stream's end, positions that are not
//! the events') makes `execute_once` fail with `ReadError::Corrupt` naming the command,
//! never panic and never report an outcome that did not happen. The handler does not
//! run and nothing is stored. On a SQLite file and on the PostgreSQL server.

use std::cell::Cell;
use std::error::Error;

use eventsource::{EventStore, ExecuteError, ReadError, Repository, SqliteStore, Version};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::{Account, TempStore, raw_sqlite};

type TestResult = Result<(), Box<dyn Error>>;

/// One bad record for stream `account/a`: its stream version and positions.
struct BadRecord {
    what: &'static str,
    stream_version: u64,
    positions: &'static [u64],
}

/// The stream has two events, at positions 1 and 2.
const BAD_RECORDS: &[BadRecord] = &[
    BadRecord {
        what: "two events at stream version 0",
        stream_version: 0,
        positions: &[1, 2],
    },
    BadRecord {
        what: "more events than the stream version",
        stream_version: 2,
        positions: &[1, 2, 2],
    },
    BadRecord {
        what: "a version beyond the stream's end",
        stream_version: 5,
        positions: &[2],
    },
    BadRecord {
        what: "a version beyond the stream's end, no events",
        stream_version: 9,
        positions: &[],
    },
    BadRecord {
        what: "positions that are not the events'",
        stream_version: 2,
        positions: &[7],
    },
];

/// Opens `account/a` and deposits 10 (positions 1 and 2), plants `bad` as command
/// `cmd-bad` with `insert`, and checks what `execute_once` makes of it.
fn refuses<S: EventStore>(
    store: &S,
    bad: &BadRecord,
    insert: impl FnOnce(&str, u64, &[u64]) -> TestResult,
) -> TestResult {
    let what = bad.what;
    let accounts = Repository::<Account, _>::new(store);
    accounts.execute("a", |a| a.open("ann"))?;
    accounts.execute("a", |a| a.deposit(10))?;
    insert("cmd-bad", bad.stream_version, bad.positions)?;
    let ran = Cell::new(false);
    let result = accounts.execute_once("a", "cmd-bad", |a| {
        ran.set(true);
        a.deposit(1)
    });
    match result {
        Err(ExecuteError::Read(ReadError::Corrupt { position, reason })) => {
            let first = bad.positions.first().map_or(0, |&p| p as i64);
            assert_eq!(position, first, "{what}");
            assert!(reason.contains("command `cmd-bad`"), "{what}: {reason}");
        }
        other => panic!("{what}: expected a corrupt record, got {other:?}"),
    }
    assert!(!ran.get(), "{what}: the handler ran");
    let loaded = accounts.load("a")?;
    assert_eq!(
        (loaded.state.balance, loaded.version),
        (10, Version::new(2)),
        "{what}"
    );
    // A good command id still runs.
    let done = accounts.execute_once("a", "cmd-good", |a| a.deposit(1))?;
    assert_eq!(
        (done.version, done.already_done),
        (Version::new(3), false),
        "{what}"
    );
    let again = accounts.execute_once("a", "cmd-good", |a| a.deposit(1))?;
    assert_eq!(
        (again.positions, again.already_done),
        (done.positions, true),
        "{what}"
    );
    Ok(())
}

#[test]
fn sqlite_a_corrupt_command_record_is_a_corrupt_error() -> TestResult {
    for bad in BAD_RECORDS {
        let tmp = TempStore::new()?;
        let store = SqliteStore::open(&tmp.path)?;
        refuses(&store, bad, |id, version, positions| {
            let positions: Vec<String> = positions.iter().map(u64::to_string).collect();
            raw_sqlite(
                &tmp.path,
                &format!(
                    "INSERT INTO commands (command_id, aggregate_type, stream_id, stream_version, \
                     positions, recorded_at) VALUES ('{id}', 'account', 'a', {version}, '[{}]', 0)",
                    positions.join(",")
                ),
            )?;
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn postgres_a_corrupt_command_record_is_a_corrupt_error() -> TestResult {
    for bad in BAD_RECORDS {
        pg::with_schema(|schema: &TestSchema| {
            let store = schema.connect()?;
            refuses(&store, bad, |id, version, positions| {
                let positions: Vec<String> = positions.iter().map(u64::to_string).collect();
                schema.sql(&format!(
                    "INSERT INTO commands (command_id, aggregate_type, stream_id, stream_version, \
                     positions, recorded_at) VALUES ('{id}', 'account', 'a', {version}, \
                     '{{{}}}', now())",
                    positions.join(",")
                ))?;
                Ok(())
            })
        })?;
    }
    Ok(())
}
