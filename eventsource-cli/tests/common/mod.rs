//! Fixtures of the command-line tests: the binary, stores filled through the library,
//! and PostgreSQL schemas of their own.

#![allow(dead_code, reason = "each test binary uses a part")]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use eventsource::{
    EventStore, ExpectedVersion, Import, Metadata, NewEvent, Position, RecordedEvent, StreamId,
};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The environment variable with the connection string of the test server.
pub const URL_VAR: &str = "EVENTSOURCE_POSTGRES_URL";

/// The `eventsource` binary with `args`.
pub fn eventsource<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventsource"));
    command.args(args);
    command
}

/// Runs the binary to its end.
pub fn run<I, S>(args: I) -> Result<Output, std::io::Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    eventsource(args).output()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The test server's connection string; `None` (with a note) when it is not set. With
/// `CI` set a missing server fails the test instead: in CI the PostgreSQL tests must
/// run, not pass silently (as `tests/tests/postgres.rs` does).
pub fn pg_url() -> Option<String> {
    let url = std::env::var(URL_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty());
    if url.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(
            !ci,
            "CI is set but {URL_VAR} is not: the PostgreSQL tests would pass without running"
        );
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("note: {URL_VAR} is not set: this PostgreSQL test passes without running\n")
                .as_bytes(),
        );
    }
    url
}

/// A PostgreSQL schema of its own for one test, dropped on drop.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    pub fn new(url: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() % 1_000_000_000);
        Schema {
            url: url.to_owned(),
            name: format!(
                "es_cli_{}_{}_{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    pub fn connect(&self) -> Result<eventsource::PostgresStore, eventsource::StoreError> {
        eventsource::PostgresStore::connect_with_schema(&self.url, &self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "SET client_min_messages TO warning; DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.name
            ));
        }
    }
}

/// A small store: two aggregate types, three streams, metadata, two event versions.
pub fn small_store(store: &impl EventStore) -> TestResult {
    let meta = Metadata::new()
        .actor("ann")
        .correlation_id("req-1")
        .with("tenant", "t1");
    let acc = StreamId::new("account", "acc-1");
    store.append(
        &acc,
        ExpectedVersion::NoStream,
        &[
            NewEvent::new("account.opened", 2, r#"{"owner": "ann"}"#).with_metadata(meta.clone()),
            NewEvent::new("money.deposited", 1, r#"{"amount": 100}"#).with_metadata(meta),
        ],
    )?;
    store.append(
        &StreamId::new("account", "acc-2"),
        ExpectedVersion::Any,
        &[NewEvent::new("account.opened", 1, r#"{"owner": "bob"}"#)],
    )?;
    store.append(
        &StreamId::new("order", "o-1"),
        ExpectedVersion::Any,
        &[NewEvent::new("order.placed", 1, r#"{"items": [1, 2]}"#)],
    )?;
    store.append(
        &acc,
        ExpectedVersion::Any,
        &[NewEvent::new("money.withdrawn", 1, r#"{"amount": 30}"#)],
    )?;
    Ok(())
}

/// Fills `store` with `count` events through [`Import`], `batch` per transaction:
/// 5,000 streams interleaved, payloads in the form PostgreSQL prints JSONB (so the text
/// reads back the same from either backend), timestamps one millisecond apart, metadata
/// on every tenth event.
pub fn fill(store: &impl Import, count: u64, batch: u64) -> TestResult {
    const STREAMS: u64 = 5_000;
    let mut events = Vec::with_capacity(usize::try_from(batch)?);
    for position in 1..=count {
        let n = position - 1;
        let metadata = if n % 10 == 0 {
            Metadata::new()
                .actor(format!("user-{}", n % 7))
                .correlation_id(format!("c-{n}"))
        } else {
            Metadata::new()
        };
        events.push(RecordedEvent {
            position: Position::new(position),
            stream: StreamId::new(
                if n % STREAMS < 4_000 {
                    "account"
                } else {
                    "order"
                },
                format!("s-{}", n % STREAMS),
            ),
            version: eventsource::Version::new(n / STREAMS + 1),
            event_type: if n % 3 == 0 {
                "money.deposited"
            } else {
                "money.withdrawn"
            }
            .into(),
            event_version: if n % 5 == 0 { 1 } else { 2 },
            event_id: eventsource::EventId::new(),
            recorded_at: eventsource::Timestamp::from_micros(
                1_767_225_600_000_000 + i64::try_from(n)? * 1_000,
            ),
            payload: format!(r#"{{"n": {n}, "note": "event number {n}"}}"#),
            metadata,
        });
        if events.len() as u64 == batch || position == count {
            store.import_batch(&events)?;
            events.clear();
        }
    }
    Ok(())
}

/// Compares every event of two stores through the API, exactly; returns how many.
pub fn same_events(
    expected: &impl EventStore,
    actual: &impl EventStore,
) -> Result<u64, Box<dyn std::error::Error>> {
    let mut left = expected.read_all(Position::START);
    let mut right = actual.read_all(Position::START);
    let mut n = 0;
    loop {
        match (left.next().transpose()?, right.next().transpose()?) {
            (None, None) => return Ok(n),
            (Some(want), Some(got)) => {
                assert_eq!(want, got, "event {n} differs");
                n += 1;
            }
            (want, got) => panic!("one store ends first after {n} events: {want:?} / {got:?}"),
        }
    }
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}
