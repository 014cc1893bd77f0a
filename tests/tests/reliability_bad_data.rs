//! Bad data in the table, inserted with raw SQL through a plain connection (INSERT is
//! what the append-only triggers allow): every kind of row the library cannot use gives
//! a typed error that names where the row is, never a panic and never a silently wrong
//! aggregate; the events before it and every other stream stay readable; and reading
//! writes nothing (the rows are compared, every column, before and after).
//!
//! Each test stores a good account `account/good` (opened, 50 deposited) and an account
//! `account/bad` opened at version 1, then inserts the bad row as version 2 of
//! `account/bad` (unless the test is about versions).

use std::error::Error;

use eventsource::{
    Aggregate, Apply, DecodeFailure, EventLocation, EventStore, ExecuteError, Position, RawEvent,
    ReadError, Repository, SqliteStore, StreamId, UpcastError, Upcasters, Version, event,
};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::reliability::{Cell, sqlite_rows};
use eventsource_tests::{Account, TempStore};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn Error>>;

/// The columns of the bad row, as SQL expressions.
#[derive(Debug, Clone)]
struct BadRow {
    stream_id: String,
    version: String,
    event_type: String,
    event_version: String,
    event_id: String,
    recorded_at: String,
    payload: String,
    metadata: String,
}

impl BadRow {
    /// A well-formed deposit of 7 at version 2 of `account/bad`.
    fn new() -> Self {
        BadRow {
            stream_id: "'bad'".into(),
            version: "2".into(),
            event_type: "'money.deposited'".into(),
            event_version: "1".into(),
            event_id: format!("'{}'", eventsource::EventId::new()),
            recorded_at: "0".into(),
            payload: r#"'{"amount":7}'"#.into(),
            metadata: "'{}'".into(),
        }
    }

    fn typed(mut self, event_type: &str, event_version: u32) -> Self {
        self.event_type = format!("'{event_type}'");
        self.event_version = event_version.to_string();
        self
    }

    fn payload(mut self, sql: &str) -> Self {
        self.payload = sql.into();
        self
    }

    fn version(mut self, sql: &str) -> Self {
        self.version = sql.into();
        self
    }

    fn set(mut self, column: &str, sql: &str) -> Self {
        let slot = match column {
            "stream_id" => &mut self.stream_id,
            "version" => &mut self.version,
            "event_type" => &mut self.event_type,
            "event_version" => &mut self.event_version,
            "event_id" => &mut self.event_id,
            "recorded_at" => &mut self.recorded_at,
            "payload" => &mut self.payload,
            "metadata" => &mut self.metadata,
            other => panic!("no column {other}"),
        };
        *slot = sql.into();
        self
    }

    fn insert_sql(&self, position: Option<u64>) -> String {
        let (column, value) = match position {
            Some(p) => ("position, ", format!("{p}, ")),
            None => ("", String::new()),
        };
        format!(
            "INSERT INTO events ({column}aggregate_type, stream_id, version, event_type, \
             event_version, event_id, recorded_at, payload, metadata) VALUES ({value}'account', \
             {}, {}, {}, {}, {}, {}, {}, {})",
            self.stream_id,
            self.version,
            self.event_type,
            self.event_version,
            self.event_id,
            self.recorded_at,
            self.payload,
            self.metadata
        )
    }
}

/// A SQLite store with the good and the bad account.
struct Fixture {
    tmp: TempStore,
    store: SqliteStore,
    /// The position of the bad row.
    bad: Position,
    rows: Vec<Vec<Cell>>,
}

impl Fixture {
    fn new(row: &BadRow) -> Result<Self, Box<dyn Error>> {
        let tmp = TempStore::new()?;
        let store = SqliteStore::open(&tmp.path)?;
        let accounts = Repository::<Account, _>::new(&store);
        accounts.execute("good", |a| a.open("gus"))?;
        accounts.execute("good", |a| a.deposit(50))?;
        accounts.execute("bad", |a| a.open("bob"))?;
        let conn = rusqlite::Connection::open(&tmp.path)?;
        conn.execute(&row.insert_sql(None), [])?;
        let bad = Position::new(conn.last_insert_rowid().unsigned_abs());
        drop(conn);
        let rows = sqlite_rows(&tmp.path)?;
        Ok(Fixture {
            tmp,
            store,
            bad,
            rows,
        })
    }

