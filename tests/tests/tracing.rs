//! Tracing (feature `tracing`): the spans of load, execute, append and projection
//! batches carry their fields, and failures the library absorbs (a snapshot that cannot
//! be saved, one that no longer decodes) are warnings. A subscriber of the test's own
//! records what the library emits.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use eventsource::{Projector, Repository, SnapshotPolicy, SqliteStore};
use eventsource_tests::read_model::{Balances, Db};
use eventsource_tests::{Account, TempStore, raw_sqlite};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Every span (with the fields it was created or recorded with) and event, as lines.
#[derive(Default, Clone)]
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
    spans: Arc<Mutex<Vec<String>>>,
    next: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl Recorder {
    fn lines(&self) -> Vec<String> {
        let mut lines = self
            .lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        lines.extend(
            self.spans
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned(),
        );
        lines
    }

    fn has(&self, needles: &[&str]) -> bool {
        self.lines()
            .iter()
            .any(|line| needles.iter().all(|needle| line.contains(needle)))
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {}", span.metadata().name());
        span.record(&mut Fields(&mut line));
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        spans.push(line);
        let _ = self.next.fetch_add(1, Ordering::Relaxed);
        Id::from_u64(spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(line) = usize::try_from(span.into_u64())
            .ok()
            .and_then(|i| spans.get_mut(i - 1))
        {
            values.record(&mut Fields(line));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = format!("{} event", event.metadata().level());
        event.record(&mut Fields(&mut line));
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[test]
fn load_execute_append_and_projection_batches_are_spans() -> TestResult {
    let temp = TempStore::new()?;
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || -> TestResult {
        let store = SqliteStore::open(&temp.path)?;
        let accounts = Repository::<Account, _>::new(&store);
        accounts.execute("acc-1", |a| a.open("ann"))?;
        accounts.execute("acc-1", |a| a.deposit(5))?;
        accounts.load("acc-1")?;
        let db = Db::Sqlite(temp.path.clone());
        db.create_balances()?;
        Projector::new(&store, Balances::new(&db)).run_until_caught_up()?;
        Ok(())
    })?;
    for needles in [
        &[
            "span eventsource.execute",
            "aggregate=account",
            "stream=account/acc-1",
            "attempts=1",
            "events=1",
            "version=2",
        ][..],
        &[
            "span eventsource.load",
            "aggregate=account",
            "stream=account/acc-1",
            "version=2",
        ],
        &[
            "span eventsource.append",
            "backend=sqlite",
            "appends=1",
            "events=1",
        ],
        &[
            "span eventsource.projection.batch",
            "projection=balances",
            "applied=1",
            "checkpoint=2",
            "reset=true",
        ],
    ] {
        assert!(
            recorder.has(needles),
            "no line with {needles:?} in {:#?}",
            recorder.lines()
        );
    }
    Ok(())
}

#[test]
fn absorbed_snapshot_failures_are_warnings() -> TestResult {
    let temp = TempStore::new()?;
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || -> TestResult {
        let store = SqliteStore::open(&temp.path)?;
        let accounts =
            Repository::<Account, _>::new(&store).with_snapshots(SnapshotPolicy::every(1));
        accounts.execute("acc-1", |a| a.open("ann"))?;
        // A snapshot that no longer fits the struct: ignored when loading, with a warning.
        raw_sqlite(
            &temp.path,
            "INSERT INTO snapshots VALUES ('account', 'acc-2', 1, 1, '{\"not\":\"an account\"}', 0)",
        )?;
        raw_sqlite(
            &temp.path,
            "INSERT INTO events VALUES (99, 'account', 'acc-2', 1, 'account.opened', 2, \
             '0190f2c4-0000-7000-8000-000000000099', 0, '{\"owner\":\"bo\",\"currency\":\"EUR\"}', '{}', NULL)",
        )?;
        assert_eq!(accounts.load("acc-2")?.state.owner, "bo");
        // A snapshot that cannot be saved: the command still commits.
        raw_sqlite(
            &temp.path,
            "CREATE TRIGGER refuse_snapshots BEFORE INSERT ON snapshots \
             BEGIN SELECT RAISE(ABORT, 'no room for snapshots'); END",
        )?;
        accounts.execute("acc-1", |a| a.deposit(5))?;
        Ok(())
    })?;
    assert!(
        recorder.has(&["WARN event", "stream=account/acc-2", "no longer decodes"]),
        "{:#?}",
        recorder.lines()
    );
    assert!(
        recorder.has(&[
            "WARN event",
            "stream=account/acc-1",
            "version=2",
            "could not be saved",
            "no room for snapshots"
        ]),
        "{:#?}",
        recorder.lines()
    );
    Ok(())
}
