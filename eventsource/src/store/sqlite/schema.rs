//! The schema of a SQLite store: recognising the file, creating and migrating the
//! tables, and configuring connections.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::SqliteOptions;
use crate::error::StoreError;

/// `PRAGMA application_id` of an eventsource store ("ESRC").
pub(super) const APPLICATION_ID: i32 = 0x4553_5243;

/// Schema migrations: entry `i` takes a store from schema version `i` to `i + 1`. A new
/// store runs them all; the file's `user_version` is the number applied.
pub(super) const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    aggregate_type TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_type     TEXT    NOT NULL,
    event_version  INTEGER NOT NULL CHECK (event_version >= 1),
    event_id       TEXT    NOT NULL UNIQUE,
    recorded_at    INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    UNIQUE (aggregate_type, stream_id, version)
);
CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'eventsource: the events table is append-only; UPDATE is refused'); END;
CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'eventsource: the events table is append-only; DELETE is refused'); END;
",
    r"
CREATE TABLE snapshots (
    aggregate_type TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    state_version  INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    taken_at       INTEGER NOT NULL,
    PRIMARY KEY (aggregate_type, stream_id, state_version, version)
) WITHOUT ROWID;
CREATE TABLE commands (
    command_id     TEXT    PRIMARY KEY,
    aggregate_type TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    positions      TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER commands_refuse_update BEFORE UPDATE ON commands
BEGIN SELECT RAISE(ABORT, 'eventsource: the commands table is append-only; UPDATE is refused'); END;
CREATE TRIGGER commands_refuse_delete BEFORE DELETE ON commands
BEGIN SELECT RAISE(ABORT, 'eventsource: the commands table is append-only; DELETE is refused'); END;
CREATE TRIGGER commands_refuse_replace BEFORE INSERT ON commands
WHEN EXISTS (SELECT 1 FROM commands WHERE command_id = NEW.command_id)
BEGIN SELECT RAISE(ABORT, 'eventsource: the commands table is append-only; REPLACE is refused'); END;
-- INSERT OR REPLACE deletes the rows it conflicts with without firing DELETE triggers:
-- refuse any insert that would conflict, before the conflict is resolved.
CREATE TRIGGER events_refuse_replace BEFORE INSERT ON events
WHEN EXISTS (SELECT 1 FROM events WHERE position = NEW.position)
  OR EXISTS (SELECT 1 FROM events WHERE event_id = NEW.event_id)
  OR EXISTS (SELECT 1 FROM events WHERE aggregate_type = NEW.aggregate_type
             AND stream_id = NEW.stream_id AND version = NEW.version)
BEGIN SELECT RAISE(ABORT, 'eventsource: the events table is append-only; REPLACE is refused'); END;
",
];

/// The schema version this build writes and reads.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(options.busy_timeout)?;
    Ok(conn)
}

/// Settings of every connection, once the schema is known to be ours.
pub(super) fn configure(conn: &mut Connection, options: &SqliteOptions) -> Result<(), StoreError> {
    conn.pragma_update(None, "synchronous", options.synchronous.pragma())?;
    if let Some(hook) = &options.on_connect {
        hook(conn)?;
    }
    Ok(())
}

/// Checks that the file is an eventsource store of a schema we know, creating the
/// schema in an empty file. Nothing is written to a file that is refused.
pub(super) fn prepare_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let not_a_store = |reason: String| StoreError::NotAStore {
        path: path.to_owned(),
        reason,
    };
    // Reading the header is the first thing that touches the file: a file that is not
    // SQLite fails here, before anything is written.
    let (app_id, user_version, objects) = match read_header(conn) {
        Ok(header) => header,
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            return Err(not_a_store("the file is not a SQLite database".into()));
        }
        Err(e) => return Err(e.into()),
    };
    if app_id == 0 && objects == 0 {
        return create_schema(conn, path);
    }
    if app_id != APPLICATION_ID {
        return Err(not_a_store(format!(
            "it is a SQLite database of another application (application_id {app_id:#x}, {objects} schema objects)"
        )));
    }
    if user_version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: user_version,
            supported: SCHEMA_VERSION,
        });
    }
    if user_version < SCHEMA_VERSION {
        create_schema(conn, path)?;
    }
    check_objects(conn, path)
}

/// The tables and triggers a store of the current schema has: the append-only
/// guarantee rests on the triggers, so a store that lost one is refused, never repaired
/// behind the user's back.
const REQUIRED_OBJECTS: &[&str] = &[
    "events",
    "events_refuse_update",
    "events_refuse_delete",
    "events_refuse_replace",
    "commands",
    "commands_refuse_update",
    "commands_refuse_delete",
    "commands_refuse_replace",
    "snapshots",
];

/// Refuses a store whose tables or triggers were dropped (in a shell, say).
fn check_objects(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut present =
        conn.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")?;
    let names = present
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let missing: Vec<String> = REQUIRED_OBJECTS
        .iter()
        .filter(|required| !names.iter().any(|name| name == *required))
        .map(|name| (*name).to_owned())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Damaged {
            path: path.to_owned(),
            missing,
        })
    }
}

pub(super) fn read_header(conn: &Connection) -> rusqlite::Result<(i32, i64, i64)> {
    let app_id = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let user_version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let objects = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok((app_id, user_version, objects))
}

/// Applies the missing migrations under the write lock; another process may be doing the
/// same, so the state is read again inside the transaction.
pub(super) fn create_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let (app_id, user_version, objects) = read_header(&tx)?;
    if app_id != APPLICATION_ID && !(app_id == 0 && objects == 0) {
        return Err(StoreError::NotAStore {
            path: path.to_owned(),
            reason: "another application created a schema in the file".into(),
        });
    }
    let from = usize::try_from(user_version).unwrap_or(usize::MAX);
    for migration in MIGRATIONS.iter().skip(from) {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}
