//! The repository end to end on real SQLite files: `load`, `execute`, `load_at`, retries,
//! metadata, upcasting and typed errors.

use std::sync::Arc;
use std::thread;

use eventsource::{
    DecodeFailure, EventSet, EventStore, ExecuteError, ExpectedVersion, Metadata, NewEvent,
    Position, ReadError, Repository, SqliteStore, StreamId, Upcasters, Version,
};
use eventsource_tests::{
    Account, AccountEvent, AccountOpened, BankError, MoneyDeposited, MoneyWithdrawn, TempStore,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn bank(
    path: &std::path::Path,
) -> Result<Repository<Account, SqliteStore>, eventsource::StoreError> {
    Ok(Repository::new(SqliteStore::open(path)?))
}

#[test]
fn a_stream_never_written_loads_as_default_at_version_zero() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = bank(&tmp.path)?;
    let acc = accounts.load("nobody")?;
    assert_eq!(acc.state, Account::default());
    assert_eq!(acc.version, Version::NONE);
    assert_eq!(acc.stream, StreamId::new("account", "nobody"));
    Ok(())
}

#[test]
fn execute_appends_and_load_replays_across_reopen() -> TestResult {
    let tmp = TempStore::new()?;
    {
        let accounts = bank(&tmp.path)?;
        let opened = accounts.execute("acc-1", |a| a.open("ann"))?;
        assert_eq!(opened.version, Version::new(1));
        assert_eq!(opened.positions, [Position::new(1)]);
        assert!(opened.state.open);
        accounts.execute("acc-1", |a| a.deposit(100))?;
        let done = accounts.execute("acc-1", |a| a.withdraw(30))?;
        assert_eq!(done.state.balance, 70);
        assert_eq!(
            done.events,
            [AccountEvent::from(MoneyWithdrawn { amount: 30 })]
        );
    }
    let accounts = bank(&tmp.path)?;
    let acc = accounts.load("acc-1")?;
    assert_eq!((acc.state.owner.as_str(), acc.state.balance), ("ann", 70));
    assert_eq!(acc.version, Version::new(3));
    Ok(())
}

#[test]
fn load_at_returns_the_state_as_of_a_version() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = bank(&tmp.path)?;
    accounts.execute("a", |a| a.open("ann"))?;
    for amount in [10, 20, 30] {
        accounts.execute("a", |a| a.deposit(amount))?;
    }
    let at = |v: u64| -> Result<(u64, Version), ReadError> {
        let l = accounts.load_at("a", v)?;
        Ok((l.state.balance, l.version))
    };
    assert_eq!(at(0)?, (0, Version::NONE));
    assert_eq!(at(1)?, (0, Version::new(1)));
    assert_eq!(at(3)?, (30, Version::new(3)));
    assert_eq!(at(4)?, (60, Version::new(4)));
    assert_eq!(at(99)?, (60, Version::new(4)));
    Ok(())
}

#[test]
fn a_refused_command_stores_nothing() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = bank(&tmp.path)?;
    let refused = accounts.execute("a", |a| a.deposit(5));
    assert!(matches!(
        refused,
        Err(ExecuteError::Domain(BankError::NotOpen))
    ));
    accounts.execute("a", |a| a.open("ann"))?;
    let refused = accounts.execute("a", |a| a.withdraw(1));
    assert!(matches!(
        refused,
        Err(ExecuteError::Domain(BankError::InsufficientFunds {
            balance: 0
        }))
    ));
    assert_eq!(
        accounts.store().stream_version(&accounts.stream_id("a"))?,
        Version::new(1)
    );
    Ok(())
}

#[test]
fn handlers_may_return_none_tuples_and_vecs() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = bank(&tmp.path)?;
    let both = accounts.execute("a", |a| {
        Ok::<_, BankError>((a.open("ann")?, MoneyDeposited { amount: 5 }))
    })?;
    assert_eq!(both.version, Version::new(2));
    assert_eq!(both.positions.len(), 2);
    let none = accounts.execute("a", |_| Ok::<_, BankError>(None::<MoneyDeposited>))?;
    assert_eq!((none.version, none.events.len()), (Version::new(2), 0));
    let many = accounts.execute("a", |_| {
        Ok::<_, BankError>(vec![
            MoneyDeposited { amount: 1 },
            MoneyDeposited { amount: 2 },
        ])
    })?;
    assert_eq!(many.version, Version::new(4));
    assert_eq!(accounts.load("a")?.state.balance, 8);
    Ok(())
}

