//! The read side: filtered reads of the global order (`EventFilter`), listing the
//! streams of an aggregate type, what appends and commands report having stored, and
//! typed reads through a repository's upcasters; each on a SQLite file, on PostgreSQL
//! (a fresh schema per test; passes with a note when `EVENTSOURCE_POSTGRES_URL` is not
//! set) and, for the filtered reads, on a store that only has the trait's defaults.
//! Plus the plans: a filtered read never sorts its matches (SQLite: no temporary B-tree
//! for ORDER BY; PostgreSQL: no Sort over a large input).

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Barrier;
use std::thread;

use eventsource::{
    AppendError, AppendResult, CommandRecord, DataVisitor, EventFilter, EventStore, EventType,
    ExpectedVersion, InvalidStreamId, NewEvent, Position, PostgresStore, RawEvent, ReadError,
    RecordedEvent, Repository, SqliteStore, StoreError, StreamId, Upcasters, Version, Visitor,
};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::{
    Account, AccountEvent, AccountOpened, MoneyDeposited, MoneyWithdrawn, TempStore,
};
use serde_json::json;

type TestResult = Result<(), Box<dyn Error>>;

/// A store with only the required methods of the trait: every read the trait offers
/// beyond them runs its default, as for a third-party backend.
struct DefaultsOnly<S>(S);

impl<S: EventStore> EventStore for DefaultsOnly<S> {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        self.0.append(stream, expected, events)
    }
    fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.0.stream_version(stream)
    }
    fn read_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        self.0.read_stream_with(stream, from, max_count, visit)
    }
    fn read_all_with(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        self.0.read_all_with(after, max_count, visit)
    }
    fn replay_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut DataVisitor<'_>,
    ) -> Result<(), ReadError> {
        self.0.replay_stream_with(stream, from, max_count, visit)
    }
    fn append_command(
        &self,
        command_id: &str,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        self.0.append_command(command_id, stream, expected, events)
    }
    fn command(&self, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        self.0.command(command_id)
    }
}

fn sqlite_file(test: impl FnOnce(&SqliteStore) -> TestResult) -> TestResult {
    let temp = TempStore::new()?;
    test(&SqliteStore::open(&temp.path)?)
}

fn sqlite_defaults(test: impl FnOnce(&DefaultsOnly<SqliteStore>) -> TestResult) -> TestResult {
    let temp = TempStore::new()?;
    test(&DefaultsOnly(SqliteStore::open(&temp.path)?))
}

fn postgres(test: impl FnOnce(&PostgresStore) -> TestResult) -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    let result = test(&store);
    drop(store); // before the schema is dropped
    result
}

/// One test per backend and generic test: `<backend>::<test>`.
macro_rules! suite {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[test]
                fn $test() -> TestResult {
                    super::$backend(|store| super::$test(store))
                }
            )*
        }
    };
}

suite!(sqlite_file:
    filtered_reads_equal_filtering_read_all,
    filtered_reads_validate_aggregate_types,
    list_streams_pages_by_id,
    list_streams_edge_cases,
    appends_report_their_ids_and_time,
    concurrent_appends_report_their_ids_and_time,
    committed_reports_what_was_stored,
    typed_read_all_decodes_through_upcasters,
    typed_read_all_reports_undecodable_events,
);
suite!(postgres:
    filtered_reads_equal_filtering_read_all,
    filtered_reads_validate_aggregate_types,
    list_streams_pages_by_id,
    list_streams_edge_cases,
    appends_report_their_ids_and_time,
    concurrent_appends_report_their_ids_and_time,
    committed_reports_what_was_stored,
    typed_read_all_decodes_through_upcasters,
    typed_read_all_reports_undecodable_events,
);
suite!(sqlite_defaults:
    filtered_reads_equal_filtering_read_all,
    filtered_reads_validate_aggregate_types,
    typed_read_all_decodes_through_upcasters,
);

