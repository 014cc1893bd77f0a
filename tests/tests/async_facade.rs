//! The async facade (feature `tokio`) under a multi-threaded tokio runtime, on a SQLite
//! file and on PostgreSQL: many concurrent tasks on one stream, dropped futures, reads
//! and subscriptions, and nothing that blocks or panics on a worker thread.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventsource::{
    AsyncRepository, AsyncStore, EventStore, ExecuteError, ExpectedVersion, NewEvent, Position,
    PostgresStore, ProjectionStore, Projector, Repository, SqliteStore, StreamId, Version,
    run_blocking,
};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::read_model::{Balances, Db};
use eventsource_tests::{Account, MoneyDeposited, TempStore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TASKS: u64 = 40;

/// `TASKS` tasks deposit into one account at once; every deposit that reports success is
/// in the stream exactly once, every failure is a conflict after its retries, and the
/// versions are contiguous.
async fn many_tasks_on_one_stream<S: EventStore + 'static>(store: S) -> TestResult {
    let accounts = AsyncRepository::new(Repository::<Account, _>::new(store).with_retries(50));
    accounts.execute("shared", |a| a.open("ann")).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let accounts = accounts.clone();
        tasks.spawn(async move {
            let amount = 1_000 + task;
            accounts
                .execute("shared", move |a| a.deposit(amount))
                .await
                .map(|c| (amount, c.version))
        });
    }
    let mut committed = BTreeSet::new();
    let mut versions = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok((amount, version)) => {
                committed.insert(amount);
                assert!(versions.insert(version), "version {version} reported twice");
            }
            Err(ExecuteError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let account = accounts.load("shared").await?;
    assert_eq!(account.version.get(), 1 + committed.len() as u64);
    assert_eq!(account.state.balance, committed.iter().sum::<u64>());
    assert!(committed.len() as u64 > TASKS / 2, "{committed:?}");
    Ok(())
}

/// Futures dropped right after their first poll: each command either completes and is
/// stored whole, or never started; none is stored twice or half.
async fn dropped_futures_leave_whole_commands<S: EventStore + 'static>(store: S) -> TestResult {
    let accounts = AsyncRepository::new(Repository::<Account, _>::new(store).with_retries(50));
    accounts.execute("dropped", |a| a.open("ann")).await?;
    let decided = Arc::new(AtomicU64::new(0));
    for i in 0..TASKS {
        let decided = Arc::clone(&decided);
        let command = accounts.execute("dropped", move |a| {
            decided.fetch_add(1, Ordering::SeqCst);
            a.deposit(10 + i)
        });
        // Polled once (so it starts on the blocking pool), then dropped.
        tokio::select! {
            biased;
            _ = command => {}
            () = std::future::ready(()) => {}
        }
    }
    // The dropped commands finish on the blocking pool: wait until they have (each
    // decision leads to a stored deposit; retries decide again, so decisions >= deposits).
    let deadline = Instant::now() + Duration::from_secs(30);
    let account = loop {
        let account = accounts.load("dropped").await?;
        if account.version.get() == 1 + TASKS || Instant::now() > deadline {
            break account;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        account.version.get(),
        1 + TASKS,
        "a started command was lost"
    );
    assert_eq!(
        account.state.balance,
        (0..TASKS).map(|i| 10 + i).sum::<u64>()
    );
    assert!(decided.load(Ordering::SeqCst) >= TASKS);
    Ok(())
}

