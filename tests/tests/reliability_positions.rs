//! A row planted near the largest position (`i64::MAX`) must not scramble the global
//! order: SQLite would hand out random free positions past it, PostgreSQL would fail
//! every append with a bare overflow. The store refuses an append that does not fit
//! with `StoreError::PositionsExhausted`, stores nothing, and appends that fit still go
//! in, in order.

use std::error::Error;

use eventsource::{
    AppendError, EventStore, ExpectedVersion, NewEvent, Position, SqliteStore, StoreError,
    StreamId, Version,
};
use eventsource_tests::{TempStore, raw_sqlite};

type TestResult = Result<(), Box<dyn Error>>;

fn note(n: usize) -> NewEvent {
    NewEvent::new("note.added", 1, format!(r#"{{"n":{n}}}"#))
}

/// Plants the row, then checks the refusals and what still fits. `plant` inserts a row
/// of stream `note/planted` at `position` through a plain connection.
fn positions_near_the_end<S: EventStore>(
    store: &S,
    plant: &dyn Fn(i64) -> Result<(), String>,
) -> TestResult {
    let s = StreamId::new("note", "s");
    store.append(&s, ExpectedVersion::NoStream, &[note(1)])?;
    plant(i64::MAX - 2)?;
    // Three events do not fit after i64::MAX - 2.
    let refused = store.append(&s, ExpectedVersion::Any, &[note(2), note(3), note(4)]);
    match refused {
        Err(AppendError::Store(StoreError::PositionsExhausted { last, count })) => {
            assert_eq!((last, count), ((i64::MAX - 2).unsigned_abs(), 3));
        }
        other => panic!("expected PositionsExhausted, got {other:?}"),
    }
    assert_eq!(store.stream_version(&s)?, Version::new(1));
    // Two do, at the two last positions.
    let appended = store.append(
        &s,
        ExpectedVersion::Exact(Version::new(1)),
        &[note(2), note(3)],
    )?;
    let max = i64::MAX.unsigned_abs();
    assert_eq!(
        appended.positions,
        [Position::new(max - 1), Position::new(max)]
    );
    // Then nothing fits, a single event included, and nothing is stored.
    for _ in 0..3 {
        let refused = store.append(&s, ExpectedVersion::Any, &[note(9)]);
        assert!(
            matches!(
                refused,
                Err(AppendError::Store(StoreError::PositionsExhausted { .. }))
            ),
            "{refused:?}"
        );
    }
    let positions: Vec<u64> = store
        .read_all(Position::START)
        .map(|e| e.map(|e| e.position.get()))
        .collect::<Result<_, _>>()?;
    assert_eq!(positions, [1, max - 2, max - 1, max]);
    Ok(())
}

#[test]
fn sqlite_refuses_to_append_past_the_largest_position() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    positions_near_the_end(&store, &|position| {
        raw_sqlite(
            &tmp.path,
            &format!(
                "INSERT INTO events (position, aggregate_type, stream_id, version, event_type, \
                 event_version, event_id, recorded_at, payload, metadata) VALUES ({position}, \
                 'note', 'planted', 1, 'note.added', 1, '00000000-0000-4000-8000-000000000001', \
                 0, '{{}}', '{{}}')"
            ),
        )
        .map(drop)
        .map_err(|e| e.to_string())
    })
}

#[test]
fn postgres_refuses_to_append_past_the_largest_position() -> TestResult {
    eventsource_tests::pg::with_schema(|schema| {
        let store = schema.connect()?;
        positions_near_the_end(&store, &|position| {
            schema
                .sql(&format!(
                    "INSERT INTO events (position, aggregate_type, stream_id, version, \
                     event_type, event_version, event_id, recorded_at, payload, metadata) \
                     VALUES ({position}, 'note', 'planted', 1, 'note.added', 1, \
                     '00000000-0000-4000-8000-000000000001', now(), '{{}}', '{{}}')"
                ))
                .map(drop)
        })?;
        drop(store);
        Ok(())
    })
}
