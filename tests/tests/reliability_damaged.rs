//! A store whose refusing triggers were replaced by ones that do not refuse is damaged,
//! not only one whose triggers were dropped: a check by name alone passes a trigger
//! rewritten with `WHEN 0`, an empty body, `ENABLE REPLICA TRIGGER` or a trigger
//! function that returns without raising. Each is refused on open with
//! `StoreError::Damaged` naming the trigger, on SQLite and PostgreSQL.

use std::error::Error;

use eventsource::{SqliteStore, StoreError};
use eventsource_tests::pg::with_schema;
use eventsource_tests::{TempStore, raw_sqlite};

type TestResult = Result<(), Box<dyn Error>>;

fn assert_damaged(opened: Result<impl std::fmt::Debug, StoreError>, expected: &str) {
    match opened {
        Err(StoreError::Damaged { missing, .. }) => {
            assert_eq!(missing, [expected.to_owned()]);
        }
        other => panic!("expected Damaged with {expected}, got {other:?}"),
    }
}

#[test]
fn sqlite_refuses_triggers_that_were_replaced_by_ones_that_do_not_refuse() -> TestResult {
    let cases = [
        (
            "DROP TRIGGER events_refuse_update; CREATE TRIGGER events_refuse_update \
             BEFORE UPDATE ON events WHEN 0 \
             BEGIN SELECT RAISE(ABORT, 'eventsource: the events table is append-only; UPDATE is refused'); END",
            "events_refuse_update (altered)",
        ),
        (
            "DROP TRIGGER events_refuse_delete; CREATE TRIGGER events_refuse_delete \
             BEFORE DELETE ON events BEGIN SELECT 1; END",
            "events_refuse_delete (altered)",
        ),
        (
            "DROP TRIGGER commands_refuse_delete; CREATE TRIGGER commands_refuse_delete \
             BEFORE DELETE ON snapshots BEGIN SELECT RAISE(ABORT, 'no'); END",
            "commands_refuse_delete (altered)",
        ),
        (
            "DROP TRIGGER events_refuse_replace; CREATE TRIGGER events_refuse_replace \
             BEFORE INSERT ON events WHEN 0 BEGIN SELECT RAISE(ABORT, 'no'); END",
            "events_refuse_replace (altered)",
        ),
        (
            "DROP TRIGGER commands_refuse_update; CREATE TRIGGER commands_refuse_update \
             BEFORE UPDATE ON commands BEGIN SELECT RAISE(IGNORE); SELECT RAISE(ABORT, 'x'); END",
            "commands_refuse_update (altered)",
        ),
    ];
    for (sql, expected) in cases {
        let tmp = TempStore::new()?;
        drop(SqliteStore::open(&tmp.path)?);
        let conn = rusqlite::Connection::open(&tmp.path)?;
        conn.execute_batch(sql)?;
        drop(conn);
        assert_damaged(SqliteStore::open(&tmp.path), expected);
    }
    // Recreated exactly as the migrations wrote it (other white space), it is sound.
    let tmp = TempStore::new()?;
    drop(SqliteStore::open(&tmp.path)?);
    raw_sqlite(&tmp.path, "DROP TRIGGER events_refuse_update")?;
    raw_sqlite(
        &tmp.path,
        "CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
           BEGIN   SELECT RAISE(ABORT, 'eventsource: the events table is append-only; UPDATE is refused');   END",
    )?;
    SqliteStore::open(&tmp.path)?;
    Ok(())
}

#[test]
fn postgres_refuses_triggers_that_were_disabled_or_replaced() -> TestResult {
    let cases = [
        (
            "ALTER TABLE events ENABLE REPLICA TRIGGER events_refuse_change",
            "events_refuse_change (fires for replication sessions only)",
        ),
        (
            "CREATE OR REPLACE FUNCTION events_refuse_change() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
            "events_refuse_change (altered)",
        ),
        (
            "DROP TRIGGER commands_refuse_change ON commands; \
             CREATE TRIGGER commands_refuse_change BEFORE UPDATE OR DELETE OR TRUNCATE \
             ON commands FOR EACH STATEMENT WHEN (false) EXECUTE FUNCTION commands_refuse_change()",
            "commands_refuse_change (altered)",
        ),
        (
            "DROP TRIGGER events_refuse_change ON events; \
             CREATE TRIGGER events_refuse_change BEFORE TRUNCATE \
             ON events FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change()",
            "events_refuse_change (altered)",
        ),
    ];
    for (sql, expected) in cases {
        with_schema(|schema| {
            drop(schema.connect()?);
            schema.sql(sql)?;
            assert_damaged(schema.connect(), expected);
            Ok(())
        })?;
    }
    // `ENABLE ALWAYS` keeps refusing (in replication sessions too): sound.
    with_schema(|schema| {
        drop(schema.connect()?);
        schema.sql("ALTER TABLE events ENABLE ALWAYS TRIGGER events_refuse_change")?;
        drop(schema.connect()?);
        Ok(())
    })
}
