//! Event evolution: events written by last year's code, read by today's.
//!
//! ```sh
//! cargo run --example evolution                 # a temporary SQLite file
//! cargo run --example evolution -- shop.db      # or a file of your choice
//! ```
//!
//! Last year the code wrote `AccountCreated` (now `account.opened`), `account.opened`
//! version 1 (now version 3, through the typed chain V1 -> V2 -> V3) and `payment.sent`
//! (now a withdrawal and a fee: one stored event becomes two). Those rows stay in the
//! table exactly as written; today's code reads them through upcasters, then `Verify`
//! proves every stored event still decodes.

use std::error::Error;
use std::path::PathBuf;

use eventsource::schema::{SchemaLock, UpdateMode};
use eventsource::{
    Aggregate, Apply, EventStore, ExpectedVersion, NewEvent, RawEvent, Repository, SqliteStore,
    StreamId, Upcasters, Verify, event,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The shapes `account.opened` had, kept so the typed chain can read them.
mod opened {
    use eventsource::event;
    use serde::{Deserialize, Serialize};

    /// Version 1: only an owner.
    #[event(name = "account.opened", version = 1)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct V1 {
        pub owner: String,
    }

    /// Version 2 added the currency.
    #[event(name = "account.opened", version = 2, upcast_from = V1)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct V2 {
        pub owner: String,
        pub currency: String,
    }

    impl From<V1> for V2 {
        fn from(v1: V1) -> Self {
            V2 {
                owner: v1.owner,
                currency: "EUR".into(),
            }
        }
    }
}

/// An account was opened. Version 3 added the overdraft limit.
#[event(name = "account.opened", version = 3, upcast_from = opened::V2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountOpened {
    owner: String,
    currency: String,
    overdraft_limit: u64,
}

impl From<opened::V2> for AccountOpened {
    fn from(v2: opened::V2) -> Self {
        AccountOpened {
            owner: v2.owner,
            currency: v2.currency,
            overdraft_limit: 0,
        }
    }
}

/// Money was paid in.
#[event(name = "money.deposited")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MoneyDeposited {
    amount: u64,
}

/// Money was paid out.
#[event(name = "money.withdrawn")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MoneyWithdrawn {
    amount: u64,
}

/// The bank charged a fee.
#[event(name = "fee.charged")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FeeCharged {
    amount: u64,
}

/// A bank account, the fold of its events.
#[derive(Debug, Default, Aggregate)]
#[aggregate(
    name = "account",
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn, FeeCharged)
)]
struct Account {
    owner: String,
    currency: String,
    balance: i64,
    fees: u64,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, e: &AccountOpened) {
        self.owner.clone_from(&e.owner);
        self.currency.clone_from(&e.currency);
    }
}

impl Apply<MoneyDeposited> for Account {
    fn apply(&mut self, e: &MoneyDeposited) {
        self.balance = self.balance.saturating_add_unsigned(e.amount);
    }
}

impl Apply<MoneyWithdrawn> for Account {
    fn apply(&mut self, e: &MoneyWithdrawn) {
        self.balance = self.balance.saturating_sub_unsigned(e.amount);
    }
}

impl Apply<FeeCharged> for Account {
    fn apply(&mut self, e: &FeeCharged) {
        self.balance = self.balance.saturating_sub_unsigned(e.amount);
        self.fees += e.amount;
    }
}

/// The JSON upcasters: a renamed type and a split event. (Shape changes of
/// `account.opened` are typed, through `upcast_from`.)
fn upcasters() -> Upcasters {
    Upcasters::new()
        .rename("AccountCreated", 1, "account.opened", 1)
        .custom(
            "payment.sent",
            1,
            &[("money.withdrawn", 1), ("fee.charged", 1)],
            |raw| {
                let fee = raw.payload["fee"].as_u64().unwrap_or(0);
                let mut out = vec![RawEvent::new(
                    "money.withdrawn",
                    1,
                    json!({ "amount": raw.payload["amount"] }),
                )];
                if fee > 0 {
                    out.push(RawEvent::new("fee.charged", 1, json!({ "amount": fee })));
                }
                Ok(out)
            },
        )
}

