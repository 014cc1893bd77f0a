//! Commit outcome unknown: when the connection to PostgreSQL breaks after COMMIT was
//! sent, the append is stored or not whatever the client heard. The store finds out on a
//! new connection and reports the truth: `Ok` with the stored versions and positions when
//! it is stored, a definite error when it is not, and `AppendError::Unknown` only when it
//! cannot find out. `Repository::execute` never reruns a handler after `Unknown`.
//!
//! The faults come from a proxy between the store and the server
//! (`eventsource_tests::proxy`) that loses a COMMIT or its answer, and from
//! `pg_terminate_backend` on the store's sessions. Every outcome is checked against the
//! events read back through a store that does not go through the proxy. The PostgreSQL
//! tests pass with a note when `EVENTSOURCE_POSTGRES_URL` is not set.

use std::collections::HashMap;
use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use eventsource::{
    AppendError, AppendResult, CommandRecord, EventData, EventId, EventStore, ExecuteError,
    ExpectedVersion, NewEvent, Position, PostgresStore, ReadError, RecordedEventRef, Repository,
    SqliteStore, StoreError, StreamId, Version,
};
use eventsource_tests::pg::{self, TestSchema, join_all};
use eventsource_tests::proxy::{self, Fault, Proxy};
use eventsource_tests::{Account, AccountOpened};

