//! R: the read side. A projection rebuild into a table of the same SQLite file, against
//! a hand-written rusqlite loop doing the same work (scan, decode the handled 10%,
//! upsert, checkpoint every batch); and live latency from an append's commit to the
//! projection having applied it.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource::{
    Context, EventStore, ExpectedVersion, HandlerResult, NewEvent, PostgresStore, Project,
    Projection, ProjectionStore, Projector, SqliteOptions, SqliteStore, StreamId, Synchronous,
    event,
};
use rusqlite::{OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::Options;
use crate::domain::PaymentMade;
use crate::raw::{self, Table};
use crate::report::{interleaved, percentile_us, rate, row, throughput};

type Result<T = (), E = Box<dyn Error>> = std::result::Result<T, E>;

/// A payment was refunded: one event in ten.
#[event(name = "payment.refunded")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    /// Refunded account.
    pub account: String,
    /// Cents.
    pub amount: i64,
}

const UPSERT: &str = "INSERT INTO refunds (account, total, count) VALUES (?1, ?2, 1) \
     ON CONFLICT (account) DO UPDATE SET total = total + excluded.total, count = count + 1";

/// Refund totals per account, in the store's file.
#[derive(Debug, Projection)]
#[projection(name = "refunds", events(PaymentRefunded), reset = Self::clear)]
pub struct Refunds;

impl Refunds {
    fn clear(_: &mut Self, ctx: &mut Context<'_>) -> HandlerResult {
        ctx.sqlite()?.execute("DELETE FROM refunds", ())?;
        Ok(())
    }
}

impl Project<PaymentRefunded> for Refunds {
    fn project(&mut self, e: &PaymentRefunded, ctx: &mut Context<'_>) -> HandlerResult {
        ctx.sqlite()?
            .prepare_cached(UPSERT)?
            .execute((&e.account, e.amount))?;
        Ok(())
    }
}

/// Counts what it applies (for latency: the read model is the counter).
#[derive(Debug, Default, Projection)]
#[projection(name = "latency", events(PaymentMade))]
pub struct Applied;

impl Project<PaymentMade> for Applied {
    fn project(&mut self, _: &PaymentMade, _: &mut Context<'_>) -> HandlerResult {
        Ok(())
    }
}

/// The raw loop: per batch, BEGIN IMMEDIATE, read the checkpoint and the head, read the
/// next 500 refunds (through the event-type index), decode, upsert, move the
/// checkpoint, COMMIT. Returns the refunds applied. With `per_event`, the upsert is
/// looked up in rusqlite's statement cache for each event, as a projection handler does
/// (`prepare_cached`: it cannot keep a statement across batches); otherwise it is
/// prepared once per batch.
fn raw_rebuild(path: &Path, table: Table, per_event: bool) -> Result<u64> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS raw_refunds (account TEXT PRIMARY KEY, total INTEGER NOT NULL, count INTEGER NOT NULL); \
         CREATE TABLE IF NOT EXISTS raw_checkpoint (name TEXT PRIMARY KEY, position INTEGER NOT NULL); \
         DELETE FROM raw_refunds; DELETE FROM raw_checkpoint",
    )?;
    let select_sql = match table {
        Table::Ours => {
            "SELECT position, payload FROM events WHERE event_type = 'payment.refunded' \
             AND position > ?1 AND position <= ?2 ORDER BY position LIMIT 500"
        }
        Table::Minimal => {
            "SELECT position, payload FROM events WHERE type = 'payment.refunded' \
             AND position > ?1 AND position <= ?2 ORDER BY position LIMIT 500"
        }
    };
    let mut applied = 0;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let after: i64 = tx
            .query_row(
                "SELECT position FROM raw_checkpoint WHERE name = 'refunds'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let head: i64 = tx.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
            r.get(0)
        })?;
        let mut count = 0;
        let mut last = after;
        {
            let mut select = tx.prepare_cached(select_sql)?;
            let upsert_sql = UPSERT.replace("refunds", "raw_refunds");
            let mut upsert = tx.prepare_cached(&upsert_sql)?;
            let mut rows = select.query((after, head))?;
            while let Some(row) = rows.next()? {
                last = row.get(0)?;
                let e: PaymentRefunded = serde_json::from_str(row.get_ref(1)?.as_str()?)?;
                if per_event {
                    tx.prepare_cached(&upsert_sql)?
                        .execute((&e.account, e.amount))?;
                } else {
                    upsert.execute((&e.account, e.amount))?;
                }
                count += 1;
            }
        }
        let checkpoint = if count < 500 { head } else { last };
        tx.execute(
            "INSERT INTO raw_checkpoint (name, position) VALUES ('refunds', ?1) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            [checkpoint],
        )?;
        tx.commit()?;
        applied += count;
        if checkpoint >= head {
            return Ok(applied);
        }
    }
}

