//! Property tests (proptest): random command sequences replayed from the store equal
//! the in-memory fold; random appends with random expected versions obey the version
//! rules of a model; random batches (any JSON, any metadata, any unicode) read back
//! exactly; arbitrary rows read to a value or a typed error.
//!
//! Each property runs 64 cases (16 on PostgreSQL); `PROPTEST_CASES` sets another
//! number. `arbitrary_rows_long` is the long-running fallback of the fuzz target:
//!
//! ```sh
//! PROPTEST_CASES=200000 cargo test --release -p eventsource-tests \
//!     --test reliability_properties -- --ignored arbitrary_rows_long --nocapture
//! ```

use std::collections::BTreeMap;
use std::error::Error;

use eventsource::{
    Aggregate, AppendError, EventStore, ExecuteError, ExpectedVersion, Metadata, NewEvent,
    Position, Repository, SqliteStore, StreamId, Version,
};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::reliability::{ArbitraryRow, INTERESTING_TYPES, LoadSummary, load_rows};
use eventsource_tests::{Account, AccountEvent, BankError, MoneyDeposited};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

/// `default` cases, or `PROPTEST_CASES`.
fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        source_file: Some(file!()),
        ..Config::default()
    }
}

/// Runs `test` on `cases` values of `strategy`, shrinking a failure to a small example.
fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> TestResult) -> TestResult
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(config(cases));
    runner
        .run(&strategy, |value| {
            test(value).map_err(|e| TestCaseError::fail(format!("{e:?}")))
        })
        .map_err(|e| e.to_string().into())
}

// Commands replayed equal the fold.

#[derive(Debug, Clone)]
enum Command {
    Open(String),
    Deposit(u64),
    Withdraw(u64),
    /// Two events from one command.
    OpenWithDeposit(String, u64),
    /// No event.
    Nothing,
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<String>().prop_map(Command::Open),
        (0..1_000u64).prop_map(Command::Deposit),
        (0..1_000u64).prop_map(Command::Withdraw),
        (any::<String>(), 0..1_000u64).prop_map(|(o, a)| Command::OpenWithDeposit(o, a)),
        Just(Command::Nothing),
    ]
}

/// The events the command's handler decides on `state`: the same function for the
/// model and the repository.
fn decide(state: &Account, command: &Command) -> Result<Vec<AccountEvent>, BankError> {
    Ok(match command {
        Command::Open(owner) => vec![state.open(owner)?.into()],
        Command::Deposit(amount) => vec![state.deposit(*amount)?.into()],
        Command::Withdraw(amount) => vec![state.withdraw(*amount)?.into()],
        Command::OpenWithDeposit(owner, amount) => vec![
            state.open(owner)?.into(),
            MoneyDeposited { amount: *amount }.into(),
        ],
        Command::Nothing => Vec::new(),
    })
}

fn commands_replay_to_the_fold(commands: &[(u8, Command)]) -> TestResult {
    let store = SqliteStore::in_memory()?;
    let accounts = Repository::<Account, _>::new(&store);
    let mut model: BTreeMap<String, Vec<AccountEvent>> = BTreeMap::new();
    for (account, command) in commands {
        let id = format!("acc-{}", account % 3);
        let history = model.entry(id.clone()).or_default();
        let mut state = Account::default();
        for event in history.iter() {
            state.apply_event(event);
        }
        let expected = decide(&state, command);
        match (accounts.execute(&id, |a| decide(a, command)), expected) {
            (Ok(committed), Ok(events)) => {
                assert_eq!(committed.events, events);
                history.extend(events);
                for event in &committed.events {
                    state.apply_event(event);
                }
                assert_eq!(committed.state, state);
                assert_eq!(committed.version.get(), history.len() as u64);
                assert_eq!(committed.positions.len(), committed.events.len());
            }
            (Err(ExecuteError::Domain(e)), Err(expected)) => assert_eq!(e, expected),
            (got, expected) => panic!("{command:?}: got {got:?}, the model says {expected:?}"),
        }
    }
    for (id, history) in &model {
        let mut state = Account::default();
        for (n, event) in history.iter().enumerate() {
            let at = accounts.load_at(id, n as u64)?;
            assert_eq!((&at.state, at.version.get()), (&state, n as u64));
            state.apply_event(event);
        }
        let loaded = accounts.load(id)?;
        assert_eq!(loaded.state, state);
        assert_eq!(loaded.version.get(), history.len() as u64);
    }
    Ok(())
}