const AGGREGATES: [&str; 3] = ["account", "order", "invoice"];
/// Event types shared by the aggregates: more than `MAX_ARMS` (32), so that wide filters
/// take the fallback plan.
const EVENT_TYPES: usize = 37;

/// 2,000 events in batches of 20, each batch of one aggregate type in turn and each
/// event of type `e{n % 37}`: any one aggregate type has more than 512 events,
/// interleaved with the others'.
fn populate<S: EventStore>(store: &S) -> Result<Vec<RecordedEvent>, Box<dyn Error>> {
    for batch in 0..100 {
        let aggregate = AGGREGATES[batch % AGGREGATES.len()];
        let stream = StreamId::new(aggregate, format!("s{}", batch % 7));
        let events: Vec<NewEvent> = (0..20)
            .map(|i| {
                let n = batch * 20 + i;
                NewEvent::new(
                    format!("e{}", n % EVENT_TYPES),
                    1,
                    format!(r#"{{"n":{n}}}"#),
                )
            })
            .collect();
        store.append(&stream, ExpectedVersion::Any, &events)?;
    }
    Ok(store.read_all(Position::START).collect::<Result<_, _>>()?)
}

fn types(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("e{n}")).collect()
}

/// Every filtered read returns exactly what filtering `read_all` in Rust returns, in
/// strictly increasing positions, through the paged iterator and through the visitor
/// with small pages, from the start and from the middle.
fn filtered_reads_equal_filtering_read_all<S: EventStore>(store: &S) -> TestResult {
    let all = populate(store)?;
    assert_eq!(all.len(), 2000);
    let filters = [
        EventFilter::all(),
        EventFilter::all().aggregate_type("account"),
        EventFilter::all().aggregate_types(["order", "invoice"]),
        EventFilter::all().event_type("e3"),
        EventFilter::all().event_types(types(0..5)),
        EventFilter::all().aggregate_type("order").event_type("e4"),
        EventFilter::all()
            .aggregate_types(["account", "invoice"])
            .event_types(types(10..20)),
        // More types than arms: the fallback plans.
        EventFilter::all().event_types(types(0..36)),
        EventFilter::all()
            .event_types(types(0..36))
            .aggregate_types((0..40).map(|n| format!("a{n}")).chain(["order".into()])),
        EventFilter::all().aggregate_types((0..40).map(|n| format!("a{n}"))),
        // Nothing matches.
        EventFilter::all().event_type("nope"),
        EventFilter::all()
            .aggregate_type("account")
            .event_type("nope"),
        EventFilter::all().event_type("e\0"),
    ];
    for filter in &filters {
        for after in [Position::START, all[777].position, all[1999].position] {
            let want: Vec<&RecordedEvent> = all
                .iter()
                .filter(|e| e.position > after)
                .filter(|e| filter.matches(e.stream.aggregate_type(), &e.event_type))
                .collect();
            let got: Vec<RecordedEvent> = store
                .read_all_filtered(after, filter.clone())
                .collect::<Result<_, _>>()?;
            assert_eq!(got.len(), want.len(), "{filter:?} after {after}");
            for (got, want) in got.iter().zip(&want) {
                assert_eq!(got, *want, "{filter:?} after {after}");
            }
            for pair in got.windows(2) {
                assert!(pair[0].position < pair[1].position, "{filter:?}");
            }
            // By hand, in pages of 7 that start at the last position seen.
            let mut paged = Vec::new();
            let mut from = after;
            loop {
                let mut page = Vec::new();
                store.read_all_filtered_with(from, filter, 7, &mut |e| {
                    page.push(e.position);
                    Ok(())
                })?;
                assert!(page.len() <= 7);
                let Some(&last) = page.last() else { break };
                from = last;
                paged.extend(page);
            }
            let want_positions: Vec<Position> = want.iter().map(|e| e.position).collect();
            assert_eq!(
                paged, want_positions,
                "{filter:?} after {after}, pages of 7"
            );
        }
    }
    let account = EventFilter::all().aggregate_type("account");
    assert!(store.read_all_filtered(Position::START, account).count() > 512);
    // `max_count` 0 reads nothing.
    store.read_all_filtered_with(Position::START, &EventFilter::all(), 0, &mut |_| {
        Err(ReadError::Store(StoreError::Interrupted))
    })?;
    Ok(())
}

