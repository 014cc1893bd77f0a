//! Projections on a SQLite file and on PostgreSQL: checkpoints, exactly-once batches,
//! skipping without decoding, version bumps, failures, live following and
//! read-your-writes. Each test runs on both backends (`sqlite::*`, `postgres::*`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use eventsource::{
    Context, EventStore, ExpectedVersion, HandleError, HandlerResult, NewEvent, Position,
    PostgresStore, Project, Projection, ProjectionError, ProjectionStore, Projector, SqliteStore,
    StreamId,
};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::read_model::{Balances, Db, add_to_balance};
use eventsource_tests::{MoneyDeposited, MoneyWithdrawn, TempStore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What the balances read model must hold: `id|balance` lines, by id.
#[derive(Debug, Default)]
struct Expected(BTreeMap<String, i64>);

impl Expected {
    fn lines(&self) -> Vec<String> {
        self.0.iter().map(|(id, b)| format!("{id}|{b}")).collect()
    }
}

/// Appends a deposit (or a withdrawal, for a negative `delta`) to account `id`.
fn record<S: EventStore>(
    store: &S,
    expected: &mut Expected,
    id: &str,
    delta: i64,
) -> Result<Position, Box<dyn std::error::Error>> {
    let event = if delta >= 0 {
        NewEvent::from_event(&MoneyDeposited {
            amount: delta.unsigned_abs(),
        })?
    } else {
        NewEvent::from_event(&MoneyWithdrawn {
            amount: delta.unsigned_abs(),
        })?
    };
    let appended = store.append(
        &StreamId::new("account", id),
        ExpectedVersion::Any,
        &[event],
    )?;
    *expected.0.entry(id.to_owned()).or_default() += delta;
    Ok(appended.positions[0])
}

/// Events the projection does not handle, whose payloads would not decode as any of its
/// events: if the runner handed them over, decoding would fail.
fn unhandled<S: EventStore>(store: &S, id: &str) -> TestResult {
    store.append(
        &StreamId::new("account", id),
        ExpectedVersion::Any,
        &[
            NewEvent::new("account.opened", 2, r#"{"not":"an account"}"#),
            NewEvent::new("audit.noted", 1, "[1, 2, 3]"),
        ],
    )?;
    Ok(())
}

// --- the tests, generic over the backend ---

/// A projection applies every handled event once, skips the others without decoding
/// them, and a second run applies only what was appended since.
fn catch_up_applies_each_event_once<S: ProjectionStore>(store: S, db: &Db) -> TestResult {
    db.create_balances()?;
    let mut expected = Expected::default();
    for i in 0..1_200_i64 {
        let id = format!("a-{:02}", i % 7);
        if i % 5 == 0 {
            unhandled(&store, &id)?;
        }
        record(
            &store,
            &mut expected,
            &id,
            if i % 3 == 0 { -(i % 11) } else { i },
        )?;
    }
    let mut projector = Projector::new(&store, Balances::new(db)).batch_size(100);
    let report = projector.run_until_caught_up()?;
    assert_eq!(report.applied, 1_200);
    assert!(report.rebuilt, "a new projection starts from a reset");
    assert!(report.batches >= 12, "{report:?}");
    assert_eq!(report.checkpoint, store.head()?);
    assert_eq!(db.balances()?, expected.lines());
    let applied = db.applied()?;
    assert_eq!(applied.len(), 1_200);
    assert!(
        applied.windows(2).all(|w| w[0] < w[1]),
        "an event applied twice"
    );

    // Nothing new: nothing applied, no batch written.
    let again = projector.run_until_caught_up()?;
    assert_eq!((again.applied, again.batches), (0, 0));
    drop(projector);

    // A new runner (a restart) goes on from the stored checkpoint.
    for i in 0..30 {
        record(&store, &mut expected, &format!("a-{:02}", i % 4), 1_000)?;
    }
    unhandled(&store, "a-09")?;
    let mut restarted = Projector::new(&store, Balances::new(db));
    let report = restarted.run_until_caught_up()?;
    assert_eq!((report.applied, report.rebuilt), (30, false));
    assert_eq!(db.balances()?, expected.lines());
    assert_eq!(db.applied()?.len(), 1_230);

    let status = restarted.status()?.ok_or("no checkpoint stored")?;
    assert_eq!((status.name.as_str(), status.version), ("balances", 1));
    assert_eq!((status.position, status.lag), (store.head()?, 0));
    record(&store, &mut expected, "a-00", 1)?;
    let checkpoints = store.checkpoints()?;
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].lag, 1);
    Ok(())
}

