//! Crashes: a writer process (`es_crash_writer`) appends batches of 1 to 20 events to a
//! SQLite file in a loop and prints each acknowledgement once `append` has returned; the
//! test kills it with SIGKILL at pseudo-random moments, round after round, reopens the
//! store each time and checks that nothing acknowledged was lost, that no batch is
//! partly stored, that versions and positions have no gap, and that the store goes on
//! accepting appends.
//!
//! The kill moments come from a fixed seed (`ES_CRASH_SEED` overrides it); which
//! instruction the writer is at when the signal lands still varies from run to run,
//! which is the point: every run tries other moments, and each must pass.
//!
//! ```sh
//! cargo test -p eventsource-tests --test reliability_crash -- --nocapture
//! ES_CRASH_SEED=7 ES_CRASH_ROUNDS=200 cargo test -p eventsource-tests --test reliability_crash -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use eventsource::{
    EventStore, ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent, SqliteStore,
    StreamId, Version,
};
use eventsource_tests::TempStore;
use eventsource_tests::reliability::{Ack, SplitMix64, batch_payload};
use serde::Deserialize;

type TestResult = Result<(), Box<dyn Error>>;

/// Rounds by default: each starts a writer and kills it.
const ROUNDS: u64 = 40;
/// The most acknowledgements awaited before a kill.
const MAX_ACKS_BEFORE_KILL: u64 = 40;
/// The longest extra wait after the awaited acknowledgements, in microseconds.
const MAX_EXTRA_WAIT_MICROS: u64 = 4_000;

#[derive(Debug, Deserialize)]
struct Payload {
    batch: String,
    index: u64,
    size: u64,
}

/// What the store holds, checked: every batch complete, streams without gaps.
#[derive(Debug, Default)]
struct Stored {
    /// batch id -> (stream id, versions, positions)
    batches: BTreeMap<String, (String, Vec<Version>, Vec<Position>)>,
    events: usize,
}

fn read_and_check<S: EventStore>(store: &S) -> Result<Stored, Box<dyn Error>> {
    let all: Vec<RecordedEvent> = store.read_all(Position::START).collect::<Result<_, _>>()?;
    let mut stored = Stored {
        events: all.len(),
        ..Stored::default()
    };
    let mut last = Position::START;
    let mut sizes = BTreeMap::new();
    for event in &all {
        assert!(event.position > last, "positions out of order");
        last = event.position;
        let payload: Payload = serde_json::from_str(&event.payload)?;
        assert_eq!(
            event.metadata.correlation_id.as_deref(),
            Some(payload.batch.as_str())
        );
        let entry = stored
            .batches
            .entry(payload.batch.clone())
            .or_insert_with(|| (event.stream.id().to_owned(), Vec::new(), Vec::new()));
        assert_eq!(entry.0, event.stream.id(), "a batch spans streams");
        assert_eq!(
            entry.1.len() as u64,
            payload.index,
            "batch {} out of order",
            payload.batch
        );
        entry.1.push(event.version);
        entry.2.push(event.position);
        sizes.insert(payload.batch, payload.size);
    }
    for (batch, (_, versions, positions)) in &stored.batches {
        assert_eq!(
            versions.len() as u64,
            sizes[batch],
            "batch {batch} is partly stored"
        );
        let first = versions[0].get();
        let expected: Vec<Version> = (first..first + versions.len() as u64)
            .map(Version::new)
            .collect();
        assert_eq!(versions, &expected, "batch {batch} has a version gap");
        let first = positions[0].get();
        let expected: Vec<Position> = (first..first + positions.len() as u64)
            .map(Position::new)
            .collect();
        assert_eq!(positions, &expected, "batch {batch} was interleaved");
    }
    let mut streams = BTreeSet::new();
    for event in &all {
        streams.insert(event.stream.clone());
    }
    for stream in streams {
        let versions: Vec<u64> = store
            .read_stream(&stream, Version::new(1))
            .map(|e| e.map(|e| e.version.get()))
            .collect::<Result<_, _>>()?;
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "stream {stream} has a gap"
        );
        assert_eq!(store.stream_version(&stream)?.get(), versions.len() as u64);
    }
    Ok(stored)
}

fn integrity_check(path: &Path) -> rusqlite::Result<String> {
    rusqlite::Connection::open(path)?.query_row("PRAGMA integrity_check", [], |r| r.get(0))
}

/// What the writers said, over all rounds.
#[derive(Debug, Default)]
struct Log {
    acknowledged: Vec<Ack>,
    refused: BTreeSet<String>,
}

impl Log {
    fn record(&mut self, line: &str) -> Result<(), Box<dyn Error>> {
        if let Some(batch) = line.strip_prefix("refused ") {
            self.refused.insert(batch.to_owned());
        } else if line != "done" {
            self.acknowledged.push(line.parse::<Ack>()?);
        }
        Ok(())
    }
}