/// An aggregate type no stream can have is refused as stream calls refuse it.
#[allow(clippy::unnecessary_wraps)] // the signature of every test of the suite
fn filtered_reads_validate_aggregate_types<S: EventStore>(store: &S) -> TestResult {
    let bad = EventFilter::all().aggregate_type("acc\0ount");
    let result = store.read_all_filtered_with(Position::START, &bad, 10, &mut |_| Ok(()));
    assert!(
        matches!(
            result,
            Err(ReadError::Store(StoreError::InvalidStreamId(
                InvalidStreamId::Nul {
                    part: "aggregate type",
                    ..
                }
            )))
        ),
        "{result:?}"
    );
    let long = EventFilter::all().aggregate_type("t".repeat(StreamId::MAX_LEN + 1));
    let result = store.read_all_filtered(Position::START, long).next();
    assert!(
        matches!(
            result,
            Some(Err(ReadError::Store(StoreError::InvalidStreamId(
                InvalidStreamId::TooLong { .. }
            ))))
        ),
        "{result:?}"
    );
    Ok(())
}

/// `list_streams` pages through the streams of one type in id order with their versions
/// and the times of their first and last events, as `read_all` reports them.
fn list_streams_pages_by_id<S: EventStore>(store: &S) -> TestResult {
    assert!(store.list_streams("account", None, 10)?.is_empty());
    // Ids whose byte order differs from their insertion order, one of them empty.
    let ids = ["m", "b", "", "zz", "a", "B", "ab", "é"];
    for (i, id) in ids.iter().enumerate() {
        let stream = StreamId::new("account", *id);
        for _ in 0..=i {
            store.append(
                &stream,
                ExpectedVersion::Any,
                &[NewEvent::new("e", 1, "{}")],
            )?;
        }
        // Another type's stream of the same id, and one of a type sorting just after.
        store.append(
            &StreamId::new("order", *id),
            ExpectedVersion::Any,
            &[NewEvent::new("e", 1, "{}")],
        )?;
        store.append(
            &StreamId::new("accounts", *id),
            ExpectedVersion::Any,
            &[NewEvent::new("e", 1, "{}")],
        )?;
    }
    let all: Vec<RecordedEvent> = store.read_all(Position::START).collect::<Result<_, _>>()?;
    let mut expected: BTreeMap<&str, (u64, i64, i64)> = BTreeMap::new();
    for e in all
        .iter()
        .filter(|e| e.stream.aggregate_type() == "account")
    {
        let entry = expected
            .entry(e.stream.id())
            .or_insert((0, e.recorded_at.as_micros(), 0));
        entry.0 = e.version.get();
        entry.2 = e.recorded_at.as_micros();
    }
    // The store's order of ids: byte-wise on SQLite, the column's collation on
    // PostgreSQL (byte-wise too under `C`). Paging must follow it whatever it is.
    let order: Vec<String> = store
        .list_streams("account", None, 100)?
        .iter()
        .map(|s| s.stream.id().to_owned())
        .collect();
    let mut sorted: Vec<String> = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected.keys().copied().collect::<Vec<_>>());
    let want: Vec<(&str, (u64, i64, i64))> = order
        .iter()
        .map(|id| {
            Ok((
                id.as_str(),
                *expected.get(id.as_str()).ok_or("unexpected id")?,
            ))
        })
        .collect::<Result<_, Box<dyn Error>>>()?;

    for limit in [1, 3, 8, 100] {
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.list_streams("account", after.as_deref(), limit)?;
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            after = Some(last.stream.id().to_owned());
            let full = page.len() == limit;
            listed.extend(page);
            assert!(
                listed.len() <= ids.len(),
                "the listing does not end: {listed:?}"
            );
            if !full {
                break;
            }
        }
        let got: Vec<(&str, (u64, i64, i64))> = listed
            .iter()
            .map(|s| {
                assert_eq!(s.stream.aggregate_type(), "account");
                (
                    s.stream.id(),
                    (
                        s.version.get(),
                        s.first_recorded_at.as_micros(),
                        s.last_recorded_at.as_micros(),
                    ),
                )
            })
            .collect();
        assert_eq!(got, want, "limit {limit}");
    }
    // After an id that is not a stream's: from the next one on.
    let after_a: Vec<&str> = order
        .iter()
        .map(String::as_str)
        .filter(|id| *id > "a")
        .collect();
    let page: Vec<String> = store
        .list_streams("account", Some("a"), 2)?
        .iter()
        .map(|s| s.stream.id().to_owned())
        .collect();
    assert_eq!(page, after_a[..2]);
    let last = order.last().ok_or("no streams listed")?;
    assert!(store.list_streams("account", Some(last), 10)?.is_empty());
    Ok(())
}

