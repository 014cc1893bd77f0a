//! The schema of a SQLite store: recognising the file, creating and migrating the
//! tables, and configuring connections.

use std::path::Path;

use rusqlite::config::DbConfig;
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
    // The read side: filtered scans of the global order by event type or aggregate
    // type, and the checkpoints of projections (not append-only: a checkpoint moves).
    r"
CREATE INDEX events_by_event_type ON events (event_type, position);
CREATE INDEX events_by_aggregate_type ON events (aggregate_type, position);
CREATE TABLE projections (
    name       TEXT    PRIMARY KEY,
    version    INTEGER NOT NULL CHECK (version >= 1),
    position   INTEGER NOT NULL CHECK (position >= 0),
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
",
    // Tamper evidence: each event appended from now on carries a SHA-256 over its content
    // and the previous event's hash (see `chain`); the head of the chain is kept apart,
    // so that removing the newest events shows. Rows stored before keep a NULL hash: the
    // chain starts after them (`starts_at`).
    r"
ALTER TABLE events ADD COLUMN hash BLOB CHECK (hash IS NULL OR length(hash) = 32);
CREATE TABLE chain (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    encoding  INTEGER NOT NULL,
    starts_at INTEGER NOT NULL CHECK (starts_at >= 1),
    position  INTEGER NOT NULL,
    hash      BLOB    NOT NULL CHECK (length(hash) = 32),
    count     INTEGER NOT NULL CHECK (count >= 0)
);
INSERT INTO chain (id, encoding, starts_at, position, hash, count)
SELECT 1, 1, coalesce(max(position), 0) + 1, coalesce(max(position), 0), zeroblob(32), 0 FROM events;
CREATE TRIGGER chain_refuse_delete BEFORE DELETE ON chain
BEGIN SELECT RAISE(ABORT, 'eventsource: the chain head cannot be deleted'); END;
CREATE TRIGGER chain_refuse_rewind BEFORE UPDATE ON chain
WHEN NEW.position < OLD.position OR NEW.count < OLD.count OR NEW.starts_at != OLD.starts_at
BEGIN SELECT RAISE(ABORT, 'eventsource: the chain head only moves forward'); END;
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
    // Plans that do not depend on bound values. Without this, SQLite marks a statement
    // whose plan looked at a parameter (`x = ?` outside the chosen index, `LIMIT ?`) to be
    // prepared again whenever that parameter is rebound, and rusqlite's statement cache
    // clears the bindings of every statement it takes back: each cached query (the
    // stream version before an append, the replay before a command) was parsed and
    // planned anew on every use.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    if let Some(hook) = &options.on_connect {
        hook(conn)?;
    }
    Ok(())
}

/// The smallest SQLite database file: one page of the smallest page size. A shorter
/// file that is not empty is not a database, and SQLite would overwrite it.
const MIN_DATABASE_LEN: u64 = 512;

/// Refuses, before SQLite touches it, a file that is neither empty nor long enough to
/// be a SQLite database.
pub(super) fn check_file_len(path: &Path) -> Result<(), StoreError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.len() > 0 && meta.len() < MIN_DATABASE_LEN => {
            Err(StoreError::NotAStore {
                path: path.to_owned(),
                reason: format!(
                    "the file is {} bytes long, too short to be a SQLite database",
                    meta.len()
                ),
            })
        }
        _ => Ok(()),
    }
}

/// What the first page of a file says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    app_id: i32,
    user_version: i64,
    objects: i64,
    has_events: bool,
}

/// What a file is, decided from its header alone (nothing written yet).
enum Kind {
    /// No schema, no application id, no user version: a new store may be created.
    Empty,
    /// A store of ours at this schema version (1 to [`SCHEMA_VERSION`]).
    Ours(i64),
}

impl Header {
    /// Decides what the file is; anything but an empty file or a store of ours (of a
    /// schema this build knows) is an error, and the file has not been written to.
    fn kind(self, path: &Path) -> Result<Kind, StoreError> {
        let not_a_store = |reason: String| {
            Err(StoreError::NotAStore {
                path: path.to_owned(),
                reason,
            })
        };
        let Header {
            app_id,
            user_version,
            objects,
            has_events,
        } = self;
        if app_id == 0 && objects == 0 && user_version == 0 {
            return Ok(Kind::Empty);
        }
        if app_id != APPLICATION_ID {
            return not_a_store(format!(
                "it is a SQLite database of another application (application_id {app_id:#x}, user_version {user_version}, {objects} schema objects)"
            ));
        }
        if user_version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_owned(),
                found: user_version,
                supported: SCHEMA_VERSION,
            });
        }
        if user_version < 1 {
            return not_a_store(format!(
                "it has eventsource's application_id but schema version {user_version}, which no eventsource writes"
            ));
        }
        // A current store without its table is damaged (see `check_objects`); an older
        // one cannot be migrated.
        if !has_events && user_version < SCHEMA_VERSION {
            return not_a_store(format!(
                "it has eventsource's application_id and schema version {user_version} but no `events` table"
            ));
        }
        Ok(Kind::Ours(user_version))
    }
}