/// A handler that fails stops the runner with the event's position; the checkpoint stays
/// before it and nothing of the failing batch is kept; after the fix the run resumes.
fn a_failing_handler_stops_at_its_event<S: ProjectionStore>(store: S, db: &Db) -> TestResult {
    db.create_balances()?;
    let mut expected = Expected::default();
    let mut bad = Position::START;
    for i in 1..=50_i64 {
        let position = record(&store, &mut expected, &format!("a-{}", i % 3), i)?;
        if i == 37 {
            bad = position;
        }
    }
    let mut balances = Balances::new(db);
    balances.fail_on = Some(37);
    let mut projector = Projector::new(&store, balances).batch_size(10);
    match projector.run_until_caught_up() {
        Err(ProjectionError::Failed {
            projection,
            at,
            source: HandleError::Handler(message),
        }) => {
            assert_eq!(projection, "balances");
            assert_eq!(at.position, bad);
            assert_eq!(at.event_type, "money.deposited");
            assert_eq!(message.to_string(), "refusing a deposit of 37");
        }
        other => panic!("expected the handler's failure, got {other:?}"),
    }
    let status = projector.status()?.ok_or("no checkpoint")?;
    assert!(
        status.position < bad,
        "{status:?} past the failing event at {bad}"
    );
    let applied = db.applied()?;
    assert_eq!(applied.last().copied(), Some(status.position.get()));
    assert!(applied.iter().all(|&p| p < bad.get()));

    // Fixed: the run resumes from the checkpoint and applies each event once. (The
    // struct's own field is not rolled back with the batch.)
    projector.projection_mut().fail_on = None;
    projector.projection_mut().last = status.position;
    projector.run_until_caught_up()?;
    assert_eq!(db.balances()?, expected.lines());
    assert_eq!(db.applied()?.len(), 50);
    Ok(())
}

/// Version 2 of the balances projection: amounts in tenths.
#[derive(Debug, Projection)]
#[projection(name = "balances", version = 2, events(MoneyDeposited), reset = Self::clear)]
struct BalancesV2 {
    table: String,
    resets: u32,
}

impl BalancesV2 {
    fn clear(&mut self, ctx: &mut Context<'_>) -> HandlerResult {
        self.resets += 1;
        let sql = format!("DELETE FROM {}", self.table);
        if let Ok(tx) = ctx.sqlite() {
            tx.execute_batch(&sql)?;
        } else {
            ctx.postgres()?.batch_execute(&sql)?;
        }
        Ok(())
    }
}

impl Project<MoneyDeposited> for BalancesV2 {
    fn project(&mut self, e: &MoneyDeposited, ctx: &mut Context<'_>) -> HandlerResult {
        add_to_balance(ctx, &self.table, i64::try_from(e.amount)? * 10)
    }
}

/// Bumping the version resets the read model and rebuilds it from position 0; the old
/// code then refuses to run over the newer checkpoint.
fn a_new_version_rebuilds<S: ProjectionStore>(store: S, db: &Db) -> TestResult {
    db.create_balances()?;
    let mut expected = Expected::default();
    for i in 1..=20 {
        record(&store, &mut expected, &format!("a-{}", i % 2), i)?;
    }
    Projector::new(&store, Balances::new(db)).run_until_caught_up()?;
    assert_eq!(db.balances()?, expected.lines());

    let mut v2 = Projector::new(
        &store,
        BalancesV2 {
            table: db.table("balances"),
            resets: 0,
        },
    )
    .batch_size(7);
    let report = v2.run_until_caught_up()?;
    assert!(report.rebuilt);
    assert_eq!(report.applied, 20);
    assert_eq!(
        v2.projection().resets,
        1,
        "one reset, in the first batch only"
    );
    let tenfold: Vec<String> = expected
        .0
        .iter()
        .map(|(id, b)| format!("{id}|{}", b * 10))
        .collect();
    assert_eq!(db.balances()?, tenfold);
    let status = v2.status()?.ok_or("no checkpoint")?;
    assert_eq!(status.version, 2);
    drop(v2);

    match Projector::new(&store, Balances::new(db)).run_until_caught_up() {
        Err(ProjectionError::NewerVersion {
            projection: "balances",
            stored: 2,
            code: 1,
        }) => {}
        other => panic!("expected a newer-version refusal, got {other:?}"),
    }
    assert_eq!(
        db.balances()?,
        tenfold,
        "the refusal changed the read model"
    );
    Ok(())
}

