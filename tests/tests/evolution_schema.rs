//! The schema lock and golden samples, used the way a user's test suite uses them: the
//! committed `tests/events.lock` and `tests/golden/*.json` against the `ledger` below,
//! and temporary locks and samples for every way they can fail.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use eventsource::schema::{
    LockViolation, SampleProblem, SchemaLock, UpdateMode, assert_locked, assert_samples,
    check_samples,
};
use eventsource::{EventKey, RegistrationError, Upcasters};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The ledger as the code is today: `ledger.opened` was `LedgerOpened` (typed chain
/// across the rename), `entry.posted` v1 used `cents` (JSON upcaster), batches are split
/// into entries and audits dropped.
mod ledger {
    use eventsource::{Aggregate, Apply, RawEvent, Upcasters, event};
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    #[event(name = "LedgerOpened")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct LedgerOpenedV1 {
        pub name: String,
    }

    #[event(name = "ledger.opened", version = 2, upcast_from = LedgerOpenedV1)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct LedgerOpened {
        pub owner: String,
        #[serde(default)]
        pub currency: String,
    }

    impl From<LedgerOpenedV1> for LedgerOpened {
        fn from(v1: LedgerOpenedV1) -> Self {
            LedgerOpened {
                owner: v1.name,
                currency: "EUR".into(),
            }
        }
    }

    #[event(name = "entry.posted", version = 2)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct EntryPosted {
        pub amount: i64,
    }

    #[event(name = "ledger.closed")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct LedgerClosed;

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "ledger", events(LedgerOpened, EntryPosted, LedgerClosed))]
    pub struct Ledger {
        pub balance: i64,
    }

    impl Apply<LedgerOpened> for Ledger {
        fn apply(&mut self, _: &LedgerOpened) {}
    }
    impl Apply<EntryPosted> for Ledger {
        fn apply(&mut self, e: &EntryPosted) {
            self.balance += e.amount;
        }
    }
    impl Apply<LedgerClosed> for Ledger {
        fn apply(&mut self, _: &LedgerClosed) {}
    }

    pub fn upcasters() -> Upcasters {
        Upcasters::new()
            .payload("entry.posted", 1, |mut p| {
                Ok(json!({ "amount": p["cents"].take() }))
            })
            .custom("batch.posted", 1, &[("entry.posted", 2)], |raw| {
                let entries = raw.payload["cents"].as_array().cloned().unwrap_or_default();
                Ok(entries
                    .into_iter()
                    .map(|cents| RawEvent::new("entry.posted", 2, json!({ "amount": cents })))
                    .collect())
            })
            .discard("ledger.audited", 1)
    }
}

/// An account as it was locked: `money.deposited` v1 with a `u64` amount.
mod before {
    use eventsource::{Aggregate, Apply, event};
    use serde::{Deserialize, Serialize};

    #[event(name = "account.opened")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct AccountOpened {
        pub owner: String,
    }

    #[event(name = "money.deposited")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct MoneyDeposited {
        pub amount: u64,
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "account", events(AccountOpened, MoneyDeposited))]
    pub struct Account;

    impl Apply<AccountOpened> for Account {
        fn apply(&mut self, _: &AccountOpened) {}
    }
    impl Apply<MoneyDeposited> for Account {
        fn apply(&mut self, _: &MoneyDeposited) {}
    }
}

/// The same account after someone changed `money.deposited` and kept version 1.
mod after {
    pub use super::before::AccountOpened;
    use eventsource::{Aggregate, Apply, event};
    use serde::{Deserialize, Serialize};

    #[event(name = "money.deposited")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct MoneyDeposited {
        pub amount: i64,
        pub memo: String,
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "account", events(AccountOpened, MoneyDeposited))]
    pub struct Account;

    impl Apply<AccountOpened> for Account {
        fn apply(&mut self, _: &AccountOpened) {}
    }
    impl Apply<MoneyDeposited> for Account {
        fn apply(&mut self, _: &MoneyDeposited) {}
    }
}

/// The account with `money.deposited` bumped to version 2, but no path from version 1.
mod bumped {
    pub use super::before::AccountOpened;
    use eventsource::{Aggregate, Apply, event};
    use serde::{Deserialize, Serialize};

