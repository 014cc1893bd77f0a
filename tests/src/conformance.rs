//! The contract of [`EventStore`], as generic tests that every backend must pass.
//! `tests/conformance.rs` runs each of them against each backend, on a fresh store.
//!
//! Each test takes a store that nobody else writes to while it runs, asserts exact
//! results and error variants (panicking on a mismatch), and returns the unexpected
//! errors of the store. Payloads are compared as JSON values: a backend may store JSON in
//! a normalised form (PostgreSQL's `JSONB` does).

use std::collections::BTreeSet;
use std::error::Error;
use std::sync::Barrier;
use std::thread;

use eventsource::{
    AppendError, EventId, EventStore, ExpectedVersion, Metadata, NewEvent, Position, ReadError,
    RecordedEvent, StreamId, Timestamp, Version,
};
use serde_json::{Value, json};

/// What each test returns: `Err` for an unexpected error of the store.
pub type TestResult = Result<(), Box<dyn Error>>;

/// Runs one SQL statement on the store's database through a separate, plain
/// connection, as a user at a database shell would: `Ok` when the statement succeeded,
/// `Err` with the database's message when it was refused.
pub type RawSql<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// Threads in the concurrency tests.
pub const WRITERS: usize = 8;

/// Successful appends per thread in the concurrency tests.
pub const APPENDS_PER_WRITER: usize = 25;

/// How many times a writer may lose the race for one append before the test gives up
/// (far more than fair scheduling ever needs).
const MAX_ATTEMPTS: usize = 10_000;

type ThreadResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn note(n: usize) -> NewEvent {
    NewEvent::new("note.added", 1, format!(r#"{{"n":{n}}}"#))
}

fn json_of(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text)
}

/// The `n` of a [`note`] payload.
fn note_number(event: &RecordedEvent) -> Result<u64, Box<dyn Error>> {
    json_of(&event.payload)?["n"]
        .as_u64()
        .ok_or_else(|| format!("no `n` in {}", event.payload).into())
}

fn all_events<S: EventStore>(store: &S) -> Result<Vec<RecordedEvent>, ReadError> {
    store.read_all(Position::START).collect()
}

fn stream_events<S: EventStore>(
    store: &S,
    stream: &StreamId,
) -> Result<Vec<RecordedEvent>, ReadError> {
    store.read_stream(stream, Version::new(1)).collect()
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version.get()).collect()
}

fn positions(events: &[RecordedEvent]) -> Vec<Position> {
    events.iter().map(|e| e.position).collect()
}

fn assert_strictly_increasing(positions: &[Position]) {
    for pair in positions.windows(2) {
        assert!(pair[0] < pair[1], "positions out of order: {positions:?}");
    }
}

fn assert_conflict(
    result: Result<eventsource::AppendResult, AppendError>,
    on: &StreamId,
    want_expected: ExpectedVersion,
    want_actual: u64,
) {
    match result {
        Err(AppendError::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!(&stream, on);
            assert_eq!(expected, want_expected);
            assert_eq!(actual, Version::new(want_actual));
        }
        other => panic!("expected a conflict at version {want_actual}, got {other:?}"),
    }
}

