//! Projections killed in the middle of a batch: a child process (`es_projector`) runs
//! the balances projection and is killed with SIGKILL after a pseudo-random number of
//! handled events, round after round, until a run finishes. The read model must then equal a rebuild
//! from scratch, with every event applied exactly once (the `applied` table has no
//! unique key: a batch applied twice would show as duplicates).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use eventsource::{EventStore, ExpectedVersion, NewEvent, ProjectionStore, SqliteStore, StreamId};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::read_model::Db;
use eventsource_tests::reliability::SplitMix64;
use eventsource_tests::{MoneyDeposited, MoneyWithdrawn, TempStore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Enough events that 40 rounds of at most 60 handled events each rarely reach the end,
/// however the kill lands: a round that finishes before its kill proves nothing.
const EVENTS: u64 = 4_000;
const ROUNDS: u64 = 40;

/// Fills the store; returns the expected `id|balance` lines.
fn fill<S: EventStore>(store: &S) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..EVENTS {
        let id = format!("a-{:02}", i % 17);
        let amount = i % 50 + 1;
        let (event, delta) = if i % 4 == 3 {
            (
                NewEvent::from_event(&MoneyWithdrawn { amount })?,
                -i64::try_from(amount)?,
            )
        } else {
            (
                NewEvent::from_event(&MoneyDeposited { amount })?,
                i64::try_from(amount)?,
            )
        };
        let mut batch = vec![event];
        if i % 9 == 0 {
            batch.push(NewEvent::new("audit.noted", 1, "[]"));
        }
        store.append(&StreamId::new("account", &id), ExpectedVersion::Any, &batch)?;
        *expected.entry(id).or_default() += delta;
    }
    Ok(expected.iter().map(|(id, b)| format!("{id}|{b}")).collect())
}

/// Runs `es_projector` with `args` and kills it (SIGKILL) 0 to 3 ms after it handled a
/// pseudo-random number (1 to 60) of events, in the middle of a batch of 13 or its
/// commit, round after round; then once more to the end. Returns how many rounds were killed before
/// finishing.
fn kill_and_resume(args: &[String]) -> Result<u64, Box<dyn std::error::Error>> {
    let mut rng = SplitMix64::new(0x5eed_0010);
    let mut killed = 0;
    for _ in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_es_projector"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()?;
        let wanted = 1 + rng.next_u64() % 60;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut handled = 0;
        while handled < wanted {
            match lines.next().transpose()? {
                Some(line) if line.starts_with("event ") => handled += 1,
                Some(line) => assert!(!line.starts_with("error"), "{line}"),
                None => break,
            }
        }
        // A little later still: anywhere in the batch, its commit included.
        thread::sleep(Duration::from_micros(rng.next_u64() % 3_000));
        if child.try_wait()?.is_none() {
            child.kill()?; // SIGKILL
            killed += 1;
        }
        child.wait()?;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_es_projector"))
        .args(args)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("done"), "{stdout}");
    Ok(killed)
}

fn check<S: ProjectionStore>(store: &S, db: &Db, expected: &[String], killed: u64) -> TestResult {
    assert!(
        killed >= ROUNDS / 2,
        "only {killed} of {ROUNDS} runs were killed mid-run"
    );
    assert_eq!(db.balances()?, expected);
    let applied = db.applied()?;
    let handled = usize::try_from(EVENTS)?;
    assert_eq!(applied.len(), handled, "events applied twice or skipped");
    assert!(
        applied.windows(2).all(|w| w[0] < w[1]),
        "an event applied twice"
    );
    let status = store.checkpoints()?;
    assert_eq!((status.len(), status[0].lag), (1, 0));
    Ok(())
}

#[test]
fn a_killed_sqlite_projection_applies_each_event_once() -> TestResult {
    let temp = TempStore::new()?;
    let store = SqliteStore::open(&temp.path)?;
    let db = Db::Sqlite(temp.path.clone());
    db.create_balances()?;
    let expected = fill(&store)?;
    let path = temp.path.to_str().ok_or("path is not UTF-8")?.to_owned();
    let killed = kill_and_resume(&[path])?;
    check(&store, &db, &expected, killed)
}

#[test]
fn a_killed_postgres_projection_applies_each_event_once() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    let db = Db::Postgres {
        url: url.clone(),
        schema: schema.name.clone(),
    };
    db.create_balances()?;
    let expected = fill(&store)?;
    let killed = kill_and_resume(&["--postgres".into(), url.clone(), schema.name.clone()])?;
    check(&store, &db, &expected, killed)
}