/// A page of 0 streams, an aggregate type without streams, and ids that cannot be
/// stored.
fn list_streams_edge_cases<S: EventStore>(store: &S) -> TestResult {
    store.append(
        &StreamId::new("account", "a"),
        ExpectedVersion::Any,
        &[NewEvent::new("e", 1, "{}")],
    )?;
    assert!(store.list_streams("account", None, 0)?.is_empty());
    assert!(store.list_streams("nobody", None, 10)?.is_empty());
    assert!(matches!(
        store.list_streams("acc\0", None, 10),
        Err(StoreError::InvalidStreamId(InvalidStreamId::Nul { .. }))
    ));
    assert!(matches!(
        store.list_streams("account", Some("a\0"), 10),
        Err(StoreError::InvalidStreamId(InvalidStreamId::Nul {
            part: "id",
            ..
        }))
    ));
    Ok(())
}

/// What `read_all` returns for the positions of `result`: the events' ids and times.
fn stored_at<S: EventStore>(
    store: &S,
    result: &AppendResult,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let Some(first) = result.positions.first() else {
        return Ok(Vec::new());
    };
    let before = Position::new(first.get() - 1);
    store
        .read_all(before)
        .take(result.positions.len())
        .collect()
}

fn assert_reports_stored<S: EventStore>(
    store: &S,
    result: &AppendResult,
    events: &[NewEvent],
) -> TestResult {
    let stored = stored_at(store, result)?;
    let positions: Vec<Position> = stored.iter().map(|e| e.position).collect();
    assert_eq!(positions, result.positions);
    for (stored, sent) in stored.iter().zip(events) {
        assert_eq!(stored.event_id, sent.event_id);
        assert_eq!(stored.recorded_at, result.recorded_at, "{stored:?}");
    }
    Ok(())
}

/// An append's `recorded_at` is the time read back for its positions; a command's
/// record holds exactly what its append returned.
fn appends_report_their_ids_and_time<S: EventStore>(store: &S) -> TestResult {
    let stream = StreamId::new("account", "a");
    for n in 1..=3 {
        let events: Vec<NewEvent> = (0..n).map(|_| NewEvent::new("e", 1, "{}")).collect();
        let result = store.append(&stream, ExpectedVersion::Any, &events)?;
        assert_reports_stored(store, &result, &events)?;
    }
    let events = [NewEvent::new("e", 1, "{}"), NewEvent::new("f", 1, "{}")];
    let result = store.append_command("cmd-1", &stream, ExpectedVersion::Any, &events)?;
    assert_reports_stored(store, &result, &events)?;
    let record = store
        .command("cmd-1")?
        .ok_or("the command is not recorded")?;
    assert_eq!(record.result, result);
    assert_eq!(record.recorded_at, result.recorded_at);
    // A command without events: recorded with its time.
    let empty = store.append_command("cmd-2", &stream, ExpectedVersion::Any, &[])?;
    let record = store
        .command("cmd-2")?
        .ok_or("the command is not recorded")?;
    assert_eq!(record.result, empty);
    Ok(())
}

