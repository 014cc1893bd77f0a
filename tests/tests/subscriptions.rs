//! Catch-up subscriptions on a SQLite file and on PostgreSQL: a live subscription while
//! 8 writers (threads; and processes, for SQLite) append sees every event exactly once,
//! in position order, and ends caught up with the head.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use eventsource::{
    EventStore, ExpectedVersion, NewEvent, Position, ProjectionStore, Repository, SqliteStore,
    StreamId, Subscription,
};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::{Account, TempStore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const WRITERS: u64 = 8;
const EACH: u64 = 200;

/// Follows the store from the start with a subscription to `note.added` until `wanted`
/// events arrived, checking order and uniqueness; returns the positions seen.
fn follow<S: ProjectionStore>(
    store: S,
    wanted: usize,
    poll: Duration,
) -> Result<Vec<Position>, String> {
    let mut subscription = Subscription::new(store, Position::START)
        .event_types(["note.added"])
        .poll_interval(poll);
    let mut seen = Vec::with_capacity(wanted);
    let mut ids = HashSet::new();
    let deadline = Instant::now() + Duration::from_mins(1);
    while seen.len() < wanted {
        if Instant::now() > deadline {
            return Err(format!("only {} of {wanted} events arrived", seen.len()));
        }
        let Some(event) = subscription
            .next_timeout(Duration::from_millis(200))
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        if event.event_type != "note.added" {
            return Err(format!("a filtered-out event arrived: {event:?}"));
        }
        if seen.last().is_some_and(|last| *last >= event.position) {
            return Err(format!(
                "position {} after {:?}",
                event.position,
                seen.last()
            ));
        }
        if !ids.insert(event.event_id) {
            return Err(format!("event {} delivered twice", event.event_id));
        }
        seen.push(event.position);
    }
    // Nothing more: caught up.
    match subscription.next_timeout(Duration::from_millis(50)) {
        Ok(None) => Ok(seen),
        other => Err(format!("an event beyond the expected ones: {other:?}")),
    }
}

/// 8 writer threads append `note.added` (and unrelated events) while a subscription
/// follows; every note arrives once, in order.
fn threads_and_a_live_subscription<S: ProjectionStore + Send + Sync + 'static>(
    store: &Arc<S>,
    poll: Duration,
) -> TestResult {
    let wanted = usize::try_from(WRITERS * EACH)?;
    let follower = {
        let store = Arc::clone(store);
        thread::spawn(move || follow(store, wanted, poll))
    };
    thread::scope(|scope| -> TestResult {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                scope.spawn(move || -> Result<(), String> {
                    let stream = StreamId::new("note", format!("w{w}"));
                    for i in 0..EACH {
                        let mut batch =
                            vec![NewEvent::new("note.added", 1, format!("{{\"i\":{i}}}"))];
                        if i % 10 == 0 {
                            batch.push(NewEvent::new("note.audited", 1, "{}"));
                        }
                        store
                            .append(&stream, ExpectedVersion::Any, &batch)
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for result in pg::join_all(writers) {
            result?;
        }
        Ok(())
    })?;
    let seen = follower.join().map_err(|_| "the follower panicked")??;
    assert_eq!(seen.len(), wanted);
    // Every note of the store, none missing.
    let stored: Vec<Position> = store
        .read_all(Position::START)
        .filter(|e| e.as_ref().map_or(true, |e| e.event_type == "note.added"))
        .map(|e| e.map(|e| e.position))
        .collect::<Result<_, _>>()?;
    assert_eq!(seen, stored);
    Ok(())
}

#[test]
fn sqlite_threads_and_a_live_subscription() -> TestResult {
    let temp = TempStore::new()?;
    let store = Arc::new(SqliteStore::open(&temp.path)?);
    // Woken by the store's own appends: a long poll interval is never waited out.
    threads_and_a_live_subscription(&store, Duration::from_secs(30))
}

#[test]
fn postgres_threads_and_a_live_subscription() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = Arc::new(schema.connect()?);
    // Woken by LISTEN/NOTIFY: a long poll interval is never waited out.
    threads_and_a_live_subscription(&store, Duration::from_secs(30))
}

/// Kills the helpers still running when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// 8 writer processes (`es_deposit`) append deposits to a SQLite file while a
/// subscription in this process follows it, woken by polling: every deposit arrives
/// once, in order.
#[test]
fn sqlite_processes_and_a_live_subscription() -> TestResult {
    const COMMANDS: u64 = 60;
    let temp = TempStore::new()?;
    let store = Arc::new(SqliteStore::open(&temp.path)?);
    let accounts = Repository::<Account, _>::new(Arc::clone(&store));
    for worker in 1..=WRITERS {
        accounts.execute(&format!("acc-{worker}"), |a| a.open("ann"))?;
    }
    let path = temp.path.to_str().ok_or("path is not UTF-8")?.to_owned();
    let mut children = Children(Vec::new());
    for worker in 1..=WRITERS {
        children.0.push(
            Command::new(env!("CARGO_BIN_EXE_es_deposit"))
                .args(["sqlite", &path, &format!("acc-{worker}")])
                .args([worker.to_string(), COMMANDS.to_string(), "10".into()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?,
        );
    }
    let mut readers = Vec::new();
    for child in &mut children.0 {
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        assert_eq!(lines.next().transpose()?.as_deref(), Some("ready"));
        readers.push(lines);
    }
    let wanted = usize::try_from(WRITERS * COMMANDS)?;
    let follower = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            let mut subscription = Subscription::new(store, Position::START)
                .event_types(["money.deposited"])
                .poll_interval(Duration::from_millis(5));
            let mut seen: Vec<Position> = Vec::new();
            let deadline = Instant::now() + Duration::from_mins(1);
            while seen.len() < wanted && Instant::now() < deadline {
                match subscription.next_timeout(Duration::from_millis(100)) {
                    Ok(Some(event)) => seen.push(event.position),
                    Ok(None) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok::<_, String>(seen)
        })
    };
    for child in &mut children.0 {
        writeln!(child.stdin.as_mut().ok_or("no stdin")?, "go")?;
    }
    for lines in readers {
        let mut done = false;
        for line in lines {
            let line = line?;
            assert!(!line.starts_with("error"), "{line}");
            done |= line == "done";
        }
        assert!(done, "a writer process did not finish");
    }
    let seen = follower.join().map_err(|_| "the follower panicked")??;
    let stored: Vec<Position> = store
        .read_all(Position::START)
        .filter(|e| {
            e.as_ref()
                .map_or(true, |e| e.event_type == "money.deposited")
        })
        .map(|e| e.map(|e| e.position))
        .collect::<Result<_, _>>()?;
    assert_eq!(stored.len(), wanted);
    assert_eq!(seen, stored, "events missing, repeated or out of order");
    Ok(())
}
