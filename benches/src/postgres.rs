//! PostgreSQL: eventsource against hand-written `postgres` code on the store's own table
//! and on a minimal one (appends and a replay), and next to SQLite, both through
//! eventsource.

use std::error::Error;
use std::path::Path;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use eventsource::{
    EventStore, ExpectedVersion, NewEvent, PostgresStore, Repository, SqliteOptions, SqliteStore,
    StreamId, Synchronous, Version,
};

use postgres::Statement;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;

use crate::Options;
use crate::domain::{Ledger, PaymentMade, fold};
use crate::raw::Table;
use crate::report::{interleaved, rate, row, throughput};

type Result<T = (), E = Box<dyn Error>> = std::result::Result<T, E>;

/// A schema of the bench's own on the server, dropped when done.
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// The class key of the store's append lock: an append takes
/// `pg_advisory_xact_lock(APPEND_LOCK_CLASS, oid of the events table)`.
const APPEND_LOCK_CLASS: i32 = 0x4553_5243;

/// The minimal table, `{schema}` standing for the schema: positions from a sequence, the
/// stream key the stream id alone, no event id, metadata, time, hash or trigger.
const MINIMAL_SCHEMA: &str = "CREATE SCHEMA {schema}; \
     CREATE TABLE {schema}.events (\
       position BIGSERIAL PRIMARY KEY, \
       stream   TEXT   NOT NULL, \
       version  BIGINT NOT NULL, \
       type     TEXT   NOT NULL, \
       payload  JSONB  NOT NULL, \
       UNIQUE (stream, version))";

/// Hand-written appends and replays with the `postgres` crate, doing the work the
/// library does, on one table: on ours (`Table::Ours`, created by `PostgresStore`) an
/// append is `BEGIN` and the store's advisory lock (one round trip), the stream's version
/// and the last position (one), one `INSERT` of all the events (`unnest` of arrays, each
/// with a fresh UUID v7 event id, empty metadata and no hash: no chain is computed), and
/// `COMMIT`; on the minimal table the same without the lock or the position (the
/// sequence numbers the rows).
struct Raw {
    client: postgres::Client,
    table: Table,
    begin: String,
    head: Statement,
    insert: Statement,
    replay: Statement,
}

impl Raw {
    /// A connection working on `schema`, which holds a store's tables (`Table::Ours`) or
    /// [`MINIMAL_SCHEMA`].
    fn connect(url: &str, schema: &str, table: Table) -> Result<Self> {
        let mut client = postgres::Client::connect(url, postgres::NoTls)?;
        let (begin, head, insert, replay) = match table {
            Table::Ours => {
                let oid: u32 = client
                    .query_one(
                        "SELECT $1::text::regclass::oid",
                        &[&format!("{schema}.events")],
                    )?
                    .try_get(0)?;
                (
                    format!(
                        "BEGIN ISOLATION LEVEL READ COMMITTED; \
                         SELECT pg_advisory_xact_lock({APPEND_LOCK_CLASS}, {})",
                        oid.cast_signed()
                    ),
                    format!(
                        "SELECT coalesce((SELECT max(version) FROM {schema}.events \
                           WHERE aggregate_type = $1 AND stream_id = $2), 0), \
                         coalesce((SELECT max(position) FROM {schema}.events), 0)"
                    ),
                    format!(
                        "INSERT INTO {schema}.events (position, aggregate_type, stream_id, \
                           version, event_type, event_version, event_id, recorded_at, payload, \
                           metadata) \
                         SELECT $1::bigint + n, $2, $3, $4::bigint + n, $5, $6, id::uuid, now(), \
                           pl::jsonb, '{{}}'::jsonb \
                         FROM unnest($7::text[], $8::text[]) WITH ORDINALITY AS e(id, pl, n)"
                    ),
                    format!(
                        "SELECT event_type, event_version, payload::text FROM {schema}.events \
                         WHERE aggregate_type = $1 AND stream_id = $2 ORDER BY version"
                    ),
                )
            }
            Table::Minimal => (
                "BEGIN ISOLATION LEVEL READ COMMITTED".to_owned(),
                format!(
                    "SELECT coalesce(max(version), 0), 0::bigint FROM {schema}.events \
                     WHERE stream = $1"
                ),
                format!(
                    "INSERT INTO {schema}.events (stream, version, type, payload) \
                     SELECT $1, $2::bigint + n, $3, pl::jsonb \
                     FROM unnest($4::text[]) WITH ORDINALITY AS e(pl, n)"
                ),
                format!(
                    "SELECT payload::text FROM {schema}.events WHERE stream = $1 \
                     ORDER BY version"
                ),
            ),
        };
        let head = client.prepare(&head)?;
        let insert = client.prepare(&insert)?;
        let replay = client.prepare(&replay)?;
        Ok(Raw {
            client,
            table,
            begin,
            head,
            insert,
            replay,
        })
    }

