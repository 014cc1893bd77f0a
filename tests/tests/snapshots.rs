//! Snapshots and the state cache: loads start from the newest usable snapshot, the
//! events table stays the truth, and a cached state never hides another writer's events.

use eventsource::{
    EventStore, ExecuteError, ExpectedVersion, NewEvent, Repository, Snapshot, SnapshotPolicy,
    SqliteStore, Timestamp, Version,
};
use eventsource_tests::{Account, BankError, TempStore, raw_sqlite};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn deposits<S: EventStore>(
    accounts: &Repository<Account, S>,
    id: &str,
    n: u64,
) -> Result<(), ExecuteError<BankError>> {
    for i in 0..n {
        accounts.execute(id, |a| a.deposit(i + 1))?;
    }
    Ok(())
}

#[test]
fn snapshots_are_taken_by_policy_and_used_by_load_and_load_at() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?)
        .with_snapshots(SnapshotPolicy::every(10));
    accounts.execute("a", |a| a.open("ann"))?;
    deposits(&accounts, "a", 24)?; // versions 2..=25
    let stream = accounts.stream_id("a");
    let newest = accounts.store().load_snapshot(&stream, Version::MAX, 1)?;
    assert_eq!(newest.as_ref().map(|s| s.version), Some(Version::new(20)));
    let at_15 = accounts
        .store()
        .load_snapshot(&stream, Version::new(15), 1)?;
    assert_eq!(at_15.map(|s| s.version), Some(Version::new(10)));

    let full: u64 = (1..=24).sum();
    let now = accounts.load("a")?;
    assert_eq!((now.state.balance, now.version), (full, Version::new(25)));
    let then = accounts.load_at("a", 15)?;
    assert_eq!(
        (then.state.balance, then.version),
        ((1..=14).sum::<u64>(), Version::new(15))
    );
    let before_any = accounts.load_at("a", 5)?;
    assert_eq!(before_any.state.balance, (1..=4).sum::<u64>());
    Ok(())
}

#[test]
fn a_load_reads_only_the_snapshot_and_the_events_after_it() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?)
        .with_snapshots(SnapshotPolicy::every(5));
    accounts.execute("a", |a| a.open("ann"))?;
    deposits(&accounts, "a", 6)?; // snapshot at 5, events up to 7
    // Plant a snapshot at version 7 whose state disagrees with the events: if a load
    // uses it, the load read nothing before it.
    let stream = accounts.stream_id("a");
    accounts.store().save_snapshot(
        &stream,
        &Snapshot {
            version: Version::new(7),
            state_version: 1,
            state: r#"{"owner":"planted","currency":"EUR","balance":1000,"open":true}"#.into(),
            taken_at: Timestamp::now(),
        },
    )?;
    let loaded = accounts.load("a")?;
    assert_eq!(
        (loaded.state.owner.as_str(), loaded.state.balance),
        ("planted", 1000)
    );
    Ok(())
}

#[test]
fn snapshots_of_another_state_version_or_shape_are_ignored() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let v1 = Repository::<Account, _>::new(&store).with_snapshots(SnapshotPolicy::every(2));
    v1.execute("a", |a| a.open("ann"))?;
    deposits(&v1, "a", 3)?;
    // The struct changed: the new code reads snapshots of state version 2 only.
    let v2 = Repository::<Account, _>::new(&store)
        .with_snapshots(SnapshotPolicy::every(2).state_version(2));
    assert_eq!(v2.load("a")?.state.balance, 6);
    // A snapshot that does not deserialize is ignored, never misread.
    store.save_snapshot(
        &v2.stream_id("a"),
        &Snapshot {
            version: Version::new(4),
            state_version: 2,
            state: r#"{"not":"an account"}"#.into(),
            taken_at: Timestamp::now(),
        },
    )?;
    assert_eq!(v2.load("a")?.state.balance, 6);
    Ok(())
}

#[test]
fn dropping_the_snapshot_table_loses_nothing() -> TestResult {
    let tmp = TempStore::new()?;
    {
        let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?)
            .with_snapshots(SnapshotPolicy::every(3));
        accounts.execute("a", |a| a.open("ann"))?;
        deposits(&accounts, "a", 9)?;
    }
    raw_sqlite(&tmp.path, "DROP TABLE snapshots")?;
    raw_sqlite(
        &tmp.path,
        "CREATE TABLE snapshots (aggregate_type TEXT NOT NULL, stream_id TEXT NOT NULL, \
         state_version INTEGER NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL, \
         taken_at INTEGER NOT NULL, PRIMARY KEY (aggregate_type, stream_id, state_version, version)) \
         WITHOUT ROWID",
    )?;
    let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?)
        .with_snapshots(SnapshotPolicy::every(3));
    let acc = accounts.load("a")?;
    assert_eq!(
        (acc.state.balance, acc.version),
        ((1..=9).sum::<u64>(), Version::new(10))
    );
    Ok(())
}

#[test]
fn a_cached_state_never_hides_another_writers_events() -> TestResult {
    let tmp = TempStore::new()?;
    let cached = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?).with_cache(100);
    let other = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?);
    cached.execute("a", |a| a.open("ann"))?;
    cached.execute("a", |a| a.deposit(10))?; // cached at version 2
    other.execute("a", |a| a.withdraw(10))?; // version 3, behind the cache's back
    // The cached state (balance 10) is stale; the append expecting version 2 conflicts,
    // and the command reruns on the replayed state (balance 0).
    let refused = cached.execute("a", |a| a.withdraw(5));
    assert!(matches!(
        refused,
        Err(ExecuteError::Domain(BankError::InsufficientFunds {
            balance: 0
        }))
    ));
    let done = cached.execute("a", |a| a.deposit(7))?;
    assert_eq!((done.state.balance, done.version), (7, Version::new(4)));
    assert_eq!(cached.load("a")?.state, done.state);
    Ok(())
}

#[test]
fn the_cache_keeps_state_across_refused_commands_and_raw_appends() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let accounts = Repository::<Account, _>::new(&store).with_cache(1);
    accounts.execute("a", |a| a.open("ann"))?;
    assert!(accounts.execute("a", |a| a.withdraw(1)).is_err());
    accounts.execute("b", |a| a.open("bob"))?; // evicts "a" (capacity 1)
    store.append(
        &accounts.stream_id("a"),
        ExpectedVersion::Exact(Version::new(1)),
        &[NewEvent::new("money.deposited", 1, r#"{"amount":5}"#)],
    )?;
    let done = accounts.execute("a", |a| a.withdraw(5))?;
    assert_eq!((done.state.balance, done.version), (0, Version::new(3)));
    accounts.clear_cache();
    assert_eq!(accounts.load("b")?.state.owner, "bob");
    Ok(())
}
