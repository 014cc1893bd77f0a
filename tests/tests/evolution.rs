//! Event evolution end to end: events stored in old shapes read by today's code through
//! typed chains (across a rename) and JSON upcasters (1 to 1, 1 to N, 1 to 0),
//! registration mistakes refused when the repository is built, and `Verify` over whole
//! stores, on SQLite files and (when `EVENTSOURCE_POSTGRES_URL` is set) PostgreSQL.

use eventsource::{
    Aggregate, Apply, DecodeFailure, Event, EventKey, EventSet, EventStore, ExpectedVersion,
    NewEvent, Payload, Position, RawEvent, ReadError, RegistrationError, Repository, SqliteStore,
    StreamId, UpcastError, Upcasters, Verify, Version, event,
};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::{TempStore, raw_sqlite};
use serde::{Deserialize, Serialize};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Last year's shapes, kept as structs so the typed chains can read them.
mod old {
    use eventsource::event;
    use serde::{Deserialize, Serialize};

    /// Version 1 of `account.opened`, stored under its old name.
    #[event(name = "AccountCreated")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct AccountCreated {
        pub name: String,
    }

    #[event(name = "account.opened", version = 2, upcast_from = AccountCreated)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct AccountOpenedV2 {
        pub owner: String,
    }

    impl From<AccountCreated> for AccountOpenedV2 {
        fn from(v1: AccountCreated) -> Self {
            AccountOpenedV2 { owner: v1.name }
        }
    }

    /// Version 2 of `money.deposited` (version 1 is lifted on JSON: it used `cents`).
    #[event(name = "money.deposited", version = 2)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct DepositedV2 {
        pub amount: u64,
    }

    #[event(name = "money.deposited", version = 3, upcast_from = DepositedV2)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct DepositedV3 {
        pub amount: u64,
        pub currency: String,
    }

    impl From<DepositedV2> for DepositedV3 {
        fn from(v2: DepositedV2) -> Self {
            DepositedV3 {
                amount: v2.amount,
                currency: "EUR".into(),
            }
        }
    }
}

#[event(name = "account.opened", version = 3, upcast_from = old::AccountOpenedV2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountOpened {
    owner: String,
    currency: String,
}

impl From<old::AccountOpenedV2> for AccountOpened {
    fn from(v2: old::AccountOpenedV2) -> Self {
        AccountOpened {
            owner: v2.owner,
            currency: "EUR".into(),
        }
    }
}

#[event(name = "money.deposited", version = 4, upcast_from = old::DepositedV3)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MoneyDeposited {
    amount: u64,
    currency: String,
    #[serde(default)]
    memo: Option<String>,
}

impl From<old::DepositedV3> for MoneyDeposited {
    fn from(v3: old::DepositedV3) -> Self {
        MoneyDeposited {
            amount: v3.amount,
            currency: v3.currency,
            memo: None,
        }
    }
}

#[event(name = "money.withdrawn")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MoneyWithdrawn {
    amount: u64,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(
    name = "account",
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn)
)]
struct Account {
    owner: String,
    currency: String,
    balance: i64,
    deposits: u32,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, e: &AccountOpened) {
        self.owner.clone_from(&e.owner);
        self.currency.clone_from(&e.currency);
    }
}

impl Apply<MoneyDeposited> for Account {
    fn apply(&mut self, e: &MoneyDeposited) {
        self.balance += i64::try_from(e.amount).unwrap_or(i64::MAX);
        self.deposits += 1;
    }
}

impl Apply<MoneyWithdrawn> for Account {
    fn apply(&mut self, e: &MoneyWithdrawn) {
        self.balance -= i64::try_from(e.amount).unwrap_or(i64::MAX);
    }
}

/// Every JSON upcaster of the account: `money.deposited` v1 used `cents`, a transfer is
/// now a withdrawal and a deposit, audits are no longer events.
fn upcasters() -> Upcasters {
    Upcasters::new()
        .payload("money.deposited", 1, |mut p| {
            let cents = p["cents"].take();
            Ok(json!({ "amount": cents }))
        })
        .custom(
            "transfer.booked",
            1,
            &[("money.withdrawn", 1), ("money.deposited", 4)],
            |raw| {
                let amount = raw.payload["amount"].clone();
                Ok(vec![
                    RawEvent::new("money.withdrawn", 1, json!({ "amount": amount })),
                    RawEvent::new(
                        "money.deposited",
                        4,
                        json!({ "amount": amount, "currency": "EUR", "memo": "transfer" }),
                    ),
                ])
            },
        )
        .discard("account.audited", 1)
}