/// A rebuild resets and applies everything again, reporting progress up to the total.
fn a_rebuild_reports_progress<S: ProjectionStore>(store: S, db: &Db) -> TestResult {
    db.create_balances()?;
    let mut expected = Expected::default();
    for i in 0..300 {
        record(&store, &mut expected, &format!("a-{}", i % 5), 2)?;
        if i % 10 == 0 {
            unhandled(&store, "a-1")?;
        }
    }
    let mut projector = Projector::new(&store, Balances::new(db)).batch_size(64);
    projector.run_until_caught_up()?;
    let mut seen = Vec::new();
    let report = projector.rebuild(|p| seen.push(p))?;
    assert!(report.rebuilt);
    assert_eq!(report.applied, 300);
    let total = store.head()?.get();
    assert!(seen.len() >= 5, "{seen:?}");
    assert!(
        seen.windows(2)
            .all(|w| w[0].done < w[1].done && w[0].applied < w[1].applied)
    );
    let last = seen.last().ok_or("no progress")?;
    assert_eq!((last.done, last.total, last.applied), (total, total, 300));
    assert_eq!(db.balances()?, expected.lines());
    assert_eq!(
        db.applied()?.len(),
        300,
        "the rebuild's reset cleared the old rows"
    );
    Ok(())
}

/// A live runner with 8 concurrent writers applies every event exactly once, in position
/// order (the projection fails on any other order), and `wait_for` returns once the
/// last position is applied.
#[allow(
    clippy::needless_pass_by_value,
    reason = "every test of the suite takes its store by value"
)]
fn live_with_concurrent_writers<S: ProjectionStore + Send + Sync + 'static>(
    store: Arc<S>,
    db: &Db,
) -> TestResult {
    const WRITERS: usize = 8;
    const EACH: i64 = 150;
    db.create_balances()?;
    let handle = Projector::new(Arc::clone(&store), Balances::new(db))
        .batch_size(50)
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let done = AtomicBool::new(false);
    let expected = thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = &store;
                scope.spawn(move || -> Result<Expected, String> {
                    let mut expected = Expected::default();
                    for i in 0..EACH {
                        record(&**store, &mut expected, &format!("w-{w}-{}", i % 3), i + 1)
                            .map_err(|e| e.to_string())?;
                        if i % 25 == 0 {
                            unhandled(&**store, &format!("w-{w}-0")).map_err(|e| e.to_string())?;
                        }
                    }
                    Ok(expected)
                })
            })
            .collect();
        let results: Vec<_> = pg::join_all(writers);
        done.store(true, Ordering::Release);
        results
    });
    let mut all = Expected::default();
    for part in expected {
        all.0.extend(part?.0);
    }
    let head = store.head()?;
    handle.wait_for(head, Duration::from_secs(30))?;
    assert!(store.wait_for_projection("balances", head, Duration::from_secs(30))?);
    assert!(!store.wait_for_projection(
        "balances",
        Position::new(head.get() + 1),
        Duration::from_millis(20)
    )?);
    assert_eq!(db.balances()?, all.lines());
    let applied = db.applied()?;
    assert_eq!(applied.len(), WRITERS * usize::try_from(EACH)?);
    assert!(
        applied.windows(2).all(|w| w[0] < w[1]),
        "an event applied twice"
    );
    let checkpoints = store.checkpoints()?;
    assert_eq!(checkpoints[0].lag, 0);
    let projection = handle.join()?;
    assert_eq!(
        projection.last.get(),
        *applied.last().ok_or("nothing applied")?
    );
    Ok(())
}