/// Each [`ExpectedVersion`] accepts exactly the streams it describes; a conflict reports
/// the actual version and stores nothing.
///
/// # Errors
/// An unexpected error of the store.
pub fn expected_versions<S: EventStore>(store: &S) -> TestResult {
    let s = StreamId::new("note", "expected");
    assert_eq!(store.stream_version(&s)?, Version::NONE);

    assert_conflict(
        store.append(&s, ExpectedVersion::StreamExists, &[note(0)]),
        &s,
        ExpectedVersion::StreamExists,
        0,
    );
    let exact_one = ExpectedVersion::Exact(Version::new(1));
    assert_conflict(store.append(&s, exact_one, &[note(0)]), &s, exact_one, 0);

    let first = store.append(&s, ExpectedVersion::NoStream, &[note(1)])?;
    assert_eq!(first.stream_version, Version::new(1));
    assert_eq!(first.positions.len(), 1);

    assert_conflict(
        store.append(&s, ExpectedVersion::NoStream, &[note(0)]),
        &s,
        ExpectedVersion::NoStream,
        1,
    );
    let exact_zero = ExpectedVersion::Exact(Version::NONE);
    assert_conflict(store.append(&s, exact_zero, &[note(0)]), &s, exact_zero, 1);
    let exact_two = ExpectedVersion::Exact(Version::new(2));
    assert_conflict(store.append(&s, exact_two, &[note(0)]), &s, exact_two, 1);

    let two = store.append(&s, exact_one, &[note(2), note(3)])?;
    assert_eq!(two.stream_version, Version::new(3));
    assert_eq!(two.positions.len(), 2);
    let exists = store.append(&s, ExpectedVersion::StreamExists, &[note(4)])?;
    assert_eq!(exists.stream_version, Version::new(4));
    let any = store.append(&s, ExpectedVersion::Any, &[note(5)])?;
    assert_eq!(any.stream_version, Version::new(5));

    let fresh = StreamId::new("note", "expected-exact-none");
    let created = store.append(&fresh, exact_zero, &[note(1)])?;
    assert_eq!(created.stream_version, Version::new(1));
    let any_new = StreamId::new("note", "expected-any");
    assert_eq!(
        store
            .append(&any_new, ExpectedVersion::Any, &[note(1)])?
            .stream_version,
        Version::new(1)
    );

    let beyond = ExpectedVersion::Exact(Version::new(u64::MAX));
    assert_conflict(store.append(&s, beyond, &[note(0)]), &s, beyond, 5);

    assert_eq!(store.stream_version(&s)?, Version::new(5));
    let stored = stream_events(store, &s)?;
    assert_eq!(versions(&stored), [1, 2, 3, 4, 5]);
    let numbers = stored
        .iter()
        .map(note_number)
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(
        numbers,
        [1, 2, 3, 4, 5],
        "a refused append stored something"
    );
    Ok(())
}

/// An empty append stores nothing but still checks the expected version.
///
/// # Errors
/// An unexpected error of the store.
pub fn empty_appends_check_the_expected_version<S: EventStore>(store: &S) -> TestResult {
    let s = StreamId::new("note", "empty");
    let nothing = store.append(&s, ExpectedVersion::NoStream, &[])?;
    assert_eq!(nothing.stream_version, Version::NONE);
    assert!(nothing.positions.is_empty());
    assert_eq!(store.stream_version(&s)?, Version::NONE);

    store.append(&s, ExpectedVersion::NoStream, &[note(1)])?;
    assert_conflict(
        store.append(&s, ExpectedVersion::NoStream, &[]),
        &s,
        ExpectedVersion::NoStream,
        1,
    );
    let exact = store.append(&s, ExpectedVersion::Exact(Version::new(1)), &[])?;
    assert_eq!(exact.stream_version, Version::new(1));
    assert!(exact.positions.is_empty());
    assert_eq!(all_events(store)?.len(), 1);
    Ok(())
}