/// Checks that the file is an eventsource store of a schema we know, creating the
/// schema in an empty file. Nothing is written to a file that is refused: the header is
/// read in one read transaction and judged before any write, and judged again under
/// the write lock before the schema is created (another process may have created it, or
/// something else, meanwhile).
pub(super) fn prepare_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    // Reading the header is the first thing that touches the file: a file that is not
    // SQLite fails here, before anything is written.
    let header = match read_header(conn) {
        Ok(header) => header,
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            return Err(StoreError::NotAStore {
                path: path.to_owned(),
                reason: "the file is not a SQLite database".into(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    match header.kind(path)? {
        Kind::Ours(SCHEMA_VERSION) => {}
        Kind::Empty | Kind::Ours(_) => create_schema(conn, path)?,
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
    "projections",
    "chain",
    "chain_refuse_delete",
    "chain_refuse_rewind",
];

/// `sql` in lower case with runs of white space as one space.
fn normalize(sql: &str) -> String {
    sql.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether `sql` still defines the refusing trigger `name`. The UPDATE and DELETE
/// triggers (whose text differs between releases) must be
/// `CREATE TRIGGER name BEFORE UPDATE|DELETE ON table BEGIN SELECT RAISE(ABORT, '...'); END`
/// with nothing else (no `WHEN`, no other statement); the REPLACE (and the chain head's
/// REWIND) triggers must be
/// exactly what the migrations wrote, white space aside. So a trigger replaced by one
/// that does nothing (`WHEN 0`, an empty body, another table) is noticed.
fn trigger_intact(name: &str, sql: &str) -> bool {
    let sql = normalize(sql);
    let Some((table, op)) = name.rsplit_once("_refuse_") else {
        return true;
    };
    if op == "replace" || op == "rewind" {
        return MIGRATIONS
            .iter()
            .any(|migration| normalize(migration).contains(&format!("{sql};")));
    }
    let head = format!("create trigger {name} before {op} on {table} begin select raise(abort, '");
    sql.strip_prefix(&head)
        .and_then(|rest| rest.strip_suffix("'); end"))
        .is_some_and(|message| !message.contains('\''))
}

/// Refuses a store whose tables or triggers were dropped (in a shell, say), or whose
/// refusing triggers (and the tables they guard) were replaced by other definitions.
fn check_objects(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let present = conn
        .prepare(
            "SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type IN ('table', 'trigger')",
        )?
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut missing = Vec::new();
    for required in REQUIRED_OBJECTS {
        match present.iter().find(|(name, _)| name == required) {
            None => missing.push((*required).to_owned()),
            Some((_, sql)) if !trigger_intact(required, sql) => {
                missing.push(format!("{required} (altered)"));
            }
            Some(_) => {}
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Damaged {
            path: path.to_owned(),
            missing,
        })
    }
}

/// The header, read in one read transaction so that its parts agree (a store created
/// by another connection between two separate reads would look like a foreign file).
fn read_header(conn: &Connection) -> rusqlite::Result<Header> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
    let header = read_header_in(&tx)?;
    tx.commit()?;
    Ok(header)
}

fn read_header_in(conn: &Connection) -> rusqlite::Result<Header> {
    let app_id = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let user_version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let (objects, has_events) = conn.query_row(
        "SELECT count(*), coalesce(sum(type = 'table' AND name = 'events'), 0) > 0 \
         FROM sqlite_master",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Header {
        app_id,
        user_version,
        objects,
        has_events,
    })
}

/// Applies the missing migrations under the write lock, after judging the header again
/// inside the transaction: another connection may have created the store meanwhile
/// (then nothing is left to do) or written something else.
fn create_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    let from = match read_header_in(&tx)?.kind(path)? {
        Kind::Empty => 0,
        Kind::Ours(version) => usize::try_from(version).unwrap_or(usize::MAX),
    };
    if from >= MIGRATIONS.len() {
        return Ok(()); // created by someone else meanwhile; the transaction rolls back
    }
    for migration in &MIGRATIONS[from..] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Switches a file store to write-ahead logging. Changing the journal mode needs the
/// database to itself, and SQLite reports `SQLITE_BUSY` at once (without its busy
/// handler) when other connections are reading, as happens when many open a new store
/// together: retry until the busy timeout has passed.
pub(super) fn enable_wal(
    conn: &Connection,
    busy_timeout: std::time::Duration,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        let mode: rusqlite::Result<String> =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0));
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) if started.elapsed() < busy_timeout => {}
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && started.elapsed() < busy_timeout => {}
            Ok(mode) => {
                return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some(format!(
                        "could not switch to WAL (journal mode stays {mode})"
                    )),
                )));
            }
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
}