/// Starts a writer on `path`, lets it acknowledge a pseudo-random number of batches,
/// waits a pseudo-random moment more and kills it. Returns whether it was still running.
fn run_and_kill(
    path: &Path,
    round: u64,
    threads: u64,
    rng: &mut SplitMix64,
    log: &mut Log,
) -> Result<bool, Box<dyn Error>> {
    let sync = if round.is_multiple_of(2) {
        "full"
    } else {
        "normal"
    };
    let mut writer = Command::new(env!("CARGO_BIN_EXE_es_crash_writer"));
    writer
        .arg(path)
        .arg(round.to_string())
        .arg(sync)
        .arg(threads.to_string());
    kill_after_acks(writer, threads, rng, log)
}

/// Starts `writer`, lets it acknowledge a pseudo-random number of batches, waits a
/// pseudo-random moment more and kills it (SIGKILL). Returns whether it was still running.
fn kill_after_acks(
    mut writer: Command,
    threads: u64,
    rng: &mut SplitMix64,
    log: &mut Log,
) -> Result<bool, Box<dyn Error>> {
    let mut child = writer.stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    for _ in 0..rng.between(0, MAX_ACKS_BEFORE_KILL * threads) {
        match lines.next().transpose()? {
            Some(line) => log.record(&line)?,
            None => break,
        }
    }
    std::thread::sleep(Duration::from_micros(rng.between(0, MAX_EXTRA_WAIT_MICROS)));
    let running = child.try_wait()?.is_none();
    child.kill()?; // SIGKILL
    child.wait()?;
    // What it printed before it died was acknowledged too.
    for line in lines {
        log.record(&line?)?;
    }
    Ok(running)
}

/// After a crash: the file is sound, every acknowledged batch is stored as acknowledged,
/// no refused batch is stored, and the store takes an append right after what survived.
/// Returns how many batches are stored.
fn verify_after_crash(path: &Path, round: u64, log: &mut Log) -> Result<usize, Box<dyn Error>> {
    assert_eq!(integrity_check(path)?, "ok");
    verify_store(&SqliteStore::open(path)?, round, log)
}

/// The checks of [`verify_after_crash`] that go through the store.
fn verify_store<S: EventStore>(
    store: &S,
    round: u64,
    log: &mut Log,
) -> Result<usize, Box<dyn Error>> {
    let stored = read_and_check(store)?;
    for ack in &log.acknowledged {
        let Some((stream, versions, positions)) = stored.batches.get(&ack.batch) else {
            panic!("round {round}: acknowledged batch {} was lost", ack.batch);
        };
        assert_eq!(stream, &ack.stream, "{}", ack.batch);
        assert_eq!(
            (versions.first(), versions.last()),
            (Some(&ack.first), Some(&ack.last))
        );
        assert_eq!(positions, &ack.positions, "{}", ack.batch);
    }
    for batch in &log.refused {
        assert!(
            !stored.batches.contains_key(batch),
            "refused batch {batch} was stored"
        );
    }

    let stream = StreamId::new("crash", "s0");
    let version = store.stream_version(&stream)?;
    let id = format!("parent{round}");
    let batch: Vec<NewEvent> = (0..3)
        .map(|i| {
            NewEvent::new("crash.appended", 1, batch_payload(&id, i, 3))
                .with_metadata(Metadata::new().correlation_id(id.as_str()))
        })
        .collect();
    let appended = store.append(&stream, ExpectedVersion::Exact(version), &batch)?;
    assert_eq!(appended.stream_version, Version::new(version.get() + 3));
    log.acknowledged.push(Ack {
        batch: id,
        stream: stream.id().to_owned(),
        first: version.next(),
        last: appended.stream_version,
        positions: appended.positions,
    });
    assert_eq!(read_and_check(store)?.events, stored.events + 3);
    Ok(stored.batches.len() + 1)
}

#[test]
fn killed_writers_lose_no_acknowledged_append() -> TestResult {
    killed_writers(1, SplitMix64::seed_from_env("ES_CRASH_ROUNDS", ROUNDS))
}

/// The same with four writer threads in the killed process sharing one store handle, so
/// that appends are committed in groups: a kill in the middle of a group commit loses
/// no acknowledged append and leaves no partial batch.
#[test]
fn killed_group_commits_lose_no_acknowledged_append() -> TestResult {
    killed_writers(4, SplitMix64::seed_from_env("ES_CRASH_ROUNDS", ROUNDS / 2))
}

