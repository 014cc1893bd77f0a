//! The workloads A to F: each runs through eventsource and as raw rusqlite.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eventsource::{
    EventStore, ExpectedVersion, NewEvent, Repository, Snapshot, SnapshotPolicy, SqliteOptions,
    SqliteStore, StreamId, Synchronous, Timestamp, Version,
};

use crate::domain::{Ledger, PaymentMade};
use crate::report::{peak_rss_mib, percentile_us, rate, reset_peak_rss, row, throughput};
use crate::{Options, raw};

type Result<T = (), E = Box<dyn Error>> = std::result::Result<T, E>;

fn sync_of(name: &str) -> Synchronous {
    if name == "FULL" {
        Synchronous::Full
    } else {
        Synchronous::Normal
    }
}

/// A fresh store file (schema created by `SqliteStore`), its path.
fn fresh(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    drop(SqliteStore::open(&path)?);
    Ok(path)
}

fn open(path: &Path, sync: &str) -> Result<SqliteStore> {
    Ok(SqliteStore::open_with(
        path,
        SqliteOptions::new().synchronous(sync_of(sync)),
    )?)
}

/// A: single-event commands over 1,000 streams: load, decide, append.
pub fn commands(o: &Options, dir: &Path) -> Result {
    for (sync, n) in [
        ("NORMAL", o.scaled(100_000, 1_000)),
        ("FULL", o.scaled(5_000, 200)),
    ] {
        let streams: Vec<String> = (0..1_000).map(|i| format!("s-{i}")).collect();

        let raw_path = fresh(dir, &format!("a-raw-{sync}"))?;
        let mut conn = raw::connect(&raw_path, sync)?;
        let t = Instant::now();
        for i in 0..n {
            raw::command(&mut conn, &streams[usize::try_from(i % 1_000)?], i)?;
        }
        let raw_rate = rate(n, t.elapsed());

        for cached in [false, true] {
            let ours_path = fresh(dir, &format!("a-ours-{sync}-{cached}"))?;
            let mut ledgers = Repository::<Ledger, _>::new(open(&ours_path, sync)?);
            if cached {
                ledgers = ledgers.with_cache(1_000);
            }
            let t = Instant::now();
            for i in 0..n {
                ledgers.execute(&streams[usize::try_from(i % 1_000)?], |l| l.pay(i))?;
            }
            let how = if cached {
                "with_cache(1000)"
            } else {
                "replay per command"
            };
            throughput(
                &format!("A. {n} commands over 1,000 streams, synchronous={sync}, {how}"),
                "cmd",
                rate(n, t.elapsed()),
                raw_rate,
            );
        }
    }
    Ok(())
}

/// B: appends of 1,000 events into one stream.
pub fn batch_append(o: &Options, dir: &Path) -> Result {
    let total = o.scaled(1_000_000, 10_000);
    let batch = 1_000;

    let raw_path = fresh(dir, "b-raw")?;
    let mut conn = raw::connect(&raw_path, "NORMAL")?;
    let t = Instant::now();
    let mut n = 0;
    while n < total {
        raw::batch(&mut conn, "big", n, batch)?;
        n += batch;
    }
    let raw_rate = rate(total, t.elapsed());

    let ours_path = fresh(dir, "b-ours")?;
    let store = open(&ours_path, "NORMAL")?;
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
    let ours_rate = rate(total, t.elapsed());
    throughput(
        &format!("B. {total} events into one stream, appends of {batch}"),
        "events",
        ours_rate,
        raw_rate,
    );
    Ok(())
}

