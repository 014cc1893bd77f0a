//! The workloads A to F: each runs through eventsource and as raw rusqlite on our table
//! and on the minimal one, interleaved (see `report::interleaved`).

use std::cell::RefCell;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use eventsource::{
    EventStore, Repository, Snapshot, SnapshotPolicy, SqliteOptions, SqliteStore, StreamId,
    Synchronous, Timestamp, Version,
};

use crate::Options;
use crate::domain::Ledger;
use crate::raw::{self, Table};
use crate::report::{
    cells, interleaved, median, peak_rss_mib, percentile_us, rate, ratio, reset_peak_rss,
    throughput,
};

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

/// A fresh file for a raw side: our table (created by `SqliteStore`) or the minimal one.
fn fresh_table(dir: &Path, name: &str, table: Table) -> Result<PathBuf> {
    match table {
        Table::Ours => fresh(dir, name),
        Table::Minimal => {
            let path = dir.join(format!("{name}.db"));
            raw::create_minimal(&path)?;
            Ok(path)
        }
    }
}

/// Removes a store file and its WAL.
fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A connection to `path` that, at `synchronous=FULL`, has grown the WAL (see
/// [`raw::grow_wal`]); keep it open while measuring.
fn warm(path: &Path, sync: &str) -> Result<rusqlite::Connection> {
    let conn = raw::connect(path, sync)?;
    if sync == "FULL" {
        raw::grow_wal(&conn)?;
    }
    Ok(conn)
}

fn open(path: &Path, sync: &str) -> Result<SqliteStore> {
    Ok(SqliteStore::open_with(
        path,
        SqliteOptions::new().synchronous(sync_of(sync)),
    )?)
}

/// The streams of workload A.
const STREAMS: u64 = 500;

/// A: single-event commands over 500 streams: load, decide, append.
pub fn commands(o: &Options, dir: &Path) -> Result {
    let streams: Vec<String> = (0..STREAMS).map(|i| format!("s-{i}")).collect();
    let stream = |i: u64| -> Result<&str> { Ok(&streams[usize::try_from(i % STREAMS)?]) };
    for (sync, n) in [
        ("NORMAL", o.scaled(10_000, 1_000)),
        ("FULL", o.scaled(500, 100)),
    ] {
        for cached in [false, true] {
            // What eventsource folded for the first stream: each raw side must agree.
            let expected = RefCell::new(None);
            let r = interleaved(
                |_| {
                    let path = fresh(dir, &format!("a-ours-{sync}-{cached}"))?;
                    let _wal = warm(&path, sync)?;
                    let mut ledgers = Repository::<Ledger, _>::new(open(&path, sync)?);
                    if cached {
                        ledgers = ledgers.with_cache(1_000);
                    }
                    let t = Instant::now();
                    for i in 0..n {
                        ledgers.execute(stream(i)?, |l| l.pay(i))?;
                    }
                    let elapsed = t.elapsed();
                    *expected.borrow_mut() = Some(ledgers.load(stream(0)?)?.state);
                    Ok(rate(n, elapsed))
                },
                |table, _| {
                    let path =
                        fresh_table(dir, &format!("a-{}-{sync}-{cached}", table.tag()), table)?;
                    let mut conn = warm(&path, sync)?;
                    let mut cache = raw::Cached::default();
                    let t = Instant::now();
                    for i in 0..n {
                        if cached {
                            cache.command(&mut conn, table, stream(i)?, i)?;
                        } else {
                            raw::command(&mut conn, table, stream(i)?, i)?;
                        }
                    }
                    let elapsed = t.elapsed();
                    let state = raw::replay(&conn, table, stream(0)?)?;
                    if Some(&state) != expected.borrow().as_ref() {
                        return Err(format!("raw {table:?} folded {state:?}").into());
                    }
                    Ok(rate(n, elapsed))
                },
            )?;
            let how = if cached {
                "with_cache(1000); raw keeps the folded states, reads the version"
            } else {
                "replay per command"
            };
            throughput(
                &format!("A. {n} commands over {STREAMS} streams, synchronous={sync}, {how}"),
                "cmd",
                &r,
            );
        }
    }
    Ok(())
}

/// B: appends of 1,000 events into one stream.
pub fn batch_append(o: &Options, dir: &Path) -> Result {
    let total = o.scaled(200_000, 10_000);
    let batch = 1_000;
    let r = interleaved(
        |_| {
            let path = fresh(dir, "b-ours")?;
            let store = open(&path, "NORMAL")?;
            crate::chain::batches(&store, total, batch)
        },
        |table, _| {
            let path = fresh_table(dir, &format!("b-{}", table.tag()), table)?;
            let mut conn = raw::connect(&path, "NORMAL")?;
            let t = Instant::now();
            let mut n = 0;
            while n < total {
                raw::batch(&mut conn, table, "big", n, batch)?;
                n += batch;
            }
            Ok(rate(total, t.elapsed()))
        },
    )?;
    throughput(
        &format!("B. {total} events into one stream, appends of {batch}, NORMAL"),
        "events",
        &r,
    );
    Ok(())
}

/// A long stream of payments, on our table (`SqliteStore`'s) and on the minimal one:
/// both paths.
fn long_streams(dir: &Path, name: &str, total: u64) -> Result<[PathBuf; 2]> {
    let mut paths = Vec::new();
    for table in Table::BOTH {
        let path = fresh_table(dir, &format!("{name}-{}", table.tag()), table)?;
        raw::fill(&mut raw::connect(&path, "NORMAL")?, table, "long", total)?;
        paths.push(path);
    }
    paths.try_into().map_err(|_| "two tables, two paths".into())
}

/// C: rebuild one aggregate from a long stream, and the peak memory of doing so.
pub fn replay(o: &Options, dir: &Path) -> Result {
    let total = o.scaled(1_000_000, 10_000);
    let paths = long_streams(dir, "c", total)?;
    let ledgers = Repository::<Ledger, _>::new(SqliteStore::open(&paths[0])?);
    let conns = [
        raw::connect(&paths[0], "NORMAL")?,
        raw::connect(&paths[1], "NORMAL")?,
    ];
    // Warm the page cache for all alike.
    let expected = raw::replay(&conns[0], Table::Ours, "long")?;
    raw::replay(&conns[1], Table::Minimal, "long")?;
    reset_peak_rss();
    let base = peak_rss_mib().unwrap_or(0.0);
    // Each side: events/s, and the process's peak RSS during its run.
    let r = interleaved(
        |_| {
            reset_peak_rss();
            let t = Instant::now();
            let loaded = ledgers.load("long")?.state;
            let elapsed = t.elapsed();
            if loaded != expected {
                return Err(format!("replay differs: {loaded:?} vs {expected:?}").into());
            }
            Ok((rate(total, elapsed), peak_rss_mib().unwrap_or(0.0)))
        },
        |table, _| {
            reset_peak_rss();
            let t = Instant::now();
            let conn = &conns[usize::from(table == Table::Minimal)];
            let loaded = raw::replay(conn, table, "long")?;
            let elapsed = t.elapsed();
            if loaded != expected {
                return Err(format!("raw {table:?} replay differs: {loaded:?}").into());
            }
            Ok((rate(total, elapsed), peak_rss_mib().unwrap_or(0.0)))
        },
    )?;
    throughput(
        &format!("C. replay of a {total}-event stream: read, decode, fold"),
        "events",
        &r.map(|&(rate, _)| rate),
    );
    let rss = r.map(|&(_, rss)| rss);
    cells([
        &format!("C. peak RSS during the replay (process, MiB; baseline {base:.1} MiB)"),
        &format!("{:.1} MiB", median(&rss.ours)),
        &format!("{:.1} MiB", median(&rss.same)),
        &format!("{:.1} MiB", median(&rss.minimal)),
        "",
        "",
    ]);
    drop(ledgers);
    for p in &paths {
        remove(p);
    }
    Ok(())
}

/// The thread counts of workload D.
const THREADS: [u64; 4] = [1, 2, 4, 8];

/// D through eventsource: `threads` threads of commands with the state cache; cmd/s.
fn writers_ours(dir: &Path, threads: u64, per_thread: u64) -> Result<f64> {
    let path = fresh(dir, "d-ours")?;
    let _wal = warm(&path, "FULL")?;
    let ledgers = Arc::new(Repository::<Ledger, _>::new(open(&path, "FULL")?).with_cache(1_000));
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
    Ok(rate(per_thread * threads, t.elapsed()))
}

/// D, raw: the threads share one connection behind a mutex (no busy-handler sleeps),
/// each keeping its streams' folded states; cmd/s.
fn writers_raw(dir: &Path, table: Table, threads: u64, per_thread: u64) -> Result<f64> {
    let path = fresh_table(dir, &format!("d-{}", table.tag()), table)?;
    let conn = Arc::new(Mutex::new(warm(&path, "FULL")?));
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let conn = Arc::clone(&conn);
            thread::spawn(move || -> Result<(), String> {
                let mut cache = raw::Cached::default();
                for i in 0..per_thread {
                    let mut conn = conn.lock().map_err(|_| "a raw writer panicked")?;
                    cache
                        .command(&mut conn, table, &format!("t{k}-{}", i % 10), i)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "raw writer panicked")??;
    }
    Ok(rate(per_thread * threads, t.elapsed()))
}

/// D: 1, 2, 4 and 8 threads, each running single-event commands on its own streams, at
/// `synchronous=FULL`. A round runs every thread count on one side, so that a round's
/// 8-thread figure over its 1-thread figure is a scaling measured in one run.
pub fn concurrent_writers(o: &Options, dir: &Path) -> Result {
    let per_thread = o.scaled(200, 20);
    let r = interleaved(
        |_| {
            THREADS
                .iter()
                .map(|&threads| writers_ours(dir, threads, per_thread))
                .collect::<Result<Vec<_>>>()
        },
        |table, _| {
            THREADS
                .iter()
                .map(|&threads| writers_raw(dir, table, threads, per_thread))
                .collect::<Result<Vec<_>>>()
        },
    )?;
    for (k, threads) in THREADS.iter().enumerate() {
        throughput(
            &format!(
                "D. {threads} thread(s) x {per_thread} commands, own streams, synchronous=FULL, \
                 with_cache; raw: one connection behind a mutex"
            ),
            "cmd",
            &r.map(|rates| rates[k]),
        );
    }
    let last = THREADS.len() - 1;
    let scaling = |rounds: &[Vec<f64>]| {
        rounds
            .iter()
            .map(|rates| format!("x{:.1}", rates[last] / rates[0].max(1e-9)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    cells([
        "D. scaling, 8 threads / 1 thread, each run (target for eventsource: >= 4 in every run)",
        &scaling(&r.ours),
        &scaling(&r.same),
        &scaling(&r.minimal),
        "",
        "",
    ]);
    Ok(())
}

/// E: loading an aggregate with a long stream and a recent snapshot: eventsource against
/// raw reading the snapshot row and the events after it.
pub fn snapshot_load(o: &Options, dir: &Path) -> Result {
    let total = o.scaled(100_000, 10_000);
    let loads = o.scaled(1_000, 100);
    let paths = long_streams(dir, "e", total)?;
    let store = SqliteStore::open(&paths[0])?;
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
    let mut conns = [
        raw::connect(&paths[0], "NORMAL")?,
        raw::connect(&paths[1], "NORMAL")?,
    ];
    raw::save_snapshot(&conns[1], "long", &state, i64::try_from(at.get())?)?;
    let expected = plain.load("long")?.state;
    let r = interleaved(
        |_| {
            let t = Instant::now();
            for _ in 0..loads {
                if snapshotting.load("long")?.state != expected {
                    return Err("a load from the snapshot differs from the full replay".into());
                }
            }
            Ok(rate(loads, t.elapsed()))
        },
        |table, _| {
            let conn = &mut conns[usize::from(table == Table::Minimal)];
            let t = Instant::now();
            for _ in 0..loads {
                if raw::load_from_snapshot(conn, table, "long")? != expected {
                    return Err(format!("raw {table:?}: the load from the snapshot differs").into());
                }
            }
            Ok(rate(loads, t.elapsed()))
        },
    )?;
    throughput(
        &format!(
            "E. load of a {total}-event aggregate from a snapshot 10 events back; raw: the \
             snapshot row and the events after it"
        ),
        "loads",
        &r,
    );
    let mut full = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        plain.load("long")?;
        full = full.min(t.elapsed());
    }
    let snapshot = 1.0 / median(&r.ours).max(1e-9);
    cells([
        "E. eventsource: a full replay of the same stream (best of 3) / the load from the snapshot",
        &format!(
            "{:.1} ms / {:.3} ms: the snapshot {:.0}x faster",
            full.as_secs_f64() * 1e3,
            snapshot * 1e3,
            full.as_secs_f64() / snapshot.max(1e-12)
        ),
        "",
        "",
        "",
        "",
    ]);
    drop((plain, snapshotting, conns));
    drop(store);
    for p in &paths {
        remove(p);
    }
    Ok(())
}

/// Latencies of `count` single-event commands: p50 and p99, in microseconds.
fn latencies(count: u64, mut command: impl FnMut(u64) -> Result) -> Result<(f64, f64)> {
    let mut times = Vec::new();
    for i in 0..count {
        let t = Instant::now();
        command(i)?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok((percentile_us(&times, 50.0), percentile_us(&times, 99.0)))
}

/// F: p50 and p99 latency of a single-event command (replaying its stream of up to
/// `count / 100` events) on an empty store and on one that already holds many events of
/// other streams.
pub fn growth(o: &Options, dir: &Path) -> Result {
    let big = o.scaled(1_000_000, 100_000);
    let count = o.scaled(2_000, 200);
    let mut p99s = Vec::new();
    for (label, filler) in [("empty store", 0), ("store of {big} events", big)] {
        let label = label.replace("{big}", &big.to_string());
        let mut paths = Vec::new();
        let mut conns = Vec::new();
        for table in Table::BOTH {
            let path = fresh_table(dir, &format!("f-{}", table.tag()), table)?;
            let mut conn = raw::connect(&path, "NORMAL")?;
            let mut n = 0;
            while n < filler {
                let stream = format!("filler-{}", (n / 10_000) % 1_000);
                raw::batch(&mut conn, table, &stream, n, 10_000.min(filler - n))?;
                n += 10_000;
            }
            paths.push(path);
            conns.push(conn);
        }
        // eventsource and raw on our table share the file, on streams of their own.
        let ledgers = Repository::<Ledger, _>::new(open(&paths[0], "NORMAL")?);
        let r = interleaved(
            |round| {
                latencies(count, |i| {
                    ledgers.execute(&format!("probe-ours-{round}-{}", i % 100), |l| l.pay(i))?;
                    Ok(())
                })
            },
            |table, round| {
                let conn = &mut conns[usize::from(table == Table::Minimal)];
                latencies(count, |i| {
                    raw::command(conn, table, &format!("probe-raw-{round}-{}", i % 100), i)?;
                    Ok(())
                })
            },
        )?;
        let cell = |side: &[(f64, f64)]| {
            let p50: Vec<f64> = side.iter().map(|&(p50, _)| p50).collect();
            let p99: Vec<f64> = side.iter().map(|&(_, p99)| p99).collect();
            format!("{:.0} / {:.0} µs", median(&p50), median(&p99))
        };
        let p99 = r.map(|&(_, p99)| p99);
        cells([
            &format!(
                "F. command latency p50 / p99, {label}; ratios: raw p99 / eventsource p99 \
                 (higher is better, < 1: eventsource is slower)"
            ),
            &cell(&r.ours),
            &cell(&r.same),
            &cell(&r.minimal),
            &ratio(&p99.same, &p99.ours),
            &ratio(&p99.minimal, &p99.ours),
        ]);
        p99s.push(p99);
        drop(ledgers);
        drop(conns);
        for p in &paths {
            remove(p);
        }
    }
    if let [empty, full] = &p99s[..] {
        let growth = |e: &[f64], f: &[f64]| format!("{:.2}x", median(f) / median(e).max(1e-9));
        cells([
            "F. p99 growth, full store / empty store (target for eventsource: <= 2.00)",
            &growth(&empty.ours, &full.ours),
            &growth(&empty.same, &full.same),
            &growth(&empty.minimal, &full.minimal),
            "",
            "",
        ]);
    }
    Ok(())
}