fn killed_writers(threads: u64, rounds: u64) -> TestResult {
    let seed = SplitMix64::seed_from_env("ES_CRASH_SEED", 0x0E5C_4A54);
    let mut rng = SplitMix64::new(seed);
    let tmp = TempStore::new()?;
    drop(SqliteStore::open(&tmp.path)?);
    let mut log = Log::default();
    let mut killed_running = 0;
    let mut stored = 0;
    for round in 0..rounds {
        if run_and_kill(&tmp.path, round, threads, &mut rng, &mut log)? {
            killed_running += 1;
        }
        stored = verify_after_crash(&tmp.path, round, &mut log)?;
    }
    let events: u64 = log
        .acknowledged
        .iter()
        .map(|a| a.last.get() - a.first.get() + 1)
        .sum();
    eprintln!(
        "{threads} writer thread(s), {rounds} rounds ({killed_running} killed while running), {} acknowledged batches \
         ({events} events) all present and complete, {} more committed but killed before \
         the acknowledgement, also complete, {} refused batches all absent",
        log.acknowledged.len(),
        stored - log.acknowledged.len(),
        log.refused.len()
    );
    assert!(killed_running >= rounds / 2, "the writers were not killed");
    assert!(!log.acknowledged.is_empty());
    Ok(())
}

/// The durability the crash tests rely on is the one the store sets: every connection
/// it opens (the writer and the readers, opened by reads from several threads) runs
/// with `PRAGMA synchronous` as chosen, `FULL` (2) by default and `NORMAL` (1) when
/// asked, read back through the `on_connect` hook, which runs after the store's own
/// configuration.
#[test]
fn every_connection_runs_with_the_chosen_synchronous_setting() -> Result<(), Box<dyn Error>> {
    use std::sync::{Arc, Mutex};

    for (options, expected) in [
        (eventsource::SqliteOptions::new(), 2),
        (
            eventsource::SqliteOptions::new().synchronous(eventsource::Synchronous::Full),
            2,
        ),
        (
            eventsource::SqliteOptions::new().synchronous(eventsource::Synchronous::Normal),
            1,
        ),
    ] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let options = options.on_connect(move |conn| {
            let level: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0))?;
            record
                .lock()
                .map_err(|_| rusqlite::Error::InvalidQuery)?
                .push(level);
            Ok(())
        });
        let tmp = TempStore::new()?;
        let store = SqliteStore::open_with(&tmp.path, options)?;
        let stream = StreamId::new("sync", "s");
        store.append(
            &stream,
            ExpectedVersion::NoStream,
            &[NewEvent::new("sync.noted", 1, "{}")],
        )?;
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| store.read_stream(&stream, Version::new(1)).count()))
                .collect();
            for reader in readers {
                assert_eq!(
                    reader
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    1
                );
            }
        });
        let seen = seen.lock().map_err(|_| "poisoned")?.clone();
        assert!(seen.len() >= 2, "only {} connections seen", seen.len());
        assert!(
            seen.iter().all(|&level| level == expected),
            "{seen:?}, expected {expected}"
        );
    }
    Ok(())
}

/// PostgreSQL: a client process with four writer threads (one store handle, pooled
/// connections) killed with SIGKILL at pseudo-random moments, 20 rounds. The server
/// rolls back what the dead client had not committed: every acknowledged batch is
/// stored as acknowledged, none is partial, refused ones are absent, streams have no
/// gap, and the store takes an append right after. (`pg_terminate_backend` from the
/// server side is `reliability_commit_unknown::terminated_backends_never_double_or_lose_an_append`.)
#[test]
fn killed_postgres_clients_lose_no_acknowledged_append() -> TestResult {
    let Some(url) = eventsource_tests::pg::url() else {
        return Ok(());
    };
    let schema = eventsource_tests::pg::TestSchema::new(&url);
    drop(schema.connect()?);
    let rounds = SplitMix64::seed_from_env("ES_CRASH_ROUNDS", ROUNDS / 2);
    let mut rng = SplitMix64::new(SplitMix64::seed_from_env("ES_CRASH_SEED", 0x0E5C_4A54));
    let mut log = Log::default();
    let (mut killed_running, mut stored) = (0, 0);
    for round in 0..rounds {
        let mut writer = Command::new(env!("CARGO_BIN_EXE_es_crash_writer"));
        writer
            .args(["--postgres", &url, &schema.name])
            .arg(round.to_string())
            .arg("4");
        if kill_after_acks(writer, 4, &mut rng, &mut log)? {
            killed_running += 1;
        }
        let store = schema.connect()?;
        stored = verify_store(&store, round, &mut log)?;
    }
    eprintln!(
        "postgres: {rounds} rounds ({killed_running} killed while running), {} acknowledged \
         batches all present and complete, {} more committed but killed before the \
         acknowledgement, {} refused batches all absent",
        log.acknowledged.len(),
        stored - log.acknowledged.len(),
        log.refused.len()
    );
    assert!(killed_running >= rounds / 2, "the writers were not killed");
    assert!(!log.acknowledged.is_empty());
    Ok(())
}