    #[event(name = "money.deposited", version = 2)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct MoneyDeposited {
        pub amount: i64,
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "account", events(AccountOpened, MoneyDeposited))]
    pub struct Account;

    impl Apply<AccountOpened> for Account {
        fn apply(&mut self, _: &AccountOpened) {}
    }
    impl Apply<MoneyDeposited> for Account {
        fn apply(&mut self, _: &MoneyDeposited) {}
    }
}

/// The account under a new aggregate name, events unchanged.
mod renamed_aggregate {
    pub use super::before::{AccountOpened, MoneyDeposited};
    use eventsource::{Aggregate, Apply};

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "bank-account", events(AccountOpened, MoneyDeposited))]
    pub struct Account;

    impl Apply<AccountOpened> for Account {
        fn apply(&mut self, _: &AccountOpened) {}
    }
    impl Apply<MoneyDeposited> for Account {
        fn apply(&mut self, _: &MoneyDeposited) {}
    }
}

/// The account with `money.deposited` stored under a new event name, shape unchanged.
mod renamed_event {
    pub use super::before::AccountOpened;
    use eventsource::{Aggregate, Apply, event};
    use serde::{Deserialize, Serialize};

    #[event(name = "money.credited")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct MoneyDeposited {
        pub amount: u64,
    }

    #[derive(Debug, Default, Aggregate)]
    #[aggregate(name = "account", events(AccountOpened, MoneyDeposited))]
    pub struct Account;

    impl Apply<AccountOpened> for Account {
        fn apply(&mut self, _: &AccountOpened) {}
    }
    impl Apply<MoneyDeposited> for Account {
        fn apply(&mut self, _: &MoneyDeposited) {}
    }
}

fn committed(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A temporary lock file recording `before::Account`.
fn locked_before() -> Result<(tempfile::TempDir, PathBuf), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.lock");
    let mut lock = SchemaLock::new();
    assert!(lock.record::<before::Account>(UpdateMode::New));
    lock.write(&path)?;
    Ok((dir, path))
}

/// The panic message of `f`.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the assertion must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(ToString::to_string))
        .unwrap_or_default()
}

#[test]
fn the_committed_lock_matches_the_code() {
    assert_locked::<ledger::Ledger>(committed("events.lock"), &ledger::upcasters());
}

#[test]
fn the_committed_golden_samples_decode_to_the_expected_events() {
    assert_samples::<ledger::LedgerEvent>(committed("golden"), &ledger::upcasters());
}