    /// Appends `events` to ledger `id` in one transaction; the stream's new version.
    fn append(&mut self, id: &str, events: &[PaymentMade]) -> Result<i64> {
        let payloads = events
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()?;
        self.client.batch_execute(&self.begin)?;
        match self.insert(id, &payloads) {
            Ok(version) => {
                self.client.batch_execute("COMMIT")?;
                Ok(version)
            }
            Err(e) => {
                // The error is the one worth reporting; a failed ROLLBACK adds nothing.
                let _ = self.client.batch_execute("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Inside the transaction: reads the stream's version (and on our table the last
    /// position) and inserts the events after them.
    fn insert(&mut self, id: &str, payloads: &[String]) -> Result<i64> {
        let count = i64::try_from(payloads.len())?;
        let head = match self.table {
            Table::Ours => self.client.query_one(&self.head, &[&"ledger", &id])?,
            Table::Minimal => self.client.query_one(&self.head, &[&id])?,
        };
        let version: i64 = head.try_get(0)?;
        let position: i64 = head.try_get(1)?;
        let inserted = match self.table {
            Table::Ours => {
                let event_ids: Vec<String> = payloads
                    .iter()
                    .map(|_| uuid::Uuid::now_v7().to_string())
                    .collect();
                self.client.execute(
                    &self.insert,
                    &[
                        &position,
                        &"ledger",
                        &id,
                        &version,
                        &"payment.made",
                        &1_i64,
                        &event_ids,
                        &payloads,
                    ],
                )?
            }
            Table::Minimal => self
                .client
                .execute(&self.insert, &[&id, &version, &"payment.made", &payloads])?,
        };
        if inserted != u64::try_from(count)? {
            return Err(format!("inserted {inserted} of {count} events").into());
        }
        Ok(version + count)
    }

    /// Replay: reads ledger `id`'s events in order, decodes each with `serde_json`
    /// (checking the type and shape version on our table) and folds it.
    fn replay(&mut self, id: &str) -> Result<Ledger> {
        let ours: [&(dyn ToSql + Sync); 2] = [&"ledger", &id];
        let minimal: [&(dyn ToSql + Sync); 1] = [&id];
        let params: &[&(dyn ToSql + Sync)] = match self.table {
            Table::Ours => &ours,
            Table::Minimal => &minimal,
        };
        let mut rows = self
            .client
            .query_raw(&self.replay, params.iter().copied())?;
        let mut ledger = Ledger::default();
        while let Some(row) = rows.next()? {
            let payload: &str = match self.table {
                Table::Ours => {
                    let event_type: &str = row.try_get(0)?;
                    let event_version: i64 = row.try_get(1)?;
                    if (event_type, event_version) != ("payment.made", 1) {
                        return Err(format!("unknown event {event_type} v{event_version}").into());
                    }
                    row.try_get(2)?
                }
                Table::Minimal => row.try_get(0)?,
            };
            let event: PaymentMade = serde_json::from_str(payload)?;
            fold(&mut ledger, &event);
        }
        Ok(ledger)
    }
}

/// The raw side working on `table`.
fn side(sides: &mut [Raw; 2], table: Table) -> &mut Raw {
    let [same, minimal] = sides;
    match table {
        Table::Ours => same,
        Table::Minimal => minimal,
    }
}

/// Single-event appends to one stream, batch appends of 1,000 events to another and a
/// replay of the latter, eventsource against [`Raw`] on our table and on the minimal one,
/// in interleaved rounds; each round appends to streams of its own.
fn against_raw(store: &PostgresStore, url: &str, pid: u32, o: &Options) -> Result {
    let same_schema = Schema {
        url: url.to_owned(),
        name: format!("es_bench_{pid}_raw"),
    };
    drop(PostgresStore::connect_with_schema(url, &same_schema.name)?);
    let minimal_schema = Schema {
        url: url.to_owned(),
        name: format!("es_bench_{pid}_min"),
    };
    postgres::Client::connect(url, postgres::NoTls)?
        .batch_execute(&MINIMAL_SCHEMA.replace("{schema}", &minimal_schema.name))?;
    let mut sides = [
        Raw::connect(url, &same_schema.name, Table::Ours)?,
        Raw::connect(url, &minimal_schema.name, Table::Minimal)?,
    ];

    let total = appends_against_raw(store, &mut sides, o)?;
    replay_against_raw(store, &mut sides, total)
}

/// The append rows of [`against_raw`]; how many events each round's long stream holds.
fn appends_against_raw(store: &PostgresStore, sides: &mut [Raw; 2], o: &Options) -> Result<u64> {
    let singles = o.scaled(1_000, 100);
    let r = interleaved(
        |round| {
            let stream = StreamId::new("ledger", format!("single-{round}"));
            let t = Instant::now();
            let mut version = Version::NONE;
            for i in 0..singles {
                version = store
                    .append(
                        &stream,
                        ExpectedVersion::Exact(version),
                        &[NewEvent::from_event(&PaymentMade::nth(i))?],
                    )?
                    .stream_version;
            }
            Ok(rate(singles, t.elapsed()))
        },
        |table, round| {
            let raw = side(sides, table);
            let id = format!("single-{round}");
            let t = Instant::now();
            for i in 0..singles {
                raw.append(&id, &[PaymentMade::nth(i)])?;
            }
            Ok(rate(singles, t.elapsed()))
        },
    )?;
    throughput(
        "P. PostgreSQL single-event appends, 1 thread, one stream",
        "events",
        &r,
    );

    let total = o.scaled(100_000, 10_000).div_ceil(1_000) * 1_000;
    let r = interleaved(
        |round| {
            let stream = StreamId::new("ledger", format!("long-{round}"));
            let t = Instant::now();
            let mut version = Version::NONE;
            for first in (0..total).step_by(1_000) {
                let events = (first..first + 1_000)
                    .map(|i| NewEvent::from_event(&PaymentMade::nth(i)))
                    .collect::<Result<Vec<_>, _>>()?;
                version = store
                    .append(&stream, ExpectedVersion::Exact(version), &events)?
                    .stream_version;
            }
            Ok(rate(total, t.elapsed()))
        },
        |table, round| {
            let raw = side(sides, table);
            let id = format!("long-{round}");
            let t = Instant::now();
            for first in (0..total).step_by(1_000) {
                let events: Vec<_> = (first..first + 1_000).map(PaymentMade::nth).collect();
                raw.append(&id, &events)?;
            }
            Ok(rate(total, t.elapsed()))
        },
    )?;
    throughput(
        "P. PostgreSQL appends of 1,000 events in one transaction",
        "events",
        &r,
    );

    Ok(total)
}

/// The replay row of [`against_raw`], on the long streams of `total` events.
fn replay_against_raw(store: &PostgresStore, sides: &mut [Raw; 2], total: u64) -> Result {
    let ledgers = Repository::<Ledger, _>::new(store);
    let r = interleaved(
        |round| {
            let t = Instant::now();
            let loaded = ledgers.load(&format!("long-{round}"))?;
            let elapsed = t.elapsed();
            if loaded.state.count != total {
                return Err("the replay did not read the whole stream".into());
            }
            Ok(rate(total, elapsed))
        },
        |table, round| {
            let t = Instant::now();
            let ledger = side(sides, table).replay(&format!("long-{round}"))?;
            let elapsed = t.elapsed();
            if ledger.count != total {
                return Err("the raw replay did not read the whole stream".into());
            }
            Ok(rate(total, elapsed))
        },
    )?;
    throughput(
        "P. PostgreSQL replay of one long stream (read, decode, fold)",
        "events",
        &r,
    );
    Ok(())
}

/// Single-event appends, batch appends and a replay on both stores.
fn measure<S: EventStore>(store: &S, o: &Options) -> Result<[f64; 3]> {
    let singles = o.scaled(2_000, 100);
    let t = Instant::now();
    for i in 0..singles {
        let stream = StreamId::new("ledger", format!("single-{}", i % 100));
        store.append(
            &stream,
            ExpectedVersion::Any,
            &[NewEvent::from_event(&PaymentMade::nth(i))?],
        )?;
    }
    let single_rate = rate(singles, t.elapsed());

    let total = o.scaled(200_000, 10_000);
    let stream = StreamId::new("ledger", "long");
    let t = Instant::now();
    let mut version = Version::NONE;
    let mut n = 0;
    while n < total {
        let events = (n..n + 1_000)
            .map(|i| NewEvent::from_event(&PaymentMade::nth(i)))
            .collect::<Result<Vec<_>, _>>()?;
        version = store
            .append(&stream, ExpectedVersion::Exact(version), &events)?
            .stream_version;
        n += 1_000;
    }
    let batch_rate = rate(total, t.elapsed());

    let ledgers = Repository::<Ledger, _>::new(store);
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let loaded = ledgers.load("long")?;
        best = best.min(t.elapsed());
        if loaded.version != version {
            return Err("the replay did not read the whole stream".into());
        }
    }
    Ok([single_rate, batch_rate, rate(total, best)])
}

/// Single-event appends from `threads` threads sharing one store handle, each on a
/// stream of its own (`ExpectedVersion::Exact`, as a command appends): appends per second.
fn threaded_appends<S: EventStore + Sync>(
    store: &S,
    threads: u64,
    total: u64,
    round: &str,
) -> Result<f64> {
    let per_thread = (total / threads).max(1);
    let barrier = Barrier::new(usize::try_from(threads)?);
    let started = thread::scope(|scope| -> Result<Instant, String> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || -> Result<Instant, String> {
                    let stream = StreamId::new("ledger", format!("{round}-t{threads}-{t}"));
                    let mut version = Version::NONE;
                    barrier.wait();
                    let started = Instant::now();
                    for i in 0..per_thread {
                        let event = NewEvent::from_event(&PaymentMade::nth(i))
                            .map_err(|e| e.to_string())?;
                        version = store
                            .append(&stream, ExpectedVersion::Exact(version), &[event])
                            .map_err(|e| e.to_string())?
                            .stream_version;
                    }
                    Ok(started)
                })
            })
            .collect();
        let mut first = None::<Instant>;
        for worker in workers {
            let started = worker.join().map_err(|_| "an append thread panicked")??;
            first = Some(first.map_or(started, |f| f.min(started)));
        }
        first.ok_or_else(|| "no thread ran".to_owned())
    })?;
    Ok(rate(per_thread * threads, started.elapsed()))
}

