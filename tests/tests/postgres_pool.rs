//! The PostgreSQL store's connection pool: never more connections than
//! `max_connections`, however many threads call; a call that finds them all busy past
//! `acquire_timeout` fails with `StoreError::PoolExhausted` (transient) and nothing is
//! done; the next call after one is returned succeeds.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use eventsource::{
    AppendError, EventStore, ExpectedVersion, NewEvent, Position, PostgresOptions, PostgresStore,
    ReadError, StoreError, StreamId, Version,
};
use eventsource_tests::pg::{self, TestSchema};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The connections the server has for `application_name`.
fn connections(url: &str, application: &str) -> Result<usize, Box<dyn std::error::Error>> {
    let count = pg::sql(
        url,
        &[&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application}'"
        )],
    )?;
    Ok(count.trim().parse()?)
}

#[test]
fn the_pool_never_opens_more_than_its_maximum() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let application = schema.name.clone();
    let store_url = format!("{url} application_name={application}");
    let options = PostgresOptions::new()
        .schema(schema.name.clone())
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(30));
    let store = Arc::new(PostgresStore::connect_with(&store_url, options)?);
    let mut most = 0;
    thread::scope(|scope| -> TestResult {
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let store = Arc::clone(&store);
                // Appends made at once share one connection (group commit); the reads
                // between them take connections of their own.
                scope.spawn(
                    move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                        let stream = StreamId::new("note", format!("w{w}"));
                        for _ in 0..40 {
                            store.append(
                                &stream,
                                ExpectedVersion::Any,
                                &[NewEvent::new("note.added", 1, "{}")],
                            )?;
                            store.stream_version(&stream)?;
                            assert!(store.read_stream(&stream, Version::new(1)).count() > 0);
                        }
                        Ok(())
                    },
                )
            })
            .collect();
        while writers.iter().any(|w| !w.is_finished()) {
            most = most.max(connections(&url, &application)?);
            thread::sleep(Duration::from_millis(5));
        }
        for writer in writers {
            writer
                .join()
                .map_err(|_| "a writer panicked")?
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    assert!(most <= 3, "{most} connections open at once");
    assert!(
        most >= 2,
        "the writers never ran concurrently ({most} connection)"
    );
    assert_eq!(store.read_all(Position::START).count(), 8 * 40);
    Ok(())
}

#[test]
fn a_busy_pool_fails_after_its_timeout_and_recovers() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let options = PostgresOptions::new()
        .schema(schema.name.clone())
        .max_connections(2)
        .acquire_timeout(Duration::from_millis(200));
    let store = PostgresStore::connect_with(&url, options)?;
    store.append(
        &StreamId::new("note", "1"),
        ExpectedVersion::Any,
        &[NewEvent::new("note.added", 1, "{}")],
    )?;
    // Two reads hold both connections (their visitors wait), a third call waits, then fails.
    let holding = Barrier::new(3);
    let release = Barrier::new(3);
    thread::scope(|scope| -> TestResult {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    store.read_all_with(Position::START, 10, &mut |_| {
                        holding.wait();
                        release.wait();
                        Ok(())
                    })
                })
            })
            .collect();
        holding.wait();
        let busy = store.append(
            &StreamId::new("note", "2"),
            ExpectedVersion::Any,
            &[NewEvent::new("note.added", 1, "{}")],
        );
        // Let the readers go before judging, so that a failed check cannot hang them.
        release.wait();
        for reader in readers {
            reader.join().map_err(|_| "a reader panicked")??;
        }
        match &busy {
            Err(AppendError::Store(e @ StoreError::PoolExhausted { max: 2, waited })) => {
                assert!(*waited >= Duration::from_millis(200), "{waited:?}");
                assert!(e.is_transient());
                assert!(
                    e.to_string().contains("all 2 connections of the pool"),
                    "{e}"
                );
            }
            other => panic!("expected an exhausted pool, got {other:?}"),
        }
        Ok(())
    })?;
    // Nothing of the refused append was stored; with the connections back, it works.
    assert_eq!(store.stream_version(&StreamId::new("note", "2"))?.get(), 0);
    store.append(
        &StreamId::new("note", "2"),
        ExpectedVersion::Any,
        &[NewEvent::new("note.added", 1, "{}")],
    )?;
    let read: Result<usize, ReadError> = Ok(store.read_all(Position::START).count());
    assert_eq!(read?, 2);
    Ok(())
}