/// C: rebuild one aggregate from a long stream, and the peak memory of doing so.
pub fn replay(o: &Options, dir: &Path) -> Result {
    let total = o.scaled(1_000_000, 10_000);
    let path = fresh(dir, "c")?;
    {
        let mut conn = raw::connect(&path, "NORMAL")?;
        let mut n = 0;
        while n < total {
            raw::batch(&mut conn, "long", n, 10_000.min(total - n))?;
            n += 10_000;
        }
    }
    let conn = raw::connect(&path, "NORMAL")?;
    // Warm the page cache for both sides alike.
    raw::replay(&conn, "long")?;

    drop(conn);
    let conn = raw::connect(&path, "NORMAL")?;
    let ledgers = Repository::<Ledger, _>::new(SqliteStore::open(&path)?);
    // Alternate the sides, best of three each, so that load from elsewhere on the
    // machine hits both alike; peak memory is measured on each side's first run.
    let (mut raw_time, mut ours_time) = (Duration::MAX, Duration::MAX);
    let (mut raw_rss, mut ours_rss) = (0.0, 0.0);
    let mut base = 0.0;
    for run in 0..3 {
        reset_peak_rss();
        if run == 0 {
            base = peak_rss_mib().unwrap_or(0.0);
        }
        let t = Instant::now();
        let expected = raw::replay(&conn, "long")?;
        raw_time = raw_time.min(t.elapsed());
        if run == 0 {
            raw_rss = peak_rss_mib().unwrap_or(0.0);
        }
        reset_peak_rss();
        let t = Instant::now();
        let loaded = ledgers.load("long")?.state;
        ours_time = ours_time.min(t.elapsed());
        if run == 0 {
            ours_rss = peak_rss_mib().unwrap_or(0.0);
        }
        if loaded != expected {
            return Err(format!("replay differs: {loaded:?} vs {expected:?}").into());
        }
    }
    throughput(
        &format!("C. replay of a {total}-event stream"),
        "events",
        rate(total, ours_time),
        rate(total, raw_time),
    );
    row(
        "C. peak RSS during the replay (process, MiB)",
        &format!("{ours_rss:.1} MiB"),
        &format!("{raw_rss:.1} MiB"),
        &format!("(process baseline {base:.1} MiB)"),
    );
    Ok(())
}

