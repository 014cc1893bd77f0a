//! Non-finite floats (`NaN`, `inf`, `-inf`): JSON has no value for them and `serde_json`
//! writes them as `null`, which the event's struct cannot decode, so a stream holding one
//! could never be loaded again. They are refused when the event is encoded, with
//! `AppendError::Encode` naming the event type, and nothing of the command is stored; a
//! snapshot holding one is not saved (the state is replayed from the events instead).
//! On a SQLite file and on the PostgreSQL server.

use std::collections::BTreeMap;
use std::error::Error;

use eventsource::{
    AppendError, Apply, EventStore, ExecuteError, Metadata, Position, Repository, SnapshotPolicy,
    SqliteStore, StreamId, Version, event,
};
use eventsource_tests::TempStore;
use eventsource_tests::pg::{self, TestSchema};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn Error>>;

/// A reading with floats at every depth serde can put one.
#[event(name = "sensor.read")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Read {
    /// The value.
    pub value: f64,
    /// The same as an `f32`.
    pub coarse: f32,
    /// Earlier values, some missing.
    pub history: Vec<Option<f64>>,
    /// Values by channel.
    pub channels: BTreeMap<String, f64>,
}

/// The sensor lost its reading: the state holds `Some(NaN)` from here on.
#[event(name = "sensor.lost")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lost;

/// A sensor: its reading count and last value.
#[derive(Debug, Default, Clone, Serialize, Deserialize, eventsource::Aggregate)]
#[aggregate(name = "sensor", events(Read, Lost))]
pub struct Sensor {
    /// Readings applied.
    pub readings: u64,
    /// The last value (`Some(NaN)` once lost).
    pub last: Option<f64>,
}

impl Apply<Read> for Sensor {
    fn apply(&mut self, e: &Read) {
        self.readings += 1;
        self.last = Some(e.value);
    }
}

impl Apply<Lost> for Sensor {
    fn apply(&mut self, _: &Lost) {
        self.last = Some(f64::NAN);
    }
}

fn read(value: f64) -> Read {
    Read {
        value,
        coarse: 1.5,
        history: vec![Some(0.5), None],
        channels: BTreeMap::from([("a".to_owned(), 2.0)]),
    }
}

/// Every way a non-finite float can sit in a `Read`, with a name for messages.
fn bad_reads() -> Vec<(&'static str, Read)> {
    let mut cases = vec![
        ("f64 NaN", read(f64::NAN)),
        ("f64 inf", read(f64::INFINITY)),
        ("f64 -inf", read(f64::NEG_INFINITY)),
    ];
    let mut r = read(1.0);
    r.coarse = f32::NAN;
    cases.push(("f32 NaN", r));
    let mut r = read(1.0);
    r.coarse = f32::NEG_INFINITY;
    cases.push(("f32 -inf", r));
    let mut r = read(1.0);
    r.history.push(Some(f64::NAN));
    cases.push(("NaN in a Vec<Option<f64>>", r));
    let mut r = read(1.0);
    r.channels.insert("b".to_owned(), f64::INFINITY);
    cases.push(("inf in a map", r));
    cases
}

/// Runs every bad read (alone, and after a good event in the same command) against a
/// sensor that has one good reading, on `store`; checks that each is refused naming the
/// type, that nothing was stored, and that the stream still loads.
fn refuses_non_finite_floats<S: EventStore>(store: &S) -> TestResult {
    let sensors = Repository::<Sensor, _>::new(store);
    let stream = StreamId::new("sensor", "s");
    sensors.execute("s", |_| read(20.5))?;
    let count_all = || store.read_all(Position::START).count();
    let before = count_all();
    for (name, bad) in bad_reads() {
        let alone = bad.clone();
        let refused = sensors.execute("s", move |_| alone.clone());
        let batch = sensors.execute("s", |_| (read(1.0), Lost, bad.clone()));
        for result in [refused, batch] {
            match result {
                Err(ExecuteError::Append(AppendError::Encode {
                    stream: s,
                    event_type,
                    source,
                })) => {
                    assert_eq!(
                        (s, event_type.as_str()),
                        (stream.clone(), "sensor.read"),
                        "{name}"
                    );
                    assert!(
                        source.to_string().contains("is not finite"),
                        "{name}: {source}"
                    );
                }
                other => panic!("{name}: expected an encode error, got {other:?}"),
            }
        }
        assert_eq!(store.stream_version(&stream)?, Version::new(1), "{name}");
        assert_eq!(count_all(), before, "{name}");
        let loaded = sensors.load("s")?;
        assert_eq!(
            (loaded.state.readings, loaded.state.last),
            (1, Some(20.5)),
            "{name}"
        );
    }
    // The stream takes good events afterwards.
    let done = sensors.execute("s", |_| read(3.0))?;
    assert_eq!(done.version, Version::new(2));
    assert_eq!(sensors.load("s")?.state.readings, 2);
    Ok(())
}

