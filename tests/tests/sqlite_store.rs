//! `SqliteStore` on real files: the schema, the append-only triggers, refusing files
//! that are not ours, WAL and durability settings, several handles on one file.

use std::fs;

use eventsource::{
    EventStore, ExpectedVersion, NewEvent, Position, SqliteOptions, SqliteStore, StoreError,
    StreamId, Synchronous, Verify, Version,
};
use eventsource_tests::{TempStore, raw_sqlite};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn note(n: u32) -> NewEvent {
    NewEvent::new("note.added", 1, format!(r#"{{"n":{n}}}"#))
}

fn pragma(path: &std::path::Path, name: &str) -> rusqlite::Result<String> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row(&format!("SELECT * FROM pragma_{name}"), [], |r| {
        r.get::<_, rusqlite::types::Value>(0).map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
    })
}

#[test]
fn the_events_table_refuses_update_and_delete_from_a_plain_connection() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    store.append(
        &StreamId::new("note", "1"),
        ExpectedVersion::Any,
        &[note(1), note(2)],
    )?;
    for sql in [
        "UPDATE events SET payload = '{}'",
        "UPDATE events SET version = version + 10 WHERE position = 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE position = 2",
    ] {
        let err = raw_sqlite(&tmp.path, sql)
            .err()
            .ok_or(format!("`{sql}` succeeded"))?;
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let stored: Vec<_> = store.read_all(Position::START).collect::<Result<_, _>>()?;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].payload, r#"{"n":1}"#);
    Ok(())
}

#[test]
fn a_new_file_is_in_wal_mode_with_full_sync_by_default() -> TestResult {
    let tmp = TempStore::new()?;
    let _store = SqliteStore::open(&tmp.path)?;
    assert_eq!(pragma(&tmp.path, "journal_mode")?, "wal");
    assert_eq!(pragma(&tmp.path, "user_version")?, "4");
    assert_eq!(
        pragma(&tmp.path, "application_id")?,
        0x4553_5243.to_string()
    );
    Ok(())
}

#[test]
fn synchronous_normal_can_be_chosen() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open_with(
        &tmp.path,
        SqliteOptions::new().synchronous(Synchronous::Normal),
    )?;
    store.append(
        &StreamId::new("n", "1"),
        ExpectedVersion::NoStream,
        &[note(1)],
    )?;
    drop(store);
    let store = SqliteStore::open(&tmp.path)?;
    assert_eq!(
        store.stream_version(&StreamId::new("n", "1"))?,
        Version::new(1)
    );
    Ok(())
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() -> TestResult {
    let tmp = TempStore::new()?;
    let junk = b"this is a text file, not a database\n".repeat(200);
    fs::write(&tmp.path, &junk)?;
    let err = SqliteStore::open(&tmp.path)
        .err()
        .ok_or("opened a text file")?;
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(fs::read(&tmp.path)?, junk);
    Ok(())
}

