//! Append-only, from every side: the database refuses every statement that would change
//! or remove a stored event, whoever sends it (the plain UPDATE and DELETE cases are in
//! `sqlite_store.rs`, `postgres.rs` and the conformance suite; these are the other
//! spellings), and the library itself never asks for one.
//!
//! SQLite's authorizer and trace hooks need `&mut Connection`, which the store's
//! `on_connect` hook does not give, so the library's connections are watched with TEMP
//! triggers that call a Rust function: it records every UPDATE, DELETE and INSERT that
//! reaches the `events` table, outside any transaction, so a refused or rolled-back
//! attempt is recorded too. DDL (a dropped or recreated trigger or table) is caught by
//! SQLite's `schema_version` and by comparing `sqlite_master`. On PostgreSQL a trigger
//! that runs before the refusing one counts attempts in sequences, which no rollback
//! resets.

use std::error::Error;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use eventsource::{
    AppendError, EventStore, ExecuteError, ExpectedVersion, NewEvent, Position, ReadError,
    Repository, SqliteOptions, SqliteStore, StreamId, Version,
};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::reliability::{Cell, sqlite_rows};
use eventsource_tests::{Account, TempStore, raw_sqlite};
use rusqlite::functions::FunctionFlags;

type TestResult = Result<(), Box<dyn Error>>;

/// Statements a user might try at a `sqlite3` prompt to change stored events without a
/// plain UPDATE or DELETE.
const SQLITE_TAMPERING: &[&str] = &[
    "INSERT INTO events SELECT * FROM events WHERE position = 1 \
     ON CONFLICT (position) DO UPDATE SET payload = '{}'",
    "INSERT INTO events (aggregate_type, stream_id, version, event_type, event_version, \
     event_id, recorded_at, payload, metadata) VALUES ('note', 'n', 1, 'note.added', 1, \
     'fresh-id', 0, '{}', '{}') ON CONFLICT (aggregate_type, stream_id, version) \
     DO UPDATE SET payload = excluded.payload",
    "UPDATE OR REPLACE events SET version = 1 WHERE position = 2",
    "UPDATE OR IGNORE events SET payload = '{}'",
    "UPDATE OR FAIL events SET metadata = '{}' WHERE position = 1",
    "UPDATE events SET payload = (SELECT payload FROM events WHERE position = 2) WHERE position = 1",
    "DELETE FROM events WHERE position IN (SELECT max(position) FROM events) RETURNING *",
    "DELETE FROM events WHERE rowid = 1",
];

/// Statements that replace a stored event through INSERT's conflict resolution: REPLACE
/// deletes the conflicting row without firing DELETE triggers (unless the connection
/// set `recursive_triggers`, which a user's shell does not).
const SQLITE_REPLACING: &[&str] = &[
    // Same position, another payload.
    "INSERT OR REPLACE INTO events SELECT position, aggregate_type, stream_id, version, \
     event_type, event_version, event_id, recorded_at, '{\"n\":666}', metadata \
     FROM events WHERE position = 1",
    // A new position that takes the version of a stored event.
    "REPLACE INTO events (position, aggregate_type, stream_id, version, event_type, \
     event_version, event_id, recorded_at, payload, metadata) VALUES (100, 'note', 'n', 2, \
     'note.added', 1, 'c0ffee00-0000-7000-8000-000000000000', 0, '{\"n\":777}', '{}')",
    // A new position that takes the event id of a stored event.
    "INSERT OR REPLACE INTO events (position, aggregate_type, stream_id, version, \
     event_type, event_version, event_id, recorded_at, payload, metadata) SELECT 101, \
     'note', 'other', 1, 'note.added', 1, event_id, 0, '{\"n\":888}', '{}' \
     FROM events WHERE position = 1",
];

