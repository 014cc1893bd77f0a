//! The optional features of `PostgresStore`, through the public API: snapshots taken by
//! a repository's policy and used by its loads, idempotent commands (redelivered, across
//! handles and reconnects, raced, refused behind the append lock's back) and their
//! append-only table, the narrow replay read, and decode errors that name the event.
//!
//! Each test runs in a fresh schema of the server named by `EVENTSOURCE_POSTGRES_URL`,
//! dropped afterwards, and passes with a note on stderr when the variable is not set.
//! No test asserts anything about timing.

use std::cell::Cell;
use std::error::Error;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use eventsource::{
    AppendError, DecodeFailure, EventStore, ExecuteError, ExpectedVersion, NewEvent, Position,
    PostgresStore, ReadError, Repository, Snapshot, SnapshotPolicy, StreamId, Timestamp, Verify,
    Version,
};
use eventsource_tests::pg::{join_all, with_schema};
use eventsource_tests::{Account, AccountEvent, MoneyDeposited};

type TestResult = Result<(), Box<dyn Error>>;

fn accounts(store: PostgresStore) -> Repository<Account, PostgresStore> {
    Repository::new(store)
}

/// Deposits 1, 2, ..., `n` cents into the open account `id`.
fn deposits(accounts: &Repository<Account, PostgresStore>, id: &str, n: u64) -> TestResult {
    for i in 1..=n {
        accounts.execute(id, |a| a.deposit(i))?;
    }
    Ok(())
}

fn sum_to(n: u64) -> u64 {
    n * (n + 1) / 2
}

// --- snapshots ---

/// A policy of every 10 events snapshots versions 10 and 20 of a 25-event stream; loads
/// start from the newest usable one, `load_at` from the newest at or before its version.
#[test]
fn snapshots_are_taken_by_policy_and_used_by_load_and_load_at() -> TestResult {
    with_schema(|schema| {
        let accounts = accounts(schema.connect()?).with_snapshots(SnapshotPolicy::every(10));
        accounts.execute("a", |a| a.open("ann"))?;
        deposits(&accounts, "a", 24)?; // versions 2..=25
        let stream = accounts.stream_id("a");
        let store = accounts.store();
        let newest = store
            .load_snapshot(&stream, Version::MAX, 1)?
            .ok_or("none")?;
        assert_eq!(newest.version, Version::new(20));
        let state: Account = serde_json::from_str(&newest.state)?;
        assert_eq!((state.balance, state.owner.as_str()), (sum_to(19), "ann"));
        let at_15 = store.load_snapshot(&stream, Version::new(15), 1)?;
        assert_eq!(at_15.map(|s| s.version), Some(Version::new(10)));
        assert!(store.load_snapshot(&stream, Version::new(9), 1)?.is_none());
        assert!(store.load_snapshot(&stream, Version::MAX, 2)?.is_none());

        let now = accounts.load("a")?;
        assert_eq!(
            (now.state.balance, now.version),
            (sum_to(24), Version::new(25))
        );
        let then = accounts.load_at("a", 15)?;
        assert_eq!(
            (then.state.balance, then.version),
            (sum_to(14), Version::new(15))
        );
        let before_any = accounts.load_at("a", 5)?;
        assert_eq!(before_any.state.balance, sum_to(4));

        // Proof that loads start from the snapshot rather than replaying from version 1:
        // plant snapshots whose states disagree with the events.
        for (version, balance) in [(10, 1_000), (20, 2_000)] {
            store.save_snapshot(
                &stream,
                &Snapshot {
                    version: Version::new(version),
                    state_version: 1,
                    state: format!(
                        r#"{{"owner":"planted","currency":"EUR","balance":{balance},"open":true}}"#
                    ),
                    taken_at: Timestamp::now(),
                },
            )?;
        }
        let planted_20 = accounts.load("a")?;
        assert_eq!(
            (planted_20.state.owner.as_str(), planted_20.state.balance),
            ("planted", 2_000 + (20..=24).sum::<u64>())
        );
        let planted_10 = accounts.load_at("a", 15)?;
        assert_eq!(planted_10.state.balance, 1_000 + (10..=14).sum::<u64>());
        Ok(())
    })
}