// --- backends ---

fn on_sqlite(test: impl FnOnce(Arc<SqliteStore>, &Db) -> TestResult) -> TestResult {
    let temp = TempStore::new()?;
    let store = Arc::new(SqliteStore::open(&temp.path)?);
    test(store, &Db::Sqlite(temp.path.clone()))
}

fn on_postgres(test: impl FnOnce(Arc<PostgresStore>, &Db) -> TestResult) -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = Arc::new(schema.connect()?);
    let db = Db::Postgres {
        url: url.clone(),
        schema: schema.name.clone(),
    };
    test(store, &db)
}

macro_rules! on_both {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(#[test] fn $test() -> TestResult { on_sqlite(|store, db| super::$test(store, db)) })*
        }
        mod postgres {
            use super::*;
            $(#[test] fn $test() -> TestResult { on_postgres(|store, db| super::$test(store, db)) })*
        }
    };
}

on_both!(
    catch_up_applies_each_event_once,
    a_failing_handler_stops_at_its_event,
    a_new_version_rebuilds,
    a_rebuild_reports_progress,
    live_with_concurrent_writers,
);

/// On PostgreSQL one runner per projection runs at a time, across processes: a second
/// runner does nothing while the first holds the projection, and takes over when it
/// stops.
#[test]
fn postgres_runs_one_runner_per_projection() -> TestResult {
    on_postgres(|store, db| {
        db.create_balances()?;
        let mut expected = Expected::default();
        record(&*store, &mut expected, "a-1", 5)?;
        let first = Projector::new(Arc::clone(&store), Balances::new(db))
            .poll_interval(Duration::from_millis(10))
            .spawn();
        first.wait_for(store.head()?, Duration::from_secs(10))?;
        record(&*store, &mut expected, "a-1", 6)?;
        let mut second = Projector::new(Arc::clone(&store), Balances::new(db));
        match second.run_until_caught_up() {
            Err(ProjectionError::HeldElsewhere {
                projection: "balances",
            }) => {}
            other => panic!("expected the projection to be held elsewhere, got {other:?}"),
        }
        first.wait_for(store.head()?, Duration::from_secs(10))?;
        first.join()?;
        record(&*store, &mut expected, "a-2", 7)?;
        let report = second.run_until_caught_up()?;
        assert_eq!(report.applied, 1);
        assert_eq!(db.balances()?, expected.lines());
        assert_eq!(db.applied()?.len(), 3);
        Ok(())
    })
}

/// A handler that appends to the store it is projecting gets an error, not a deadlock
/// (the batch holds the store's write lock); the batch is rolled back.
#[derive(Projection)]
#[projection(name = "echo", events(MoneyDeposited))]
struct Echo(Arc<SqliteStore>);

impl Project<MoneyDeposited> for Echo {
    fn project(&mut self, e: &MoneyDeposited, _: &mut Context<'_>) -> HandlerResult {
        self.0.append(
            &StreamId::new("echo", "1"),
            ExpectedVersion::Any,
            &[NewEvent::from_event(e)?],
        )?;
        Ok(())
    }
}

#[test]
fn sqlite_a_handler_appending_to_its_own_store_is_refused() -> TestResult {
    let temp = TempStore::new()?;
    for store in [
        Arc::new(SqliteStore::in_memory()?),
        Arc::new(SqliteStore::open(&temp.path)?),
    ] {
        record(&*store, &mut Expected::default(), "a-1", 5)?;
        let mut projector = Projector::new(Arc::clone(&store), Echo(Arc::clone(&store)));
        match projector.run_until_caught_up() {
            Err(ProjectionError::Failed {
                source: HandleError::Handler(e),
                ..
            }) => assert!(e.to_string().contains("projection handlers"), "{e}"),
            other => panic!("expected the append to be refused, got {other:?}"),
        }
        // The store is usable afterwards, from outside the batch.
        record(&*store, &mut Expected::default(), "a-1", 5)?;
        assert_eq!(store.head()?, Position::new(2));
    }
    Ok(())
}