#[test]
fn changing_a_field_without_bumping_the_version_fails_naming_the_event_and_the_field() -> TestResult
{
    let (_dir, path) = locked_before()?;
    assert_locked::<before::Account>(&path, &Upcasters::new());

    let message = panic_message(|| assert_locked::<after::Account>(&path, &Upcasters::new()));
    for expected in [
        "does not match the events of aggregate `account`",
        "`money.deposited@1` changed its shape but kept version 1:",
        "field `amount`: type changed from `u64` to `i64`",
        "field `memo` added (`String`)",
        "A changed shape needs a new version",
    ] {
        assert!(
            message.contains(expected),
            "missing `{expected}` in:\n{message}"
        );
    }
    assert!(!message.contains("account.opened"), "{message}");

    let violations = SchemaLock::read(&path)?.check::<after::Account>(&Upcasters::new());
    match violations.as_slice() {
        [
            LockViolation::Changed {
                event,
                locked,
                current,
                ..
            },
        ] => {
            assert_eq!(event, &EventKey::new("money.deposited", 1));
            assert_eq!(locked, "{amount: u64}");
            assert_eq!(current, "{amount: i64, memo: String}");
        }
        other => panic!("expected one changed shape, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_new_version_without_a_path_from_the_locked_one_fails() -> TestResult {
    let (_dir, path) = locked_before()?;
    let lock = SchemaLock::read(&path)?;
    let violations = lock.check::<bumped::Account>(&Upcasters::new());
    assert_eq!(
        violations,
        [
            LockViolation::Unlocked {
                aggregate_type: "account".into(),
                event: EventKey::new("money.deposited", 2),
                shape: "{amount: i64}".into(),
            },
            LockViolation::NoPath {
                aggregate_type: "account".into(),
                event: EventKey::new("money.deposited", 1),
                current_version: Some(2),
                cause: None,
            },
        ]
    );
    assert_eq!(
        violations[1].to_string(),
        "`money.deposited@1` is in the lock but nothing decodes it any more: \
         `money.deposited` is now version 2, no `upcast_from` chain reaches version 1 and \
         no upcaster lifts it"
    );
    // A new version of a locked name is not a rename.
    if UpdateMode::from_env().is_none() {
        let message = panic_message(|| assert_locked::<bumped::Account>(&path, &Upcasters::new()));
        assert!(!message.contains("renamed?"), "{message}");
    }
    // An upcaster that stops short is named as the cause.
    let short = Upcasters::new().rename("money.deposited", 1, "money.deposited", 3);
    let violations = lock.check::<bumped::Account>(&short);
    assert!(
        matches!(
            violations.as_slice(),
            [
                LockViolation::Registration { .. },
                LockViolation::Unlocked { .. },
                LockViolation::NoPath {
                    cause: Some(RegistrationError::NotDecodable { .. }),
                    ..
                },
            ]
        ),
        "{violations:?}"
    );
    // With a path from version 1, only the new version remains to be recorded.
    let lifted = Upcasters::new().payload("money.deposited", 1, Ok);
    let violations = lock.check::<bumped::Account>(&lifted);
    assert!(
        matches!(violations.as_slice(), [LockViolation::Unlocked { .. }]),
        "{violations:?}"
    );
    Ok(())
}

#[test]
fn a_renamed_aggregate_fails_asking_whether_it_was_renamed() -> TestResult {
    if UpdateMode::from_env().is_some() {
        return Ok(()); // the helper would record the new name
    }
    let (_dir, path) = locked_before()?;
    let message = panic_message(|| {
        assert_locked::<renamed_aggregate::Account>(&path, &Upcasters::new());
    });
    assert!(
        message.contains(
            "Aggregate renamed? The lock has no `[bank-account]` but has `[account]`: events \
             are stored with the aggregate's name, so a new name starts new, empty streams"
        ),
        "{message}"
    );
    Ok(())
}

#[test]
fn a_renamed_event_fails_asking_whether_it_was_renamed() -> TestResult {
    if UpdateMode::from_env().is_some() {
        return Ok(()); // the helper would record the new name
    }
    let (_dir, path) = locked_before()?;
    let message = panic_message(|| {
        assert_locked::<renamed_event::Account>(&path, &Upcasters::new());
    });
    assert!(
        message.contains(
            "Event renamed? Every locked version of `money.deposited` no longer decodes \
             while `money.credited` appeared: events are stored under their name"
        ),
        "{message}"
    );
    assert!(!message.contains("Aggregate renamed?"), "{message}");
    // Once the old name decodes again (an upcaster renames it), nothing is renamed.
    let upcasters = Upcasters::new().rename("money.deposited", 1, "money.credited", 1);
    let message = panic_message(|| assert_locked::<renamed_event::Account>(&path, &upcasters));
    assert!(!message.contains("renamed?"), "{message}");
    Ok(())
}

#[test]
fn recording_adds_new_versions_and_never_removes_old_ones() -> TestResult {
    let (_dir, path) = locked_before()?;
    let mut lock = SchemaLock::read(&path)?;
    assert!(lock.record::<bumped::Account>(UpdateMode::New));
    assert!(!lock.record::<bumped::Account>(UpdateMode::New));
    assert_eq!(
        lock.shape("account", "money.deposited", 1),
        Some("{amount: u64}")
    );
    assert_eq!(
        lock.shape("account", "money.deposited", 2),
        Some("{amount: i64}")
    );
    let lifted = Upcasters::new().payload("money.deposited", 1, Ok);
    assert_eq!(lock.check::<bumped::Account>(&lifted), []);
    lock.write(&path)?;
    assert_eq!(SchemaLock::read(&path)?, lock);
    let text = std::fs::read_to_string(&path)?;
    assert!(
        text.ends_with(
            "\n[account]\naccount.opened@1 {owner: String}\nmoney.deposited@1 {amount: u64}\n\
             money.deposited@2 {amount: i64}\n"
        ),
        "{text}"
    );
    Ok(())
}

#[test]
fn only_overwrite_accepts_a_changed_shape() -> TestResult {
    let (_dir, path) = locked_before()?;
    let mut lock = SchemaLock::read(&path)?;
    assert!(!lock.record::<after::Account>(UpdateMode::New));
    assert_eq!(lock.check::<after::Account>(&Upcasters::new()).len(), 1);
    assert!(lock.record::<after::Account>(UpdateMode::Overwrite));
    assert_eq!(lock.check::<after::Account>(&Upcasters::new()), []);
    Ok(())
}

#[test]
fn locks_record_every_version_of_a_chain_under_its_stored_name() {
    let mut lock = SchemaLock::new();
    lock.record::<ledger::Ledger>(UpdateMode::New);
    let text = lock.to_string();
    assert!(
        text.contains(
            "[ledger]\nLedgerOpened@1 {name: String}\nentry.posted@2 {amount: i64}\n\
             ledger.closed@1 unit\nledger.opened@2 {#[serde(default)] currency: String, \
             owner: String}\n"
        ),
        "{text}"
    );
}

#[test]
fn a_missing_lock_fails_with_how_to_create_it() -> TestResult {
    if UpdateMode::from_env().is_some() {
        return Ok(()); // the helper is asked to create it
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("events.lock");
    let message = panic_message(|| assert_locked::<before::Account>(&path, &Upcasters::new()));
    assert!(message.contains("does not exist"), "{message}");
    assert!(
        message.contains("EVENTSOURCE_UPDATE_LOCK=1 cargo test"),
        "{message}"
    );
    Ok(())
}

fn sample(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(name), text)
}

#[test]
fn each_failing_sample_is_reported_with_its_file_and_why() -> TestResult {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    sample(
        d,
        "LedgerOpened@1.json",
        r#"{"payload": {"name": "ann"}, "expected": {"type": "ledger.opened", "payload": {"owner": "ann", "currency": "EUR"}}}"#,
    )?;
    sample(
        d,
        "entry.posted@1.json",
        r#"{"payload": {"cents": 5}, "expected": [{"type": "entry.posted", "payload": {"amount": 6}}]}"#,
    )?;
    sample(
        d,
        "batch.posted@1.json",
        r#"{"payload": {"cents": [1, 2]}}"#,
    )?;
    sample(
        d,
        "ledger.audited@1.bad.json",
        r#"{"payload": {}, "expected": [{"type": "nope", "payload": {}}]}"#,
    )?;
    sample(
        d,
        "entry.posted@1.text.json",
        r#"{"payload": {"cents": "x"}, "expected": []}"#,
    )?;
    sample(d, "no-version.json", "{}")?;
    sample(d, "notes.txt", "ignored")?;
    let report = check_samples::<ledger::LedgerEvent>(d, &ledger::upcasters())?;
    assert_eq!(report.checked, 5);
    let failures: Vec<(String, &SampleProblem)> = report
        .failures
        .iter()
        .map(|f| {
            (
                f.file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                &f.problem,
            )
        })
        .collect();
    assert_eq!(failures.len(), 5, "{:?}", report.failures);
    assert!(
        matches!(failures[0], (ref n, SampleProblem::NoExpected { actual }) if n == "batch.posted@1.json"
        && actual == r#"[{"payload":{"amount":1},"type":"entry.posted","version":2},{"payload":{"amount":2},"type":"entry.posted","version":2}]"#)
    );
    assert!(
        matches!(failures[1], (ref n, SampleProblem::Mismatch { .. }) if n == "entry.posted@1.json")
    );
    assert!(
        matches!(failures[2], (ref n, SampleProblem::Decode(_)) if n == "entry.posted@1.text.json")
    );
    assert!(
        matches!(failures[3], (ref n, SampleProblem::Expected { index: 0, .. }) if n == "ledger.audited@1.bad.json")
    );
    assert!(matches!(failures[4], (ref n, SampleProblem::FileName) if n == "no-version.json"));
    assert_eq!(
        report.failures[1].to_string(),
        r#"entry.posted@1.json: the sample decodes to [{"payload":{"amount":5},"type":"entry.posted","version":2}], expected [{"payload":{"amount":6},"type":"entry.posted","version":2}]"#
    );
    // Every historical version has a file, even if it fails.
    assert_eq!(report.missing, []);

    std::fs::remove_file(d.join("LedgerOpened@1.json"))?;
    let message = panic_message(|| assert_samples::<ledger::LedgerEvent>(d, &ledger::upcasters()));
    assert!(
        message.contains("no sample of `LedgerOpened@1`"),
        "{message}"
    );
    assert!(
        message.contains(
            "entry.posted@1.text.json: the sample does not decode: payload does not match the event"
        ),
        "{message}"
    );
    Ok(())
}