    fn accounts(&self) -> Repository<Account, &SqliteStore> {
        Repository::new(&self.store)
    }

    /// Loads `account/bad` expecting an error; checks that a command on it fails with
    /// the same error and stores nothing, that its first event still loads, and that
    /// the good account is intact.
    fn load_error(
        &self,
        accounts: &Repository<Account, &SqliteStore>,
    ) -> Result<ReadError, Box<dyn Error>> {
        let err = match accounts.load("bad") {
            Err(e) => e,
            Ok(loaded) => panic!("loaded a bad stream: {loaded:?}"),
        };
        match accounts.execute("bad", |a| a.deposit(1)) {
            Err(ExecuteError::Read(again)) => assert_eq!(format!("{again:?}"), format!("{err:?}")),
            other => panic!("a command on the bad stream: {other:?}"),
        }
        let first = accounts.load_at("bad", 1)?;
        assert_eq!(
            (first.state.owner.as_str(), first.version),
            ("bob", Version::new(1))
        );
        self.good_is_intact()?;
        Ok(err)
    }

    fn good_is_intact(&self) -> TestResult {
        let good = self.accounts().load("good")?;
        assert_eq!((good.state.balance, good.version), (50, Version::new(2)));
        let events = self
            .store
            .read_stream(&StreamId::new("account", "good"), Version::new(1))
            .collect::<Result<Vec<_>, _>>()?;
        assert_eq!(events.len(), 2);
        Ok(())
    }

    /// The location of the bad row, as `at` must name it.
    fn at(&self, event_type: &str, event_version: u32) -> EventLocation {
        EventLocation {
            position: self.bad,
            stream: StreamId::new("account", "bad"),
            version: Version::new(2),
            event_type: event_type.into(),
            event_version,
        }
    }

    /// The rows are exactly as they were after the bad row was inserted.
    fn unchanged(self) -> TestResult {
        assert_eq!(
            sqlite_rows(&self.tmp.path)?,
            self.rows,
            "reading wrote to the table"
        );
        Ok(())
    }
}

fn decode_failure(err: ReadError, at: &EventLocation) -> DecodeFailure {
    match err {
        ReadError::Decode { at: found, source } => {
            assert_eq!(&*found, at);
            source
        }
        other => panic!("expected a decode error at {at}, got {other:?}"),
    }
}