fn note(n: u32) -> NewEvent {
    NewEvent::new("note.added", 1, format!(r#"{{"n":{n}}}"#))
}

/// A store file with two events in `note/n`, and its rows.
fn two_notes() -> Result<(TempStore, SqliteStore), Box<dyn Error>> {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    store.append(
        &StreamId::new("note", "n"),
        ExpectedVersion::NoStream,
        &[note(1), note(2)],
    )?;
    Ok((tmp, store))
}

#[test]
fn upserts_and_conflict_clauses_through_a_plain_connection_are_refused() -> TestResult {
    let (tmp, store) = two_notes()?;
    let before = sqlite_rows(&tmp.path)?;
    for sql in SQLITE_TAMPERING {
        match raw_sqlite(&tmp.path, sql) {
            Err(e) => assert!(e.to_string().contains("append-only"), "{sql}: {e}"),
            Ok(n) => panic!("`{sql}` was allowed ({n} rows)"),
        }
    }
    assert_eq!(sqlite_rows(&tmp.path)?, before);
    assert_eq!(store.read_all(Position::START).count(), 2);
    Ok(())
}

#[test]
fn insert_or_replace_through_a_plain_connection_is_refused() -> TestResult {
    for sql in SQLITE_REPLACING {
        let (tmp, store) = two_notes()?;
        let before = sqlite_rows(&tmp.path)?;
        let result = raw_sqlite(&tmp.path, sql);
        assert!(
            result.is_err(),
            "`{sql}` was allowed: the table now holds {:?}",
            sqlite_rows(&tmp.path)?
        );
        assert_eq!(sqlite_rows(&tmp.path)?, before, "{sql}");
        let payloads: Vec<String> = store
            .read_stream(&StreamId::new("note", "n"), Version::new(1))
            .map(|e| e.map(|e| e.payload))
            .collect::<Result<_, _>>()?;
        assert_eq!(payloads, [r#"{"n":1}"#, r#"{"n":2}"#]);
    }
    Ok(())
}

/// What the watched connections asked of the `events` table.
#[derive(Debug, Default)]
struct Audit {
    statements: Vec<String>,
    connections: usize,
}

type Log = Arc<Mutex<Audit>>;

/// Installs the watch on a connection: `es_audit(kind)`, called by TEMP triggers before
/// every UPDATE and DELETE and after every INSERT of a row of `events`. With
/// `recursive_triggers` on, the rows that an `OR REPLACE` removes fire the DELETE
/// trigger too.
fn watch(conn: &rusqlite::Connection, log: &Log) -> rusqlite::Result<()> {
    let sink = Arc::clone(log);
    conn.create_scalar_function("es_audit", 1, FunctionFlags::SQLITE_UTF8, move |ctx| {
        let kind: String = ctx.get(0)?;
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .statements
            .push(kind);
        Ok(0)
    })?;
    conn.pragma_update(None, "recursive_triggers", true)?;
    conn.execute_batch(
        "CREATE TEMP TRIGGER es_audit_update BEFORE UPDATE ON main.events \
             BEGIN SELECT es_audit('UPDATE'); END;
         CREATE TEMP TRIGGER es_audit_delete BEFORE DELETE ON main.events \
             BEGIN SELECT es_audit('DELETE'); END;
         CREATE TEMP TRIGGER es_audit_insert AFTER INSERT ON main.events \
             BEGIN SELECT es_audit('INSERT'); END;",
    )?;
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .connections += 1;
    Ok(())
}

fn watched(log: &Log) -> SqliteOptions {
    let log = Arc::clone(log);
    SqliteOptions::new().on_connect(move |conn| watch(conn, &log))
}

fn schema_version(path: &Path) -> rusqlite::Result<i64> {
    rusqlite::Connection::open(path)?.pragma_query_value(None, "schema_version", |r| r.get(0))
}

fn schema_objects(path: &Path) -> rusqlite::Result<Vec<(String, String, Option<String>)>> {
    let conn = rusqlite::Connection::open(path)?;
    let mut stmt = conn.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

/// Asserts that the rows of `before` are still the first rows of `after`, unchanged.
fn assert_only_appended(before: &[Vec<Cell>], after: &[Vec<Cell>]) {
    assert!(after.len() >= before.len(), "rows disappeared");
    assert_eq!(&after[..before.len()], before, "stored rows changed");
}

/// A representative workload through the public API: commands, a domain refusal, a lost
/// race retried and one reported as a conflict, loads, reads, refused appends.
fn workload(accounts: &Repository<Account, &SqliteStore>, rival: &SqliteStore) -> TestResult {
    let store = *accounts.store();
    accounts.execute("a", |a| a.open("ann"))?;
    accounts.execute("a", |a| a.deposit(100))?;
    assert!(matches!(
        accounts.execute("a", |a| a.withdraw(1_000)),
        Err(ExecuteError::Domain(_))
    ));
    let rival_accounts = Repository::<Account, _>::new(rival);
    let mut raced = false;
    accounts.execute("a", |a| {
        if !raced {
            raced = true;
            rival_accounts
                .execute("a", |r| r.deposit(1))
                .map_err(|_| eventsource_tests::BankError::NotOpen)?;
        }
        a.withdraw(10)
    })?;
    let impatient = Repository::<Account, _>::new(store).with_retries(0);
    let lost = impatient.execute("a", |a| {
        rival_accounts
            .execute("a", |r| r.deposit(1))
            .map_err(|_| eventsource_tests::BankError::NotOpen)?;
        a.deposit(5)
    });
    assert!(
        matches!(lost, Err(ExecuteError::Conflict { .. })),
        "{lost:?}"
    );
    assert_eq!(accounts.load("a")?.state.balance, 92);
    assert_eq!(accounts.load_at("a", 2)?.state.balance, 100);
    assert_eq!(store.read_all(Position::START).count(), 5);
    assert_eq!(
        store
            .read_stream(&StreamId::new("account", "a"), Version::new(3))
            .count(),
        3
    );
    let s = StreamId::new("account", "a");
    assert_eq!(store.stream_version(&s)?, Version::new(5));

    // Refused appends: a duplicate event id, JSON that is not JSON, a stale version.
    let first = store.read_all(Position::START).next().ok_or("no event")??;
    let duplicate = [note(1), note(2).with_id(first.event_id)];
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, &duplicate),
        Err(AppendError::DuplicateEventId { .. })
    ));
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, &[NewEvent::new("x", 1, "{nope")]),
        Err(AppendError::Encode { .. })
    ));
    assert!(matches!(
        store.append(&s, ExpectedVersion::NoStream, &[note(3)]),
        Err(AppendError::Conflict { .. })
    ));
    store.append(&s, ExpectedVersion::Exact(Version::new(5)), &[])?;
    // An undecodable event, and an old one upcast on read.
    let b = StreamId::new("account", "b");
    store.append(
        &b,
        ExpectedVersion::NoStream,
        &[NewEvent::new("account.opened", 1, r#"{"owner":"olga"}"#)],
    )?;
    assert_eq!(accounts.load("b")?.state.currency, "EUR");
    store.append(&b, ExpectedVersion::Any, &[NewEvent::new("x", 1, "{}")])?;
    assert!(matches!(accounts.load("b"), Err(ReadError::Decode { .. })));
    assert!(matches!(
        accounts.execute("b", |a| a.deposit(1)),
        Err(ExecuteError::Read(_))
    ));
    Ok(())
}

#[test]
fn the_sqlite_store_never_updates_deletes_or_drops() -> TestResult {
    let tmp = TempStore::new()?;
    let log = Log::default();
    drop(SqliteStore::open_with(&tmp.path, watched(&log))?);
    let version = schema_version(&tmp.path)?;
    let objects = schema_objects(&tmp.path)?;

    let store = SqliteStore::open_with(&tmp.path, watched(&log))?;
    let rival = SqliteStore::open_with(&tmp.path, watched(&log))?;
    let accounts = Repository::<Account, _>::new(&store);
    workload(&accounts, &rival)?;
    let after_workload = sqlite_rows(&tmp.path)?;
    drop(accounts);
    drop((store, rival));
    // Reopening an existing store only reads its schema.
    let again = SqliteStore::open_with(&tmp.path, watched(&log))?;
    assert_eq!(
        Repository::<Account, _>::new(&again)
            .load("a")?
            .state
            .balance,
        92
    );
    again.append(
        &StreamId::new("note", "n"),
        ExpectedVersion::Any,
        &[note(9)],
    )?;
    assert_only_appended(&after_workload, &sqlite_rows(&tmp.path)?);
    drop(again);

    let audit = log.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(audit.connections >= 4, "{audit:?}");
    let not_inserts: Vec<&String> = audit
        .statements
        .iter()
        .filter(|kind| *kind != "INSERT")
        .collect();
    assert!(
        not_inserts.is_empty(),
        "the store asked for {not_inserts:?}"
    );
    // Every stored row was inserted through a watched connection (plus the rows of the
    // refused duplicate batch, inserted and rolled back).
    let stored = sqlite_rows(&tmp.path)?.len();
    assert!(audit.statements.len() >= stored, "{audit:?}");
    assert_eq!(
        schema_version(&tmp.path)?,
        version,
        "the schema was changed"
    );
    assert_eq!(schema_objects(&tmp.path)?, objects);
    eprintln!(
        "{} connections watched, {} row inserts, no UPDATE, DELETE or DDL",
        audit.connections,
        audit.statements.len()
    );
    Ok(())
}

#[test]
fn the_in_memory_store_never_updates_or_deletes() -> TestResult {
    let log = Log::default();
    let store = SqliteStore::in_memory_with(watched(&log))?;
    // The rival writes through the same handle: its appends land between a command's
    // load and append all the same.
    workload(&Repository::new(&store), &store)?;
    let audit = log.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(audit.connections, 1);
    assert!(
        audit.statements.iter().all(|kind| kind == "INSERT"),
        "{audit:?}"
    );
    assert!(audit.statements.len() >= store.read_all(Position::START).count());
    Ok(())
}

/// The watch is not blind: on a plain connection it records the UPDATE, DELETE and
/// REPLACE attempts that the table refuses.
#[test]
fn the_watch_sees_tampering_attempts() -> TestResult {
    let (tmp, _store) = two_notes()?;
    let log = Log::default();
    let conn = rusqlite::Connection::open(&tmp.path)?;
    watch(&conn, &log)?;
    assert!(
        conn.execute("UPDATE events SET payload = '{}'", [])
            .is_err()
    );
    assert!(conn.execute("DELETE FROM events", []).is_err());
    // REPLACE is refused by the table's BEFORE INSERT trigger, before it deletes
    // anything: the watch sees no third statement.
    assert!(conn.execute(SQLITE_REPLACING[0], []).is_err());
    let audit = log.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(audit.statements, ["UPDATE", "DELETE"]);
    Ok(())
}

/// PostgreSQL: the other spellings of UPDATE and DELETE (`postgres.rs` has the plain
/// ones and TRUNCATE).
#[test]
fn postgres_upserts_merge_and_writable_ctes_are_refused() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    let s = StreamId::new("note", "n");
    store.append(&s, ExpectedVersion::NoStream, &[note(1), note(2)])?;
    let before = schema.sql("SELECT * FROM events ORDER BY position")?;
    for (sql, operation) in [
        (
            "INSERT INTO events SELECT * FROM events WHERE position = 1 \
             ON CONFLICT (position) DO UPDATE SET payload = '{}'",
            "UPDATE",
        ),
        (
            "INSERT INTO events SELECT * FROM events WHERE position = 1 \
             ON CONFLICT ON CONSTRAINT events_stream_version_key DO UPDATE SET version = 99",
            "UPDATE",
        ),
        (
            "MERGE INTO events e USING (VALUES (1::bigint)) v(p) ON e.position = v.p \
             WHEN MATCHED THEN UPDATE SET payload = '{}'",
            "UPDATE",
        ),
        (
            "MERGE INTO events e USING (VALUES (1::bigint)) v(p) ON e.position = v.p \
             WHEN MATCHED THEN DELETE",
            "DELETE",
        ),
        (
            "WITH gone AS (DELETE FROM events RETURNING position) SELECT count(*) FROM gone",
            "DELETE",
        ),
        (
            "WITH changed AS (UPDATE events SET payload = '{}' RETURNING position) \
             SELECT count(*) FROM changed",
            "UPDATE",
        ),
        (
            "UPDATE events e SET payload = o.payload FROM events o \
             WHERE e.position = 1 AND o.position = 2",
            "UPDATE",
        ),
        (
            "DELETE FROM events e USING events o WHERE e.position = o.position",
            "DELETE",
        ),
    ] {
        let refused = schema.sql(sql).err().unwrap_or_default();
        let message =
            format!("eventsource: the events table is append-only; {operation} is refused");
        assert!(refused.contains(&message), "`{sql}`: {refused}");
    }
    // ON CONFLICT DO NOTHING changes nothing and is allowed.
    schema
        .sql("INSERT INTO events SELECT * FROM events WHERE position = 1 ON CONFLICT DO NOTHING")?;
    assert_eq!(
        schema.sql("SELECT * FROM events ORDER BY position")?,
        before
    );
    drop(store);
    Ok(())
}

