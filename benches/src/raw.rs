//! The baselines: hand-written rusqlite doing the same work as eventsource, on two
//! tables. [`Table::Ours`] is the library's own table (created by `SqliteStore::open`, so
//! the schema, indexes and triggers are equal): eventsource against it is the library's
//! overhead. [`Table::Minimal`] has only what the queries need (no triggers, metadata,
//! event id, hash or read-side indexes): eventsource against it is the cost of our
//! design.
//!
//! Neither raw side computes the hash chain: its cost is inside the library's figures.

use std::collections::HashMap;
use std::error::Error;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::domain::{Ledger, PaymentMade, fold};

type Result<T = (), E = Box<dyn Error>> = std::result::Result<T, E>;

/// Which table a raw side works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The library's table, created by `SqliteStore::open`.
    Ours,
    /// [`MINIMAL_SCHEMA`].
    Minimal,
}

impl Table {
    /// Both, in the order the report prints them.
    pub const BOTH: [Table; 2] = [Table::Ours, Table::Minimal];

    /// A short name for file names.
    pub fn tag(self) -> &'static str {
        match self {
            Table::Ours => "same",
            Table::Minimal => "min",
        }
    }

    fn sql(self, ours: &'static str, minimal: &'static str) -> &'static str {
        match self {
            Table::Ours => ours,
            Table::Minimal => minimal,
        }
    }
}