#[test]
fn metadata_is_stored_with_every_event() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = bank(&tmp.path)?;
    let meta = Metadata::new()
        .correlation_id("req-1")
        .causation_id("cmd-9")
        .actor("teller-3")
        .with("channel", "web");
    accounts.execute_with("a", &meta, |a| {
        Ok::<_, BankError>((a.open("ann")?, MoneyDeposited { amount: 1 }))
    })?;
    let stored: Vec<_> = accounts
        .store()
        .read_stream(&accounts.stream_id("a"), Version::new(1))
        .collect::<Result<_, _>>()?;
    assert_eq!(stored.len(), 2);
    for e in &stored {
        assert_eq!(e.metadata, meta);
        assert_eq!(e.stream, StreamId::new("account", "a"));
    }
    assert_eq!(stored[0].event_type, "account.opened");
    assert_eq!(stored[0].event_version, 2);
    assert_ne!(stored[0].event_id, stored[1].event_id);
    assert!(stored[0].recorded_at <= stored[1].recorded_at);
    Ok(())
}

#[test]
fn a_lost_race_reruns_the_handler_within_the_retry_budget() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = bank(&tmp.path)?;
    let rival = bank(&tmp.path)?;
    accounts.execute("a", |a| a.open("ann"))?;
    let mut calls = 0;
    let committed = accounts.execute("a", |a| {
        calls += 1;
        if calls == 1 {
            // Another writer gets in between this load and the append.
            rival
                .execute("a", |r| r.deposit(7))
                .map_err(|_| BankError::NotOpen)?;
        }
        a.deposit(1)
    })?;
    assert_eq!(calls, 2);
    assert_eq!(committed.version, Version::new(3));
    assert_eq!(committed.state.balance, 8);
    Ok(())
}

