//! H: what the hash chain costs. The same appends with the chain on (the default) and
//! off, interleaved in one run, three rounds each; and how fast `Verify::chain` walks a
//! store.

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use eventsource::{
    EventStore, ExpectedVersion, NewEvent, Repository, SqliteOptions, SqliteStore, StreamId,
    Synchronous, Verify, Version,
};

use crate::Options;
use crate::domain::{Ledger, PaymentMade};
use crate::report::{cells, median, rate, ratio};

type Result<T = (), E = Box<dyn Error>> = std::result::Result<T, E>;

const ROUNDS: usize = crate::report::ROUNDS;

fn open(dir: &Path, name: &str, chain: bool) -> Result<SqliteStore> {
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut options = SqliteOptions::new().synchronous(Synchronous::Normal);
    if !chain {
        options = options.without_hash_chain_for_benchmarks();
    }
    Ok(SqliteStore::open_with(&path, options)?)
}

/// Appends `total` events into one stream, `batch` per append; events/s.
pub fn batches(store: &SqliteStore, total: u64, batch: u64) -> Result<f64> {
    let stream = StreamId::new("ledger", "big");
    let t = Instant::now();
    let mut version = Version::NONE;
    let mut n = 0;
    while n < total {
        let events = (n..n + batch)
            .map(|i| NewEvent::from_event(&PaymentMade::nth(i)))
            .collect::<Result<Vec<_>, _>>()?;
        version = store
            .append(&stream, ExpectedVersion::Exact(version), &events)?
            .stream_version;
        n += batch;
    }
    Ok(rate(total, t.elapsed()))
}

/// `n` single-event commands over 1,000 streams with the state cache; commands/s.
fn commands(store: SqliteStore, n: u64) -> Result<f64> {
    let streams: Vec<String> = (0..1_000).map(|i| format!("s-{i}")).collect();
    let ledgers = Repository::<Ledger, _>::new(store).with_cache(1_000);
    let t = Instant::now();
    for i in 0..n {
        ledgers.execute(&streams[usize::try_from(i % 1_000)?], |l| l.pay(i))?;
    }
    Ok(rate(n, t.elapsed()))
}

pub fn bench(o: &Options, dir: &Path) -> Result {
    let total = o.scaled(200_000, 10_000);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for chain in [true, false] {
            let store = open(dir, &format!("h-batch-{round}-{chain}"), chain)?;
            let r = batches(&store, total, 1_000)?;
            if chain { on.push(r) } else { off.push(r) }
        }
    }
    cells([
        &format!("H. {total} events into one stream, appends of 1000, NORMAL: chain on / off"),
        &format!("on {:.0} / off {:.0} events/s", median(&on), median(&off)),
        "",
        "",
        &format!("on / off: {}", ratio(&on, &off)),
        "",
    ]);

    let n = o.scaled(20_000, 2_000);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for chain in [true, false] {
            let store = open(dir, &format!("h-cmd-{round}-{chain}"), chain)?;
            let r = commands(store, n)?;
            if chain { on.push(r) } else { off.push(r) }
        }
    }
    cells([
        &format!(
            "H. {n} single-event commands over 1,000 streams, with_cache, NORMAL: chain on / off"
        ),
        &format!("on {:.0} / off {:.0} cmd/s", median(&on), median(&off)),
        "",
        "",
        &format!("on / off: {}", ratio(&on, &off)),
        "",
    ]);

    let total = o.scaled(500_000, 10_000);
    let store = open(dir, "h-verify", true)?;
    batches(&store, total, 1_000)?;
    let t = Instant::now();
    let report = Verify::chain(&store).run()?;
    let elapsed = t.elapsed();
    if !report.is_sound() {
        return Err(format!("the benchmark's store does not verify: {report}").into());
    }
    cells([
        &format!("H. Verify::chain of {total} events"),
        &format!(
            "{:.0} events/s ({:.2} s)",
            rate(total, elapsed),
            elapsed.as_secs_f64()
        ),
        "",
        "",
        "",
        "",
    ]);
    Ok(())
}