fn append(store: &impl EventStore, id: &str, events: &[NewEvent]) -> TestResult {
    store.append(&StreamId::new("account", id), ExpectedVersion::Any, events)?;
    Ok(())
}

#[test]
fn the_event_set_lists_every_version_it_decodes() {
    let history: Vec<String> = AccountEvent::HISTORIES[0]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        history,
        ["account.opened@3", "account.opened@2", "AccountCreated@1"]
    );
    assert_eq!(MoneyDeposited::HISTORY.len(), 3);
    assert_eq!(MoneyDeposited::HISTORY[2].shape, "{amount: u64}");
    assert_eq!(
        MoneyDeposited::SHAPE,
        "{amount: u64, currency: String, #[serde(default)] memo: Option<String>}"
    );
    assert_eq!(AccountEvent::HISTORIES.len(), AccountEvent::TYPES.len());
}

/// Attributes written before `#[event]` are part of the shape too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[event(name = "note.taken")]
struct NoteTaken {
    #[serde(default)]
    note_text: String,
}

#[test]
fn the_shape_has_the_serde_attributes_written_before_and_after_the_event_attribute() {
    assert_eq!(
        NoteTaken::SHAPE,
        r#"#[serde(rename_all = "camelCase")] {#[serde(default)] note_text: String}"#
    );
}

/// The fingerprint was once called a schema: the old names still compile, deprecated.
#[test]
#[allow(deprecated)]
fn the_old_names_of_the_shape_still_work() {
    assert_eq!(NoteTaken::SCHEMA, NoteTaken::SHAPE);
    let old: eventsource::EventSchema = eventsource::EventSchema::of::<NoteTaken>();
    assert_eq!(old, eventsource::EventShape::of::<NoteTaken>());
}