type TestResult = Result<(), Box<dyn Error>>;
type ThreadResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// `n` events with fresh ids.
fn notes(tag: &str, n: u64) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent::new("note.added", 1, format!(r#"{{"tag":"{tag}","n":{i}}}"#)))
        .collect()
}

/// Where each stored event is: its stream, version and position, once per copy.
type Stored = HashMap<EventId, Vec<(StreamId, Version, Position)>>;

/// Every event of `store`, by id.
fn stored(store: &impl EventStore) -> Result<Stored, Box<dyn Error>> {
    let mut stored = Stored::new();
    for event in store.read_all(Position::START) {
        let event = event?;
        stored.entry(event.event_id).or_default().push((
            event.stream,
            event.version,
            event.position,
        ));
    }
    Ok(stored)
}

/// Asserts that `events` are stored exactly once each, as `appended` says, in `stream`.
fn assert_stored_once(
    stored: &Stored,
    stream: &StreamId,
    events: &[NewEvent],
    appended: &AppendResult,
) {
    let count = events.len() as u64;
    assert_eq!(appended.positions.len(), events.len(), "{appended:?}");
    for ((event, position), n) in events.iter().zip(&appended.positions).zip(1..) {
        let version = Version::new(appended.stream_version.get() - count + n);
        assert_eq!(
            stored.get(&event.event_id).map(Vec::as_slice),
            Some(&[(stream.clone(), version, *position)][..]),
            "event {n} of {count} is not stored once where the append said"
        );
    }
}

/// How many of `events` are stored (each at most once, or the test fails).
fn stored_count(stored: &Stored, events: &[NewEvent]) -> usize {
    events
        .iter()
        .filter(|e| match stored.get(&e.event_id).map(Vec::len) {
            None => false,
            Some(1) => true,
            Some(n) => panic!("event {} is stored {n} times", e.event_id),
        })
        .count()
}

/// A store in `schema` whose connections go through `proxy`.
fn through(proxy: &Proxy, schema: &TestSchema) -> Result<PostgresStore, StoreError> {
    PostgresStore::connect_with_schema(proxy.url(), &schema.name)
}

#[test]
fn an_append_whose_commit_answer_is_lost_is_found_stored() -> TestResult {
    pg::with_schema(|schema| {
        let direct = schema.connect()?;
        let proxy = Proxy::start(&schema.url)?;
        let store = through(&proxy, schema)?;
        let stream = StreamId::new("note", "n-1");
        direct.append(&stream, ExpectedVersion::NoStream, &notes("before", 2))?;

        proxy.arm(Fault::LoseAnswer);
        let batch = notes("answer lost", 3);
        let appended = store.append(&stream, ExpectedVersion::Exact(Version::new(2)), &batch)?;
        assert_eq!(proxy.fired(), 1, "the proxy did not lose the answer");
        assert_eq!(appended.stream_version, Version::new(5));
        assert_stored_once(&stored(&direct)?, &stream, &batch, &appended);

        // The store goes on, on a new connection.
        let next = store.append(
            &stream,
            ExpectedVersion::Exact(Version::new(5)),
            &notes("after", 1),
        )?;
        assert_eq!(next.stream_version, Version::new(6));
        Ok(())
    })
}

/// The lookup must wait for the broken session's transaction to end: here its COMMIT
/// reaches the server a second after the client gave up on it.
#[test]
fn a_commit_that_arrives_after_the_client_gave_up_is_found_stored() -> TestResult {
    pg::with_schema(|schema| {
        let direct = schema.connect()?;
        let proxy = Proxy::start(&schema.url)?;
        let store = through(&proxy, schema)?;
        let stream = StreamId::new("note", "n-1");

        proxy.arm(Fault::LateCommit);
        let batch = notes("late commit", 2);
        let appended = store.append(&stream, ExpectedVersion::NoStream, &batch)?;
        assert_eq!(proxy.fired(), 1);
        assert_stored_once(&stored(&direct)?, &stream, &batch, &appended);
        Ok(())
    })
}

#[test]
fn an_append_whose_commit_is_lost_is_a_definite_error() -> TestResult {
    pg::with_schema(|schema| {
        let direct = schema.connect()?;
        let proxy = Proxy::start(&schema.url)?;
        let store = through(&proxy, schema)?;
        let stream = StreamId::new("note", "n-1");

        proxy.arm(Fault::LoseCommit);
        let batch = notes("commit lost", 3);
        let refused = store.append(&stream, ExpectedVersion::NoStream, &batch);
        assert_eq!(proxy.fired(), 1, "the proxy did not lose the commit");
        assert!(
            matches!(refused, Err(AppendError::Store(StoreError::Postgres(_)))),
            "{refused:?}"
        );
        assert_eq!(stored_count(&stored(&direct)?, &batch), 0);

        // Definite: the same append may simply be retried.
        let appended = store.append(&stream, ExpectedVersion::NoStream, &batch)?;
        assert_stored_once(&stored(&direct)?, &stream, &batch, &appended);
        Ok(())
    })
}

#[test]
fn an_outcome_the_store_cannot_look_up_is_unknown() -> TestResult {
    pg::with_schema(|schema| {
        let direct = schema.connect()?;
        let proxy = Proxy::start(&schema.url)?;
        let store = through(&proxy, schema)?;
        let stream = StreamId::new("note", "n-1");

        // Stored, but the lookup cannot connect.
        proxy.arm(Fault::LoseAnswer);
        proxy.refuse_new_connections(true);
        let batch = notes("answer lost, no lookup", 2);
        let result = store.append(&stream, ExpectedVersion::NoStream, &batch);
        assert_eq!(proxy.fired(), 1);
        match &result {
            Err(e @ AppendError::Unknown { stream: s, source }) => {
                assert_eq!(s, &stream);
                // Check before retrying, although what broke it is a lost connection.
                assert!(!e.is_transient() && e.is_outcome_unknown(), "{e:?}");
                assert!(source.is_transient(), "{source:?}");
            }
            other => panic!("expected AppendError::Unknown, got {other:?}"),
        }
        assert_eq!(stored_count(&stored(&direct)?, &batch), 2, "it was stored");

        // Not stored, and the lookup cannot connect: unknown too.
        proxy.refuse_new_connections(false);
        let _warm = store.stream_version(&stream)?;
        proxy.arm(Fault::LoseCommit);
        proxy.refuse_new_connections(true);
        let batch = notes("commit lost, no lookup", 2);
        let result = store.append(&stream, ExpectedVersion::Exact(Version::new(2)), &batch);
        assert_eq!(proxy.fired(), 2);
        assert!(
            matches!(result, Err(AppendError::Unknown { .. })),
            "{result:?}"
        );
        assert_eq!(
            stored_count(&stored(&direct)?, &batch),
            0,
            "it was not stored"
        );

        proxy.refuse_new_connections(false);
        let appended = store.append(&stream, ExpectedVersion::Exact(Version::new(2)), &batch)?;
        assert_stored_once(&stored(&direct)?, &stream, &batch, &appended);
        Ok(())
    })
}

#[test]
fn a_command_whose_commit_answer_is_lost_is_found_recorded() -> TestResult {
    pg::with_schema(|schema| {
        let direct = schema.connect()?;
        let proxy = Proxy::start(&schema.url)?;
        let store = through(&proxy, schema)?;
        let stream = StreamId::new("note", "n-1");
        direct.append(&stream, ExpectedVersion::NoStream, &notes("before", 1))?;

        proxy.arm(Fault::LoseAnswer);
        let batch = notes("command, answer lost", 2);
        let appended = store.append_command(
            "cmd-1",
            &stream,
            ExpectedVersion::Exact(Version::new(1)),
            &batch,
        )?;
        assert_eq!(proxy.fired(), 1);
        assert_stored_once(&stored(&direct)?, &stream, &batch, &appended);
        let record = direct
            .command("cmd-1")?
            .ok_or("the command is not recorded")?;
        assert_eq!((&record.stream, &record.result), (&stream, &appended));

        // A command that decides nothing is recorded all the same.
        proxy.arm(Fault::LoseAnswer);
        let empty = store.append_command("cmd-2", &stream, ExpectedVersion::Any, &[])?;
        assert_eq!(proxy.fired(), 2);
        assert_eq!(empty.stream_version, Version::new(3));
        let record = direct
            .command("cmd-2")?
            .ok_or("the command is not recorded")?;
        assert_eq!(record.result, empty);

        proxy.arm(Fault::LoseCommit);
        let batch = notes("command, commit lost", 1);
        let refused = store.append_command("cmd-3", &stream, ExpectedVersion::Any, &batch);
        assert_eq!(proxy.fired(), 3);
        assert!(matches!(refused, Err(AppendError::Store(_))), "{refused:?}");
        assert!(direct.command("cmd-3")?.is_none());
        assert_eq!(stored_count(&stored(&direct)?, &batch), 0);

        proxy.arm(Fault::LoseCommit);
        let refused = store.append_command("cmd-4", &stream, ExpectedVersion::Any, &[]);
        assert_eq!(proxy.fired(), 4);
        assert!(matches!(refused, Err(AppendError::Store(_))), "{refused:?}");
        assert!(direct.command("cmd-4")?.is_none());
        Ok(())
    })
}

#[test]
fn execute_deposits_once_when_the_commit_answer_is_lost() -> TestResult {
    pg::with_schema(|schema| {
        let direct = Repository::<Account, _>::new(schema.connect()?);
        let proxy = Proxy::start(&schema.url)?;
        let accounts = Repository::<Account, _>::new(through(&proxy, schema)?);
        direct.execute("acc-1", |a| a.open("ann"))?;

        accounts.load("acc-1")?; // one connection in the pool
        proxy.arm(Fault::LoseAnswer);
        let mut calls = 0;
        let committed = accounts.execute("acc-1", |a| {
            calls += 1;
            a.deposit(100)
        })?;
        assert_eq!(proxy.fired(), 1);
        assert_eq!(
            (calls, committed.version, committed.state.balance),
            (1, Version::new(2), 100)
        );
        assert_eq!(direct.load("acc-1")?.state.balance, 100);

        // Unresolved: reported, and the handler is not run again.
        accounts.load("acc-1")?;
        proxy.arm(Fault::LoseAnswer);
        proxy.refuse_new_connections(true);
        let mut calls = 0;
        let result = accounts.execute("acc-1", |a| {
            calls += 1;
            a.deposit(50)
        });
        assert_eq!(proxy.fired(), 2);
        assert!(
            matches!(
                result,
                Err(ExecuteError::Append(AppendError::Unknown { .. }))
            ),
            "{result:?}"
        );
        assert_eq!(calls, 1);
        let loaded = direct.load("acc-1")?;
        assert_eq!(
            (loaded.version, loaded.state.balance),
            (Version::new(3), 150)
        );
        Ok(())
    })
}

/// Appends through the store it wraps; while armed, then reports
/// [`AppendError::Unknown`] as if the answer to the commit had been lost, and disarms.
struct AnswerLost<S>(S, AtomicBool);

impl<S> AnswerLost<S> {
    fn arm(&self) {
        self.1.store(true, Ordering::SeqCst);
    }

    fn outcome(
        &self,
        stream: &StreamId,
        appended: AppendResult,
    ) -> Result<AppendResult, AppendError> {
        if self.1.swap(false, Ordering::SeqCst) {
            Err(unknown(stream))
        } else {
            Ok(appended)
        }
    }
}

fn unknown(stream: &StreamId) -> AppendError {
    AppendError::Unknown {
        stream: stream.clone(),
        source: StoreError::Interrupted,
    }
}

impl<S: EventStore> EventStore for AnswerLost<S> {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        let appended = self.0.append(stream, expected, events)?;
        self.outcome(stream, appended)
    }

    fn append_command(
        &self,
        command_id: &str,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        let appended = self
            .0
            .append_command(command_id, stream, expected, events)?;
        self.outcome(stream, appended)
    }

    fn command(&self, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.0.command(command_id)
    }

    fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.0.stream_version(stream)
    }

    fn read_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut (dyn FnMut(RecordedEventRef<'_>) -> Result<(), ReadError> + '_),
    ) -> Result<(), ReadError> {
        self.0.read_stream_with(stream, from, max_count, visit)
    }

    fn read_all_with(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut (dyn FnMut(RecordedEventRef<'_>) -> Result<(), ReadError> + '_),
    ) -> Result<(), ReadError> {
        self.0.read_all_with(after, max_count, visit)
    }

    fn replay_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut (dyn FnMut(EventData<'_>) -> Result<(), ReadError> + '_),
    ) -> Result<(), ReadError> {
        self.0.replay_stream_with(stream, from, max_count, visit)
    }
}

