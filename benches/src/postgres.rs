//! PostgreSQL next to SQLite, both through eventsource: appends and loads.

use std::error::Error;
use std::path::Path;
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
    let pg = measure(&PostgresStore::connect_with_schema(url, &schema.name)?, o)?;
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