#[test]
fn a_payload_that_is_not_json_is_a_decode_error() -> TestResult {
    let f = Fixture::new(&BadRow::new().payload(r#"'{"amount": 7'"#))?;
    let source = decode_failure(f.load_error(&f.accounts())?, &f.at("money.deposited", 1));
    assert!(matches!(source, DecodeFailure::Payload(e) if e.is_eof()));
    f.unchanged()
}

#[test]
fn json_of_the_wrong_shape_is_a_decode_error() -> TestResult {
    for payload in [
        r#"'{"amount":"seven"}'"#,
        r#"'{"sum":7}'"#,
        r#"'{"amount":-7}'"#,
        "'[]'",
        "'null'",
        // An integer, which the column's TEXT affinity stores as the text `42`.
        "42",
        // Nested past serde_json's recursion limit: an error, not a stack overflow.
        "printf('%.*c', 100000, '[')",
    ] {
        let f = Fixture::new(&BadRow::new().payload(payload))?;
        let source = decode_failure(f.load_error(&f.accounts())?, &f.at("money.deposited", 1));
        assert!(
            matches!(&source, DecodeFailure::Payload(e) if e.is_data() || e.is_syntax()),
            "{payload}: {source:?}"
        );
        f.unchanged()?;
    }
    Ok(())
}

#[test]
fn an_unknown_event_type_is_a_decode_error() -> TestResult {
    let f = Fixture::new(&BadRow::new().typed("account.frozen", 1).payload("'{}'"))?;
    let source = decode_failure(f.load_error(&f.accounts())?, &f.at("account.frozen", 1));
    assert!(matches!(source, DecodeFailure::UnknownType));
    f.unchanged()
}

#[test]
fn an_event_version_newer_than_the_code_is_a_decode_error() -> TestResult {
    for (event_type, version, current) in [
        ("money.deposited", 2, 1),
        ("account.opened", 3, 2),
        ("account.opened", u32::MAX, 2),
    ] {
        let f = Fixture::new(&BadRow::new().typed(event_type, version))?;
        let source = decode_failure(f.load_error(&f.accounts())?, &f.at(event_type, version));
        assert!(
            matches!(source, DecodeFailure::UnsupportedVersion { current: c } if c == current),
            "{event_type} v{version}: {source:?}"
        );
        f.unchanged()?;
    }
    Ok(())
}

// A domain whose event went through three shapes, but whose code only keeps the path
// from version 2: a stored version 1 has no way up.

/// Version 2 of `thing.done`; version 1 is no longer known to the code.
#[event(name = "thing.done", version = 2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoneV2 {
    /// The amount.
    pub b: u32,
}

/// The current `thing.done`.
#[event(name = "thing.done", version = 3, upcast_from = DoneV2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// The amount.
    pub c: u32,
}

impl From<DoneV2> for Done {
    fn from(v2: DoneV2) -> Self {
        Done { c: v2.b }
    }
}

/// An aggregate with one event type.
#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "thing", events(Done))]
pub struct Thing {
    total: u32,
}

impl Apply<Done> for Thing {
    fn apply(&mut self, e: &Done) {
        self.total += e.c;
    }
}

