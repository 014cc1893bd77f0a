//! PostgreSQL next to SQLite, both through eventsource: appends and loads.

use std::error::Error;
use std::path::Path;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use eventsource::{
    EventStore, ExpectedVersion, NewEvent, PostgresStore, Repository, SqliteOptions, SqliteStore,
    StreamId, Synchronous, Version,
};

use crate::Options;
use crate::domain::{Ledger, PaymentMade};
use crate::report::{rate, row};

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

/// P: appends and loads on PostgreSQL next to SQLite (`synchronous=FULL`, as durable as
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
    let schema = Schema {
        url: url.clone(),
        name: format!("es_bench_{}", std::process::id()),
    };
    let pg_store = PostgresStore::connect_with_schema(url, &schema.name)?;
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