fn sequence_called(schema: &TestSchema, name: &str) -> Result<bool, String> {
    Ok(schema.sql(&format!("SELECT is_called FROM {name}"))?.trim() == "t")
}

#[test]
fn the_postgres_store_never_updates_deletes_or_truncates() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    // Fires before `events_refuse_change` (triggers fire in name order) and counts in
    // sequences, which a rollback does not reset.
    for statement in [
        "CREATE SEQUENCE es_audit_update",
        "CREATE SEQUENCE es_audit_delete",
        "CREATE SEQUENCE es_audit_truncate",
        &format!(
            "CREATE FUNCTION es_audit() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM nextval(format('%I.es_audit_%s', '{}', lower(TG_OP))); \
             RETURN NULL; END $$",
            schema.name
        ),
        "CREATE TRIGGER a_es_audit BEFORE UPDATE OR DELETE OR TRUNCATE ON events \
         FOR EACH STATEMENT EXECUTE FUNCTION es_audit()",
    ] {
        schema.sql(statement)?;
    }
    let table = "SELECT 'events'::regclass::oid, tgenabled FROM pg_trigger \
                 WHERE tgrelid = 'events'::regclass AND tgname = 'events_refuse_change'";
    let before = schema.sql(table)?;
    assert!(before.trim().ends_with("|O"), "{before}");

    let rival = schema.connect()?;
    let accounts = Repository::<Account, _>::new(&store);
    let rival_accounts = Repository::<Account, _>::new(&rival);
    accounts.execute("a", |a| a.open("ann"))?;
    accounts.execute("a", |a| a.deposit(100))?;
    let lost = accounts.with_retries(0).execute("a", |a| {
        rival_accounts
            .execute("a", |r| r.deposit(1))
            .map_err(|_| eventsource_tests::BankError::NotOpen)?;
        a.deposit(5)
    });
    assert!(
        matches!(lost, Err(ExecuteError::Conflict { .. })),
        "{lost:?}"
    );
    let accounts = Repository::<Account, _>::new(&store);
    assert_eq!(accounts.load("a")?.state.balance, 101);
    assert_eq!(accounts.load_at("a", 2)?.state.balance, 100);
    assert_eq!(store.read_all(Position::START).count(), 3);
    let s = StreamId::new("account", "a");
    let first = store
        .read_stream(&s, Version::new(1))
        .next()
        .ok_or("empty")??;
    assert!(matches!(
        store.append(
            &s,
            ExpectedVersion::Any,
            &[note(1), note(2).with_id(first.event_id)]
        ),
        Err(AppendError::DuplicateEventId { .. })
    ));
    assert!(matches!(
        store.append(
            &s,
            ExpectedVersion::Any,
            &[NewEvent::new("x", 1, r#"{"a":"\u0000"}"#)]
        ),
        Err(AppendError::Encode { .. })
    ));
    assert!(matches!(
        store.append(&s, ExpectedVersion::NoStream, &[note(3)]),
        Err(AppendError::Conflict { .. })
    ));
    drop((store, rival));
    drop(schema.connect()?);

    for kind in ["update", "delete", "truncate"] {
        assert!(
            !sequence_called(&schema, &format!("es_audit_{kind}"))?,
            "the store issued {kind}"
        );
    }
    assert_eq!(
        schema.sql(table)?,
        before,
        "the refusing trigger was changed"
    );
    // The audit is not blind.
    assert!(schema.sql("UPDATE events SET payload = '{}'").is_err());
    assert!(sequence_called(&schema, "es_audit_update")?);
    Ok(())
}