#[test]
fn another_applications_database_is_refused_and_left_untouched() -> TestResult {
    let tmp = TempStore::new()?;
    raw_sqlite(&tmp.path, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")?;
    let before = fs::read(&tmp.path)?;
    let err = SqliteStore::open(&tmp.path)
        .err()
        .ok_or("opened a foreign db")?;
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert_eq!(fs::read(&tmp.path)?, before);
    Ok(())
}

#[test]
fn a_store_from_a_newer_schema_is_refused_and_left_untouched() -> TestResult {
    let tmp = TempStore::new()?;
    drop(SqliteStore::open(&tmp.path)?);
    // Checkpoint the WAL into the file, then mark it as a future schema.
    let conn = rusqlite::Connection::open(&tmp.path)?;
    conn.pragma_update(None, "user_version", 99)?;
    conn.pragma_update(None, "journal_mode", "DELETE")?;
    drop(conn);
    let before = fs::read(&tmp.path)?;
    match SqliteStore::open(&tmp.path) {
        Err(StoreError::NewerSchema {
            found, supported, ..
        }) => assert_eq!((found, supported), (99, 4)),
        other => panic!("expected a newer-schema error, got {other:?}"),
    }
    assert_eq!(fs::read(&tmp.path)?, before);
    Ok(())
}

#[test]
fn a_directory_is_refused() -> TestResult {
    let tmp = TempStore::new()?;
    let err = SqliteStore::open(tmp.dir.path())
        .err()
        .ok_or("opened a directory")?;
    assert!(matches!(err, StoreError::NotAStore { .. }));
    assert!(err.to_string().contains("directory"), "{err}");
    Ok(())
}

#[test]
fn two_handles_on_one_file_see_each_others_appends_and_conflict() -> TestResult {
    let tmp = TempStore::new()?;
    let a = SqliteStore::open(&tmp.path)?;
    let b = SqliteStore::open(&tmp.path)?;
    let s = StreamId::new("note", "x");
    a.append(&s, ExpectedVersion::NoStream, &[note(1)])?;
    assert_eq!(b.stream_version(&s)?, Version::new(1));
    let lost = b.append(&s, ExpectedVersion::NoStream, &[note(2)]);
    assert!(matches!(
        lost,
        Err(eventsource::AppendError::Conflict { actual, .. }) if actual == Version::new(1)
    ));
    b.append(&s, ExpectedVersion::Exact(Version::new(1)), &[note(2)])?;
    let versions: Vec<u64> = a
        .read_stream(&s, Version::new(1))
        .map(|e| e.map(|e| e.version.get()))
        .collect::<Result<_, _>>()?;
    assert_eq!(versions, [1, 2]);
    Ok(())
}

#[test]
fn long_streams_are_read_in_pages_in_version_order() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let s = StreamId::new("note", "long");
    let other = StreamId::new("note", "other");
    for chunk in 0..3u32 {
        let batch: Vec<_> = (0..500).map(|i| note(chunk * 500 + i)).collect();
        store.append(&s, ExpectedVersion::Any, &batch)?;
        store.append(&other, ExpectedVersion::Any, &[note(0)])?;
    }
    let mut expected = 1;
    for event in store.read_stream(&s, Version::new(1)) {
        let event = event?;
        assert_eq!(event.version, Version::new(expected));
        assert_eq!(event.payload, format!(r#"{{"n":{}}}"#, expected - 1));
        expected += 1;
    }
    assert_eq!(expected, 1501);
    let from_1200 = store.read_stream(&s, Version::new(1200)).count();
    assert_eq!(from_1200, 301);
    let mut last = Position::START;
    let mut all = 0;
    for event in store.read_all(Position::START) {
        let event = event?;
        assert!(event.position > last);
        last = event.position;
        all += 1;
    }
    assert_eq!(all, 1503);
    Ok(())
}

#[test]
fn the_in_memory_store_behaves_like_a_file() -> TestResult {
    let store = SqliteStore::in_memory()?;
    let s = StreamId::new("note", "m");
    store.append(&s, ExpectedVersion::NoStream, &[note(1), note(2)])?;
    assert_eq!(store.read_stream(&s, Version::new(2)).count(), 1);
    assert!(store.path().is_none());
    Ok(())
}

#[test]
fn a_store_of_schema_version_1_is_migrated_in_place() -> TestResult {
    let tmp = TempStore::new()?;
    let conn = rusqlite::Connection::open(&tmp.path)?;
    // Schema version 1, as the first release wrote it: no snapshots table.
    conn.execute_batch(
        "CREATE TABLE events (position INTEGER PRIMARY KEY, aggregate_type TEXT NOT NULL, \
         stream_id TEXT NOT NULL, version INTEGER NOT NULL CHECK (version >= 1), \
         event_type TEXT NOT NULL, event_version INTEGER NOT NULL CHECK (event_version >= 1), \
         event_id TEXT NOT NULL UNIQUE, recorded_at INTEGER NOT NULL, payload TEXT NOT NULL, \
         metadata TEXT NOT NULL, UNIQUE (aggregate_type, stream_id, version));
         CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events \
         BEGIN SELECT RAISE(ABORT, 'append-only'); END;
         CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events \
         BEGIN SELECT RAISE(ABORT, 'append-only'); END;
         INSERT INTO events VALUES (1, 'note', 'n', 1, 'note.added', 1, \
         '0190f2c4-0000-7000-8000-000000000001', 0, '{\"n\":1}', '{}');
         PRAGMA application_id = 1163088451; PRAGMA user_version = 1;",
    )?;
    drop(conn);
    let store = SqliteStore::open(&tmp.path)?;
    assert_eq!(pragma(&tmp.path, "user_version")?, "4");
    let stream = StreamId::new("note", "n");
    assert_eq!(store.stream_version(&stream)?, Version::new(1));
    assert!(store.load_snapshot(&stream, Version::MAX, 1)?.is_none());
    store.append(&stream, ExpectedVersion::Exact(Version::new(1)), &[note(2)])?;
    // The hash chain starts at the first event appended after the upgrade. Its head
    // moves every few commits, and when the handle is dropped.
    let report = Verify::chain(&store).run()?;
    assert!(report.is_sound(), "{report}");
    let head = report.head.ok_or("no chain head")?;
    assert_eq!(
        (head.starts_at.get(), head.position.get(), head.count),
        (2, 1, 0)
    );
    assert_eq!(report.after_head, 1);
    drop(store);
    let store = SqliteStore::open(&tmp.path)?;
    let report = Verify::chain(&store).run()?;
    assert!(report.is_sound(), "{report}");
    let head = report.head.ok_or("no chain head")?;
    assert_eq!(
        (head.starts_at.get(), head.position.get(), head.count),
        (2, 2, 1)
    );
    assert_eq!(
        (report.events, report.unchained, report.after_head),
        (2, 1, 0)
    );
    Ok(())
}

#[test]
fn a_long_replay_hands_the_writer_over_to_an_append_that_waits() -> TestResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Barrier};

    let tmp = TempStore::new()?;
    let store = Arc::new(SqliteStore::open_with(
        &tmp.path,
        SqliteOptions::new().synchronous(Synchronous::Normal),
    )?);
    let stream = StreamId::new("note", "long");
    let events: Vec<NewEvent> = (1..=3_000).map(note).collect();
    store.append(&stream, ExpectedVersion::NoStream, &events)?;

    // The replay starts on the idle writer connection; once it is under way, another
    // thread appends to the same stream through the same handle. The append must not
    // wait for the replay's end: the replay hands the writer over and reads the rest on
    // a read connection. The visitor waits (at most about 3 s in all) for the append.
    let appended = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(2));
    let writer = {
        let (store, stream, appended, started) = (
            Arc::clone(&store),
            stream.clone(),
            Arc::clone(&appended),
            Arc::clone(&started),
        );
        std::thread::spawn(move || -> Result<(), eventsource::AppendError> {
            started.wait();
            store.append(
                &stream,
                ExpectedVersion::Exact(Version::new(3_000)),
                &[note(3_001)],
            )?;
            appended.store(true, Ordering::SeqCst);
            Ok(())
        })
    };
    let mut versions = Vec::new();
    let mut seen_appended_at = None;
    // What a repository's load reads through (a hidden method of `EventStore`).
    store.load_stream_with(&stream, Version::new(1), usize::MAX, &mut |event| {
        versions.push(event.version.get());
        if event.version.get() == 10 {
            started.wait();
        }
        if event.version.get() > 10 && seen_appended_at.is_none() {
            if appended.load(Ordering::SeqCst) {
                seen_appended_at = Some(event.version.get());
            } else {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        Ok(())
    })?;
    writer
        .join()
        .map_err(|_| "the appending thread panicked")??;

    let at = seen_appended_at.ok_or("the append waited for the whole replay")?;
    assert!(at < 3_000, "the append finished only at version {at}");
    // Every version once, in order: the 3,000 there were, and the one appended meanwhile
    // if the read connection's snapshot came after its commit.
    let contiguous = versions.iter().zip(1u64..).all(|(v, n)| *v == n);
    assert!(contiguous, "versions out of order or repeated");
    assert!(
        (3_000..=3_001).contains(&versions.len()),
        "{} events replayed",
        versions.len()
    );
    Ok(())
}

#[test]
fn every_connection_plans_its_statements_without_looking_at_bound_values() -> TestResult {
    use rusqlite::config::DbConfig;

    // Without the query planner stability guarantee, SQLite prepares a cached statement
    // again each time it is reused (rusqlite clears its bindings).
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let on_reader = store.read(|conn| conn.db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG))?;
    let on_writer = store.write(|tx| tx.db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG))?;
    assert!(on_reader, "read connections");
    assert!(on_writer, "the writer connection");
    Ok(())
}

