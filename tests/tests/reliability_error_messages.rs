//! Errors show their cause at the top level: the database's own message (with the
//! SQLSTATE on PostgreSQL), the domain error's message, and the cause of a failed load
//! or append; a store whose `events` table was dropped is `Damaged` on both backends.

use std::error::Error;

use eventsource::{
    AppendError, EventStore, ExecuteError, ExpectedVersion, NewEvent, PostgresStore, Repository,
    SqliteStore, StoreError, StreamId,
};
use eventsource_tests::pg::with_schema;
use eventsource_tests::{Account, TempStore, raw_sqlite};

type TestResult = Result<(), Box<dyn Error>>;

fn note() -> NewEvent {
    NewEvent::new("note.added", 1, "{}")
}

#[test]
fn a_domain_error_is_shown_by_execute_error() -> TestResult {
    let accounts = Repository::<Account, _>::new(SqliteStore::in_memory()?);
    accounts.execute("acc-1", |a| a.open("ann"))?;
    let err = accounts
        .execute("acc-1", |a| a.withdraw(5))
        .err()
        .ok_or("an overdraft was accepted")?;
    assert!(matches!(err, ExecuteError::Domain(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "command rejected: insufficient funds (balance 0)"
    );
    Ok(())
}

#[test]
fn a_sqlite_error_shows_sqlites_message() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let accounts = Repository::<Account, _>::new(store);
    accounts.execute("acc-1", |a| a.open("ann"))?;
    // Someone drops the table under a running store.
    raw_sqlite(&tmp.path, "DROP TABLE events")?;
    let err = accounts
        .execute("acc-1", |a| a.deposit(5))
        .err()
        .ok_or("a deposit into a dropped table succeeded")?;
    let message = err.to_string();
    assert!(
        message.starts_with("loading the aggregate failed: sqlite error: no such table"),
        "{message}"
    );
    // Reopened, the store says what is missing.
    let reopened = SqliteStore::open(&tmp.path);
    assert!(
        matches!(&reopened, Err(StoreError::Damaged { missing, .. }) if missing.iter().any(|m| m.contains("events"))),
        "{reopened:?}"
    );
    Ok(())
}

/// The store's connection string with `options` (a `-c name=value` list) added.
fn with_options(url: &str, options: &str) -> String {
    format!("{url} options='{options}'")
}

#[test]
fn a_postgres_error_shows_the_sqlstate_and_the_servers_message() -> TestResult {
    with_schema(|schema| {
        let store = PostgresStore::connect_with_schema(
            &with_options(&schema.url, "-c lock_timeout=200"),
            &schema.name,
        )?;
        let stream = StreamId::new("note", "1");
        store.append(&stream, ExpectedVersion::NoStream, &[note()])?;
        // Another session holds the table, so the append's insert times out.
        let mut holder = postgres::Client::connect(&schema.url, postgres::NoTls)?;
        let mut tx = holder.transaction()?;
        tx.batch_execute(&format!(
            "LOCK TABLE \"{}\".events IN ACCESS EXCLUSIVE MODE",
            schema.name
        ))?;
        let appended = store.append(&stream, ExpectedVersion::Any, &[note()]);
        tx.rollback()?;
        let err = appended.err().ok_or("the append got past the lock")?;
        assert!(
            matches!(err, AppendError::Store(StoreError::Postgres(_))),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "postgres error: 55P03 canceling statement due to lock timeout"
        );
        // A lock timeout passes: worth retrying.
        assert!(err.is_transient() && !err.is_outcome_unknown(), "{err:?}");
        drop(store);
        Ok(())
    })
}

#[test]
fn a_dropped_postgres_events_table_is_damaged_not_a_raw_error() -> TestResult {
    with_schema(|schema| {
        let store = schema.connect()?;
        let stream = StreamId::new("note", "1");
        store.append(&stream, ExpectedVersion::NoStream, &[note()])?;
        schema.sql("DROP TABLE events CASCADE")?;
        // The running store...
        let appended = store.append(&stream, ExpectedVersion::Any, &[note()]);
        match &appended {
            Err(AppendError::Store(StoreError::Damaged { path, missing })) => {
                assert_eq!(path.to_str(), Some(schema.name.as_str()));
                assert_eq!(missing, &["table events"]);
            }
            other => panic!("expected Damaged, got {other:?}"),
        }
        let read = store.stream_version(&stream);
        assert!(matches!(&read, Err(StoreError::Damaged { .. })), "{read:?}");
        drop(store);
        // ... and a new one.
        let reconnected = schema.connect();
        match &reconnected {
            Err(e @ StoreError::Damaged { .. }) => {
                assert_eq!(
                    e.to_string(),
                    format!("{} is damaged: missing table events", schema.name)
                );
            }
            other => panic!("expected Damaged, got {other:?}"),
        }
        Ok(())
    })
}

/// A writer that bypasses the append lock (a plain session inserting by hand) takes the
/// next position while an append waits on it: the append is a `Conflict` (nothing
/// stored, safe to retry), not a raw `events_pkey` duplicate-key error, and a command
/// through the repository retries and commits.
#[test]
fn a_position_taken_behind_the_locks_back_is_a_conflict() -> TestResult {
    with_schema(|schema| {
        let store = schema.connect()?;
        let stream = StreamId::new("note", "1");
        store.append(&stream, ExpectedVersion::NoStream, &[note()])?;
        let mut intruder = postgres::Client::connect(&schema.url, postgres::NoTls)?;
        for attempt in 0..2 {
            let mut tx = intruder.transaction()?;
            tx.batch_execute(&format!(
                "INSERT INTO \"{0}\".events (position, aggregate_type, stream_id, version, \
                 event_type, event_version, event_id, recorded_at, payload, metadata) \
                 SELECT max(position) + 1, 'note', 'intruder', {1}, 'note.added', 1, \
                 gen_random_uuid(), now(), '{{}}', '{{}}' FROM \"{0}\".events",
                schema.name,
                attempt + 1
            ))?;
            let outcome = std::thread::scope(|s| {
                let append = s.spawn(|| {
                    if attempt == 0 {
                        store
                            .append(
                                &stream,
                                ExpectedVersion::Exact(eventsource::Version::new(1)),
                                &[note()],
                            )
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    } else {
                        Repository::<Account, _>::new(&store)
                            .execute("acc", |a| a.open("ann"))
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                });
                // The append waits on the uncommitted row's position, then finds it taken.
                std::thread::sleep(std::time::Duration::from_millis(200));
                let committed = tx.commit();
                let outcome = append
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                committed.map(|()| outcome)
            })?;
            if attempt == 0 {
                let err = outcome
                    .err()
                    .ok_or("the append got the intruder's position")?;
                assert!(
                    err.starts_with("concurrency conflict on stream note/1"),
                    "{err}"
                );
                assert_eq!(store.stream_version(&stream)?.get(), 1);
            } else {
                outcome?;
                let account = Repository::<Account, _>::new(&store).load("acc")?;
                assert!(account.state.open);
            }
        }
        drop(store);
        Ok(())
    })
}
