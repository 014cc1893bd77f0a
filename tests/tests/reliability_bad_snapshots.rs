//! Snapshots are a cache beside the events, and a cache is not trusted blindly: a
//! snapshot row that cannot be right (beyond the stream's end, at a negative version or
//! version 0, a state that does not decode) is ignored and the stream replayed from its
//! first event. Rows inserted by hand through a plain connection, on a SQLite file and on
//! the PostgreSQL server; loads, `load_at` and commands all see the events' state.

use std::error::Error;

use eventsource::{EventStore, Repository, SnapshotPolicy, SqliteStore, Version};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::{Account, TempStore, raw_sqlite};

type TestResult = Result<(), Box<dyn Error>>;

/// A state that disagrees with every stream here: if a load uses it, it shows.
const PLANTED: &str = r#"{"owner":"planted","currency":"EUR","balance":1000,"open":true}"#;

/// One bad snapshot row: its version and its state, as SQL expressions.
struct BadSnapshot {
    what: &'static str,
    version: &'static str,
    state: &'static str,
}

/// Rows both stores can hold.
fn bad_snapshots() -> Vec<BadSnapshot> {
    vec![
        BadSnapshot {
            what: "beyond the stream's end",
            version: "50",
            state: PLANTED,
        },
        BadSnapshot {
            what: "just beyond the stream's end",
            version: "4",
            state: PLANTED,
        },
        BadSnapshot {
            what: "a negative version",
            version: "-2",
            state: PLANTED,
        },
        BadSnapshot {
            what: "the most negative version",
            version: "-9223372036854775808",
            state: PLANTED,
        },
        BadSnapshot {
            what: "version 0",
            version: "0",
            state: PLANTED,
        },
        BadSnapshot {
            what: "a state of another shape",
            version: "2",
            state: r#"{"not":"an account"}"#,
        },
        BadSnapshot {
            what: "a state that is a JSON array",
            version: "3",
            state: "[1,2]",
        },
    ]
}

/// An account with three events (opened, 10 and 5 deposited), snapshots on (every 100
/// events, so none is taken here), and `insert` run to plant the bad row; then loads,
/// `load_at` and a command must all see the events' state.
fn ignores<S: EventStore>(
    store: &S,
    bad: &BadSnapshot,
    insert: impl FnOnce(&str, &str) -> TestResult,
) -> TestResult {
    let what = bad.what;
    let accounts = Repository::<Account, _>::new(store).with_snapshots(SnapshotPolicy::every(100));
    accounts.execute("a", |a| a.open("ann"))?;
    accounts.execute("a", |a| a.deposit(10))?;
    accounts.execute("a", |a| a.deposit(5))?;
    insert(bad.version, bad.state)?;
    let loaded = accounts.load("a")?;
    assert_eq!(
        (
            loaded.state.owner.as_str(),
            loaded.state.balance,
            loaded.version
        ),
        ("ann", 15, Version::new(3)),
        "{what}"
    );
    let then = accounts.load_at("a", 2)?;
    assert_eq!(
        (then.state.balance, then.version),
        (10, Version::new(2)),
        "{what}"
    );
    let done = accounts.execute("a", |a| a.withdraw(15))?;
    assert_eq!(
        (done.state.balance, done.version),
        (0, Version::new(4)),
        "{what}"
    );
    Ok(())
}

#[test]
fn sqlite_ignores_snapshots_that_cannot_be_right() -> TestResult {
    let mut cases = bad_snapshots();
    cases.extend([
        BadSnapshot {
            what: "a state that is not JSON",
            version: "2",
            state: "{oops",
        },
        BadSnapshot {
            what: "a state stored as a BLOB",
            version: "2",
            state: "X'00ff'",
        },
    ]);
    for bad in &cases {
        let tmp = TempStore::new()?;
        let store = SqliteStore::open(&tmp.path)?;
        ignores(&store, bad, |version, state| {
            let state = if state.starts_with("X'") {
                state.to_owned()
            } else {
                format!("'{state}'")
            };
            raw_sqlite(
                &tmp.path,
                &format!(
                    "INSERT INTO snapshots (aggregate_type, stream_id, state_version, version, \
                     state, taken_at) VALUES ('account', 'a', 1, {version}, {state}, 0)"
                ),
            )?;
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn postgres_ignores_snapshots_that_cannot_be_right() -> TestResult {
    for bad in &bad_snapshots() {
        pg::with_schema(|schema: &TestSchema| {
            let store = schema.connect()?;
            ignores(&store, bad, |version, state| {
                schema.sql(&format!(
                    "INSERT INTO snapshots (aggregate_type, stream_id, state_version, version, \
                     state, taken_at) VALUES ('account', 'a', 1, {version}, '{state}', now())"
                ))?;
                Ok(())
            })
        })?;
    }
    Ok(())
}

/// A snapshot at the stream's end, or at a version within it, is still used (the
/// planted state shows), also when no event follows it.
fn uses_good_snapshots<S: EventStore>(store: &S, insert: impl Fn(u64) -> TestResult) -> TestResult {
    let accounts = Repository::<Account, _>::new(store).with_snapshots(SnapshotPolicy::every(100));
    accounts.execute("a", |a| a.open("ann"))?;
    accounts.execute("a", |a| a.deposit(10))?;
    accounts.execute("a", |a| a.deposit(5))?;
    insert(3)?;
    let loaded = accounts.load("a")?;
    assert_eq!(
        (loaded.state.owner.as_str(), loaded.version),
        ("planted", Version::new(3))
    );
    insert(2)?;
    let at_2 = accounts.load_at("a", 2)?;
    assert_eq!(
        (at_2.state.owner.as_str(), at_2.version),
        ("planted", Version::new(2))
    );
    Ok(())
}

#[test]
fn sqlite_still_uses_a_snapshot_at_the_streams_end() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    uses_good_snapshots(&store, |version| {
        raw_sqlite(
            &tmp.path,
            &format!(
                "INSERT INTO snapshots (aggregate_type, stream_id, state_version, version, \
                 state, taken_at) VALUES ('account', 'a', 1, {version}, '{PLANTED}', 0)"
            ),
        )?;
        Ok(())
    })
}

#[test]
fn postgres_still_uses_a_snapshot_at_the_streams_end() -> TestResult {
    pg::with_schema(|schema: &TestSchema| {
        uses_good_snapshots(&schema.connect()?, |version| {
            schema.sql(&format!(
                "INSERT INTO snapshots (aggregate_type, stream_id, state_version, version, \
                 state, taken_at) VALUES ('account', 'a', 1, {version}, '{PLANTED}', now())"
            ))?;
            Ok(())
        })
    })
}