#[test]
fn a_visitor_of_a_replay_can_append_to_the_same_store() -> TestResult {
    // `replay_stream_with` is public: its visitor may write (copying a stream into
    // another, say). It reads on a read connection, so the append does not wait for the
    // replay. Run on a thread of its own, so that a hang fails the test instead of
    // blocking it.
    let tmp = TempStore::new()?;
    let path = tmp.path.clone();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let copy = || -> Result<u64, Box<dyn std::error::Error>> {
            let store = SqliteStore::open(&path)?;
            let from = StreamId::new("note", "from");
            let to = StreamId::new("note", "to");
            store.append(
                &from,
                ExpectedVersion::NoStream,
                &[note(1), note(2), note(3)],
            )?;
            let mut failed = None;
            store.replay_stream_with(&from, Version::new(1), usize::MAX, &mut |event| {
                let copied = NewEvent::new(
                    event.event_type.to_owned(),
                    event.event_version,
                    event.payload.to_owned(),
                );
                if let Err(e) = store.append(&to, ExpectedVersion::Any, &[copied]) {
                    failed = Some(e);
                }
                Ok(())
            })?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            Ok(store.stream_version(&to)?.get())
        };
        let _ = done.send(copy().map_err(|e| e.to_string()));
    });
    let copied = finished
        .recv_timeout(std::time::Duration::from_mins(1))
        .map_err(|_| "the append inside the replay's visitor never returned")??;
    assert_eq!(copied, 3);
    Ok(())
}
