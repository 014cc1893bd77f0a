//! Helper process of `tests/reliability_crash.rs`: appends batches to a SQLite store in a
//! loop until it is killed.
//!
//! ```text
//! es_crash_writer <path> <round> full|normal [threads]
//! es_crash_writer --postgres <url> <schema> <round> [threads]
//! ```
//!
//! With `--postgres` it writes to the PostgreSQL store in `schema` of the server at `url`
//! (each thread through the one store handle, which pools connections).
//!
//! With `threads` > 1 (default 1), that many threads share the one store handle, so
//! their appends are committed in groups (group commit); thread `t` writes its own
//! streams `t<t>s0`..`t<t>s2` and names its batches `r<round>t<t>b<k>`.
//!
//! Each batch holds 1 to 20 events for one of the streams `crash/s0`..`crash/s2`, every
//! payload naming its batch, its index and the batch size (see
//! `eventsource_tests::reliability::batch_payload`). After `append` returns, the
//! acknowledgement is printed and flushed (see `eventsource_tests::reliability::Ack`).
//! About one batch in eight is appended so that the store must refuse it (a stale
//! expected version or an event id repeated in the batch); `refused <batch>` is printed
//! after the refusal. Stops by itself after 5,000 batches or 30 seconds (`done`); any
//! unexpected result is printed as `error ...` and exits with status 1.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use eventsource::{
    AppendError, EventStore, ExpectedVersion, Metadata, NewEvent, SqliteOptions, SqliteStore,
    StreamId, Synchronous, Version,
};
use eventsource_tests::reliability::{Ack, SplitMix64, batch_payload};

type Error = Box<dyn std::error::Error>;

const STREAMS: usize = 3;
const MAX_BATCHES: u64 = 5_000;
const MAX_TIME: Duration = Duration::from_secs(30);
const USAGE: &str = "usage: es_crash_writer <path> <round> full|normal [threads] | --postgres <url> <schema> <round> [threads]";

fn batch(id: &str, size: u64) -> Vec<NewEvent> {
    (0..size)
        .map(|index| {
            NewEvent::new("crash.appended", 1, batch_payload(id, index, size))
                .with_metadata(Metadata::new().correlation_id(id))
        })
        .collect()
}

fn run(path: &str, round: u64, synchronous: Synchronous, threads: u64) -> Result<(), Error> {
    let store = SqliteStore::open_with(path, SqliteOptions::new().synchronous(synchronous))?;
    run_on(&store, round, threads)
}

fn run_on<S: EventStore + Sync>(store: &S, round: u64, threads: u64) -> Result<(), Error> {
    if threads <= 1 {
        write(store, round, "", &format!("r{round}b"))?;
    } else {
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        write(
                            store,
                            round * 100 + t,
                            &format!("t{t}"),
                            &format!("r{round}t{t}b"),
                        )
                        .map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a writer thread panicked".into()))
                })
                .collect()
        });
        for result in results {
            result?;
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "done")?;
    out.flush()?;
    Ok(())
}

/// Appends batches to the streams `<prefix>s0`.. until the batch or time limit, printing
/// each outcome as one line (the lock on stdout keeps lines whole across threads).
fn write<S: EventStore>(
    store: &S,
    seed: u64,
    prefix: &str,
    batch_prefix: &str,
) -> Result<(), Error> {
    let streams: Vec<StreamId> = (0..STREAMS)
        .map(|i| StreamId::new("crash", format!("{prefix}s{i}")))
        .collect();
    let mut versions = streams
        .iter()
        .map(|s| store.stream_version(s))
        .collect::<Result<Vec<Version>, _>>()?;
    let mut rng = SplitMix64::new(seed.wrapping_mul(0x5851_F42D_4C95_7F2D) ^ 0x00C0_FFEE);
    let started = Instant::now();
    for k in 0..MAX_BATCHES {
        if started.elapsed() > MAX_TIME {
            break;
        }
        let id = format!("{batch_prefix}{k}");
        let which = usize::try_from(rng.next_u64() % STREAMS as u64)?;
        let (stream, version) = (&streams[which], versions[which]);
        let size = rng.between(1, 20);
        let mut events = batch(&id, size);
        match rng.between(0, 15) {
            0 if version > Version::NONE => {
                let stale = Version::new(version.get() - 1);
                match store.append(stream, ExpectedVersion::Exact(stale), &events) {
                    Err(AppendError::Conflict { actual, .. }) if actual == version => {}
                    other => return Err(format!("{id}: expected a conflict: {other:?}").into()),
                }
                line(&format!("refused {id}"))?;
            }
            1 if size > 1 => {
                let last = events.len() - 1;
                events[last].event_id = events[0].event_id;
                match store.append(stream, ExpectedVersion::Exact(version), &events) {
                    Err(AppendError::DuplicateEventId { .. }) => {}
                    other => return Err(format!("{id}: expected a duplicate: {other:?}").into()),
                }
                line(&format!("refused {id}"))?;
            }
            _ => {
                let appended = store.append(stream, ExpectedVersion::Exact(version), &events)?;
                versions[which] = appended.stream_version;
                let ack = Ack {
                    batch: id,
                    stream: stream.id().to_owned(),
                    first: version.next(),
                    last: appended.stream_version,
                    positions: appended.positions,
                };
                line(&ack.to_string())?;
            }
        }
    }
    Ok(())
}

/// Prints one line and flushes it, under the lock of stdout.
fn line(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [flag, url, schema, round, rest @ ..] if flag == "--postgres" && rest.len() <= 1 => {
            let threads = rest.first().map_or(Ok(1), |t| t.parse::<u64>());
            match (round.parse::<u64>(), threads) {
                (Ok(round), Ok(threads)) => {
                    eventsource::PostgresStore::connect_with_schema(url, schema)
                        .map_err(Error::from)
                        .and_then(|store| run_on(&store, round, threads))
                }
                _ => Err(USAGE.into()),
            }
        }
        [path, round, sync, rest @ ..] if rest.len() <= 1 => {
            let threads = rest.first().map_or(Ok(1), |t| t.parse::<u64>());
            match (round.parse::<u64>(), sync.as_str(), threads) {
                (Ok(round), "full", Ok(threads)) => run(path, round, Synchronous::Full, threads),
                (Ok(round), "normal", Ok(threads)) => {
                    run(path, round, Synchronous::Normal, threads)
                }
                _ => Err(USAGE.into()),
            }
        }
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error {e}");
            ExitCode::FAILURE
        }
    }
}