/// A batch is stored whole or not at all: a duplicate event id (already stored, or
/// twice in the batch) or a payload that is not JSON refuses the whole batch.
///
/// # Errors
/// An unexpected error of the store.
pub fn batches_are_atomic<S: EventStore>(store: &S) -> TestResult {
    let s = StreamId::new("note", "atomic");
    let stored = note(1);
    let first = store.append(&s, ExpectedVersion::NoStream, std::slice::from_ref(&stored))?;

    let batch = [note(2), note(3).with_id(stored.event_id), note(4)];
    match store.append(&s, ExpectedVersion::Any, &batch) {
        Err(AppendError::DuplicateEventId { stream, event_id }) => {
            assert_eq!(stream, s);
            assert_eq!(event_id, stored.event_id);
        }
        other => panic!("expected a duplicate event id, got {other:?}"),
    }

    // The same id in another stream is still a duplicate.
    let other = StreamId::new("note", "atomic-other");
    let again = [note(5).with_id(stored.event_id)];
    assert!(matches!(
        store.append(&other, ExpectedVersion::Any, &again),
        Err(AppendError::DuplicateEventId { event_id, .. }) if event_id == stored.event_id
    ));

    let twice = EventId::new();
    let batch = [note(6).with_id(twice), note(7), note(8).with_id(twice)];
    assert!(matches!(
        store.append(&other, ExpectedVersion::NoStream, &batch),
        Err(AppendError::DuplicateEventId { event_id, .. }) if event_id == twice
    ));

    let batch = [
        note(9),
        NewEvent::new("note.broken", 1, "{not json"),
        note(10),
    ];
    match store.append(&s, ExpectedVersion::Any, &batch) {
        Err(AppendError::Encode {
            stream, event_type, ..
        }) => {
            assert_eq!(stream, s);
            assert_eq!(event_type, "note.broken");
        }
        other => panic!("expected an encode error, got {other:?}"),
    }

    assert_eq!(store.stream_version(&s)?, Version::new(1));
    assert_eq!(store.stream_version(&other)?, Version::NONE);
    assert_eq!(positions(&all_events(store)?), first.positions);

    // The store goes on normally after refusals.
    let next = store.append(&s, ExpectedVersion::Exact(Version::new(1)), &[note(11)])?;
    assert_eq!(next.stream_version, Version::new(2));
    assert!(next.positions[0] > first.positions[0]);
    let numbers = stream_events(store, &s)?
        .iter()
        .map(note_number)
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(numbers, [1, 11]);
    Ok(())
}

/// Streams read in version order; the whole store in position order, which is the
/// order of the acknowledged appends, positions strictly increasing across streams.
///
/// # Errors
/// An unexpected error of the store.
pub fn order_is_version_and_position_order<S: EventStore>(store: &S) -> TestResult {
    let streams = [
        StreamId::new("note", "order-a"),
        StreamId::new("note", "order-b"),
        StreamId::new("note", "order-c"),
    ];
    // (stream index, batch size), interleaved.
    let plan = [(0, 2), (1, 1), (0, 1), (2, 3), (1, 2), (0, 1), (2, 1)];
    let mut acknowledged = Vec::new();
    let mut expected = Vec::new(); // (stream index, version, n) in append order
    let mut stream_versions = [0u64; 3];
    let mut n = 0;
    for (stream, size) in plan {
        let batch: Vec<NewEvent> = (0..size).map(|i| note(n + i)).collect();
        let appended = store.append(&streams[stream], ExpectedVersion::Any, &batch)?;
        assert_eq!(appended.positions.len(), size);
        for i in 0..size {
            stream_versions[stream] += 1;
            expected.push((stream, stream_versions[stream], (n + i) as u64));
        }
        assert_eq!(appended.stream_version.get(), stream_versions[stream]);
        acknowledged.extend(appended.positions);
        n += size;
    }
    assert_strictly_increasing(&acknowledged);

    let all = all_events(store)?;
    assert_eq!(positions(&all), acknowledged);
    for (event, &(stream, version, n)) in all.iter().zip(&expected) {
        assert_eq!(event.stream, streams[stream]);
        assert_eq!(event.version.get(), version);
        assert_eq!(note_number(event)?, n);
    }
    for (i, stream) in streams.iter().enumerate() {
        let events = stream_events(store, stream)?;
        let want: Vec<u64> = (1..=stream_versions[i]).collect();
        assert_eq!(versions(&events), want);
        assert_strictly_increasing(&positions(&events));
        let numbers = events
            .iter()
            .map(note_number)
            .collect::<Result<Vec<_>, _>>()?;
        let want: Vec<u64> = expected
            .iter()
            .filter(|(s, ..)| *s == i)
            .map(|&(.., n)| n)
            .collect();
        assert_eq!(numbers, want);
    }
    Ok(())
}