/// Appends committed together (SQLite's group commit) or one after another by 8 threads
/// each report the ids and time read back for their positions.
fn concurrent_appends_report_their_ids_and_time<S: EventStore>(store: &S) -> TestResult {
    const THREADS: usize = 8;
    let barrier = Barrier::new(THREADS);
    let results = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(
                    move || -> Result<Vec<(AppendResult, Vec<NewEvent>)>, String> {
                        let stream = StreamId::new("account", format!("t{t}"));
                        barrier.wait();
                        (0..20)
                            .map(|i| {
                                let events: Vec<NewEvent> =
                                    (0..=(i % 3)).map(|_| NewEvent::new("e", 1, "{}")).collect();
                                store
                                    .append(&stream, ExpectedVersion::Any, &events)
                                    .map(|r| (r, events))
                                    .map_err(|e| e.to_string())
                            })
                            .collect()
                    },
                )
            })
            .collect();
        pg::join_all(handles)
    });
    let mut times = std::collections::BTreeSet::new();
    for result in results {
        for (appended, events) in result? {
            assert_reports_stored(store, &appended, &events)?;
            times.insert(appended.recorded_at);
        }
    }
    assert!(!times.is_empty());
    Ok(())
}

/// `Committed` holds the ids and time stored, as `read_all` returns them; a replayed
/// `execute_once` reports the ids and time of the original run.
fn committed_reports_what_was_stored<S: EventStore>(store: &S) -> TestResult {
    let accounts = Repository::<Account, &S>::new(store);
    let opened = accounts.execute("a", |a| a.open("ann"))?;
    let both = accounts.execute("a", |a| {
        Ok::<_, eventsource_tests::BankError>((a.deposit(5)?, a.deposit(6)?))
    })?;
    for committed in [&opened, &both] {
        let stored = stored_at(
            store,
            &AppendResult {
                stream_version: committed.version,
                positions: committed.positions.clone(),
                recorded_at: committed.recorded_at,
            },
        )?;
        let ids: Vec<_> = stored.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, committed.event_ids);
        assert!(
            stored
                .iter()
                .all(|e| e.recorded_at == committed.recorded_at)
        );
    }
    let first = accounts.execute_once("a", "deposit-1", |a| a.deposit(7))?;
    let again = accounts.execute_once("a", "deposit-1", |a| a.deposit(7))?;
    assert!(!first.already_done && again.already_done);
    assert_eq!(again.positions, first.positions);
    assert_eq!(again.event_ids, first.event_ids);
    assert_eq!(again.recorded_at, first.recorded_at);
    assert_eq!(again.events, first.events);
    let stored = store
        .read_all(Position::new(first.positions[0].get() - 1))
        .next()
        .ok_or("no event")??;
    assert_eq!(
        (stored.event_id, stored.recorded_at),
        (first.event_ids[0], first.recorded_at)
    );
    // A command that recorded no events replays with its recorded time.
    let nothing =
        accounts.execute_once("a", "noop-1", |_| Ok::<_, eventsource_tests::BankError>(()))?;
    let replay =
        accounts.execute_once("a", "noop-1", |_| Ok::<_, eventsource_tests::BankError>(()))?;
    assert!(replay.already_done && replay.event_ids.is_empty());
    assert_eq!(replay.recorded_at, nothing.recorded_at);
    Ok(())
}