/// Runs on any machine: the repository's side of the promise, with a store that stores
/// and then says it does not know.
#[test]
fn execute_never_reruns_a_handler_after_an_unknown_outcome() -> TestResult {
    let accounts = Repository::<Account, _>::new(AnswerLost(
        SqliteStore::in_memory()?,
        AtomicBool::new(false),
    ));
    accounts.store().0.append(
        &accounts.stream_id("acc-1"),
        ExpectedVersion::NoStream,
        &[NewEvent::from_event(&AccountOpened {
            owner: "ann".into(),
            currency: "EUR".into(),
        })?],
    )?;
    accounts.store().arm();
    let mut calls = 0;
    let result = accounts.execute("acc-1", |a| {
        calls += 1;
        a.deposit(100)
    });
    assert!(
        matches!(
            result,
            Err(ExecuteError::Append(AppendError::Unknown { .. }))
        ),
        "{result:?}"
    );
    assert_eq!(calls, 1, "the handler ran again");
    assert_eq!(accounts.load("acc-1")?.state.balance, 100, "deposited once");

    // With a command id, running the command again is safe: it finds the record.
    accounts.store().arm();
    let mut calls = 0;
    let result = accounts.execute_once("acc-1", "deposit-7", |a| {
        calls += 1;
        a.deposit(7)
    });
    assert!(matches!(
        result,
        Err(ExecuteError::Append(AppendError::Unknown { .. }))
    ));
    let again = accounts.execute_once("acc-1", "deposit-7", |a| {
        calls += 1;
        a.deposit(7)
    })?;
    assert!(again.already_done);
    assert_eq!(calls, 1);
    assert_eq!(accounts.load("acc-1")?.state.balance, 107);
    Ok(())
}