/// Single-event appends from 1, 2, 4 and 8 threads on one PostgreSQL store handle,
/// against one thread (group commit).
fn thread_rows(store: &PostgresStore, o: &Options) -> Result {
    let total = o.scaled(4_000, 400);
    let mut one = None;
    for threads in [1, 2, 4, 8] {
        let r = threaded_appends(store, threads, total, "scale")?;
        let base = *one.get_or_insert(r);
        row(
            &format!(
                "P. PostgreSQL single-event appends, {threads} thread(s), one handle (appends/s)"
            ),
            &format!("{r:.0}"),
            "",
            &format!("{:.2}x one thread", r / base.max(1e-9)),
        );
    }
    Ok(())
}

/// P: appends and a replay on PostgreSQL against hand-written `postgres` code; appends
/// from several threads; appends and loads on PostgreSQL next to SQLite (`synchronous=FULL`, as durable as
/// PostgreSQL's default commit).
pub fn bench(o: &Options, dir: &Path) -> Result {
    let Some(url) = &o.postgres else {
        row(
            "P. PostgreSQL next to SQLite",
            "skipped: no --postgres URL or EVENTSOURCE_POSTGRES_URL",
            "",
            "",
        );
        return Ok(());
    };
    let pid = std::process::id();
    let schema = Schema {
        url: url.clone(),
        name: format!("es_bench_{pid}"),
    };
    let pg_store = PostgresStore::connect_with_schema(url, &schema.name)?;
    // First, while the store's table is as empty as the raw sides' ones.
    against_raw(&pg_store, url, pid, o)?;
    thread_rows(&pg_store, o)?;
    let pg = measure(&pg_store, o)?;
    let path = dir.join("p.db");
    let sqlite =
        SqliteStore::open_with(&path, SqliteOptions::new().synchronous(Synchronous::Full))?;
    let lite = measure(&sqlite, o)?;
    for (i, what) in [
        "single-event appends, 1 thread (events/s)",
        "appends of 1,000 events (events/s)",
        "replay of one long stream (events/s)",
    ]
    .into_iter()
    .enumerate()
    {
        row(
            &format!("P. PostgreSQL vs SQLite: {what}"),
            &format!("{:.0}", pg[i]),
            &format!("{:.0} (SQLite)", lite[i]),
            &format!("{:.2} (PostgreSQL / SQLite)", pg[i] / lite[i].max(1e-9)),
        );
    }
    Ok(())
}