/// Every field of an appended event reads back: id, type, event version, payload (as
/// JSON), stream, version, position and a recording time.
///
/// # Errors
/// An unexpected error of the store.
pub fn events_round_trip<S: EventStore>(store: &S) -> TestResult {
    let s = StreamId::new("note", "round-trip");
    let payload = json!({
        "text": "ünïcødé ✓ \"quoted\" \\ back\nslash",
        "big": u64::MAX,
        "negative": i64::MIN,
        "float": 0.1,
        "nested": {"list": [1, "two", null, true, {"k": []}]},
        "empty": {}
    });
    let events = [
        NewEvent::new("note.rich", 7, payload.to_string()),
        NewEvent::new("note.scalar", 1, "42"),
        NewEvent::new("note.string", 2, r#""just a string""#),
    ];
    let before = Timestamp::now();
    let appended = store.append(&s, ExpectedVersion::NoStream, &events)?;
    let stored = stream_events(store, &s)?;
    assert_eq!(stored.len(), 3);
    for (i, (event, new)) in stored.iter().zip(&events).enumerate() {
        assert_eq!(event.stream, s);
        assert_eq!(event.version.get(), i as u64 + 1);
        assert_eq!(event.position, appended.positions[i]);
        assert_eq!(event.event_id, new.event_id);
        assert_eq!(event.event_type, new.event_type);
        assert_eq!(event.event_version, new.event_version);
        assert_eq!(json_of(&event.payload)?, json_of(&new.payload)?);
        assert_eq!(event.metadata, Metadata::new());
        // Recorded by this run, not zero or garbage (clocks may differ by a little).
        let skew = 3_600_000_000;
        assert!(event.recorded_at.as_micros() > before.as_micros() - skew);
        assert!(event.recorded_at.as_micros() < Timestamp::now().as_micros() + skew);
    }
    assert_eq!(json_of(&stored[0].payload)?, payload);

    // The borrowed rows carry the same.
    let mut seen = 0;
    store.read_stream_with(&s, Version::new(1), usize::MAX, &mut |event| {
        let new = &events[seen];
        assert_eq!(
            (event.aggregate_type, event.stream_id),
            ("note", "round-trip")
        );
        assert_eq!(event.event_id.parse::<EventId>().ok(), Some(new.event_id));
        assert_eq!(event.event_type, new.event_type);
        assert_eq!(json_of(event.metadata).ok(), Some(json!({})));
        seen += 1;
        Ok(())
    })?;
    assert_eq!(seen, 3);
    Ok(())
}

/// Metadata (correlation, causation, actor and extra keys) reads back equal.
///
/// # Errors
/// An unexpected error of the store.
pub fn metadata_round_trips<S: EventStore>(store: &S) -> TestResult {
    let s = StreamId::new("note", "metadata");
    let full = Metadata::new()
        .correlation_id("corr-1")
        .causation_id("cmd-7")
        .actor("alice")
        .with("ip", "10.0.0.1")
        .with("attempt", 3)
        .with("flags", json!({"dry_run": false, "tags": ["a", "b"]}))
        .with("nothing", Value::Null);
    let partial = Metadata::new().actor("bob");
    let events = [
        note(1).with_metadata(full.clone()),
        note(2).with_metadata(partial.clone()),
        note(3),
    ];
    store.append(&s, ExpectedVersion::NoStream, &events)?;
    let stored = stream_events(store, &s)?;
    let metadata: Vec<&Metadata> = stored.iter().map(|e| &e.metadata).collect();
    assert_eq!(metadata, [&full, &partial, &Metadata::new()]);
    assert_eq!(stored[0].metadata.extra["flags"]["tags"][1], "b");
    Ok(())
}

/// `read_stream_with` starts at a version and stops after `max_count` events; the
/// iterator reads on from a version.
///
/// # Errors
/// An unexpected error of the store.
pub fn read_stream_from_a_version<S: EventStore>(store: &S) -> TestResult {
    let s = StreamId::new("note", "from");
    let batch: Vec<NewEvent> = (1..=10).map(note).collect();
    store.append(&s, ExpectedVersion::NoStream, &batch)?;
    store.append(
        &StreamId::new("note", "from-other"),
        ExpectedVersion::Any,
        &[note(0)],
    )?;

    let read = |from: u64, max_count: usize| -> Result<Vec<u64>, ReadError> {
        let mut seen = Vec::new();
        store.read_stream_with(&s, Version::new(from), max_count, &mut |event| {
            assert_eq!((event.aggregate_type, event.stream_id), ("note", "from"));
            seen.push(event.version.get());
            Ok(())
        })?;
        Ok(seen)
    };
    assert_eq!(read(4, 3)?, [4, 5, 6]);
    assert_eq!(read(9, 100)?, [9, 10]);
    assert_eq!(read(1, usize::MAX)?, (1..=10).collect::<Vec<_>>());
    assert_eq!(read(0, 2)?, [1, 2], "version 0 reads from the start");
    assert_eq!(read(11, 5)?, Vec::<u64>::new());
    assert_eq!(read(1, 0)?, Vec::<u64>::new());

    let tail: Vec<RecordedEvent> = store
        .read_stream(&s, Version::new(7))
        .collect::<Result<_, _>>()?;
    assert_eq!(versions(&tail), [7, 8, 9, 10]);
    let unknown = StreamId::new("note", "from-nobody");
    assert_eq!(store.read_stream(&unknown, Version::new(1)).count(), 0);
    Ok(())
}

/// `read_all_with` starts after a position and stops after `max_count` events; the
/// iterator reads on from a position.
///
/// # Errors
/// An unexpected error of the store.
pub fn read_all_after_a_position<S: EventStore>(store: &S) -> TestResult {
    let mut acknowledged = Vec::new();
    for i in 0..12 {
        let s = StreamId::new("note", format!("after-{}", i % 3));
        acknowledged.extend(
            store
                .append(&s, ExpectedVersion::Any, &[note(i)])?
                .positions,
        );
    }
    let read = |after: Position, max_count: usize| -> Result<Vec<Position>, ReadError> {
        let mut seen = Vec::new();
        store.read_all_with(after, max_count, &mut |event| {
            assert!(event.stream_id.starts_with("after-"));
            seen.push(event.position);
            Ok(())
        })?;
        Ok(seen)
    };
    assert_eq!(read(Position::START, usize::MAX)?, acknowledged);
    assert_eq!(read(acknowledged[4], 3)?, acknowledged[5..8]);
    assert_eq!(read(Position::START, 2)?, acknowledged[..2]);
    assert_eq!(read(acknowledged[11], 10)?, Vec::<Position>::new());
    assert_eq!(read(Position::START, 0)?, Vec::<Position>::new());

    let tail: Vec<RecordedEvent> = store.read_all(acknowledged[9]).collect::<Result<_, _>>()?;
    assert_eq!(positions(&tail), acknowledged[10..]);
    Ok(())
}

/// The paging iterators read streams and the whole store across many pages (more than
/// two pages of 512), in order, each event once.
///
/// # Errors
/// An unexpected error of the store.
pub fn paging_crosses_page_boundaries<S: EventStore>(store: &S) -> TestResult {
    let big = StreamId::new("note", "paging-big");
    let small = StreamId::new("note", "paging-small");
    let mut acknowledged = Vec::new();
    for round in 0..11 {
        let batch: Vec<NewEvent> = (0..100).map(|i| note(round * 100 + i)).collect();
        acknowledged.extend(store.append(&big, ExpectedVersion::Any, &batch)?.positions);
        let batch: Vec<NewEvent> = (0..20).map(|i| note(100_000 + round * 20 + i)).collect();
        acknowledged.extend(
            store
                .append(&small, ExpectedVersion::Any, &batch)?
                .positions,
        );
    }
    assert_eq!(acknowledged.len(), 1320);

    let events = stream_events(store, &big)?;
    assert_eq!(versions(&events), (1..=1100).collect::<Vec<_>>());
    let numbers = events
        .iter()
        .map(note_number)
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(numbers, (0..1100).collect::<Vec<_>>());

    let tail: Vec<RecordedEvent> = store
        .read_stream(&big, Version::new(600))
        .collect::<Result<_, _>>()?;
    assert_eq!(versions(&tail), (600..=1100).collect::<Vec<_>>());

    let all = all_events(store)?;
    assert_eq!(positions(&all), acknowledged);
    let rest: Vec<RecordedEvent> = store
        .read_all(acknowledged[699])
        .collect::<Result<_, _>>()?;
    assert_eq!(positions(&rest), acknowledged[700..]);
    Ok(())
}

/// The same id under two aggregate types is two streams, and so is a split of the same
/// text into type and id at another place.
///
/// # Errors
/// An unexpected error of the store.
pub fn aggregate_types_are_separate_streams<S: EventStore>(store: &S) -> TestResult {
    let account = StreamId::new("account", "42");
    let order = StreamId::new("order", "42");
    store.append(&account, ExpectedVersion::NoStream, &[note(1)])?;
    store.append(&order, ExpectedVersion::NoStream, &[note(2)])?;
    store.append(
        &account,
        ExpectedVersion::Exact(Version::new(1)),
        &[note(3)],
    )?;
    assert_eq!(store.stream_version(&account)?, Version::new(2));
    assert_eq!(store.stream_version(&order)?, Version::new(1));

    let accounts = stream_events(store, &account)?;
    assert!(accounts.iter().all(|e| e.stream == account));
    let numbers = accounts
        .iter()
        .map(note_number)
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(numbers, [1, 3]);
    let orders = stream_events(store, &order)?;
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].stream, order);

    let left = StreamId::new("a/b", "c");
    let right = StreamId::new("a", "b/c");
    assert_eq!(left.to_string(), right.to_string());
    store.append(&left, ExpectedVersion::NoStream, &[note(4)])?;
    store.append(&right, ExpectedVersion::NoStream, &[note(5)])?;
    assert_eq!(stream_events(store, &left)?.len(), 1);
    assert_eq!(stream_events(store, &right)?.len(), 1);
    Ok(())
}

