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