/// What last year's code wrote, as it wrote it.
fn write_last_years_events(store: &SqliteStore) -> Result<(), Box<dyn Error>> {
    let rows: [(&str, Vec<NewEvent>); 3] = [
        (
            "ann",
            vec![
                NewEvent::new("AccountCreated", 1, r#"{"owner":"ann"}"#),
                NewEvent::new("money.deposited", 1, r#"{"amount":1000}"#),
                NewEvent::new("payment.sent", 1, r#"{"amount":300,"fee":2}"#),
            ],
        ),
        (
            "bob",
            vec![
                NewEvent::new("account.opened", 1, r#"{"owner":"bob"}"#),
                NewEvent::new("payment.sent", 1, r#"{"amount":50,"fee":0}"#),
            ],
        ),
        (
            "cem",
            vec![NewEvent::new(
                "account.opened",
                2,
                r#"{"owner":"cem","currency":"CHF"}"#,
            )],
        ),
    ];
    for (id, events) in rows {
        let stream = StreamId::new("account", id);
        store.append(&stream, ExpectedVersion::NoStream, &events)?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let given = std::env::args().nth(1).map(PathBuf::from);
    let temporary = given.is_none();
    let path = given.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("eventsource-evolution-{}.db", std::process::id()))
    });
    let result = run(&path);
    if temporary {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    result
}

/// The lock committed next to this example.
const LOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/evolution.lock");

/// The committed lock at `committed` with the code's new versions added. It starts from
/// the committed file, not from the code: versions that only upcasters read any more
/// (`AccountCreated@1`, `payment.sent@1`) have no struct left to fingerprint, and a lock
/// is never allowed to lose one.
fn lock_to_commit(committed: &str) -> Result<SchemaLock, eventsource::schema::SchemaError> {
    let mut lock = SchemaLock::read(committed)?;
    lock.record::<Account>(UpdateMode::New);
    Ok(lock)
}

fn run(path: &std::path::Path) -> Result<(), Box<dyn Error>> {
    let store = SqliteStore::open(path)?;
    println!("store: {}", path.display());
    if store
        .stream_version(&StreamId::new("account", "ann"))?
        .get()
        == 0
    {
        write_last_years_events(&store)?;
        println!("wrote last year's events (version 1 shapes, old names)");
    }

    // A registration mistake is refused when the repository is built, before any read:
    // here an upcaster lifting the current version to one that does not exist.
    let mistake = Upcasters::new().payload("account.opened", 3, Ok);
    if let Err(e) = Repository::<Account, _>::new(&store).with_upcasters(mistake) {
        println!("refused at build time: {e}");
    }

    let accounts = Repository::<Account, _>::new(&store).with_upcasters(upcasters())?;
    for id in ["ann", "bob", "cem"] {
        let acc = accounts.load(id)?;
        println!(
            "{id}: owner {}, {} {}, fees {} (stream version {})",
            acc.state.owner, acc.state.balance, acc.state.currency, acc.state.fees, acc.version
        );
    }
    // Today's code appends today's shapes next to the old rows.
    accounts.execute("cem", |_| MoneyDeposited { amount: 20 })?;

    let upcasters = upcasters();
    let report = Verify::new(&store)
        .aggregate::<Account>(&upcasters)?
        .run()?;
    println!("\nverify:\n{report}");

    let lock = lock_to_commit(LOCK)?;
    println!("the schema lock to commit (evolution.lock):\n{lock}");
    if !report.is_ok() {
        return Err("some stored events do not decode".into());
    }
    Ok(())
}

/// What a user's test suite does with the lock and the golden samples committed next to
/// this example: change a field of an event without bumping its version and
/// `events_are_locked` fails, naming the event and the field.
#[cfg(test)]
mod tests {
    use super::*;
    use eventsource::schema::{assert_locked, assert_samples};

    const DIR: &str = env!("CARGO_MANIFEST_DIR");

    #[test]
    fn events_are_locked() {
        assert_locked::<Account>(format!("{DIR}/evolution.lock"), &upcasters());
    }

    #[test]
    fn golden_samples_still_decode() {
        assert_samples::<AccountEvent>(format!("{DIR}/golden"), &upcasters());
    }

    #[test]
    fn the_printed_lock_keeps_every_committed_version() -> Result<(), Box<dyn Error>> {
        let committed = std::fs::read_to_string(LOCK)?;
        let printed = lock_to_commit(LOCK)?.to_string();
        for line in committed.lines().filter(|l| l.contains('@')) {
            assert!(
                printed.lines().any(|p| p == line),
                "`{line}` is missing from the printed lock:\n{printed}"
            );
        }
        assert!(
            printed.contains("AccountCreated@1 {owner: String}"),
            "{printed}"
        );
        assert!(
            printed.contains("payment.sent@1 {amount: u64, fee: u64}"),
            "{printed}"
        );
        // Nothing to add: the committed lock is up to date, so it prints as it is.
        assert_eq!(printed, committed);
        Ok(())
    }

    #[test]
    fn the_example_runs() -> Result<(), Box<dyn Error>> {
        let dir = std::env::temp_dir().join(format!("es-evolution-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let result = run(&dir.join("shop.db"));
        std::fs::remove_dir_all(&dir)?;
        result
    }
}