/// The database itself refuses UPDATE and DELETE on the events table, whoever asks,
/// with a message that says the table is append-only; the events stay as they were.
///
/// # Errors
/// An unexpected error of the store, or `raw` failing on an insert of no rows.
pub fn the_table_is_append_only<S: EventStore>(store: &S, raw: RawSql<'_>) -> TestResult {
    let s = StreamId::new("note", "append-only");
    store.append(&s, ExpectedVersion::NoStream, &[note(1), note(2)])?;
    // The connection works and may insert: the refusals below are the table's.
    raw("INSERT INTO events SELECT * FROM events WHERE version < 0")?;
    for statement in [
        "UPDATE events SET event_type = 'tampered'",
        "UPDATE events SET payload = '{}' WHERE version = 2",
        "DELETE FROM events",
        "DELETE FROM events WHERE version = 1",
    ] {
        match raw(statement) {
            Err(message) => assert!(
                message.contains("append-only"),
                "`{statement}` failed for another reason: {message}"
            ),
            Ok(()) => panic!("`{statement}` was allowed"),
        }
    }
    let stored = stream_events(store, &s)?;
    assert_eq!(versions(&stored), [1, 2]);
    assert!(stored.iter().all(|e| e.event_type == "note.added"));
    let numbers = stored
        .iter()
        .map(note_number)
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(numbers, [1, 2]);
    Ok(())
}