/// What one append of the terminating test reported.
#[derive(Debug)]
struct Attempt {
    stream: StreamId,
    events: Vec<NewEvent>,
    outcome: Result<AppendResult, AppendError>,
}

const WRITERS: u64 = 4;
const APPENDS: u64 = 150;

#[test]
fn terminated_backends_never_double_or_lose_an_append() -> TestResult {
    pg::with_schema(|schema| {
        // The store's sessions carry the schema's name, so the killer finds them.
        let url = proxy::with_application_name(&schema.url, &schema.name)?;
        let store = PostgresStore::connect_with_schema(&url, &schema.name)?;
        let done = AtomicBool::new(false);
        let (attempts, kills) = thread::scope(|s| -> ThreadResult<_> {
            let killer = s.spawn(|| -> ThreadResult<u64> {
                let mut client = postgres::Client::connect(&schema.url, postgres::NoTls)?;
                let mut kills = 0;
                let mut pause = 1;
                while !done.load(Ordering::SeqCst) {
                    let row = client.query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        &[&schema.name],
                    )?;
                    kills += u64::try_from(row.try_get::<_, i64>(0)?)?;
                    pause = pause % 13 + 2;
                    thread::sleep(Duration::from_millis(pause));
                }
                Ok(kills)
            });
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let store = &store;
                    s.spawn(move || {
                        (0..APPENDS)
                            .map(|i| {
                                let stream = StreamId::new("note", format!("s-{}", (w + i) % 3));
                                let events = notes(&format!("w{w}-{i}"), i % 3 + 1);
                                let outcome = store.append(&stream, ExpectedVersion::Any, &events);
                                Attempt {
                                    stream,
                                    events,
                                    outcome,
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let attempts: Vec<Attempt> = join_all(writers).into_iter().flatten().collect();
            done.store(true, Ordering::SeqCst);
            let kills = killer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            Ok((attempts, kills))
        })
        .map_err(|e| e.to_string())?;

        let stored = stored(&schema.connect()?)?;
        let (mut ok, mut failed, mut unknown_stored, mut unknown_absent) = (0, 0, 0, 0);
        for attempt in &attempts {
            match &attempt.outcome {
                Ok(appended) => {
                    assert_stored_once(&stored, &attempt.stream, &attempt.events, appended);
                    ok += 1;
                }
                Err(AppendError::Unknown { .. }) => match stored_count(&stored, &attempt.events) {
                    0 => unknown_absent += 1,
                    n if n == attempt.events.len() => unknown_stored += 1,
                    n => panic!("{n} of {} events stored", attempt.events.len()),
                },
                Err(e) => {
                    assert_eq!(
                        stored_count(&stored, &attempt.events),
                        0,
                        "a definite error stored its events: {e:?}"
                    );
                    failed += 1;
                }
            }
        }
        let all = attempts.len();
        let events: usize = stored.values().map(Vec::len).sum();
        let expected: usize = attempts
            .iter()
            .filter(|a| a.outcome.is_ok())
            .map(|a| a.events.len())
            .sum();
        eprintln!(
            "{all} appends, {kills} backends terminated: {ok} ok, {failed} definite errors, \
             {} unknown ({unknown_stored} stored, {unknown_absent} not); {events} events stored",
            unknown_stored + unknown_absent
        );
        assert_eq!(ok + failed + unknown_stored + unknown_absent, all);
        assert!(events >= expected);
        assert!(
            kills > 0 && failed > 0,
            "no append was disturbed: the test proved nothing"
        );
        Ok(())
    })
}