/// The least a store of streams needs: the stream key is the stream id alone, and the
/// event's shape version, when there is one, is part of its type (`payment.made.v1`).
const MINIMAL_SCHEMA: &str = "
CREATE TABLE events (
    position INTEGER PRIMARY KEY,
    stream   TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    type     TEXT    NOT NULL,
    payload  TEXT    NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE snapshots (
    stream  TEXT    PRIMARY KEY,
    version INTEGER NOT NULL,
    state   TEXT    NOT NULL
) WITHOUT ROWID;
";

// Parameters on our table: ?1 aggregate type, ?2 stream id; on the minimal one: ?1 stream.
const VERSION_OURS: &str = "SELECT version FROM events WHERE aggregate_type = ?1 AND stream_id = ?2 \
     ORDER BY version DESC LIMIT 1";
const VERSION_MIN: &str =
    "SELECT version FROM events WHERE stream = ?1 ORDER BY version DESC LIMIT 1";
const READ_OURS: &str = "SELECT version, event_type, event_version, payload FROM events \
     WHERE aggregate_type = ?1 AND stream_id = ?2 AND version > ?3 ORDER BY version";
const READ_MIN: &str =
    "SELECT version, type, payload FROM events WHERE stream = ?1 AND version > ?2 ORDER BY version";
const INSERT_OURS: &str = "INSERT INTO events (aggregate_type, stream_id, version, event_type, \
     event_version, event_id, recorded_at, payload, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const INSERT_MIN: &str =
    "INSERT INTO events (stream, version, type, payload) VALUES (?1, ?2, ?3, ?4)";
const SNAPSHOT_OURS: &str = "SELECT version, state FROM snapshots WHERE aggregate_type = ?1 \
     AND stream_id = ?2 AND state_version = 1 ORDER BY version DESC LIMIT 1";
const SNAPSHOT_MIN: &str = "SELECT version, state FROM snapshots WHERE stream = ?1";

/// A raw connection with the same settings as the store's writer.
pub fn connect(path: &Path, synchronous: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    // As eventsource's connections: plans that do not depend on bound values, so that a
    // cached statement is not prepared again on every use (see `schema::configure`).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

/// Creates a fresh file with [`MINIMAL_SCHEMA`] (removing any old one).
pub fn create_minimal(path: &Path) -> rusqlite::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    connect(path, "NORMAL")?.execute_batch(MINIMAL_SCHEMA)
}

/// Grows the file's WAL to about 1,500 pages and leaves it checkpointed, as in a store
/// that has been running for a while: at `synchronous=FULL`, a commit that appends to a
/// new WAL file syncs the file's growth too and is several times slower than one that
/// overwrites frames of a WAL already grown, so a fresh file would favour long runs
/// (many threads) over short ones. The WAL outlives this call only while `conn` (or
/// another connection to the file) stays open.
pub fn grow_wal(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE bench_wal_warmup (x BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
         INSERT INTO bench_wal_warmup SELECT zeroblob(3000) FROM n;
         DROP TABLE bench_wal_warmup;",
    )
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The stream's last version (0 when it is empty).
pub fn version(
    conn: &Connection,
    table: Table,
    aggregate: &str,
    id: &str,
) -> rusqlite::Result<i64> {
    let mut stmt = conn.prepare_cached(table.sql(VERSION_OURS, VERSION_MIN))?;
    let version = match table {
        Table::Ours => stmt.query_row((aggregate, id), |r| r.get(0)),
        Table::Minimal => stmt.query_row([id], |r| r.get(0)),
    };
    Ok(version.optional()?.unwrap_or(0))
}

/// Reads the stream's events after version `after` in order, handing each one's type,
/// shape version (0 on the minimal table, where the type names it) and payload to
/// `each`. Returns the last version read (`after` when there was none).
pub fn read(
    conn: &Connection,
    table: Table,
    aggregate: &str,
    id: &str,
    after: i64,
    mut each: impl FnMut(&str, i64, &str) -> Result,
) -> Result<i64> {
    let mut stmt = conn.prepare_cached(table.sql(READ_OURS, READ_MIN))?;
    let mut rows = match table {
        Table::Ours => stmt.query((aggregate, id, after))?,
        Table::Minimal => stmt.query((id, after))?,
    };
    let mut last = after;
    while let Some(row) = rows.next()? {
        last = row.get(0)?;
        let event_type = row.get_ref(1)?.as_str()?;
        match table {
            Table::Ours => each(event_type, row.get(2)?, row.get_ref(3)?.as_str()?)?,
            Table::Minimal => each(event_type, 0, row.get_ref(2)?.as_str()?)?,
        }
    }
    Ok(last)
}

/// Inserts one event (on our table with a fresh UUID v7 event id, the time and empty
/// metadata, as the library stores them).
#[allow(clippy::too_many_arguments, reason = "the columns of one row")]
pub fn insert(
    conn: &Connection,
    table: Table,
    aggregate: &str,
    id: &str,
    version: i64,
    event_type: &str,
    event_version: i64,
    payload: &str,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(table.sql(INSERT_OURS, INSERT_MIN))?;
    match table {
        Table::Ours => {
            let mut buf = [0u8; 36];
            let event_id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
            stmt.execute((
                aggregate,
                id,
                version,
                event_type,
                event_version,
                &*event_id,
                now_micros(),
                payload,
                "{}",
            ))?;
        }
        Table::Minimal => {
            stmt.execute((id, version, event_type, payload))?;
        }
    }
    Ok(())
}

/// A stored `payment.made`, decoded (any other type is an error, as in a `match` over a
/// domain's event types).
fn payment(event_type: &str, event_version: i64, payload: &str) -> Result<PaymentMade> {
    match (event_type, event_version) {
        ("payment.made", 0 | 1) => Ok(serde_json::from_str(payload)?),
        _ => Err(format!("unknown event {event_type} v{event_version}").into()),
    }
}

/// Replays a ledger's events after `after` onto `ledger`; the last version read.
fn fold_stream(
    conn: &Connection,
    table: Table,
    id: &str,
    after: i64,
    ledger: &mut Ledger,
) -> Result<i64> {
    read(conn, table, "ledger", id, after, |t, v, payload| {
        fold(ledger, &payment(t, v, payload)?);
        Ok(())
    })
}

/// Decides and appends the command's one event at `version + 1`.
fn decide_and_insert(
    conn: &Connection,
    table: Table,
    id: &str,
    ledger: &Ledger,
    version: i64,
    n: u64,
) -> Result<PaymentMade> {
    let event = match ledger.pay(n) {
        Ok(event) => event,
        Err(never) => match never {},
    };
    let payload = serde_json::to_string(&event)?;
    insert(
        conn,
        table,
        "ledger",
        id,
        version + 1,
        "payment.made",
        1,
        &payload,
    )?;
    Ok(event)
}

/// One command as `Repository::execute` runs it: BEGIN IMMEDIATE, read the stream's
/// events, decode and fold each, decide, INSERT one event at the version read + 1,
/// COMMIT.
pub fn command(conn: &mut Connection, table: Table, id: &str, n: u64) -> Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut ledger = Ledger::default();
    let version = fold_stream(&tx, table, id, 0, &mut ledger)?;
    decide_and_insert(&tx, table, id, &ledger, version, n)?;
    tx.commit()?;
    Ok(version + 1)
}

/// Commands with the folded state of each stream kept in memory, as a careful
/// hand-written cache: per command, BEGIN IMMEDIATE, read the stream's version only
/// (replaying when it is not the cached one), decide, INSERT, COMMIT, fold the event.
#[derive(Debug, Default)]
pub struct Cached {
    states: HashMap<String, (Ledger, i64)>,
}

impl Cached {
    /// One command.
    pub fn command(&mut self, conn: &mut Connection, table: Table, id: &str, n: u64) -> Result {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = version(&tx, table, "ledger", id)?;
        if self.states.get(id).is_none_or(|(_, v)| *v != version) {
            let mut ledger = Ledger::default();
            let read = fold_stream(&tx, table, id, 0, &mut ledger)?;
            self.states.insert(id.to_owned(), (ledger, read));
        }
        let Some((ledger, cached)) = self.states.get_mut(id) else {
            return Err("the state was just cached".into());
        };
        let event = decide_and_insert(&tx, table, id, ledger, version, n)?;
        tx.commit()?;
        fold(ledger, &event);
        *cached = version + 1;
        Ok(())
    }
}

/// One batch: BEGIN IMMEDIATE, read the stream version, INSERT `count` payments, COMMIT.
pub fn batch(conn: &mut Connection, table: Table, id: &str, first: u64, count: u64) -> Result {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut version = version(&tx, table, "ledger", id)?;
    for n in first..first + count {
        version += 1;
        let payload = serde_json::to_string(&PaymentMade::nth(n))?;
        insert(
            &tx,
            table,
            "ledger",
            id,
            version,
            "payment.made",
            1,
            &payload,
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Fills stream `id` with `total` payments, 10,000 per transaction.
pub fn fill(conn: &mut Connection, table: Table, id: &str, total: u64) -> Result {
    let mut n = 0;
    while n < total {
        batch(conn, table, id, n, 10_000.min(total - n))?;
        n += 10_000;
    }
    Ok(())
}

/// Replay: read the stream's events in order, decode each with `serde_json`, fold.
pub fn replay(conn: &Connection, table: Table, id: &str) -> Result<Ledger> {
    let mut ledger = Ledger::default();
    fold_stream(conn, table, id, 0, &mut ledger)?;
    Ok(ledger)
}

/// Saves a snapshot of `ledger` at `version` on the minimal table (on ours, the library
/// saves it).
pub fn save_snapshot(conn: &Connection, id: &str, ledger: &Ledger, version: i64) -> Result {
    conn.execute(
        "INSERT OR REPLACE INTO snapshots (stream, version, state) VALUES (?1, ?2, ?3)",
        (id, version, serde_json::to_string(ledger)?),
    )?;
    Ok(())
}

/// Load from a snapshot: in one read transaction, the newest snapshot row, decoded, and
/// the events after it folded onto it (the whole stream when there is no snapshot).
pub fn load_from_snapshot(conn: &mut Connection, table: Table, id: &str) -> Result<Ledger> {
    let tx = conn.transaction()?;
    let snapshot: Option<(i64, String)> = {
        let mut stmt = tx.prepare_cached(table.sql(SNAPSHOT_OURS, SNAPSHOT_MIN))?;
        let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
        match table {
            Table::Ours => stmt.query_row(("ledger", id), row),
            Table::Minimal => stmt.query_row([id], row),
        }
        .optional()?
    };
    let (mut ledger, at) = match snapshot {
        Some((at, state)) => (serde_json::from_str(&state)?, at),
        None => (Ledger::default(), 0),
    };
    fold_stream(&tx, table, id, at, &mut ledger)?;
    tx.commit()?;
    Ok(ledger)
}
