//! Appends work whatever the session's default isolation level: a user's
//! `default_transaction_isolation` of `repeatable read` or `serializable` must not turn
//! concurrent appends into duplicate-key or serialization failures (their snapshot would
//! be taken before the append lock is granted). Each level: 6 threads, each on its own
//! connection, append to one shared stream with `ExpectedVersion::Any` and run commands
//! through a repository on one hot account; every append succeeds, nothing is lost.

use std::error::Error;
use std::sync::Barrier;
use std::thread;

use eventsource::{
    EventStore, ExpectedVersion, NewEvent, Position, PostgresStore, Repository, StreamId,
};
use eventsource_tests::Account;
use eventsource_tests::pg::{self, TestSchema, join_all};

type TestResult = Result<(), Box<dyn Error>>;
type ThreadResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const THREADS: usize = 6;
const APPENDS: usize = 30;
const DEPOSITS: u64 = 10;

fn appends_and_commands_work_under(level: &str) -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    // A space in `options` is escaped for the server, the backslash for the string.
    let escaped = level.replace(' ', "\\\\ ");
    let session = format!("{url} options='-c default_transaction_isolation={escaped}'");
    let connect = || PostgresStore::connect_with_schema(&session, &schema.name);
    let stores = (0..THREADS)
        .map(|_| connect())
        .collect::<Result<Vec<_>, _>>()?;
    // The option took: the store's sessions run at `level`.
    let shown = pg::sql(&session, &["SHOW transaction_isolation"])?;
    assert_eq!(shown.trim(), level);

    Repository::<Account, _>::new(&stores[0]).execute("hot", |a| a.open("ann"))?;
    let shared = StreamId::new("note", "shared");
    let barrier = Barrier::new(THREADS);
    let results: Vec<ThreadResult<usize>> = thread::scope(|s| {
        let handles = stores
            .iter()
            .enumerate()
            .map(|(t, store)| {
                let (barrier, shared) = (&barrier, &shared);
                s.spawn(move || -> ThreadResult<usize> {
                    let accounts = Repository::<Account, _>::new(store).with_retries(1_000);
                    barrier.wait();
                    let mut appended = 0;
                    for i in 0..APPENDS {
                        let payload = format!(r#"{{"t":{t},"i":{i}}}"#);
                        store.append(
                            shared,
                            ExpectedVersion::Any,
                            &[NewEvent::new("note.added", 1, payload)],
                        )?;
                        appended += 1;
                        if (i as u64) < DEPOSITS {
                            accounts.execute("hot", |a| a.deposit(1))?;
                        }
                    }
                    Ok(appended)
                })
            })
            .collect();
        join_all(handles)
    });
    for result in results {
        assert_eq!(result.map_err(|e| e.to_string())?, APPENDS, "{level}");
    }
    let store = &stores[0];
    let events: Vec<_> = store
        .read_stream(&shared, eventsource::Version::new(1))
        .collect::<Result<_, _>>()?;
    assert_eq!(events.len(), THREADS * APPENDS, "{level}");
    let account = Repository::<Account, _>::new(store).load("hot")?;
    assert_eq!(account.state.balance, THREADS as u64 * DEPOSITS, "{level}");
    // Positions are still gap-free.
    let positions: Vec<Position> = store
        .read_all(Position::START)
        .map(|e| e.map(|e| e.position))
        .collect::<Result<_, _>>()?;
    let expected: Vec<Position> = (1..=positions.len() as u64).map(Position::new).collect();
    assert_eq!(positions, expected, "{level}");
    drop(stores);
    Ok(())
}

#[test]
fn appends_work_under_read_committed_sessions() -> TestResult {
    appends_and_commands_work_under("read committed")
}

#[test]
fn appends_work_under_repeatable_read_sessions() -> TestResult {
    appends_and_commands_work_under("repeatable read")
}

#[test]
fn appends_work_under_serializable_sessions() -> TestResult {
    appends_and_commands_work_under("serializable")
}