#[test]
fn retries_are_bounded_and_the_conflict_names_stream_and_versions() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = bank(&tmp.path)?.with_retries(2);
    let rival = bank(&tmp.path)?;
    accounts.execute("a", |a| a.open("ann"))?;
    let mut calls = 0;
    let result = accounts.execute("a", |a| {
        calls += 1;
        rival
            .execute("a", |r| r.deposit(1))
            .map_err(|_| BankError::NotOpen)?;
        a.deposit(1)
    });
    match result {
        Err(ExecuteError::Conflict {
            stream,
            expected,
            actual,
            attempts,
        }) => {
            assert_eq!(stream, StreamId::new("account", "a"));
            assert_eq!(
                (expected, actual, attempts),
                (Version::new(3), Version::new(4), 3)
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(calls, 3);
    // Only the rival's three deposits were stored.
    assert_eq!(accounts.load("a")?.state.balance, 3);
    Ok(())
}

#[test]
fn concurrent_commands_on_one_stream_lose_nothing() -> TestResult {
    let tmp = TempStore::new()?;
    let accounts = Arc::new(bank(&tmp.path)?.with_retries(1_000));
    accounts.execute("shared", |a| a.open("ann"))?;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let accounts = Arc::clone(&accounts);
            thread::spawn(move || -> Result<(), ExecuteError<BankError>> {
                for _ in 0..25 {
                    accounts.execute("shared", |a| a.deposit(1))?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "writer thread panicked")??;
    }
    let acc = accounts.load("shared")?;
    assert_eq!((acc.state.balance, acc.version), (100, Version::new(101)));
    Ok(())
}

#[test]
fn the_same_id_in_two_aggregate_types_is_two_streams() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    store.append(
        &StreamId::new("order", "1"),
        ExpectedVersion::NoStream,
        &[NewEvent::new("order.placed", 1, "{}")],
    )?;
    let accounts = Repository::<Account, _>::new(&store);
    let acc = accounts.execute("1", |a| a.open("ann"))?;
    assert_eq!(acc.version, Version::new(1));
    Ok(())
}

#[test]
fn typed_upcasting_lifts_a_version_1_event() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    // Written by last year's code, before accounts had a currency.
    store.append(
        &StreamId::new("account", "old"),
        ExpectedVersion::NoStream,
        &[NewEvent::new("account.opened", 1, r#"{"owner":"olga"}"#)],
    )?;
    let accounts = Repository::<Account, _>::new(&store);
    let acc = accounts.load("old")?;
    assert_eq!(
        (acc.state.owner.as_str(), acc.state.currency.as_str()),
        ("olga", "EUR")
    );
    Ok(())
}

#[test]
fn json_upcasters_rename_types_and_chain_into_typed_decoding() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let stream = StreamId::new("account", "legacy");
    store.append(
        &stream,
        ExpectedVersion::NoStream,
        &[
            NewEvent::new("AccountCreated", 1, r#"{"name":"lars"}"#),
            NewEvent::new("money.deposited", 1, r#"{"cents":250}"#),
        ],
    )?;
    let upcasters = Upcasters::new()
        .custom("AccountCreated", 1, &[("account.opened", 1)], |raw| {
            let owner = raw.payload["name"].clone();
            Ok(vec![eventsource::RawEvent::new(
                "account.opened",
                1,
                serde_json::json!({ "owner": owner }),
            )])
        })
        // money.deposited v1 used `cents`; it is still v1 in code, with `amount`.
        .custom("money.deposited", 1, &[("money.deposited", 1)], |raw| {
            Ok(vec![eventsource::RawEvent::new(
                "money.deposited",
                1,
                serde_json::json!({ "amount": raw.payload["cents"] }),
            )])
        });
    // A JSON upcaster keyed on the same (type, version) it produces would loop: the
    // repository refuses it when it is built, before any read.
    let looping = Repository::<Account, _>::new(&store).with_upcasters(upcasters);
    assert!(matches!(
        looping,
        Err(eventsource::RegistrationError::Cycle { .. })
    ));

    let upcasters = Upcasters::new()
        .rename("AccountCreated", 1, "account.opened", 1)
        .payload("account.opened", 1, |mut p| {
            let name = p["name"].take();
            Ok(serde_json::json!({ "owner": name, "currency": "NOK" }))
        });
    // account.opened v1 -> (JSON) v2: the typed chain is not needed any more.
    let accounts = Repository::<Account, _>::new(&store).with_upcasters(upcasters)?;
    let err = accounts.load("legacy");
    // money.deposited v1 with `cents` does not fit the current struct.
    match err {
        Err(ReadError::Decode { at, source }) => {
            assert_eq!(at.position, Position::new(2));
            assert_eq!(at.stream, stream);
            assert_eq!(at.version, Version::new(2));
            assert_eq!(
                (at.event_type.as_str(), at.event_version),
                ("money.deposited", 1)
            );
            assert!(matches!(source, DecodeFailure::Payload(_)));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    let acc = accounts.load_at("legacy", 1)?;
    assert_eq!(
        (acc.state.owner.as_str(), acc.state.currency.as_str()),
        ("lars", "NOK")
    );
    Ok(())
}

#[test]
fn undecodable_events_are_typed_errors_naming_the_event() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let accounts = Repository::<Account, _>::new(&store);
    accounts.execute("a", |a| a.open("ann"))?;
    store.append(
        &StreamId::new("account", "a"),
        ExpectedVersion::Any,
        &[NewEvent::new("account.frozen", 1, "{}")],
    )?;
    store.append(
        &StreamId::new("account", "b"),
        ExpectedVersion::Any,
        &[NewEvent::new(
            "account.opened",
            9,
            r#"{"owner":"x","currency":"EUR"}"#,
        )],
    )?;
    match accounts.load("a") {
        Err(ReadError::Decode { at, source }) => {
            assert_eq!(
                at.to_string(),
                "event `account.frozen` v1 at position 2 (stream account/a, version 2)"
            );
            assert!(matches!(source, DecodeFailure::UnknownType));
        }
        other => panic!("expected unknown type, got {other:?}"),
    }
    match accounts.load("b") {
        Err(ReadError::Decode { at, source }) => {
            assert_eq!(
                (at.event_type.as_str(), at.event_version),
                ("account.opened", 9)
            );
            assert!(matches!(
                source,
                DecodeFailure::UnsupportedVersion { current: 2 }
            ));
        }
        other => panic!("expected unsupported version, got {other:?}"),
    }
    // An unreadable stream does not stop commands on others.
    accounts.execute("c", |a| a.open("cy"))?;
    Ok(())
}

#[test]
fn events_encode_with_their_current_type_and_version() -> TestResult {
    let e = AccountEvent::from(AccountOpened {
        owner: "o".into(),
        currency: "EUR".into(),
    });
    assert_eq!(e.event_type().to_string(), "account.opened@2");
    assert_eq!(e.encode()?, r#"{"owner":"o","currency":"EUR"}"#);
    Ok(())
}

/// `execute_expected` runs the handler only on the version the caller saw, and never
/// retries: a stale version is a conflict before the handler, a concurrent append a
/// conflict after it; with the cache too.
#[test]
fn execute_expected_runs_only_on_the_version_seen() -> TestResult {
    let tmp = TempStore::new()?;
    for cached in [false, true] {
        let store = Arc::new(SqliteStore::open(&tmp.path)?);
        let mut accounts = Repository::<Account, _>::new(Arc::clone(&store));
        if cached {
            accounts = accounts.with_cache(10);
        }
        let id = format!("acc-{cached}");
        accounts.execute(&id, |a| a.open("ann"))?;
        let committed = accounts.execute_expected(&id, Version::new(1), |a| a.deposit(5))?;
        assert_eq!(committed.version, Version::new(2));

        // Stale: the handler does not run.
        let mut calls = 0;
        match accounts.execute_expected(&id, Version::new(1), |a| {
            calls += 1;
            a.deposit(7)
        }) {
            Err(ExecuteError::Conflict {
                expected,
                actual,
                attempts: 1,
                ..
            }) => assert_eq!((expected, actual), (Version::new(1), Version::new(2))),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(calls, 0);

        // Another writer appends while the handler decides: one conflict, no retry.
        let other = Repository::<Account, _>::new(Arc::clone(&store));
        let mut calls = 0;
        let result = accounts.execute_expected(&id, Version::new(2), |a| {
            calls += 1;
            other
                .execute(&id, |b| b.deposit(1))
                .map_err(|_| BankError::NotOpen)?;
            a.deposit(9)
        });
        assert!(
            matches!(result, Err(ExecuteError::Conflict { actual, attempts: 1, .. }) if actual == Version::new(3)),
            "{result:?}"
        );
        assert_eq!(calls, 1);
        let account = accounts.load(&id)?;
        assert_eq!(
            (account.version, account.state.balance),
            (Version::new(3), 6)
        );
    }
    Ok(())
}

#[test]
fn every_execute_takes_a_handler_that_cannot_fail() -> TestResult {
    use eventsource::Aggregate as _;

    let accounts = Account::repository(SqliteStore::in_memory()?);
    let opened = AccountOpened {
        owner: "ann".into(),
        currency: "EUR".into(),
    };
    // Each returns events alone; the error type is `Infallible`.
    let done: Result<_, ExecuteError<std::convert::Infallible>> =
        accounts.execute("a", |_| opened.clone());
    assert_eq!(done?.version, Version::new(1));
    accounts.execute_with("a", &Metadata::new().actor("bob"), |_| {
        (
            MoneyDeposited { amount: 5 },
            Some(MoneyDeposited { amount: 1 }),
        )
    })?;
    accounts.execute_once("a", "cmd-1", |_| vec![MoneyDeposited { amount: 10 }])?;
    accounts.execute_once_with("a", "cmd-2", &Metadata::new(), |_| {
        [MoneyWithdrawn { amount: 2 }]
    })?;
    let last = accounts.execute_expected("a", Version::new(5), |_| ())?;
    assert_eq!(last.version, Version::new(5));
    // The `Result` form is unchanged, beside it.
    let refused = accounts.execute("a", |a| a.withdraw(1_000));
    assert!(matches!(
        refused,
        Err(ExecuteError::Domain(BankError::InsufficientFunds {
            balance: 14
        }))
    ));
    assert_eq!(accounts.load("a")?.state.balance, 14);
    Ok(())
}