#[test]
fn sqlite_refuses_a_non_finite_float_in_an_event_and_stores_nothing() -> TestResult {
    let tmp = TempStore::new()?;
    refuses_non_finite_floats(&SqliteStore::open(&tmp.path)?)
}

#[test]
fn postgres_refuses_a_non_finite_float_in_an_event_and_stores_nothing() -> TestResult {
    pg::with_schema(|schema: &TestSchema| {
        let store = schema.connect()?;
        refuses_non_finite_floats(&store)?;
        assert_eq!(schema.sql("SELECT count(*) FROM events")?, "2\n");
        Ok(())
    })
}

/// A state holding `Some(NaN)` is not snapshotted (it would come back as `None`): the
/// load replays it from the events and gets `Some(NaN)`.
fn skips_snapshots_with_non_finite_floats<S: EventStore>(store: &S) -> TestResult {
    let sensors = Repository::<Sensor, _>::new(store).with_snapshots(SnapshotPolicy::every(1));
    let stream = StreamId::new("sensor", "s");
    sensors.execute("s", |_| read(1.0))?;
    let first = store.load_snapshot(&stream, Version::MAX, 1)?;
    assert_eq!(first.map(|s| s.version), Some(Version::new(1)));
    let done = sensors.execute("s", |_| Lost)?;
    assert_eq!(done.version, Version::new(2));
    let newest = store.load_snapshot(&stream, Version::MAX, 1)?;
    assert_eq!(newest.map(|s| s.version), Some(Version::new(1)));
    let loaded = sensors.load("s")?;
    assert!(loaded.state.last.is_some_and(f64::is_nan), "{loaded:?}");
    assert_eq!(loaded.version, Version::new(2));
    Ok(())
}

#[test]
fn sqlite_does_not_save_a_snapshot_holding_a_non_finite_float() -> TestResult {
    let tmp = TempStore::new()?;
    skips_snapshots_with_non_finite_floats(&SqliteStore::open(&tmp.path)?)
}

#[test]
fn postgres_does_not_save_a_snapshot_holding_a_non_finite_float() -> TestResult {
    pg::with_schema(|schema: &TestSchema| {
        skips_snapshots_with_non_finite_floats(&schema.connect()?)
    })
}

/// Metadata holds `serde_json::Value`s, which have no non-finite number: `with("k", NaN)`
/// already holds `null`, and the event stores and loads.
#[test]
fn metadata_cannot_hold_a_non_finite_float() -> TestResult {
    let meta = Metadata::new().with("t", f64::NAN).with("u", f32::INFINITY);
    assert_eq!(meta.extra["t"], serde_json::Value::Null);
    assert_eq!(meta.to_json()?, r#"{"t":null,"u":null}"#);
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let sensors = Repository::<Sensor, _>::new(&store);
    sensors.execute_with("s", &meta, |_| read(1.0))?;
    let stored: Vec<_> = store
        .read_stream(&StreamId::new("sensor", "s"), Version::new(1))
        .collect::<Result<_, _>>()?;
    assert_eq!(stored[0].metadata, meta);
    assert_eq!(sensors.load("s")?.state.readings, 1);
    Ok(())
}