/// The `i`th event of the read side's store: one in ten a refund.
fn nth(i: u64) -> Result<NewEvent> {
    Ok(if i % 10 == 9 {
        NewEvent::from_event(&PaymentRefunded {
            account: format!("acc-{}", i % 997),
            amount: i64::try_from(i % 500)?,
        })?
    } else {
        NewEvent::from_event(&PaymentMade::nth(i))?
    })
}

/// The stream of the `i`th event (1,000 at a time, over 100 streams).
fn stream_of(i: u64) -> String {
    format!("l-{}", i / 1_000 % 100)
}

/// Fills a store with `n` events, one in ten a refund, in appends of 1,000.
fn fill(store: &SqliteStore, n: u64) -> Result {
    let mut batch = Vec::with_capacity(1_000);
    for i in 0..n {
        batch.push(nth(i)?);
        if batch.len() == 1_000 || i + 1 == n {
            let stream = StreamId::new("ledger", stream_of(i));
            store.append(&stream, ExpectedVersion::Any, &batch)?;
            batch.clear();
        }
    }
    Ok(())
}

/// The same events on the minimal table, with the one index the loop's query needs.
fn fill_minimal(path: &Path, n: u64) -> Result {
    raw::create_minimal(path)?;
    let mut conn = raw::connect(path, "NORMAL")?;
    conn.execute_batch("CREATE INDEX events_by_type ON events (type, position)")?;
    let mut first = 0;
    while first < n {
        let tx = conn.transaction()?;
        for i in first..n.min(first + 1_000) {
            let event = nth(i)?;
            // The stream's version: 1,000 events per visit of the 100 streams.
            let version = i64::try_from(i / 100_000 * 1_000 + i % 1_000 + 1)?;
            raw::insert(
                &tx,
                Table::Minimal,
                "",
                &stream_of(i),
                version,
                &event.event_type,
                0,
                &event.payload,
            )?;
        }
        tx.commit()?;
        first += 1_000;
    }
    Ok(())
}