/// Appends, paged reads and a live subscription through `AsyncStore`; a spawned
/// projection waited for with `wait_for_async`.
async fn store_reads_and_subscriptions<S: ProjectionStore + Send + Sync + 'static>(
    store: Arc<S>,
    db: &Db,
) -> TestResult {
    let setup = db.clone();
    run_blocking(move || setup.create_balances()).await??;
    let async_store = AsyncStore::from_arc(Arc::clone(&store));
    let mut live = async_store.subscribe(Position::START, 8);
    let projection = Projector::new(Arc::clone(&store), Balances::new(db)).spawn();
    let stream = StreamId::new("account", "a-1");
    let mut last = Position::START;
    for i in 1..=30_u64 {
        let appended = async_store
            .append(
                stream.clone(),
                ExpectedVersion::Exact(Version::new(i - 1)),
                vec![NewEvent::from_event(&MoneyDeposited { amount: i })?],
            )
            .await?;
        last = appended.positions[0];
    }
    for i in 1..=30_u64 {
        let event = tokio::time::timeout(Duration::from_secs(10), live.recv())
            .await?
            .ok_or("the subscription ended")??;
        assert_eq!(event.version, Version::new(i));
    }
    let page = async_store
        .read_stream(stream.clone(), Version::new(11), 5)
        .await?;
    let versions: Vec<u64> = page.iter().map(|e| e.version.get()).collect();
    assert_eq!(versions, [11, 12, 13, 14, 15]);
    assert_eq!(async_store.read_all(Position::START, 100).await?.len(), 30);
    assert_eq!(async_store.stream_version(stream).await?, Version::new(30));
    projection
        .wait_for_async(last, Duration::from_secs(10))
        .await?;
    let read = db.clone();
    let balances = run_blocking(move || read.balances()).await??;
    assert_eq!(balances, [format!("a-1|{}", (1..=30).sum::<u64>())]);
    run_blocking(move || projection.join()).await??;
    Ok(())
}

fn sqlite() -> Result<(TempStore, Arc<SqliteStore>), Box<dyn std::error::Error>> {
    let temp = TempStore::new()?;
    let store = Arc::new(SqliteStore::open(&temp.path)?);
    Ok((temp, store))
}

/// A test schema, dropped (through a sync client) on a thread of its own: a sync
/// PostgreSQL client blocks, which panics on a runtime's thread.
struct Schema(Option<TestSchema>);

impl std::ops::Deref for Schema {
    type Target = TestSchema;

    fn deref(&self) -> &TestSchema {
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Some(schema) = self.0.take() {
            let _ = std::thread::spawn(move || drop(schema)).join();
        }
    }
}

/// A fresh schema and a store in it, both made off the runtime (`run_blocking`).
async fn postgres() -> Result<Option<(Schema, Arc<PostgresStore>)>, Box<dyn std::error::Error>> {
    let Some(url) = pg::url() else {
        return Ok(None);
    };
    let schema = TestSchema::new(&url);
    let (schema, store) =
        run_blocking(move || schema.connect().map(|store| (schema, store))).await??;
    Ok(Some((Schema(Some(schema)), Arc::new(store))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_many_tasks_on_one_stream() -> TestResult {
    let (_temp, store) = sqlite()?;
    many_tasks_on_one_stream(store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_many_tasks_on_one_stream() -> TestResult {
    let Some((_schema, store)) = postgres().await? else {
        return Ok(());
    };
    many_tasks_on_one_stream(store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dropped_futures_leave_whole_commands() -> TestResult {
    let (_temp, store) = sqlite()?;
    dropped_futures_leave_whole_commands(store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dropped_futures_leave_whole_commands() -> TestResult {
    let Some((_schema, store)) = postgres().await? else {
        return Ok(());
    };
    dropped_futures_leave_whole_commands(store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_reads_and_subscriptions() -> TestResult {
    let (temp, store) = sqlite()?;
    store_reads_and_subscriptions(store, &Db::Sqlite(temp.path.clone())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_reads_and_subscriptions() -> TestResult {
    let Some((schema, store)) = postgres().await? else {
        return Ok(());
    };
    let db = Db::Postgres {
        url: schema.url.clone(),
        schema: schema.name.clone(),
    };
    store_reads_and_subscriptions(store, &db).await
}

/// On a current-thread runtime (one thread drives every task) the facade still works on
/// PostgreSQL, whose sync client would panic ("Cannot start a runtime from within a
/// runtime") if it ran on the runtime's thread.
#[tokio::test(flavor = "current_thread")]
async fn postgres_on_a_current_thread_runtime() -> TestResult {
    let Some((_schema, store)) = postgres().await? else {
        return Ok(());
    };
    let accounts = AsyncRepository::new(Repository::<Account, _>::new(store));
    accounts.execute("single", |a| a.open("ann")).await?;
    accounts.execute("single", |a| a.deposit(5)).await?;
    assert_eq!(accounts.load("single").await?.state.balance, 5);
    Ok(())
}