#[test]
fn an_event_stored_three_versions_ago_decodes_through_the_chain() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    // Written by code three versions ago: `money.deposited` v1 (JSON upcaster to v2, then
    // typed v2 -> v3 -> v4), and `account.opened` under its old name.
    append(
        &store,
        "old",
        &[
            NewEvent::new("AccountCreated", 1, r#"{"name":"olga"}"#),
            NewEvent::new("money.deposited", 1, r#"{"cents":250}"#),
            NewEvent::new("money.deposited", 3, r#"{"amount":5,"currency":"NOK"}"#),
        ],
    )?;
    let accounts = Repository::<Account, _>::new(&store).with_upcasters(upcasters())?;
    let acc = accounts.load("old")?;
    assert_eq!(
        (acc.state.owner.as_str(), acc.state.currency.as_str()),
        ("olga", "EUR")
    );
    assert_eq!((acc.state.balance, acc.state.deposits), (255, 2));
    assert_eq!(acc.version, Version::new(3));
    // New events are written at the current version next to the old ones.
    let committed = accounts.execute("old", |_| MoneyWithdrawn { amount: 55 })?;
    assert_eq!(committed.state.balance, 200);
    Ok(())
}

#[test]
fn payload_steps_then_a_rename_then_payload_steps_again_run_in_order() -> TestResult {
    // Two payload steps on an old type, a rename into a current type, then that type's
    // own payload step and typed chain: the replay runs the payload steps on one JSON
    // value and hands over to the general path at the rename.
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    append(
        &store,
        "legacy",
        &[
            NewEvent::new("AccountCreated", 1, r#"{"name":"lea"}"#),
            NewEvent::new("legacy.credit", 1, r#"{"pennies":40}"#),
        ],
    )?;
    let upcasters = upcasters()
        .payload("legacy.credit", 1, |p| {
            Ok(json!({ "p": p["pennies"].clone() }))
        })
        .payload("legacy.credit", 2, |p| {
            Ok(json!({ "cents": p["p"].clone() }))
        })
        .rename("legacy.credit", 3, "money.deposited", 1);
    let accounts = Repository::<Account, _>::new(&store).with_upcasters(upcasters)?;
    let acc = accounts.load("legacy")?;
    assert_eq!((acc.state.balance, acc.state.deposits), (40, 1));

    // A panic in the second payload step names that step.
    let panicking = self::upcasters()
        .payload("legacy.credit", 1, |p| {
            Ok(json!({ "p": p["pennies"].clone() }))
        })
        .payload("legacy.credit", 2, |_| panic!("step two"))
        .rename("legacy.credit", 3, "money.deposited", 1);
    let accounts = Repository::<Account, _>::new(&store).with_upcasters(panicking)?;
    match accounts.load("legacy") {
        Err(ReadError::Upcast {
            source: UpcastError::Panicked { upcaster, message },
            ..
        }) => {
            assert_eq!(upcaster, EventKey::new("legacy.credit", 2));
            assert_eq!(message, "step two");
        }
        other => panic!("expected the second step's panic, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_typed_chain_decodes_an_old_name_only_at_its_old_version() {
    let decoded = AccountEvent::decode("AccountCreated", 1, Payload::Text(r#"{"name":"x"}"#));
    assert!(
        matches!(&decoded, Ok(AccountEvent::AccountOpened(e)) if e.owner == "x"),
        "{decoded:?}"
    );
    let wrong = AccountEvent::decode("account.opened", 1, Payload::Text("{}"));
    assert!(
        matches!(wrong, Err(DecodeFailure::UnsupportedVersion { current: 3 })),
        "{wrong:?}"
    );
    let wrong = AccountEvent::decode("AccountCreated", 2, Payload::Text("{}"));
    assert!(
        matches!(wrong, Err(DecodeFailure::UnsupportedVersion { current: 3 })),
        "{wrong:?}"
    );
}

#[test]
fn splits_and_drops_keep_stream_versions_as_stored() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    append(
        &store,
        "t",
        &[
            NewEvent::new("account.opened", 3, r#"{"owner":"tom","currency":"EUR"}"#),
            NewEvent::new("transfer.booked", 1, r#"{"amount":40}"#),
            NewEvent::new("account.audited", 1, r#"{"by":"eve"}"#),
            NewEvent::new("money.withdrawn", 1, r#"{"amount":1}"#),
        ],
    )?;
    let accounts = Repository::<Account, _>::new(&store).with_upcasters(upcasters())?;
    let acc = accounts.load("t")?;
    assert_eq!(acc.version, Version::new(4));
    assert_eq!((acc.state.balance, acc.state.deposits), (-1, 1));
    // As of stored version 3: the split and the dropped audit are both behind it.
    assert_eq!(accounts.load_at("t", 2)?.state.deposits, 1);
    assert_eq!(accounts.load_at("t", 3)?.version, Version::new(3));
    Ok(())
}

fn build(upcasters: Upcasters) -> Result<(), RegistrationError> {
    let store = SqliteStore::in_memory().expect("an in-memory store");
    Repository::<Account, _>::new(store)
        .with_upcasters(upcasters)
        .map(drop)
}

#[test]
fn two_upcasters_for_one_stored_version_are_refused_when_the_repository_is_built() {
    let twice = upcasters().custom("account.audited", 1, &[], |_| Ok(vec![]));
    assert_eq!(
        build(twice),
        Err(RegistrationError::Duplicate {
            key: EventKey::new("account.audited", 1)
        })
    );
}

#[test]
fn a_chain_that_does_not_reach_a_decodable_version_is_refused_when_built() {
    // `money.deposited` v4 is current: lifting it to v5 leads nowhere.
    let short = upcasters().payload("money.deposited", 4, Ok);
    let err = build(short);
    assert_eq!(
        err,
        Err(RegistrationError::NotDecodable {
            upcaster: EventKey::new("money.deposited", 4),
            produces: EventKey::new("money.deposited", 5),
            decodable: vec![2, 3, 4],
        })
    );
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err(
            "the upcaster of `money.deposited@4` produces `money.deposited@5`, which the \
             aggregate does not decode (it decodes `money.deposited` at versions 2, 3, 4)"
                .into()
        )
    );
    let unknown = Upcasters::new().rename("cash.in", 1, "cash.received", 1);
    assert!(matches!(
        build(unknown),
        Err(RegistrationError::NotDecodable { decodable, .. }) if decodable.is_empty()
    ));
}

#[test]
fn a_cycle_is_refused_when_built() {
    let cycle = upcasters().rename("a", 1, "b", 1).custom(
        "b",
        1,
        &[("money.withdrawn", 1), ("a", 1)],
        |_| Ok(vec![]),
    );
    assert_eq!(
        build(cycle).map_err(|e| e.to_string()),
        Err("upcasters form a cycle: `a@1` -> `b@1` -> `a@1`".into())
    );
}

#[test]
fn a_custom_upcaster_producing_what_it_did_not_declare_fails_the_read() -> TestResult {
    let store = SqliteStore::in_memory()?;
    append(&store, "u", &[NewEvent::new("bonus.paid", 1, "{}")])?;
    let liar = Upcasters::new().custom("bonus.paid", 1, &[("money.deposited", 4)], |_| {
        Ok(vec![RawEvent::new(
            "money.withdrawn",
            1,
            json!({"amount": 1}),
        )])
    });
    let accounts = Repository::<Account, _>::new(&store).with_upcasters(liar)?;
    match accounts.load("u") {
        Err(ReadError::Upcast {
            at,
            source: UpcastError::Undeclared { upcaster, produced },
        }) => {
            assert_eq!(at.position, Position::new(1));
            assert_eq!(upcaster, EventKey::new("bonus.paid", 1));
            assert_eq!(produced, EventKey::new("money.withdrawn", 1));
        }
        other => panic!("expected an undeclared output, got {other:?}"),
    }
    Ok(())
}

/// Fills `store` with 30 account events in old and new shapes over 6 streams, one
/// undecodable row (position 20, stream account/s3, version 3) and 4 events of another
/// aggregate type. Returns the undecodable row's stream.
fn fill(store: &impl EventStore) -> Result<StreamId, Box<dyn std::error::Error>> {
    for s in 0..6 {
        let id = format!("s{s}");
        append(
            store,
            &id,
            &[NewEvent::new("AccountCreated", 1, r#"{"name":"n"}"#)],
        )?;
        append(
            store,
            &id,
            &[NewEvent::new("money.deposited", 1, r#"{"cents":10}"#)],
        )?;
        let third = if s == 3 {
            // A withdrawal whose amount is text: it never decoded.
            NewEvent::new("money.withdrawn", 1, r#"{"amount":"lots"}"#)
        } else {
            NewEvent::new("money.withdrawn", 1, r#"{"amount":1}"#)
        };
        append(store, &id, &[third])?;
        append(
            store,
            &id,
            &[
                NewEvent::new("transfer.booked", 1, r#"{"amount":2}"#),
                NewEvent::new("account.audited", 1, "{}"),
            ],
        )?;
        if s % 3 == 0 {
            store.append(
                &StreamId::new("order", &id),
                ExpectedVersion::Any,
                &[
                    NewEvent::new("order.placed", 1, "{}"),
                    NewEvent::new("order.paid", 1, "{}"),
                ],
            )?;
        }
    }
    Ok(StreamId::new("account", "s3"))
}

fn check_report(report: &eventsource::VerifyReport, bad_stream: &StreamId) {
    assert_eq!(report.failures.len(), 1, "{report}");
    let failure = &report.failures[0];
    let at = failure.at.as_ref().expect("a decodable location");
    assert_eq!(
        (
            &at.stream,
            at.version,
            at.event_type.as_str(),
            at.event_version
        ),
        (bad_stream, Version::new(3), "money.withdrawn", 1)
    );
    assert_eq!(failure.position, at.position);
    assert!(
        matches!(
            failure.error,
            ReadError::Decode {
                source: DecodeFailure::Payload(_),
                ..
            }
        ),
        "{failure}"
    );
    // Everything else decoded, counted per stored (type, version).
    let count = |t: &str, v: u32| report.count("account", t, v).map(|c| (c.decoded, c.failed));
    assert_eq!(count("AccountCreated", 1), Some((6, 0)));
    assert_eq!(count("money.deposited", 1), Some((6, 0)));
    assert_eq!(count("money.withdrawn", 1), Some((5, 1)));
    assert_eq!(count("transfer.booked", 1), Some((6, 0)));
    assert_eq!(count("account.audited", 1), Some((6, 0)));
    assert_eq!(report.decoded(), 29);
    assert_eq!(report.failed(), 1);
    assert_eq!(report.skipped.get("order"), Some(&4));
    assert_eq!(report.last_position, Position::new(34));
    assert!(!report.is_ok());
}

#[test]
fn verify_reports_exactly_the_undecodable_row_and_finishes_the_rest() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let bad = fill(&store)?;
    let upcasters = upcasters();
    // Pages of 4: the failure is in the middle of a page, the store ends mid-page.
    let report = Verify::new(&store)
        .aggregate::<Account>(&upcasters)?
        .page_size(4)
        .run()?;
    check_report(&report, &bad);
    assert_eq!(report.failures[0].position, Position::new(20));
    let shown = report.to_string();
    assert!(
        shown.contains(
            "cannot decode event `money.withdrawn` v1 at position 20 (stream account/s3, \
             version 3): payload does not match the event: invalid type: string \"lots\""
        ),
        "{shown}"
    );
    assert!(
        shown.contains("skipped: 4 events of aggregate type `order`"),
        "{shown}"
    );
    Ok(())
}

#[test]
fn verify_goes_on_past_rows_the_store_cannot_read() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    append(
        &store,
        "a",
        &[NewEvent::new("money.withdrawn", 1, r#"{"amount":1}"#)],
    )?;
    // Rows written behind the store's back: a payload that is not JSON, a timestamp
    // that is not a number.
    for (version, id, recorded_at, payload) in [
        (2, "00000000-0000-7000-8000-000000000001", "0", "not json"),
        (
            3,
            "00000000-0000-7000-8000-000000000002",
            "'yesterday'",
            "{}",
        ),
    ] {
        raw_sqlite(
            &tmp.path,
            &format!(
                "INSERT INTO events (aggregate_type, stream_id, version, event_type, \
                 event_version, event_id, recorded_at, payload, metadata) VALUES \
                 ('account', 'a', {version}, 'money.withdrawn', 1, '{id}', {recorded_at}, \
                 '{payload}', '{{}}')"
            ),
        )?;
    }
    append(
        &store,
        "a",
        &[NewEvent::new("money.withdrawn", 1, r#"{"amount":2}"#)],
    )?;
    let upcasters = Upcasters::new();
    let report = Verify::new(&store)
        .aggregate::<Account>(&upcasters)?
        .run()?;
    assert_eq!(report.decoded(), 2, "{report}");
    let positions: Vec<u64> = report.failures.iter().map(|f| f.position.get()).collect();
    assert_eq!(positions, [2, 3], "{report}");
    assert!(report.failures[0].at.is_some());
    assert!(matches!(
        report.failures[1].error,
        ReadError::Corrupt { position: 3, .. }
    ));
    assert!(report.failures[1].at.is_none());
    assert_eq!(report.last_position, Position::new(4));
    Ok(())
}

#[test]
fn verify_keeps_a_bounded_number_of_failures() -> TestResult {
    let store = SqliteStore::in_memory()?;
    let events: Vec<NewEvent> = (0..50).map(|_| NewEvent::new("gone", 1, "{}")).collect();
    append(&store, "x", &events)?;
    let upcasters = Upcasters::new();
    let report = Verify::new(&store)
        .aggregate::<Account>(&upcasters)?
        .max_failures(3)
        .page_size(7)
        .run()?;
    assert_eq!(report.failures.len(), 3);
    assert_eq!(report.failures_not_kept, 47);
    assert_eq!(report.failed(), 50);
    assert_eq!(
        report.count("account", "gone", 1).map(|c| c.failed),
        Some(50)
    );
    Ok(())
}

#[test]
fn verify_refuses_upcasters_that_do_not_fit_and_skips_unknown_aggregates() -> TestResult {
    let store = SqliteStore::in_memory()?;
    fill(&store)?;
    let bad = Upcasters::new().payload("money.withdrawn", 1, Ok);
    assert!(matches!(
        Verify::new(&store).aggregate::<Account>(&bad).map(drop),
        Err(RegistrationError::NotDecodable { .. })
    ));
    // No aggregate given: everything is skipped, nothing fails.
    let report = Verify::new(&store).run()?;
    assert!(report.is_ok());
    assert_eq!(report.skipped.get("account"), Some(&30));
    assert_eq!(report.skipped.get("order"), Some(&4));
    assert!(report.counts.is_empty());
    Ok(())
}

#[test]
fn verify_works_on_postgres() -> TestResult {
    let Some(url) = pg::url() else {
        eprintln!("skipped: {} is not set", pg::URL_VAR);
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    let bad = fill(&store)?;
    let upcasters = upcasters();
    let report = Verify::new(&store)
        .aggregate::<Account>(&upcasters)?
        .page_size(5)
        .run()?;
    check_report(&report, &bad);
    Ok(())
}