/// The rebuild rows.
fn rebuild(o: &Options, dir: &Path) -> Result {
    let n = o.scaled(500_000, 10_000);
    let path = dir.join("r-rebuild.db");
    let min_path = dir.join("r-rebuild-min.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = SqliteStore::open(&path)?;
    fill(&store, n)?;
    fill_minimal(&min_path, n)?;
    store.write(|tx| {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS refunds (account TEXT PRIMARY KEY, total INTEGER NOT NULL, count INTEGER NOT NULL)",
        )
    })?;
    let check = |who: &str, applied: u64| -> Result {
        if applied == n / 10 {
            Ok(())
        } else {
            Err(format!("{who} applied {applied} refunds of {}", n / 10).into())
        }
    };
    // Each raw side twice: the upsert prepared per batch, then looked up per event.
    let r = interleaved(
        |_| {
            let t = Instant::now();
            let report = Projector::new(&store, Refunds).rebuild(|_| {})?;
            let ours = rate(n, t.elapsed());
            check("the rebuild", report.applied)?;
            Ok((ours, ours))
        },
        |table, _| {
            let path = if table == Table::Ours {
                &path
            } else {
                &min_path
            };
            let mut rates = [0.0; 2];
            for (per_event, rate_of) in [false, true].into_iter().zip(&mut rates) {
                let t = Instant::now();
                let applied = raw_rebuild(path, table, per_event)?;
                *rate_of = rate(n, t.elapsed());
                check(&format!("the raw loop on {table:?}"), applied)?;
            }
            Ok((rates[0], rates[1]))
        },
    )?;
    throughput(
        &format!(
            "R. projection rebuild over {n} events, 10% handled, into a table of the same file"
        ),
        "events",
        &r.map(|&(per_batch, _)| per_batch),
    );
    throughput(
        "R. the same, the raw loop looking its upsert up in the statement cache per event, as the handler does",
        "events",
        &r.map(|&(_, per_event)| per_event),
    );
    Ok(())
}

/// Appends one event at a time and waits until the spawned projector applied it:
/// p50 / p99 of append-return to applied, in microseconds.
fn latency<W: EventStore, S: ProjectionStore + Send + 'static>(
    writer: &W,
    runner: S,
    poll: Duration,
    samples: u64,
) -> Result<(f64, f64)> {
    let handle = Projector::new(runner, Applied).poll_interval(poll).spawn();
    let stream = StreamId::new("ledger", "latency");
    let mut times = Vec::new();
    for i in 0..samples {
        let appended = writer.append(
            &stream,
            ExpectedVersion::Any,
            &[NewEvent::from_event(&PaymentMade::nth(i))?],
        )?;
        let t = Instant::now();
        handle.wait_for(appended.positions[0], Duration::from_secs(10))?;
        times.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    handle.join()?;
    times.sort();
    Ok((percentile_us(&times, 50.0), percentile_us(&times, 99.0)))
}

/// The latency rows.
fn live(o: &Options, dir: &Path) -> Result {
    let samples = o.scaled(300, 50);
    let path = dir.join("r-live.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let options = SqliteOptions::new().synchronous(Synchronous::Normal);
    let store = Arc::new(SqliteStore::open_with(&path, options.clone())?);
    let (p50, p99) = latency(
        &*store,
        Arc::clone(&store),
        Duration::from_millis(100),
        samples,
    )?;
    row(
        "R. live latency, SQLite, same store handle (woken by the append), p50 / p99",
        &format!("{p50:.0} / {p99:.0} µs"),
        "",
        "",
    );
    // Another handle on the file: no in-process wakeup, as for another process.
    let other = SqliteStore::open_with(&path, options)?;
    let (p50, p99) = latency(
        &other,
        Arc::clone(&store),
        Duration::from_millis(10),
        samples,
    )?;
    row(
        "R. live latency, SQLite, appends through another handle (as another process; polling every 10 ms), p50 / p99",
        &format!("{p50:.0} / {p99:.0} µs"),
        "",
        "",
    );
    if let Some(url) = &o.postgres {
        let schema = format!("es_bench_live_{}", std::process::id());
        let store = Arc::new(PostgresStore::connect_with_schema(url, &schema)?);
        let result = latency(&*store, Arc::clone(&store), Duration::from_secs(1), samples);
        drop(store);
        if let Ok(mut client) = postgres::Client::connect(url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
        let (p50, p99) = result?;
        row(
            "R. live latency, PostgreSQL (LISTEN/NOTIFY; polling every 1 s), p50 / p99",
            &format!("{p50:.0} / {p99:.0} µs"),
            "",
            "",
        );
    }
    Ok(())
}

/// R: both.
pub fn bench(o: &Options, dir: &Path) -> Result {
    rebuild(o, dir)?;
    live(o, dir)
}
