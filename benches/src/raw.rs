//! The baseline: hand-written rusqlite doing the same work as eventsource, on the same
//! table (created by `SqliteStore::open`, so the schema, indexes and triggers are equal).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::domain::{Ledger, PaymentMade, fold};

const VERSION: &str = "SELECT version FROM events WHERE aggregate_type = ?1 AND stream_id = ?2 \
     ORDER BY version DESC LIMIT 1";
const INSERT: &str = "INSERT INTO events (aggregate_type, stream_id, version, event_type, \
     event_version, event_id, recorded_at, payload, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// A raw connection with the same settings as the store's writer.
pub fn connect(path: &Path, synchronous: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(conn)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// One command: BEGIN IMMEDIATE, read the stream version, INSERT one event, COMMIT.
pub fn command(conn: &mut Connection, stream: &str, n: u64) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx
        .prepare_cached(VERSION)?
        .query_row(("ledger", stream), |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let payload = serde_json::to_string(&PaymentMade::nth(n))
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let mut id = [0u8; 36];
    let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut id);
    tx.prepare_cached(INSERT)?.execute((
        "ledger",
        stream,
        version + 1,
        "payment.made",
        1,
        &*id,
        now_micros(),
        payload,
        "{}",
    ))?;
    tx.commit()?;
    Ok(version + 1)
}

/// One batch: BEGIN IMMEDIATE, read the stream version, INSERT `count` events, COMMIT.
pub fn batch(conn: &mut Connection, stream: &str, first: u64, count: u64) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut version: i64 = tx
        .prepare_cached(VERSION)?
        .query_row(("ledger", stream), |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        let now = now_micros();
        let mut id = [0u8; 36];
        for n in first..first + count {
            version += 1;
            let payload = serde_json::to_string(&PaymentMade::nth(n))
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut id);
            insert.execute((
                "ledger",
                stream,
                version,
                "payment.made",
                1,
                &*id,
                now,
                payload,
                "{}",
            ))?;
        }
    }
    tx.commit()
}

/// Replay: SELECT the stream's payloads in order, decode each with `serde_json`, fold.
pub fn replay(conn: &Connection, stream: &str) -> Result<Ledger, Box<dyn std::error::Error>> {
    let mut stmt = conn.prepare_cached(
        "SELECT payload FROM events WHERE aggregate_type = ?1 AND stream_id = ?2 ORDER BY version",
    )?;
    let mut rows = stmt.query(("ledger", stream))?;
    let mut ledger = Ledger::default();
    while let Some(row) = rows.next()? {
        let event: PaymentMade = serde_json::from_str(row.get_ref(0)?.as_str()?)?;
        fold(&mut ledger, &event);
    }
    Ok(ledger)
}