/// Appends `APPENDS_PER_WRITER` events to `stream`, each under `Exact` of the version
/// last seen, retrying on a conflict; returns the versions acknowledged.
fn write_with_retries<S: EventStore>(
    store: &S,
    stream: &StreamId,
    writer: usize,
) -> ThreadResult<Vec<Version>> {
    let mut acknowledged = Vec::with_capacity(APPENDS_PER_WRITER);
    let mut seen = store.stream_version(stream)?;
    for i in 0..APPENDS_PER_WRITER {
        let event = note(writer * 1000 + i);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match store.append(
                stream,
                ExpectedVersion::Exact(seen),
                std::slice::from_ref(&event),
            ) {
                Ok(appended) => {
                    assert_eq!(appended.stream_version, seen.next());
                    acknowledged.push(appended.stream_version);
                    seen = appended.stream_version;
                    break;
                }
                Err(AppendError::Conflict { actual, .. }) if attempts < MAX_ATTEMPTS => {
                    assert!(
                        actual > seen,
                        "a conflict went back from {seen} to {actual}"
                    );
                    seen = actual;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(acknowledged)
}

/// `WRITERS` threads append to one stream under `Exact` with retries: every
/// acknowledged append gets its own version, and the stream is 1..=n without gap or
/// duplicate, each writer's events in its order.
///
/// # Errors
/// An unexpected error of the store.
pub fn concurrent_writers_on_one_stream<S: EventStore>(store: &S) -> TestResult {
    let s = StreamId::new("note", "contended");
    let start = Barrier::new(WRITERS);
    let results: Vec<ThreadResult<Vec<Version>>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (s, start) = (&s, &start);
                scope.spawn(move || {
                    start.wait();
                    write_with_retries(store, s, writer)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let total = (WRITERS * APPENDS_PER_WRITER) as u64;
    let mut acknowledged = BTreeSet::new();
    for result in results {
        for version in result.map_err(|e| format!("{e:?}"))? {
            assert!(
                acknowledged.insert(version.get()),
                "version {version} acknowledged twice"
            );
        }
    }
    assert_eq!(acknowledged, (1..=total).collect());
    assert_eq!(store.stream_version(&s)?, Version::new(total));

    let events = stream_events(store, &s)?;
    assert_eq!(versions(&events), (1..=total).collect::<Vec<_>>());
    assert_strictly_increasing(&positions(&events));
    let mut last = [None; WRITERS];
    for event in &events {
        let n = note_number(event)?;
        let (writer, i) = (usize::try_from(n / 1000)?, n % 1000);
        assert!(
            last[writer] < Some(i),
            "writer {writer}'s events out of order"
        );
        last[writer] = Some(i);
    }
    Ok(())
}

/// `WRITERS` threads append to their own streams at the same time: no conflicts, each
/// stream complete, and every acknowledged position read back once, in order.
///
/// # Errors
/// An unexpected error of the store.
pub fn concurrent_writers_on_own_streams<S: EventStore>(store: &S) -> TestResult {
    let start = Barrier::new(WRITERS);
    let results: Vec<ThreadResult<Vec<Position>>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let start = &start;
                scope.spawn(move || -> ThreadResult<Vec<Position>> {
                    let s = StreamId::new("note", format!("own-{writer}"));
                    start.wait();
                    let mut acknowledged = Vec::new();
                    for i in 0..APPENDS_PER_WRITER {
                        let expected = ExpectedVersion::Exact(Version::new(i as u64));
                        let appended = store.append(&s, expected, &[note(writer * 1000 + i)])?;
                        acknowledged.extend(appended.positions);
                    }
                    Ok(acknowledged)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut acknowledged = BTreeSet::new();
    for result in results {
        let positions = result.map_err(|e| format!("{e:?}"))?;
        assert_strictly_increasing(&positions);
        acknowledged.extend(positions);
    }
    assert_eq!(acknowledged.len(), WRITERS * APPENDS_PER_WRITER);

    let all = all_events(store)?;
    let read = positions(&all);
    assert_strictly_increasing(&read);
    assert_eq!(read.into_iter().collect::<BTreeSet<_>>(), acknowledged);
    for writer in 0..WRITERS {
        let s = StreamId::new("note", format!("own-{writer}"));
        let events = stream_events(store, &s)?;
        assert_eq!(
            versions(&events),
            (1..=APPENDS_PER_WRITER as u64).collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// A visitor's error stops the read and is returned as is; the store reads and writes
/// normally afterwards, however often that happens.
///
/// # Errors
/// An unexpected error of the store.
pub fn a_visitor_error_stops_the_read<S: EventStore>(store: &S) -> TestResult {
    let s = StreamId::new("note", "stop");
    let batch: Vec<NewEvent> = (0..200).map(note).collect();
    store.append(&s, ExpectedVersion::NoStream, &batch)?;
    let stop = || ReadError::Corrupt {
        position: -1,
        reason: "stop here".into(),
    };
    for round in 0..20 {
        let mut seen = 0;
        let result = store.read_stream_with(&s, Version::new(1), usize::MAX, &mut |_| {
            seen += 1;
            if seen == 3 { Err(stop()) } else { Ok(()) }
        });
        assert!(
            matches!(&result, Err(ReadError::Corrupt { position: -1, reason }) if reason == "stop here"),
            "{result:?}"
        );
        assert_eq!(seen, 3);

        let mut seen = 0;
        let result = store.read_all_with(Position::START, usize::MAX, &mut |_| {
            seen += 1;
            if seen == 5 { Err(stop()) } else { Ok(()) }
        });
        assert!(matches!(
            result,
            Err(ReadError::Corrupt { position: -1, .. })
        ));
        assert_eq!(seen, 5);

        let appended = store.append(&s, ExpectedVersion::Any, &[note(1000 + round)])?;
        assert_eq!(appended.stream_version.get(), 201 + round as u64);
        assert_eq!(stream_events(store, &s)?.len(), 201 + round);
    }
    Ok(())
}

/// Stream ids behave the same on every backend: an id with a NUL character, or a part
/// longer than [`StreamId::MAX_LEN`] bytes, is refused with
/// `StoreError::InvalidStreamId` by every call that names a stream, and nothing is
/// stored; the longest valid ids (multi-byte characters included) round-trip.
///
/// # Errors
/// An unexpected error of the store.
pub fn stream_ids_are_validated<S: EventStore>(store: &S) -> TestResult {
    use eventsource::{Snapshot, StoreError};

    let too_long = "x".repeat(StreamId::MAX_LEN + 1);
    let bad = [
        StreamId::new("note", "a\0b"),
        StreamId::new("no\0te", "a"),
        StreamId::new("note", too_long.as_str()),
        StreamId::new(too_long.as_str(), "a"),
        // 342 three-byte characters: 1,026 bytes.
        StreamId::new("note", "€".repeat(342)),
    ];
    let is_invalid = |e: &StoreError| matches!(e, StoreError::InvalidStreamId(_));
    for stream in &bad {
        let reason = stream.validate().err();
        assert!(reason.is_some(), "{stream:?} passed validation");
        let appended = store.append(stream, ExpectedVersion::Any, &[note(1)]);
        assert!(
            matches!(&appended, Err(AppendError::Store(e)) if is_invalid(e)),
            "{appended:?}"
        );
        let command = store.append_command("cmd-bad", stream, ExpectedVersion::Any, &[note(2)]);
        assert!(
            matches!(&command, Err(AppendError::Store(e)) if is_invalid(e)),
            "{command:?}"
        );
        let read = store.read_stream_with(stream, Version::new(1), 10, &mut |_| Ok(()));
        assert!(
            matches!(&read, Err(ReadError::Store(e)) if is_invalid(e)),
            "{read:?}"
        );
        let replay = store.replay_stream_with(stream, Version::new(1), 10, &mut |_| Ok(()));
        assert!(
            matches!(&replay, Err(ReadError::Store(e)) if is_invalid(e)),
            "{replay:?}"
        );
        let version = store.stream_version(stream);
        assert!(matches!(&version, Err(e) if is_invalid(e)), "{version:?}");
        if let Err(e) = store.load_snapshot(stream, Version::MAX, 1) {
            assert!(is_invalid(&e), "{e:?}");
        }
        let snapshot = Snapshot {
            version: Version::new(1),
            state_version: 1,
            state: "{}".into(),
            taken_at: Timestamp::from_micros(0),
        };
        if let Err(e) = store.save_snapshot(stream, &snapshot) {
            assert!(
                is_invalid(&e) || matches!(e, StoreError::Unsupported { .. }),
                "{e:?}"
            );
        }
        // The message names the problem and shows the stream cut short.
        let message = reason.map(|r| StoreError::from(r).to_string());
        let message = message.unwrap_or_default();
        assert!(message.starts_with("invalid stream id "), "{message}");
        assert!(message.len() < 300, "{message}");
    }
    assert!(
        all_events(store)?.is_empty(),
        "a refused stream id stored something"
    );
    assert_eq!(store.command("cmd-bad")?, None);

    let longest = [
        StreamId::new("note", "x".repeat(StreamId::MAX_LEN)),
        StreamId::new("y".repeat(StreamId::MAX_LEN), "€".repeat(341)),
        StreamId::new("note", "é ✓ 🦀"),
    ];
    for stream in &longest {
        store.append(stream, ExpectedVersion::NoStream, &[note(7)])?;
        let events = stream_events(store, stream)?;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].stream, *stream);
        assert_eq!(store.stream_version(stream)?, Version::new(1));
    }
    Ok(())
}