#[test]
fn random_commands_replay_to_the_in_memory_fold() -> TestResult {
    check(64, vec((any::<u8>(), command()), 0..40), |commands| {
        commands_replay_to_the_fold(&commands)
    })
}

// Appends obey the version rules of a model.

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// The model's version plus this offset (clamped at 0).
    Near(i8),
}

#[derive(Debug, Clone)]
struct Append {
    stream: u8,
    expect: Expect,
    events: usize,
}

fn append() -> impl Strategy<Value = Append> {
    let expect = prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::StreamExists),
        (-2..=2i8).prop_map(Expect::Near),
    ];
    (0..3u8, expect, 0..4usize).prop_map(|(stream, expect, events)| Append {
        stream,
        expect,
        events,
    })
}

/// Runs `appends` on streams named after `prefix` and checks every result against a
/// model of stream versions; positions must continue from `position`.
fn appends_follow_the_model<S: EventStore>(
    store: &S,
    prefix: &str,
    appends: &[Append],
    mut position: u64,
) -> TestResult {
    let mut versions = [0u64; 3];
    for (i, append) in appends.iter().enumerate() {
        let stream = StreamId::new("model", format!("{prefix}-{}", append.stream));
        let actual = versions[usize::from(append.stream)];
        let expected = match append.expect {
            Expect::Any => ExpectedVersion::Any,
            Expect::NoStream => ExpectedVersion::NoStream,
            Expect::StreamExists => ExpectedVersion::StreamExists,
            Expect::Near(offset) => {
                ExpectedVersion::Exact(Version::new(actual.saturating_add_signed(offset.into())))
            }
        };
        let accepts = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::StreamExists => actual > 0,
            ExpectedVersion::Exact(v) => v.get() == actual,
        };
        let events: Vec<NewEvent> = (0..append.events)
            .map(|k| NewEvent::new("model.appended", 1, format!(r#"{{"i":{i},"k":{k}}}"#)))
            .collect();
        match store.append(&stream, expected, &events) {
            Ok(appended) => {
                assert!(accepts, "{expected:?} accepted at version {actual}");
                let n = events.len() as u64;
                assert_eq!(appended.stream_version.get(), actual + n);
                let positions: Vec<u64> = appended.positions.iter().map(|p| p.get()).collect();
                assert_eq!(positions, (position + 1..=position + n).collect::<Vec<_>>());
                position += n;
                versions[usize::from(append.stream)] += n;
            }
            Err(AppendError::Conflict {
                stream: s,
                expected: e,
                actual: a,
            }) => {
                assert!(!accepts, "{expected:?} refused at version {actual}");
                assert_eq!((s, e, a.get()), (stream, expected, actual));
            }
            Err(e) => return Err(e.into()),
        }
    }
    for (i, version) in versions.iter().enumerate() {
        let stream = StreamId::new("model", format!("{prefix}-{i}"));
        assert_eq!(store.stream_version(&stream)?.get(), *version);
        let read: Vec<u64> = store
            .read_stream(&stream, Version::new(1))
            .map(|e| e.map(|e| e.version.get()))
            .collect::<Result<_, _>>()?;
        assert_eq!(read, (1..=*version).collect::<Vec<_>>());
    }
    Ok(())
}

#[test]
fn random_appends_obey_the_version_rules() -> TestResult {
    check(64, vec(append(), 0..40), |appends| {
        appends_follow_the_model(&SqliteStore::in_memory()?, "s", &appends, 0)
    })
}

#[test]
fn random_appends_obey_the_version_rules_on_postgres() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    let case = std::cell::Cell::new(0);
    check(16, vec(append(), 0..30), |appends| {
        case.set(case.get() + 1);
        let position = store
            .read_all(Position::START)
            .last()
            .transpose()?
            .map_or(0, |e| e.position.get());
        appends_follow_the_model(&store, &format!("case{}", case.get()), &appends, position)
    })?;
    drop(store);
    Ok(())
}

// Batches round-trip exactly.

/// Any JSON value; strings from any unicode (`nul` allows U+0000), numbers from any
/// integer and, with `floats`, any finite float.
fn json(nul: bool, floats: bool) -> impl Strategy<Value = Value> {
    let text = move || any::<String>().prop_map(move |s| if nul { s } else { s.replace('\0', "") });
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(move |f| if floats { Value::from(f) } else { Value::Null }),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 5, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(text(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Metadata whose extra keys are not the names of its fields, without floats (see
/// `metadata_floats_read_back_exactly`).
fn metadata(nul: bool) -> impl Strategy<Value = Metadata> {
    let text = move || any::<String>().prop_map(move |s| if nul { s } else { s.replace('\0', "") });
    let key = text().prop_filter("a field's name", |k| {
        !matches!(k.as_str(), "correlation_id" | "causation_id" | "actor")
    });
    (
        option::of(text()),
        option::of(text()),
        option::of(text()),
        btree_map(key, json(nul, false), 0..4),
    )
        .prop_map(|(correlation_id, causation_id, actor, extra)| Metadata {
            correlation_id,
            causation_id,
            actor,
            extra,
        })
}

#[derive(Debug, Clone)]
struct Written {
    event_type: String,
    event_version: u32,
    payload: String,
    metadata: Metadata,
}

/// Events with any type name, version, payload (printed compact, pretty or padded) and
/// metadata.
fn batch(nul: bool) -> impl Strategy<Value = (String, Vec<Written>)> {
    let event = (
        any::<String>().prop_map(move |s| if nul { s } else { s.replace('\0', "") }),
        1..=u32::MAX,
        // PostgreSQL prints numbers its own way, and serde_json does not parse every
        // float exactly: floats are compared as text on SQLite only.
        json(nul, nul),
        0..3u8,
        metadata(nul),
    )
        .prop_map(|(event_type, event_version, value, style, metadata)| {
            let payload = match style {
                0 => value.to_string(),
                1 => serde_json::to_string_pretty(&value).unwrap_or_default(),
                _ => format!(" \t{value}\r\n"),
            };
            Written {
                event_type,
                event_version,
                payload,
                metadata,
            }
        });
    let id = any::<String>().prop_map(move |s| if nul { s } else { s.replace('\0', "") });
    (id, vec(event, 1..6))
}

fn batch_round_trips<S: EventStore>(
    store: &S,
    stream: &StreamId,
    written: &[Written],
    exact_text: bool,
) -> TestResult {
    let events: Vec<NewEvent> = written
        .iter()
        .map(|w| {
            NewEvent::new(w.event_type.clone(), w.event_version, w.payload.clone())
                .with_metadata(w.metadata.clone())
        })
        .collect();
    let appended = store.append(stream, ExpectedVersion::NoStream, &events)?;
    let read: Vec<_> = store
        .read_stream(stream, Version::new(1))
        .collect::<Result<_, _>>()?;
    assert_eq!(read.len(), events.len());
    for ((event, back), position) in events.iter().zip(&read).zip(&appended.positions) {
        assert_eq!(&back.stream, stream);
        assert_eq!(back.position, *position);
        assert_eq!(back.event_id, event.event_id);
        assert_eq!(back.event_type, event.event_type);
        assert_eq!(back.event_version, event.event_version);
        if exact_text {
            assert_eq!(back.payload, event.payload, "payload text changed");
        } else {
            let (a, b): (Value, Value) = (
                serde_json::from_str(&back.payload)?,
                serde_json::from_str(&event.payload)?,
            );
            assert_eq!(a, b);
        }
        assert_eq!(back.metadata, event.metadata);
    }
    Ok(())
}

#[test]
fn random_batches_round_trip_byte_for_byte() -> TestResult {
    check(
        64,
        (any::<String>(), batch(true)),
        |(aggregate, (id, written))| {
            let store = SqliteStore::in_memory()?;
            batch_round_trips(&store, &StreamId::new(aggregate, id), &written, true)
        },
    )
}

#[test]
fn random_batches_round_trip_on_postgres() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    let case = std::cell::Cell::new(0);
    check(16, batch(false), |(id, written)| {
        case.set(case.get() + 1);
        let stream = StreamId::new(format!("case{}", case.get()), id);
        batch_round_trips(&store, &stream, &written, false)
    })?;
    drop(store);
    Ok(())
}

/// Metadata whose extra keys name one of its fields is either refused when appended or
/// read back as it was written; it must never be stored so that every later read of
/// the event fails, or read back as something else.
#[test]
fn metadata_extra_keys_that_name_a_field_never_poison_the_stream() -> TestResult {
    metadata_extra_keys_on(&SqliteStore::in_memory()?, "sqlite")?;
    if let Some(url) = pg::url() {
        let schema = TestSchema::new(&url);
        let store = schema.connect()?;
        metadata_extra_keys_on(&store, "postgres")?;
        drop(store);
    }
    Ok(())
}

fn metadata_extra_keys_on<S: EventStore>(store: &S, backend: &str) -> TestResult {
    let cases = [
        Metadata::new().actor("alice").with("actor", "mallory"),
        Metadata::new().with("actor", Value::Null),
        Metadata::new().with("correlation_id", 7),
        Metadata::new().causation_id("c").with("causation_id", "d"),
    ];
    for (i, metadata) in cases.into_iter().enumerate() {
        let stream = StreamId::new("meta", i.to_string());
        let event = NewEvent::new("note.added", 1, "{}").with_metadata(metadata.clone());
        match store.append(&stream, ExpectedVersion::NoStream, &[event]) {
            Err(AppendError::Encode { .. }) => {}
            Ok(_) => {
                let back = store
                    .read_stream(&stream, Version::new(1))
                    .next()
                    .ok_or("the event is missing")?
                    .map_err(|e| format!("{backend}: {metadata:?} was stored unreadable: {e}"))?;
                assert_eq!(back.metadata, metadata, "{backend}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Floats in metadata read back as the same float.
#[test]
fn metadata_floats_read_back_exactly() -> TestResult {
    let store = SqliteStore::in_memory()?;
    let stream = StreamId::new("meta", "floats");
    let floats = [
        7.436_589_934_086_557e143,
        1.797_693_134_862_315_7e308,
        5e-324,
        0.1,
    ];
    let metadata = Metadata::new().with("floats", floats.to_vec());
    let event = NewEvent::new("note.added", 1, "{}").with_metadata(metadata.clone());
    store.append(&stream, ExpectedVersion::NoStream, &[event])?;
    let back = store
        .read_stream(&stream, Version::new(1))
        .next()
        .ok_or("the event is missing")??;
    assert_eq!(back.metadata, metadata);
    Ok(())
}

// Arbitrary rows read to a value or a typed error (the fuzz target's contract).

fn arbitrary_row() -> impl Strategy<Value = ArbitraryRow> {
    let event_type = prop_oneof![
        3 => proptest::sample::select(INTERESTING_TYPES).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    let json_text = prop_oneof![
        Just(r#"{"amount":5}"#.to_owned()),
        Just(r#"{"owner":"o","currency":"EUR"}"#.to_owned()),
        Just(r#"{"owner":"o"}"#.to_owned()),
        Just("[1,2,3]".to_owned()),
        json(true, true).prop_map(|v| v.to_string()),
    ];
    let bytes = prop_oneof![
        3 => json_text.prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..64),
    ];
    let metadata = prop_oneof![
        3 => Just(b"{}".to_vec()),
        1 => json(true, true).prop_map(|v| v.to_string().into_bytes()),
        1 => vec(any::<u8>(), 0..16),
    ];
    let version = prop_oneof![4 => 1..5i64, 1 => any::<i64>()];
    let event_version = prop_oneof![4 => 1..4i64, 1 => any::<i64>()];
    (
        any::<u8>(),
        version,
        event_type,
        event_version,
        bytes,
        proptest::bool::weighted(0.1),
        metadata,
    )
        .prop_map(
            |(stream, version, event_type, event_version, payload, payload_blob, metadata)| {
                ArbitraryRow {
                    stream,
                    version,
                    event_type,
                    event_version,
                    payload,
                    payload_blob,
                    metadata,
                }
            },
        )
}

fn arbitrary_rows(cases: u32) -> TestResult {
    let totals = std::cell::Cell::new(LoadSummary::default());
    check(cases, vec(arbitrary_row(), 0..8), |rows| {
        let summary = load_rows(&rows)?;
        let mut total = totals.get();
        total.stored += summary.stored;
        total.loaded += summary.loaded;
        total.refused += summary.refused;
        totals.set(total);
        Ok(())
    })?;
    eprintln!("arbitrary rows: {:?}", totals.get());
    Ok(())
}

#[test]
fn arbitrary_rows_load_to_a_value_or_a_typed_error() -> TestResult {
    arbitrary_rows(64)
}

/// The long-running fallback of `fuzz/`: see the module docs.
#[test]
#[ignore = "long-running: run on purpose, see the module docs"]
fn arbitrary_rows_long() -> TestResult {
    arbitrary_rows(100_000)
}

/// A sanity check of the generators' assumptions: the three fields of `Metadata` are
/// the names the metadata strategy avoids.
#[test]
fn metadata_field_names_are_the_ones_avoided() -> TestResult {
    let full = Metadata::new()
        .correlation_id("a")
        .causation_id("b")
        .actor("c");
    let value: Value = serde_json::from_str(&full.to_json()?)?;
    let keys: Vec<&String> = value.as_object().ok_or("not an object")?.keys().collect();
    assert_eq!(keys, ["actor", "causation_id", "correlation_id"]);
    Ok(())
}