/// Saving a snapshot keeps the three newest of the stream, replaces one of the same
/// version and state version, and reads back exactly what was saved.
#[test]
fn saved_snapshots_round_trip_and_only_the_newest_three_are_kept() -> TestResult {
    with_schema(|schema| {
        let store = schema.connect()?;
        let stream = StreamId::new("account", "kept");
        let snapshot = |version: u64, state: &str| Snapshot {
            version: Version::new(version),
            state_version: 1,
            state: state.to_owned(),
            taken_at: Timestamp::from_micros(1_700_000_000_123_457 + version.cast_signed()),
        };
        for version in [5, 10, 15, 20] {
            store.save_snapshot(
                &stream,
                &snapshot(version, &format!(r#"{{"v":{version}}}"#)),
            )?;
        }
        let kept =
            schema.sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM snapshots")?;
        assert_eq!(kept.trim(), "10,15,20");
        // Replacing the newest keeps three, not two.
        store.save_snapshot(&stream, &snapshot(20, r#"{"v":"twenty"}"#))?;
        let kept =
            schema.sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM snapshots")?;
        assert_eq!(kept.trim(), "10,15,20");
        let back = store.load_snapshot(&stream, Version::MAX, 1)?;
        assert_eq!(back, Some(snapshot(20, r#"{"v": "twenty"}"#)));
        let other = StreamId::new("account", "other");
        assert!(store.load_snapshot(&other, Version::MAX, 1)?.is_none());
        Ok(())
    })
}

/// A snapshot of another state version is never read, nor one that does not
/// deserialize: the events decide.
#[test]
fn a_snapshot_of_another_state_version_is_ignored() -> TestResult {
    with_schema(|schema| {
        let v1 = accounts(schema.connect()?).with_snapshots(SnapshotPolicy::every(2));
        v1.execute("a", |a| a.open("ann"))?;
        deposits(&v1, "a", 3)?; // snapshots of state version 1 at 2 and 4
        let stream = v1.stream_id("a");
        v1.store().save_snapshot(
            &stream,
            &Snapshot {
                version: Version::new(4),
                state_version: 1,
                state: r#"{"owner":"v1","currency":"EUR","balance":999,"open":true}"#.into(),
                taken_at: Timestamp::now(),
            },
        )?;
        assert_eq!(v1.load("a")?.state.balance, 999);

        // The struct changed: the new code reads snapshots of state version 2 only.
        let v2 =
            accounts(schema.connect()?).with_snapshots(SnapshotPolicy::every(2).state_version(2));
        let loaded = v2.load("a")?;
        assert_eq!(
            (loaded.state.owner.as_str(), loaded.state.balance),
            ("ann", 6)
        );
        v2.store().save_snapshot(
            &stream,
            &Snapshot {
                version: Version::new(4),
                state_version: 2,
                state: r#"{"not":"an account"}"#.into(),
                taken_at: Timestamp::now(),
            },
        )?;
        assert_eq!(v2.load("a")?.state.balance, 6);
        // New snapshots are taken in the new state version, beside the old ones.
        v2.execute("a", |a| a.deposit(4))?; // version 5
        v2.execute("a", |a| a.deposit(5))?; // version 6: due
        let taken = v2.store().load_snapshot(&stream, Version::MAX, 2)?;
        assert_eq!(taken.map(|s| s.version), Some(Version::new(6)));
        assert_eq!(v2.load("a")?.state.balance, sum_to(5));
        Ok(())
    })
}

// --- idempotent commands ---

/// A redelivered command returns the recorded outcome without running its handler, and
/// later commands do not change what a redelivery reports.
#[test]
fn a_redelivered_command_returns_the_recorded_outcome_without_running() -> TestResult {
    with_schema(|schema| {
        let accounts = accounts(schema.connect()?);
        accounts.execute("a", |a| a.open("ann"))?;
        let calls = Cell::new(0);
        let deposit = |a: &Account| {
            calls.set(calls.get() + 1);
            a.deposit(25)
        };
        let first = accounts.execute_once("a", "msg-1", deposit)?;
        let again = accounts.execute_once("a", "msg-1", deposit)?;
        assert_eq!(calls.get(), 1);
        assert!(!first.already_done && again.already_done);
        assert_eq!(
            (first.version, &first.positions),
            (Version::new(2), &vec![Position::new(2)])
        );
        assert_eq!(
            (again.version, &again.positions),
            (first.version, &first.positions)
        );
        assert_eq!(
            again.events,
            [AccountEvent::from(MoneyDeposited { amount: 25 })]
        );
        assert_eq!(again.state, first.state);

        accounts.execute("a", |a| a.deposit(1))?;
        let later = accounts.execute_once("a", "msg-1", deposit)?;
        assert_eq!((later.version, later.state.balance), (Version::new(2), 25));
        assert_eq!(calls.get(), 1);
        assert_eq!(accounts.load("a")?.state.balance, 26);

        let record = accounts.store().command("msg-1")?.ok_or("no record")?;
        assert_eq!(record.command_id, "msg-1");
        assert_eq!(record.stream, StreamId::new("account", "a"));
        assert_eq!(record.result.stream_version, Version::new(2));
        assert_eq!(record.result.positions, first.positions);
        // The record's time is its events' time.
        let event = accounts
            .store()
            .read_stream(&record.stream, Version::new(2))
            .next()
            .ok_or("no event")??;
        assert_eq!(record.recorded_at, event.recorded_at);
        assert!(accounts.store().command("msg-2")?.is_none());
        Ok(())
    })
}

/// The record is shared by handles with separate pools (as two processes would have)
/// and survives dropping every handle; a cached repository does not run it again either.
#[test]
fn a_command_is_recorded_across_handles_and_reconnects() -> TestResult {
    with_schema(|schema| {
        let calls = AtomicUsize::new(0);
        let deposit = |a: &Account| {
            calls.fetch_add(1, Ordering::SeqCst);
            a.deposit(40)
        };
        let (first, again) = {
            let one = accounts(schema.connect()?);
            let two = accounts(schema.connect()?).with_cache(8);
            one.execute("a", |a| a.open("ann"))?;
            two.load("a")?; // cached at version 1
            let first = one.execute_once("a", "pay-7", deposit)?;
            let again = two.execute_once("a", "pay-7", deposit)?;
            (first, again)
        };
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(again.already_done);
        assert_eq!(
            (again.version, &again.positions),
            (first.version, &first.positions)
        );
        assert_eq!(again.state.balance, 40);

        let reconnected = accounts(schema.connect()?).with_cache(8);
        let after = reconnected.execute_once("a", "pay-7", deposit)?;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(after.already_done);
        assert_eq!(
            (after.version, &after.positions),
            (first.version, &first.positions)
        );
        assert_eq!(reconnected.load("a")?.state.balance, 40);

        // Used on another stream, the id is refused and nothing runs.
        match reconnected.execute_once("b", "pay-7", deposit) {
            Err(ExecuteError::CommandIdReused { command_id, stream }) => {
                assert_eq!(command_id, "pay-7");
                assert_eq!(stream, StreamId::new("account", "a"));
            }
            other => panic!("expected a reused command id, got {other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        Ok(())
    })
}

/// Two threads on handles of their own race the same command id on one stream, both
/// past the check for a record before either appends: exactly one appends, the other
/// gets the recorded outcome. Repeated for several ids.
#[test]
fn two_threads_racing_one_command_id_run_it_once() -> TestResult {
    const ROUNDS: u64 = 8;
    with_schema(|schema| {
        let handles = [accounts(schema.connect()?), accounts(schema.connect()?)];
        handles[0].execute("a", |a| a.open("ann"))?;
        for round in 1..=ROUNDS {
            let command_id = format!("race-{round}");
            let both_decided = Barrier::new(2);
            let calls = AtomicUsize::new(0);
            let outcomes = thread::scope(|scope| {
                let threads: Vec<_> = handles
                    .iter()
                    .map(|accounts| {
                        let (command_id, both_decided, calls) =
                            (&command_id, &both_decided, &calls);
                        scope.spawn(move || {
                            let mut waited = false;
                            accounts.execute_once("a", command_id, |a: &Account| {
                                calls.fetch_add(1, Ordering::SeqCst);
                                if !waited {
                                    waited = true;
                                    both_decided.wait();
                                }
                                a.deposit(round)
                            })
                        })
                    })
                    .collect();
                join_all(threads)
            });
            let [one, two] = <[_; 2]>::try_from(outcomes).map_err(|_| "two outcomes")?;
            let (one, two) = (one?, two?);
            assert_eq!(calls.load(Ordering::SeqCst), 2, "both handlers decided");
            assert!(one.already_done != two.already_done, "{one:?}\n{two:?}");
            assert_eq!((one.version, &one.positions), (two.version, &two.positions));
            assert_eq!(one.version, Version::new(1 + round));
            assert_eq!(one.state, two.state);
        }
        let loaded = handles[1].load("a")?;
        assert_eq!(
            (loaded.state.balance, loaded.version),
            (sum_to(ROUNDS), Version::new(1 + ROUNDS))
        );
        Ok(())
    })
}

/// Many handles append the same command id at once through the store: one append is
/// stored, every other is `DuplicateCommand` and stores nothing.
#[test]
fn racing_appends_of_one_command_id_store_it_once() -> TestResult {
    const HANDLES: usize = 4;
    const ROUNDS: usize = 10;
    with_schema(|schema| {
        let stores = (0..HANDLES)
            .map(|_| schema.connect())
            .collect::<Result<Vec<_>, _>>()?;
        let stream = StreamId::new("note", "raced");
        for round in 0..ROUNDS {
            let command_id = format!("cmd-{round}");
            let start = Barrier::new(HANDLES);
            let results = thread::scope(|scope| {
                let threads: Vec<_> = stores
                    .iter()
                    .map(|store| {
                        let (command_id, stream, start) = (&command_id, &stream, &start);
                        scope.spawn(move || {
                            start.wait();
                            let event =
                                NewEvent::new("note.added", 1, format!(r#"{{"round":{round}}}"#));
                            store.append_command(command_id, stream, ExpectedVersion::Any, &[event])
                        })
                    })
                    .collect();
                join_all(threads)
            });
            let mut appended_once = Vec::new();
            for result in results {
                match result {
                    Ok(appended) => appended_once.push(appended),
                    Err(AppendError::DuplicateCommand { command_id: id }) => {
                        assert_eq!(id, command_id);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            assert_eq!(appended_once.len(), 1, "round {round}: {appended_once:?}");
            let version = Version::new(round as u64 + 1);
            assert_eq!(appended_once[0].stream_version, version);
            let record = stores[round % HANDLES]
                .command(&command_id)?
                .ok_or("no record")?;
            assert_eq!(record.result, appended_once[0]);
        }
        let positions: Vec<Position> = stores[0]
            .read_all(Position::START)
            .map(|e| e.map(|e| e.position))
            .collect::<Result<_, _>>()?;
        assert_eq!(
            positions,
            (1..=ROUNDS as u64).map(Position::new).collect::<Vec<_>>()
        );
        Ok(())
    })
}

/// What the store does with a command id: a recorded id is refused before the expected
/// version is looked at and stores nothing; a refused append records nothing; a command
/// without events is recorded with no positions.
#[test]
fn the_store_records_a_command_with_its_events_or_not_at_all() -> TestResult {
    with_schema(|schema| {
        let store = schema.connect()?;
        let s = StreamId::new("note", "n");
        let note = || NewEvent::new("note.added", 1, "{}");
        let first =
            store.append_command("c-1", &s, ExpectedVersion::NoStream, &[note(), note()])?;
        assert_eq!(first.positions, [Position::new(1), Position::new(2)]);
        for expected in [ExpectedVersion::Any, ExpectedVersion::NoStream] {
            let again = store.append_command("c-1", &s, expected, &[note()]);
            assert!(
                matches!(again, Err(AppendError::DuplicateCommand { ref command_id }) if command_id == "c-1"),
                "{again:?}"
            );
        }
        // Without events too.
        let empty = store.append_command("c-1", &s, ExpectedVersion::Any, &[]);
        assert!(
            matches!(empty, Err(AppendError::DuplicateCommand { .. })),
            "{empty:?}"
        );

        let conflict = store.append_command("c-2", &s, ExpectedVersion::NoStream, &[note()]);
        assert!(
            matches!(conflict, Err(AppendError::Conflict { actual, .. }) if actual == Version::new(2)),
            "{conflict:?}"
        );
        assert!(store.command("c-2")?.is_none());
        let duplicate_event = store.append_command(
            "c-2",
            &s,
            ExpectedVersion::Any,
            &[note(), first_event(&store, &s)?],
        );
        assert!(
            matches!(duplicate_event, Err(AppendError::DuplicateEventId { .. })),
            "{duplicate_event:?}"
        );
        assert!(store.command("c-2")?.is_none());

        let nothing =
            store.append_command("c-2", &s, ExpectedVersion::Exact(Version::new(2)), &[])?;
        assert_eq!(
            (nothing.stream_version, nothing.positions.len()),
            (Version::new(2), 0)
        );
        let record = store.command("c-2")?.ok_or("no record")?;
        assert_eq!(record.result, nothing);

        let third = store.append_command(
            "c-3",
            &s,
            ExpectedVersion::Exact(Version::new(2)),
            &[note()],
        )?;
        assert_eq!(third.positions, [Position::new(3)]);
        assert_eq!(store.stream_version(&s)?, Version::new(3));
        let rows = schema.sql(
            "SELECT command_id, stream_version, positions FROM commands ORDER BY command_id",
        )?;
        assert_eq!(rows, "c-1|2|{1,2}\nc-2|2|{}\nc-3|3|{3}\n");
        Ok(())
    })
}

/// The id of the first event of `stream`, as a new event that repeats it.
fn first_event(store: &PostgresStore, stream: &StreamId) -> Result<NewEvent, Box<dyn Error>> {
    let stored = store
        .read_stream(stream, Version::new(1))
        .next()
        .ok_or("empty stream")??;
    Ok(NewEvent::new("note.added", 1, "{}").with_id(stored.event_id))
}

/// A writer that bypasses the append lock and records a command id while an append of
/// the same id waits for it: the append's insert then breaks `commands_pkey`, which is
/// reported as `DuplicateCommand`, and nothing of the append is stored.
#[test]
fn a_command_recorded_behind_the_locks_back_is_a_duplicate() -> TestResult {
    with_schema(|schema| {
        let store = schema.connect()?;
        let s = StreamId::new("note", "bypassed");
        store.append(
            &s,
            ExpectedVersion::NoStream,
            &[NewEvent::new("note.added", 1, "{}")],
        )?;
        let mut intruder = postgres::Client::connect(&schema.url, postgres::NoTls)?;
        let mut watcher = postgres::Client::connect(&schema.url, postgres::NoTls)?;
        let mut tx = intruder.transaction()?;
        tx.batch_execute(&format!(
            "INSERT INTO \"{}\".commands VALUES ('sneaky', 'note', 'bypassed', 1, '{{1}}', now())",
            schema.name
        ))?;
        let refused = thread::scope(|scope| -> Result<_, Box<dyn Error>> {
            let appending = scope.spawn(|| {
                store.append_command(
                    "sneaky",
                    &s,
                    ExpectedVersion::Any,
                    &[NewEvent::new("note.added", 1, "{}")],
                )
            });
            // Commit only once the append waits on the intruder's row.
            let deadline = Instant::now() + Duration::from_mins(1);
            loop {
                let waiting: i64 = watcher
                    .query_one(
                        // The insert's text names the schema's tables, or (spelled into
                        // the query) the command id.
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                         AND (query LIKE '%' || $1 || '%commands%' OR query LIKE $2)",
                        &[&schema.name, &"%eventsource_append(%sneaky%"],
                    )?
                    .try_get(0)?;
                if waiting > 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the append never waited for the intruder"
                );
                thread::sleep(Duration::from_millis(10));
            }
            tx.commit()?;
            Ok(appending
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })?;
        assert!(
            matches!(refused, Err(AppendError::DuplicateCommand { ref command_id }) if command_id == "sneaky"),
            "{refused:?}"
        );
        assert_eq!(store.stream_version(&s)?, Version::new(1));
        let next = store.append(
            &s,
            ExpectedVersion::Exact(Version::new(1)),
            &[NewEvent::new("note.added", 1, "{}")],
        )?;
        assert_eq!(next.positions, [Position::new(2)], "positions have a hole");
        Ok(())
    })
}

/// UPDATE, DELETE and TRUNCATE of `commands` fail with the trigger's message; the record
/// stays.
#[test]
fn the_commands_table_refuses_update_delete_and_truncate() -> TestResult {
    with_schema(|schema| {
        let accounts = accounts(schema.connect()?);
        accounts.execute_once("a", "open-a", |a| a.open("ann"))?;
        for (statement, operation) in [
            ("UPDATE commands SET stream_version = 7", "UPDATE"),
            (
                "UPDATE commands SET command_id = 'other' WHERE command_id = 'none'",
                "UPDATE",
            ),
            ("DELETE FROM commands", "DELETE"),
            ("DELETE FROM commands WHERE command_id = 'open-a'", "DELETE"),
            ("TRUNCATE commands", "TRUNCATE"),
        ] {
            let refused = schema.sql(statement).err().unwrap_or_default();
            let message =
                format!("eventsource: the commands table is append-only; {operation} is refused");
            assert!(refused.contains(&message), "`{statement}`: {refused}");
        }
        let mut ran = false;
        let again = accounts.execute_once("a", "open-a", |a| {
            ran = true;
            a.open("bob")
        })?;
        assert!(again.already_done && !ran);
        assert_eq!(again.state.owner, "ann");
        Ok(())
    })
}

/// A store of schema version 1 (events only) gains the snapshot, command and projection
/// tables, the read-side indexes and the hash chain on connect, and keeps its events; the
/// chain starts at the first event appended after.
#[test]
fn a_version_1_store_is_migrated_on_connect() -> TestResult {
    with_schema(|schema| {
        let s = StreamId::new("note", "old");
        schema.connect()?.append(
            &s,
            ExpectedVersion::NoStream,
            &[NewEvent::new("note.added", 1, "{}")],
        )?;
        schema.sql(
            "DROP TABLE commands, snapshots, projections; DROP FUNCTION commands_refuse_change(); \
             DROP INDEX events_by_event_type, events_by_aggregate_type; \
             DROP TABLE chain; DROP FUNCTION chain_refuse_rewind(); \
             ALTER TABLE events DROP COLUMN hash; \
             UPDATE eventsource_meta SET schema_version = 1",
        )?;
        let store = schema.connect()?;
        assert_eq!(
            schema
                .sql("SELECT schema_version FROM eventsource_meta")?
                .trim(),
            "4"
        );
        assert_eq!(store.stream_version(&s)?, Version::new(1));
        let appended = store.append_command(
            "c",
            &s,
            ExpectedVersion::Exact(Version::new(1)),
            &[NewEvent::new("note.added", 1, "{}")],
        )?;
        assert_eq!(store.command("c")?.map(|c| c.result), Some(appended));
        let report = Verify::chain(&store).run()?;
        assert!(report.is_sound(), "{report}");
        let head = report.head.ok_or("no chain head")?;
        assert_eq!(
            (head.starts_at.get(), head.position.get(), head.count),
            (2, 2, 1)
        );
        assert_eq!((report.events, report.unchained), (2, 1));
        Ok(())
    })
}

// --- reads ---

/// Event `i` of a long stream: types, versions and payloads vary.
fn numbered(i: u64) -> NewEvent {
    let event_version = if i.is_multiple_of(2) { 1 } else { 2 };
    NewEvent::new(
        format!("note.v{}", i % 3),
        event_version,
        format!(r#"{{"i":{i},"text":"é \"q\""}}"#),
    )
}

/// What both reads of a stream return.
type Fields = (Position, Version, String, u32, String);

/// The narrow replay read returns exactly the events, and the fields, of the full read,
/// for a stream of more than a thousand events interleaved with another stream, from any
/// version and with any limit; a replay stopped early leaves the store usable.
#[test]
fn replay_returns_what_read_stream_returns() -> TestResult {
    const EVENTS: u64 = 2_500;
    with_schema(|schema| {
        let store = schema.connect()?;
        let s = StreamId::new("note", "long");
        let other = StreamId::new("note", "other");
        let mut version = 0;
        while version < EVENTS {
            let batch: Vec<NewEvent> = (version..(version + 300).min(EVENTS))
                .map(numbered)
                .collect();
            version += store
                .append(&s, ExpectedVersion::Exact(Version::new(version)), &batch)?
                .positions
                .len() as u64;
            store.append(
                &other,
                ExpectedVersion::Any,
                &[NewEvent::new("note.other", 1, "{}")],
            )?;
        }
        let full = |from: u64, max: usize| -> Result<Vec<Fields>, ReadError> {
            let mut read = Vec::new();
            store.read_stream_with(&s, Version::new(from), max, &mut |e| {
                read.push((
                    e.position,
                    e.version,
                    e.event_type.to_owned(),
                    e.event_version,
                    e.payload.to_owned(),
                ));
                Ok(())
            })?;
            Ok(read)
        };
        let narrow = |from: u64, max: usize| -> Result<Vec<Fields>, ReadError> {
            let mut read = Vec::new();
            store.replay_stream_with(&s, Version::new(from), max, &mut |e| {
                read.push((
                    e.position,
                    e.version,
                    e.event_type.to_owned(),
                    e.event_version,
                    e.payload.to_owned(),
                ));
                Ok(())
            })?;
            Ok(read)
        };
        let all = narrow(0, usize::MAX)?;
        assert_eq!(all.len() as u64, EVENTS);
        assert_eq!(all, full(1, usize::MAX)?);
        assert_ne!(
            all.last().map(|e| e.0.get()),
            Some(EVENTS),
            "positions are not versions"
        );
        for (from, max) in [
            (1, 1_000),
            (700, 1_001),
            (2_400, 1_000),
            (2_500, 0),
            (2_501, 10),
        ] {
            let window = narrow(from, max)?;
            assert_eq!(window, full(from, max)?, "from {from}, at most {max}");
            let expected = (EVENTS + 1).saturating_sub(from).min(max as u64);
            assert_eq!(window.len() as u64, expected);
        }

        for _ in 0..3 {
            let mut seen = 0;
            let stopped = store.replay_stream_with(&s, Version::new(1), usize::MAX, &mut |_| {
                seen += 1;
                if seen == 5 {
                    return Err(ReadError::Corrupt {
                        position: 0,
                        reason: "enough".into(),
                    });
                }
                Ok(())
            });
            assert!(matches!(
                stopped,
                Err(ReadError::Corrupt { position: 0, .. })
            ));
            assert_eq!(seen, 5);
        }
        assert_eq!(store.stream_version(&s)?, Version::new(EVENTS));
        Ok(())
    })
}

/// An event that does not decode fails loads and commands with `ReadError::Decode`
/// naming its position, stream, version and type.
#[test]
fn an_undecodable_event_is_a_decode_error_at_its_place() -> TestResult {
    with_schema(|schema| {
        let accounts = accounts(schema.connect()?).with_snapshots(SnapshotPolicy::every(100));
        let store = accounts.store();
        accounts.execute("other", |a| a.open("bob"))?; // position 1
        accounts.execute("a", |a| a.open("ann"))?; // position 2, version 1
        accounts.execute("a", |a| a.deposit(5))?; // position 3, version 2
        let stream = accounts.stream_id("a");
        let bad = store.append(
            &stream,
            ExpectedVersion::Exact(Version::new(2)),
            &[NewEvent::new("money.deposited", 1, r#"{"amount":"lots"}"#)],
        )?;
        accounts.execute("other", |a| a.deposit(1))?;
        let check = |err: ReadError| match err {
            ReadError::Decode { at, source } => {
                assert_eq!(at.position, bad.positions[0]);
                assert_eq!(at.stream, stream);
                assert_eq!(at.version, Version::new(3));
                assert_eq!(
                    (at.event_type.as_str(), at.event_version),
                    ("money.deposited", 1)
                );
                assert!(matches!(source, DecodeFailure::Payload(_)), "{source:?}");
            }
            other => panic!("expected a decode error, got {other:?}"),
        };
        check(accounts.load("a").err().ok_or("loaded")?);
        check(accounts.load_at("a", 3).err().ok_or("loaded")?);
        match accounts.execute("a", |a| a.deposit(1)) {
            Err(ExecuteError::Read(err)) => check(err),
            other => panic!("expected a read error, got {other:?}"),
        }
        // Up to the version before, the stream still loads.
        assert_eq!(accounts.load_at("a", 2)?.state.balance, 5);
        assert_eq!(accounts.load("other")?.state.balance, 1);
        Ok(())
    })
}