/// A rename of `AccountCreated` v1 to `account.opened` v1 (which the typed chain lifts
/// to v2) and a split of `transfer.made` into a withdrawal and a deposit.
fn upcasters() -> Upcasters {
    Upcasters::new()
        .rename("AccountCreated", 1, "account.opened", 1)
        .custom(
            "transfer.made",
            1,
            &[("money.withdrawn", 1), ("money.deposited", 1)],
            |raw| {
                let amount = raw.payload["amount"].clone();
                Ok(vec![
                    RawEvent::new("money.withdrawn", 1, json!({ "amount": amount })),
                    RawEvent::new("money.deposited", 1, json!({ "amount": amount })),
                ])
            },
        )
}

/// `Repository::read_all` reads only its aggregate type, decodes every stored event
/// through the JSON upcasters (a rename, a split into two events) and the typed
/// `upcast_from` chain (`account.opened` v1 to v2), keeping their order, with each
/// stored event's position, stream, version, id, time and metadata.
fn typed_read_all_decodes_through_upcasters<S: EventStore>(store: &S) -> TestResult {
    let a = StreamId::new("account", "a");
    let appended = store.append(
        &a,
        ExpectedVersion::NoStream,
        &[
            // Renamed by a JSON upcaster, then lifted by the typed chain.
            NewEvent::new("AccountCreated", 1, r#"{"owner":"ann"}"#),
            NewEvent::new("money.deposited", 1, r#"{"amount":100}"#)
                .with_metadata(eventsource::Metadata::new().actor("bob")),
            // Split in two.
            NewEvent::new("transfer.made", 1, r#"{"amount":30}"#),
        ],
    )?;
    // Not an account: never read, and would not decode.
    store.append(
        &StreamId::new("order", "o"),
        ExpectedVersion::Any,
        &[NewEvent::new("order.placed", 1, "{}")],
    )?;
    let b = StreamId::new("account", "b");
    store.append(
        &b,
        ExpectedVersion::NoStream,
        &[
            // The typed chain alone.
            NewEvent::new("account.opened", 1, r#"{"owner":"cy"}"#),
        ],
    )?;
    let accounts = Repository::<Account, &S>::new(store).with_upcasters(upcasters())?;
    let read: Vec<_> = accounts
        .read_all(Position::START)
        .collect::<Result<_, _>>()?;
    let summary: Vec<(u64, &str, u64, AccountEvent)> = read
        .iter()
        .map(|e| {
            (
                e.position.get(),
                e.stream.id(),
                e.version.get(),
                e.event.clone(),
            )
        })
        .collect();
    let opened = |owner: &str| {
        AccountEvent::from(AccountOpened {
            owner: owner.into(),
            currency: "EUR".into(),
        })
    };
    let p = appended
        .positions
        .iter()
        .map(|p| p.get())
        .collect::<Vec<_>>();
    let b_position = p[2] + 2;
    assert_eq!(
        summary,
        [
            (p[0], "a", 1, opened("ann")),
            (p[1], "a", 2, MoneyDeposited { amount: 100 }.into()),
            (p[2], "a", 3, MoneyWithdrawn { amount: 30 }.into()),
            (p[2], "a", 3, MoneyDeposited { amount: 30 }.into()),
            (b_position, "b", 1, opened("cy")),
        ]
    );
    let stored: Vec<RecordedEvent> = store.read_all(Position::START).collect::<Result<_, _>>()?;
    for envelope in &read {
        let original = stored
            .iter()
            .find(|e| e.position == envelope.position)
            .ok_or("no stored event at the position")?;
        assert_eq!(envelope.event_id, original.event_id);
        assert_eq!(envelope.recorded_at, original.recorded_at);
        assert_eq!(envelope.metadata, original.metadata);
        assert_eq!(envelope.stream, original.stream);
    }
    assert_eq!(read[1].metadata.actor.as_deref(), Some("bob"));
    // From the middle.
    let later: Vec<_> = accounts
        .read_all(Position::new(p[1]))
        .collect::<Result<_, _>>()?;
    assert_eq!(later.len(), 3);
    // Only deposits: the stored `money.deposited` and the deposit half of the split (the
    // stored type `transfer.made` is read because an upcaster leads from it).
    let deposits: Vec<_> = accounts
        .read_all_filtered(Position::START, &[EventType::of::<MoneyDeposited>()])
        .collect::<Result<_, _>>()?;
    let amounts: Vec<AccountEvent> = deposits.into_iter().map(|e| e.event).collect();
    assert_eq!(
        amounts,
        [
            MoneyDeposited { amount: 100 }.into(),
            MoneyDeposited { amount: 30 }.into()
        ]
    );
    // Openings: through the rename and the typed chain's old version.
    let openings: Vec<_> = accounts
        .read_all_filtered(Position::START, &[EventType::of::<AccountOpened>()])
        .collect::<Result<_, _>>()?;
    assert_eq!(openings.len(), 2);
    Ok(())
}

/// A stored event that does not decode is an error naming it; the typed read goes on
/// with the next one.
fn typed_read_all_reports_undecodable_events<S: EventStore>(store: &S) -> TestResult {
    let a = StreamId::new("account", "a");
    let accounts = Repository::<Account, &S>::new(store);
    let opened = accounts.execute("a", |acc| acc.open("ann"))?;
    store.append(
        &a,
        ExpectedVersion::Any,
        &[NewEvent::new("money.deposited", 1, r#"{"amount":"x"}"#)],
    )?;
    store.append(
        &a,
        ExpectedVersion::Any,
        &[NewEvent::new("money.deposited", 1, r#"{"amount":1}"#)],
    )?;
    let tail: Vec<_> = accounts.read_all(opened.positions[0]).collect();
    assert_eq!(tail.len(), 2);
    match &tail[0] {
        Err(ReadError::Decode { at, .. }) => {
            assert_eq!((at.stream.id(), at.version.get()), ("a", 2));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(matches!(&tail[1], Ok(e) if e.version == Version::new(3)));
    Ok(())
}

/// A store of `total` events of which every `every`-th is of the type `rare` (aggregate
/// type `rare`), the others `common` (aggregate type `common`), written in batches.
fn large_store<S: EventStore>(store: &S, total: usize, every: usize) -> TestResult {
    let mut batch = Vec::new();
    let mut n = 0;
    while n < total {
        batch.clear();
        for _ in 0..1000.min(total - n) {
            n += 1;
            let (aggregate, ty) = if n % every == 0 {
                ("rare", "rare.happened")
            } else {
                ("common", "common.happened")
            };
            batch.push((aggregate, NewEvent::new(ty, 1, "{}")));
        }
        for aggregate in ["rare", "common"] {
            let events: Vec<NewEvent> = batch
                .iter()
                .filter(|(a, _)| *a == aggregate)
                .map(|(_, e)| e.clone())
                .collect();
            if !events.is_empty() {
                store.append(
                    &StreamId::new(aggregate, format!("s{}", n % 10)),
                    ExpectedVersion::Any,
                    &events,
                )?;
            }
        }
    }
    Ok(())
}

/// The filters whose plans are checked: one type, several, both dimensions.
fn plan_filters() -> Vec<EventFilter> {
    vec![
        EventFilter::all().event_type("rare.happened"),
        EventFilter::all().aggregate_type("rare"),
        EventFilter::all().event_types(["rare.happened", "never.happened"]),
        EventFilter::all().aggregate_types(["rare", "nobody"]),
        EventFilter::all()
            .aggregate_type("rare")
            .event_types(["rare.happened", "never.happened"]),
    ]
}

/// SQLite runs every filtered read as ordered index scans (merged when there are
/// several): never a temporary B-tree for ORDER BY, which would sort every remaining
/// match for each page.
#[test]
fn sqlite_filtered_reads_never_sort() -> TestResult {
    let temp = TempStore::new()?;
    let store = SqliteStore::open(&temp.path)?;
    large_store(&store, 20_000, 100)?;
    rusqlite::Connection::open(&temp.path)?.execute_batch("ANALYZE")?;
    for filter in plan_filters() {
        let plan = store.explain_filtered(&filter)?;
        assert!(!plan.contains("TEMP B-TREE"), "{filter:?}:\n{plan}");
        assert!(!plan.contains("SCAN events"), "{filter:?}:\n{plan}");
        let arms = filter
            .event_type_set()
            .len()
            .max(filter.aggregate_type_set().len());
        if arms > 1 {
            assert!(plan.contains("MERGE (UNION ALL)"), "{filter:?}:\n{plan}");
        }
        let index = if filter.event_type_set().is_empty() {
            "events_by_aggregate_type"
        } else {
            "events_by_event_type"
        };
        assert!(plan.contains(index), "{filter:?}:\n{plan}");
    }
    let plan = store.explain_list_streams()?;
    assert!(
        !plan.contains("TEMP B-TREE") && !plan.contains("SCAN events"),
        "{plan}"
    );
    Ok(())
}

/// PostgreSQL never sorts a large input for a filtered read: 1,000 matches (more than a
/// page) among 100,000 events are scanned with the ordered indexes and merged by a Merge
/// Append; a Sort, if the planner wants one, only over fewer rows than a page (then the
/// whole rest of the read is one page).
#[test]
fn postgres_filtered_reads_never_sort_a_large_input() -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    // 100,000 events, 1% rare, written by SQL for speed (the triggers refuse only UPDATE,
    // DELETE and TRUNCATE).
    schema.sql(
        "INSERT INTO events (position, aggregate_type, stream_id, version, event_type, \
         event_version, event_id, recorded_at, payload, metadata) \
         SELECT p, CASE WHEN p % 100 = 0 THEN 'rare' ELSE 'common' END, 's' || p, 1, \
         CASE WHEN p % 100 = 0 THEN 'rare.happened' ELSE 'common.happened' END, 1, \
         gen_random_uuid(), now(), '{}', '{}' FROM generate_series(1, 100000) p",
    )?;
    schema.sql("ANALYZE events")?;
    for filter in plan_filters() {
        for after in [
            Position::START,
            Position::new(50_000),
            Position::new(99_000),
        ] {
            let plan = store.explain_filtered(&filter, after)?;
            // The rows a Sort node really read: those of the node below it.
            let lines: Vec<&str> = plan.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let node = line.trim_start().trim_start_matches("->  ");
                if !node.starts_with("Sort  (") {
                    continue;
                }
                let input = lines[i + 1..]
                    .iter()
                    .find(|l| l.contains("->"))
                    .and_then(|l| l.split("actual rows=").nth(1))
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|r| r.parse::<u64>().ok())
                    .ok_or_else(|| format!("no input rows for the sort in\n{plan}"))?;
                assert!(
                    input < 512,
                    "a sort of {input} rows for {filter:?}:\n{plan}"
                );
            }
            let arms = filter
                .event_type_set()
                .len()
                .max(filter.aggregate_type_set().len());
            if arms > 1 {
                assert!(plan.contains("Merge Append"), "{filter:?}:\n{plan}");
            }
        }
    }
    // The filtered read itself.
    let rare: Vec<RecordedEvent> = store
        .read_all_filtered(Position::START, EventFilter::all().aggregate_type("rare"))
        .collect::<Result<_, _>>()?;
    assert_eq!(rare.len(), 1000);
    assert!(rare.iter().all(|e| e.position.get() % 100 == 0));
    let plan = store.explain_list_streams("rare")?;
    assert!(!plan.contains("Seq Scan"), "{plan}");
    drop(store);
    Ok(())
}