/// Stores `thing/t` with a version 1 event (no path up) after a version 2 one.
fn thing_with_a_lost_version() -> Result<(TempStore, SqliteStore), Box<dyn Error>> {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let conn = rusqlite::Connection::open(&tmp.path)?;
    for (version, event_version, payload) in [(1, 2, r#"{"b":1}"#), (2, 1, r#"{"a":1}"#)] {
        conn.execute(
            "INSERT INTO events (aggregate_type, stream_id, version, event_type, event_version, \
             event_id, recorded_at, payload, metadata) VALUES ('thing', 't', ?1, 'thing.done', \
             ?2, ?3, 0, ?4, '{}')",
            (
                version,
                event_version,
                eventsource::EventId::new().to_string(),
                payload,
            ),
        )?;
    }
    Ok((tmp, store))
}

#[test]
fn an_old_version_without_an_upcaster_is_a_decode_error() -> TestResult {
    let (tmp, store) = thing_with_a_lost_version()?;
    let before = sqlite_rows(&tmp.path)?;
    let things = Repository::<Thing, _>::new(&store);
    assert_eq!(things.load_at("t", 1)?.state.total, 1);
    match things.load("t") {
        Err(ReadError::Decode { at, source }) => {
            assert_eq!(
                *at,
                EventLocation {
                    position: Position::new(2),
                    stream: StreamId::new("thing", "t"),
                    version: Version::new(2),
                    event_type: "thing.done".into(),
                    event_version: 1,
                }
            );
            assert!(
                matches!(source, DecodeFailure::UnsupportedVersion { .. }),
                "{source:?}"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(sqlite_rows(&tmp.path)?, before);
    Ok(())
}

#[test]
fn an_old_version_without_an_upcaster_names_the_current_version() -> TestResult {
    let (_tmp, store) = thing_with_a_lost_version()?;
    match Repository::<Thing, _>::new(&store).load("t") {
        Err(ReadError::Decode {
            source: DecodeFailure::UnsupportedVersion { current },
            ..
        }) => assert_eq!(current, 3),
        other => panic!("expected an unsupported version, got {other:?}"),
    }
    Ok(())
}

fn failing_upcasters() -> Upcasters {
    Upcasters::new()
        .custom("account.renamed", 1, &[], |raw| {
            Err(UpcastError::invalid(format!("no owner in {}", raw.payload)))
        })
        .rename("loop.a", 1, "loop.b", 1)
        .rename("loop.b", 1, "loop.a", 1)
        .custom(
            "account.split",
            1,
            &[("money.deposited", 1), ("account.vanished", 1)],
            |raw| {
                Ok(vec![
                    RawEvent::new("money.deposited", 1, serde_json::json!({"amount": 1})),
                    RawEvent::new("account.vanished", 1, raw.payload),
                ])
            },
        )
}

#[test]
fn an_upcaster_error_is_an_upcast_error() -> TestResult {
    let f = Fixture::new(
        &BadRow::new()
            .typed("account.renamed", 1)
            .payload(r#"'{"who":1}'"#),
    )?;
    let accounts = f.accounts().with_upcasters_unchecked(failing_upcasters());
    match f.load_error(&accounts)? {
        ReadError::Upcast { at, source } => {
            assert_eq!(*at, f.at("account.renamed", 1));
            assert!(
                matches!(&source, UpcastError::Invalid(m) if m == r#"no owner in {"who":1}"#),
                "{source:?}"
            );
        }
        other => panic!("expected an upcast error, got {other:?}"),
    }
    f.unchanged()
}

#[test]
fn a_cycle_of_upcasters_is_an_upcast_error() -> TestResult {
    let f = Fixture::new(&BadRow::new().typed("loop.a", 1).payload("'{}'"))?;
    let accounts = f.accounts().with_upcasters_unchecked(failing_upcasters());
    match f.load_error(&accounts)? {
        ReadError::Upcast { at, source } => {
            assert_eq!(*at, f.at("loop.a", 1));
            assert!(
                matches!(source, UpcastError::TooManySteps { .. }),
                "{source:?}"
            );
        }
        other => panic!("expected an upcast error, got {other:?}"),
    }
    f.unchanged()
}

#[test]
fn what_an_upcaster_cannot_read_or_produces_unknown_is_a_decode_error() -> TestResult {
    // The upcaster's input is not JSON.
    let f = Fixture::new(&BadRow::new().typed("account.renamed", 1).payload("'{oops'"))?;
    let accounts = f.accounts().with_upcasters_unchecked(failing_upcasters());
    let source = decode_failure(f.load_error(&accounts)?, &f.at("account.renamed", 1));
    assert!(matches!(source, DecodeFailure::Payload(e) if e.is_syntax()));
    f.unchanged()?;
    // Its output has a type the aggregate does not know: the error names the stored row.
    let f = Fixture::new(&BadRow::new().typed("account.split", 1).payload("'{}'"))?;
    let accounts = f.accounts().with_upcasters_unchecked(failing_upcasters());
    let source = decode_failure(f.load_error(&accounts)?, &f.at("account.split", 1));
    assert!(matches!(source, DecodeFailure::UnknownType));
    f.unchanged()
}

#[test]
fn a_gap_in_versions_is_a_version_gap_error() -> TestResult {
    for (version, after, found) in [("4", 1, 4), ("1000000", 1, 1_000_000)] {
        let f = Fixture::new(&BadRow::new().version(version))?;
        match f.load_error(&f.accounts())? {
            ReadError::VersionGap {
                stream,
                after: a,
                found: v,
            } => {
                assert_eq!(stream, StreamId::new("account", "bad"));
                assert_eq!((a, v), (Version::new(after), Version::new(found)));
            }
            other => panic!("expected a version gap, got {other:?}"),
        }
        // The store's own reads do not judge versions: the row is there to inspect.
        let versions: Vec<u64> = f
            .store
            .read_stream(&StreamId::new("account", "bad"), Version::new(1))
            .map(|e| e.map(|e| e.version.get()))
            .collect::<Result<_, _>>()?;
        assert_eq!(versions, [1, found]);
        f.unchanged()?;
    }
    Ok(())
}

#[test]
fn a_stream_that_does_not_start_at_version_1_is_a_version_gap_error() -> TestResult {
    let f = Fixture::new(&BadRow::new().set("stream_id", "'headless'"))?;
    match f.accounts().load("headless") {
        Err(ReadError::VersionGap {
            stream,
            after,
            found,
        }) => {
            assert_eq!(stream, StreamId::new("account", "headless"));
            assert_eq!((after, found), (Version::NONE, Version::new(2)));
        }
        other => panic!("expected a version gap, got {other:?}"),
    }
    f.good_is_intact()?;
    f.unchanged()
}

/// Reads `account/bad` and everything, expecting `check` to accept the error of the bad
/// row, and checks that reading on after it works.
fn reads_fail_at_the_bad_row(f: &Fixture, check: impl Fn(&ReadError)) -> TestResult {
    let stream = StreamId::new("account", "bad");
    let read: Vec<_> = f.store.read_stream(&stream, Version::new(1)).collect();
    assert_eq!(read.len(), 2, "{read:?}");
    assert!(read[0].is_ok());
    check(read[1].as_ref().err().ok_or("read the bad row")?);
    let all: Vec<_> = f.store.read_all(Position::START).collect();
    assert_eq!(all.len() as u64, f.bad.get(), "{all:?}");
    check(
        all[all.len() - 1]
            .as_ref()
            .err()
            .ok_or("read the bad row")?,
    );
    // Past the bad row, the iterator reads on; the store still takes appends.
    let after = f.store.append(
        &StreamId::new("note", "after"),
        eventsource::ExpectedVersion::NoStream,
        &[eventsource::NewEvent::new("note.added", 1, "{}")],
    )?;
    let rest: Vec<_> = f.store.read_all(f.bad).collect::<Result<_, _>>()?;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].position, after.positions[0]);
    Ok(())
}

#[test]
fn metadata_that_is_not_a_json_object_is_a_metadata_error() -> TestResult {
    for metadata in ["'{nope'", "'[1,2]'", "'\"actor\"'", "'null'", "''"] {
        let f = Fixture::new(&BadRow::new().set("metadata", metadata))?;
        let at = f.at("money.deposited", 1);
        let check = |e: &ReadError| {
            assert!(
                matches!(e, ReadError::Metadata { at: found, .. } if **found == at),
                "{metadata}: {e:?}"
            );
        };
        // The aggregate does not depend on metadata: it loads, correctly.
        let loaded = f.accounts().load("bad")?;
        assert_eq!((loaded.state.balance, loaded.version), (7, Version::new(2)));
        let rows = f.rows.clone();
        reads_fail_at_the_bad_row(&f, check)?;
        assert_eq!(sqlite_rows(&f.tmp.path)?[..rows.len()], rows[..]);
    }
    Ok(())
}

#[test]
fn an_event_id_that_is_not_a_uuid_is_an_event_id_error() -> TestResult {
    for id in [
        "'not-a-uuid'",
        "''",
        "'01234567-89ab-cdef-0123-456789abcdeg'",
    ] {
        let f = Fixture::new(&BadRow::new().set("event_id", id))?;
        let at = f.at("money.deposited", 1);
        let loaded = f.accounts().load("bad")?;
        assert_eq!(loaded.state.balance, 7);
        reads_fail_at_the_bad_row(&f, |e| {
            assert!(
                matches!(e, ReadError::EventId { at: found, .. } if **found == at),
                "{id}: {e:?}"
            );
        })?;
    }
    Ok(())
}

#[test]
fn columns_of_the_wrong_storage_class_are_corrupt_row_errors() -> TestResult {
    for (column, sql) in [
        ("payload", "X'7B7D'"),
        ("payload", "CAST(X'7B22616D6F756E74223A377DFF' AS TEXT)"),
        ("metadata", "X'7B7D'"),
        ("event_type", "X'6D6F6E6579'"),
        ("event_id", "X'00'"),
        ("version", "2.5"),
        ("event_version", "'one'"),
        ("event_version", "5000000000"),
        ("recorded_at", "'yesterday'"),
    ] {
        let f = Fixture::new(&BadRow::new().set(column, sql))?;
        let is_corrupt = |e: &ReadError| {
            assert!(
                matches!(e, ReadError::Corrupt { position, reason }
                    if *position == f.bad.get() as i64 && reason.contains(&format!("`{column}`"))),
                "{column} = {sql}: {e:?}"
            );
        };
        if matches!(column, "metadata" | "event_id" | "recorded_at") {
            // Not needed to load an aggregate: a store may leave them unread, and then
            // the aggregate must be right.
            match f.accounts().load("bad") {
                Ok(loaded) => {
                    assert_eq!((loaded.state.balance, loaded.version), (7, Version::new(2)));
                }
                Err(e) => is_corrupt(&e),
            }
        } else {
            is_corrupt(&f.load_error(&f.accounts())?);
        }
        reads_fail_at_the_bad_row(&f, is_corrupt)?;
        assert_eq!(sqlite_rows(&f.tmp.path)?[..f.rows.len()], f.rows[..]);
    }
    Ok(())
}

#[test]
fn a_stream_column_of_the_wrong_storage_class_is_a_corrupt_row_error() -> TestResult {
    let f = Fixture::new(&BadRow::new().set("stream_id", "X'626164'"))?;
    // Not `account/bad` (a BLOB never equals a text), so that stream loads as it was.
    assert_eq!(f.accounts().load("bad")?.version, Version::new(1));
    let all: Vec<_> = f.store.read_all(Position::START).collect();
    match all.last() {
        Some(Err(ReadError::Corrupt { position, reason })) => {
            assert_eq!(*position, f.bad.get() as i64);
            assert!(reason.contains("`stream_id`"), "{reason}");
        }
        other => panic!("expected a corrupt row, got {other:?}"),
    }
    f.good_is_intact()?;
    f.unchanged()
}

// PostgreSQL: `JSONB`, `UUID` and `BIGINT` columns refuse most bad values on insert;
// what can be inserted gives the same errors.

/// Runs `check` on a fresh PostgreSQL store with the good and bad accounts and `row`
/// inserted; asserts afterwards that the table is unchanged.
fn with_postgres(
    row: &BadRow,
    check: impl FnOnce(&Repository<Account, &eventsource::PostgresStore>, Position) -> TestResult,
) -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    let accounts = Repository::<Account, _>::new(&store);
    accounts.execute("good", |a| a.open("gus"))?;
    accounts.execute("good", |a| a.deposit(50))?;
    accounts.execute("bad", |a| a.open("bob"))?;
    let mut row = row.clone();
    row.recorded_at = "now()".into();
    row.event_id = format!("{}::uuid", row.event_id);
    schema.sql(&row.insert_sql(Some(4)))?;
    let before = schema.sql("SELECT * FROM events ORDER BY position")?;
    check(&accounts, Position::new(4))?;
    let good = accounts.load("good")?;
    assert_eq!((good.state.balance, good.version), (50, Version::new(2)));
    assert_eq!(
        schema.sql("SELECT * FROM events ORDER BY position")?,
        before
    );
    drop(accounts);
    drop(store);
    Ok(())
}

fn postgres_at(position: Position, event_type: &str, event_version: u32) -> EventLocation {
    EventLocation {
        position,
        stream: StreamId::new("account", "bad"),
        version: Version::new(2),
        event_type: event_type.into(),
        event_version,
    }
}

#[test]
fn postgres_bad_rows_are_typed_errors() -> TestResult {
    type Expected = fn(&DecodeFailure) -> bool;
    let decode_cases: [(BadRow, &str, u32, Expected); 4] = [
        (
            BadRow::new().payload(r#"'{"amount":"seven"}'"#),
            "money.deposited",
            1,
            |s| matches!(s, DecodeFailure::Payload(_)),
        ),
        (BadRow::new().payload("'42'"), "money.deposited", 1, |s| {
            matches!(s, DecodeFailure::Payload(_))
        }),
        (
            BadRow::new().typed("account.frozen", 1),
            "account.frozen",
            1,
            |s| matches!(s, DecodeFailure::UnknownType),
        ),
        (
            BadRow::new().typed("money.deposited", 2),
            "money.deposited",
            2,
            |s| matches!(s, DecodeFailure::UnsupportedVersion { current: 1 }),
        ),
    ];
    for (row, event_type, event_version, expected) in decode_cases {
        with_postgres(&row, |accounts, bad| {
            match accounts.load("bad") {
                Err(ReadError::Decode { at, source }) => {
                    assert_eq!(*at, postgres_at(bad, event_type, event_version));
                    assert!(expected(&source), "{source:?}");
                }
                other => panic!("expected a decode error, got {other:?}"),
            }
            assert!(matches!(
                accounts.execute("bad", |a| a.deposit(1)),
                Err(ExecuteError::Read(ReadError::Decode { .. }))
            ));
            assert_eq!(accounts.load_at("bad", 1)?.state.owner, "bob");
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn postgres_upcaster_errors_gaps_and_bad_metadata_are_typed_errors() -> TestResult {
    with_postgres(
        &BadRow::new()
            .typed("account.renamed", 1)
            .payload(r#"'{"who":1}'"#),
        |accounts, bad| {
            let accounts = Repository::<Account, _>::new(*accounts.store())
                .with_upcasters_unchecked(failing_upcasters());
            match accounts.load("bad") {
                Err(ReadError::Upcast { at, source }) => {
                    assert_eq!(*at, postgres_at(bad, "account.renamed", 1));
                    assert!(matches!(source, UpcastError::Invalid(_)));
                }
                other => panic!("expected an upcast error, got {other:?}"),
            }
            Ok(())
        },
    )?;
    with_postgres(&BadRow::new().version("5"), |accounts, _| {
        match accounts.load("bad") {
            Err(ReadError::VersionGap {
                stream,
                after,
                found,
            }) => {
                assert_eq!(stream, StreamId::new("account", "bad"));
                assert_eq!((after, found), (Version::new(1), Version::new(5)));
            }
            other => panic!("expected a version gap, got {other:?}"),
        }
        Ok(())
    })?;
    with_postgres(
        &BadRow::new().set("event_version", "5000000000"),
        |accounts, bad| {
            match accounts.load("bad") {
                Err(ReadError::Corrupt { position, reason }) => {
                    assert_eq!(position, bad.get() as i64);
                    assert!(reason.contains("`event_version`"), "{reason}");
                }
                other => panic!("expected a corrupt row, got {other:?}"),
            }
            Ok(())
        },
    )?;
    for metadata in ["'[1,2]'", "'\"actor\"'", "'null'"] {
        with_postgres(&BadRow::new().set("metadata", metadata), |accounts, bad| {
            assert_eq!(accounts.load("bad")?.state.balance, 7);
            let store = *accounts.store();
            let stream = StreamId::new("account", "bad");
            let read: Vec<_> = store.read_stream(&stream, Version::new(1)).collect();
            let at = postgres_at(bad, "money.deposited", 1);
            assert!(
                matches!(&read[1], Err(ReadError::Metadata { at: found, .. }) if **found == at),
                "{metadata}: {read:?}"
            );
            let all: Vec<_> = store.read_all(Position::new(3)).collect();
            assert!(
                matches!(&all[0], Err(ReadError::Metadata { .. })),
                "{all:?}"
            );
            Ok(())
        })?;
    }
    Ok(())
}