/// D: 1, 2, 4 and 8 threads, each running single-event commands on its own streams, at
/// `synchronous=FULL`.
pub fn concurrent_writers(o: &Options, dir: &Path) -> Result {
    let per_thread = o.scaled(1_000, 20);
    let mut ours_one = 0.0;
    for threads in [1u64, 2, 4, 8] {
        let total = per_thread * threads;

        let raw_path = fresh(dir, &format!("d-raw-{threads}"))?;
        let t = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let raw_path = raw_path.clone();
                thread::spawn(move || -> rusqlite::Result<()> {
                    let mut conn = raw::connect(&raw_path, "FULL")?;
                    for i in 0..per_thread {
                        raw::command(&mut conn, &format!("t{k}-{}", i % 10), i)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "raw writer panicked")??;
        }
        let raw_rate = rate(total, t.elapsed());

        let ours_path = fresh(dir, &format!("d-ours-{threads}"))?;
        let ledgers =
            Arc::new(Repository::<Ledger, _>::new(open(&ours_path, "FULL")?).with_cache(1_000));
        let t = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let ledgers = Arc::clone(&ledgers);
                thread::spawn(move || -> Result<(), String> {
                    for i in 0..per_thread {
                        ledgers
                            .execute(&format!("t{k}-{}", i % 10), |l| l.pay(i))
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "writer panicked")??;
        }
        let ours_rate = rate(total, t.elapsed());
        if threads == 1 {
            ours_one = ours_rate;
        }
        throughput(
            &format!(
                "D. {threads} thread(s) x {per_thread} commands, own streams, synchronous=FULL, with_cache (x{:.1} of 1 thread)",
                ours_rate / ours_one.max(1e-9)
            ),
            "cmd",
            ours_rate,
            raw_rate,
        );
    }
    Ok(())
}

/// E: loading an aggregate with a long stream and a recent snapshot, against replaying
/// the whole stream.
pub fn snapshot_load(o: &Options, dir: &Path) -> Result {
    let total = o.scaled(1_000_000, 10_000);
    let path = fresh(dir, "e")?;
    {
        let mut conn = raw::connect(&path, "NORMAL")?;
        let mut n = 0;
        while n < total {
            raw::batch(&mut conn, "long", n, 10_000.min(total - n))?;
            n += 10_000;
        }
    }
    let store = SqliteStore::open(&path)?;
    let plain = Repository::<Ledger, _>::new(&store);
    let snapshotting =
        Repository::<Ledger, _>::new(&store).with_snapshots(SnapshotPolicy::every(1_000));
    // A snapshot 10 events before the end, as the policy would have left it.
    let at = Version::new(total - 10);
    let state = plain.load_at("long", at)?.state;
    store.save_snapshot(
        &StreamId::new("ledger", "long"),
        &Snapshot {
            version: at,
            state_version: 1,
            state: serde_json::to_string(&state)?,
            taken_at: Timestamp::now(),
        },
    )?;
    let mut full = Duration::MAX;
    let mut with_snapshot = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let a = plain.load("long")?;
        full = full.min(t.elapsed());
        let t = Instant::now();
        let b = snapshotting.load("long")?;
        with_snapshot = with_snapshot.min(t.elapsed());
        if a != b {
            return Err("a load from the snapshot differs from the full replay".into());
        }
    }
    row(
        &format!("E. load of a {total}-event aggregate, snapshot 10 events back (vs full replay)"),
        &format!("{:.3} ms", with_snapshot.as_secs_f64() * 1e3),
        &format!("{:.1} ms (full replay)", full.as_secs_f64() * 1e3),
        &format!(
            "{:.0}x faster",
            full.as_secs_f64() / with_snapshot.as_secs_f64().max(1e-9)
        ),
    );
    Ok(())
}

/// Latencies of `count` single-event commands on fresh streams.
fn latencies(count: u64, mut command: impl FnMut(u64) -> Result) -> Result<Vec<Duration>> {
    let mut times = Vec::new();
    for i in 0..count {
        let t = Instant::now();
        command(i)?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times)
}

/// F: p50 and p99 latency of a single-event command on an empty store and on one that
/// already holds many events of other streams.
pub fn growth(o: &Options, dir: &Path) -> Result {
    let big = o.scaled(10_000_000, 100_000);
    let count = o.scaled(5_000, 500);
    let mut p99s = Vec::new();
    for (label, filler) in [("empty store", 0), ("store of {big} events", big)] {
        let label = label.replace("{big}", &big.to_string());
        let raw_path = fresh(dir, "f-raw")?;
        let ours_path = fresh(dir, "f-ours")?;
        for path in [&raw_path, &ours_path] {
            let mut conn = raw::connect(path, "NORMAL")?;
            let mut n = 0;
            while n < filler {
                let stream = format!("filler-{}", (n / 10_000) % 1_000);
                raw::batch(&mut conn, &stream, n, 10_000.min(filler - n))?;
                n += 10_000;
            }
        }
        let mut conn = raw::connect(&raw_path, "NORMAL")?;
        let raw_times = latencies(count, |i| {
            raw::command(&mut conn, &format!("probe-{}", i % 100), i)?;
            Ok(())
        })?;
        let ledgers = Repository::<Ledger, _>::new(open(&ours_path, "NORMAL")?);
        let ours_times = latencies(count, |i| {
            ledgers.execute(&format!("probe-{}", i % 100), |l| l.pay(i))?;
            Ok(())
        })?;
        let (p50, p99) = (
            percentile_us(&ours_times, 50.0),
            percentile_us(&ours_times, 99.0),
        );
        let (r50, r99) = (
            percentile_us(&raw_times, 50.0),
            percentile_us(&raw_times, 99.0),
        );
        row(
            &format!("F. command latency p50 / p99, {label}"),
            &format!("{p50:.0} / {p99:.0} µs"),
            &format!("{r50:.0} / {r99:.0} µs"),
            &format!("{:.2} (p99)", r99 / p99.max(1e-9)),
        );
        p99s.push(p99);
        for path in [&raw_path, &ours_path] {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
    if let [empty, full] = p99s[..] {
        row(
            "F. eventsource p99 growth (full / empty)",
            &format!("{:.2}x", full / empty.max(1e-9)),
            "",
            "target <= 2.00",
        );
    }
    Ok(())
}
