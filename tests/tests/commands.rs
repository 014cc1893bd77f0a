//! Idempotent commands: a command id runs at most once, its outcome is recorded with its
//! events and returned again on redelivery, across handles and restarts.

use eventsource::{
    AppendError, EventStore, ExecuteError, ExpectedVersion, NewEvent, Repository, SqliteStore,
    StreamId, Version,
};
use eventsource_tests::{Account, AccountEvent, BankError, MoneyDeposited, TempStore, raw_sqlite};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn a_redelivered_command_returns_the_recorded_outcome_without_running() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?);
    accounts.execute("a", |a| a.open("ann"))?;
    let calls = std::cell::Cell::new(0);
    let deposit = |a: &Account| {
        calls.set(calls.get() + 1);
        a.deposit(25)
    };
    let first = accounts.execute_once("a", "msg-1", deposit)?;
    let again = accounts.execute_once("a", "msg-1", deposit)?;
    assert_eq!(calls.get(), 1);
    assert!(!first.already_done && again.already_done);
    assert_eq!(
        (again.version, &again.positions),
        (first.version, &first.positions)
    );
    assert_eq!(
        again.events,
        [AccountEvent::from(MoneyDeposited { amount: 25 })]
    );
    assert_eq!(again.state, first.state);
    // Later commands do not change what a redelivery reports.
    accounts.execute("a", |a| a.deposit(1))?;
    let later = accounts.execute_once("a", "msg-1", deposit)?;
    assert_eq!((later.version, later.state.balance), (Version::new(2), 25));
    assert_eq!(calls.get(), 1);
    assert_eq!(accounts.load("a")?.state.balance, 26);
    Ok(())
}

#[test]
fn the_record_survives_a_restart_and_other_handles() -> TestResult {
    let tmp = TempStore::new()?;
    let first = {
        let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?);
        accounts.execute_once("a", "open-a", |a| a.open("ann"))?
    };
    let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?).with_cache(10);
    let again = accounts.execute_once(
        "a",
        "open-a",
        |_| -> Result<Vec<MoneyDeposited>, BankError> {
            Err(BankError::AlreadyOpen) // must not run
        },
    )?;
    assert!(again.already_done);
    assert_eq!(again.positions, first.positions);
    assert_eq!(accounts.load("a")?.version, Version::new(1));
    let record = accounts.store().command("open-a")?.ok_or("no record")?;
    assert_eq!(record.stream, StreamId::new("account", "a"));
    assert_eq!(record.result.positions, first.positions);
    Ok(())
}

#[test]
fn a_refused_command_is_not_recorded_and_may_run_again() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?);
    let refused = accounts.execute_once("a", "dep-1", |a| a.deposit(5));
    assert!(matches!(
        refused,
        Err(ExecuteError::Domain(BankError::NotOpen))
    ));
    assert!(accounts.store().command("dep-1")?.is_none());
    accounts.execute("a", |a| a.open("ann"))?;
    let done = accounts.execute_once("a", "dep-1", |a| a.deposit(5))?;
    assert!(!done.already_done);
    Ok(())
}

#[test]
fn a_command_that_decides_nothing_is_recorded_too() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?);
    let nothing =
        accounts.execute_once("a", "noop", |_| Ok::<_, BankError>(None::<MoneyDeposited>))?;
    assert_eq!(
        (nothing.version, nothing.positions.len()),
        (Version::NONE, 0)
    );
    let mut ran = false;
    let again = accounts.execute_once("a", "noop", |_| {
        ran = true;
        Ok::<_, BankError>(None::<MoneyDeposited>)
    })?;
    assert!(again.already_done && !ran);
    Ok(())
}

#[test]
fn a_command_id_belongs_to_one_stream() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?);
    accounts.execute_once("a", "cmd-9", |a| a.open("ann"))?;
    match accounts.execute_once("b", "cmd-9", |a| a.open("bob")) {
        Err(ExecuteError::CommandIdReused { command_id, stream }) => {
            assert_eq!(
                (command_id.as_str(), stream),
                ("cmd-9", StreamId::new("account", "a"))
            );
        }
        other => panic!("expected a reused command id, got {other:?}"),
    }
    assert_eq!(accounts.load("b")?.version, Version::NONE);
    Ok(())
}

#[test]
fn the_store_refuses_a_recorded_command_id_and_duplicate_event_ids() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let s = StreamId::new("note", "n");
    let event = NewEvent::new("note.added", 1, "{}");
    store.append_command(
        "c-1",
        &s,
        ExpectedVersion::NoStream,
        std::slice::from_ref(&event),
    )?;
    let again = store.append_command(
        "c-1",
        &s,
        ExpectedVersion::Any,
        &[NewEvent::new("note.added", 1, "{}")],
    );
    assert!(
        matches!(again, Err(AppendError::DuplicateCommand { ref command_id }) if command_id == "c-1")
    );
    let same_event = store.append(&s, ExpectedVersion::Any, std::slice::from_ref(&event));
    assert!(
        matches!(same_event, Err(AppendError::DuplicateEventId { event_id, .. }) if event_id == event.event_id)
    );
    assert_eq!(store.stream_version(&s)?, Version::new(1));
    // The record is history too: the database refuses to change it.
    let err = raw_sqlite(&tmp.path, "DELETE FROM commands")
        .err()
        .ok_or("deleted")?;
    assert!(err.to_string().contains("append-only"), "{err}");
    Ok(())
}

#[test]
fn processes_racing_one_command_id_run_it_once() -> TestResult {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let tmp = TempStore::new()?;
    let accounts = Repository::<Account, _>::new(SqliteStore::open(&tmp.path)?);
    accounts.execute("a", |a| a.open("ann"))?;
    let path = tmp.path.to_str().ok_or("path is not UTF-8")?;
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_es_once"))
            .args([path, "a", "payment-42", "30"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
    };
    let mut children = Vec::new();
    for _ in 0..4 {
        let mut child = spawn()?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        assert_eq!(line.trim(), "ready");
        children.push((child, out));
    }
    for (child, _) in &mut children {
        writeln!(child.stdin.as_mut().ok_or("no stdin")?)?;
    }
    let mut lines = Vec::new();
    for (mut child, mut out) in children {
        let mut line = String::new();
        out.read_line(&mut line)?;
        assert!(child.wait()?.success(), "child failed: {line}");
        lines.push(line.trim().to_owned());
    }
    let ran = lines.iter().filter(|l| l.starts_with("ran ")).count();
    assert_eq!(ran, 1, "{lines:?}");
    // Every process reports the same version and position.
    let tails: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(' ').map(|t| t.1))
        .collect();
    assert!(tails.iter().all(|t| *t == tails[0]), "{lines:?}");
    assert_eq!(tails[0], "2 2");
    let acc = accounts.load("a")?;
    assert_eq!((acc.state.balance, acc.version), (30, Version::new(2)));
    Ok(())
}
