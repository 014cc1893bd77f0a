//! Behaviour of the code `#[event]` and `#[derive(Aggregate)]` generate, through the
//! public API.

use eventsource::{
    Aggregate, Apply, DecodeFailure, Event, EventSet, EventType, IntoEvents, Payload, event,
};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Three shapes of the same event, chained with `upcast_from`.
mod opened {
    use super::*;

    #[event(name = "account.opened")]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct V1 {
        pub owner: String,
    }

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

#[event(name = "account.opened", version = 3, upcast_from = opened::V2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountOpened {
    owner: String,
    currency: String,
    overdraft: u64,
}

impl From<opened::V2> for AccountOpened {
    fn from(v2: opened::V2) -> Self {
        AccountOpened {
            owner: v2.owner,
            currency: v2.currency,
            overdraft: 0,
        }
    }
}

#[event]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MoneyDeposited(u64);

#[event(name = "money.withdrawn", version = 4)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MoneyWithdrawn {
    amount: u64,
}

#[event(name = "account.closed")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountClosed;

#[derive(Debug, Default, Aggregate)]
#[aggregate(
    name = "account",
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed)
)]
struct Account {
    owner: String,
    balance: u64,
    closed: bool,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, event: &AccountOpened) {
        self.owner.clone_from(&event.owner);
    }
}

impl Apply<MoneyDeposited> for Account {
    fn apply(&mut self, event: &MoneyDeposited) {
        self.balance += event.0;
    }
}

impl Apply<MoneyWithdrawn> for Account {
    fn apply(&mut self, event: &MoneyWithdrawn) {
        self.balance -= event.amount;
    }
}

impl Apply<AccountClosed> for Account {
    fn apply(&mut self, _: &AccountClosed) {
        self.closed = true;
    }
}

/// An aggregate with an `event_enum` other than the default `{Struct}Event`.
#[derive(Default, Aggregate)]
#[aggregate(name = "wallet", event_enum = Ledger, events(MoneyDeposited))]
struct Wallet(u64);

impl Apply<MoneyDeposited> for Wallet {
    fn apply(&mut self, event: &MoneyDeposited) {
        self.0 += event.0;
    }
}

#[test]
fn event_constants_and_defaults() {
    assert_eq!(AccountOpened::NAME, "account.opened");
    assert_eq!(AccountOpened::VERSION, 3);
    assert_eq!(opened::V1::VERSION, 1);
    // No `name`: the struct's name; no `version`: 1.
    assert_eq!(MoneyDeposited::NAME, "MoneyDeposited");
    assert_eq!(MoneyDeposited::VERSION, 1);
    assert_eq!(
        (MoneyWithdrawn::NAME, MoneyWithdrawn::VERSION),
        ("money.withdrawn", 4)
    );
}

#[test]
fn aggregate_constants_and_defaults() {
    assert_eq!(<Account as Aggregate>::NAME, "account");
    assert_eq!(<Wallet as Aggregate>::NAME, "wallet");
    assert_eq!(Ledger::TYPES, [EventType::of::<MoneyDeposited>()]);
}

#[test]
fn types_are_in_declaration_order() {
    let names: Vec<_> = AccountEvent::TYPES
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        names,
        [
            "account.opened@3",
            "MoneyDeposited@1",
            "money.withdrawn@4",
            "account.closed@1"
        ]
    );
}

#[test]
fn event_type_of_each_variant() {
    let event = AccountEvent::from(MoneyWithdrawn { amount: 1 });
    assert_eq!(
        event.event_type(),
        EventType {
            name: "money.withdrawn",
            version: 4
        }
    );
    assert_eq!(
        AccountEvent::from(AccountClosed).event_type(),
        EventType::of::<AccountClosed>()
    );
}

#[test]
fn from_impls_pick_the_variant() {
    assert_eq!(
        AccountEvent::from(MoneyDeposited(5)),
        AccountEvent::MoneyDeposited(MoneyDeposited(5))
    );
    assert_eq!(
        AccountEvent::from(AccountClosed),
        AccountEvent::AccountClosed(AccountClosed)
    );
    assert_eq!(
        Ledger::from(MoneyDeposited(1)),
        Ledger::MoneyDeposited(MoneyDeposited(1))
    );
}

#[test]
fn encode_decode_round_trip() -> TestResult {
    let events = [
        AccountEvent::from(AccountOpened {
            owner: "ann".into(),
            currency: "CHF".into(),
            overdraft: 100,
        }),
        AccountEvent::from(MoneyDeposited(10)),
        AccountEvent::from(MoneyWithdrawn { amount: 3 }),
        AccountEvent::from(AccountClosed),
    ];
    for event in events {
        let json = event.encode()?;
        let EventType { name, version } = event.event_type();
        let decoded = AccountEvent::decode(name, version, Payload::Text(&json))?;
        assert_eq!(decoded, event);
    }
    assert_eq!(AccountEvent::from(MoneyDeposited(10)).encode()?, "10");
    Ok(())
}

#[test]
fn decodes_json_values_from_upcasters() -> TestResult {
    let value = serde_json::json!({ "amount": 2 });
    let decoded = AccountEvent::decode("money.withdrawn", 4, Payload::Value(value))?;
    assert_eq!(decoded, AccountEvent::from(MoneyWithdrawn { amount: 2 }));
    Ok(())
}

#[test]
fn unknown_type_is_reported() {
    let result = AccountEvent::decode("account.frozen", 1, Payload::Text("{}"));
    assert!(
        matches!(result, Err(DecodeFailure::UnknownType)),
        "{result:?}"
    );
}

#[test]
fn newer_version_is_unsupported() {
    let result = AccountEvent::decode("money.withdrawn", 5, Payload::Text(r#"{"amount":1}"#));
    assert!(
        matches!(
            result,
            Err(DecodeFailure::UnsupportedVersion { current: 4 })
        ),
        "{result:?}"
    );
    // Without `upcast_from`, an older version is unsupported too.
    let result = AccountEvent::decode("money.withdrawn", 3, Payload::Text(r#"{"amount":1}"#));
    assert!(
        matches!(
            result,
            Err(DecodeFailure::UnsupportedVersion { current: 4 })
        ),
        "{result:?}"
    );
    let result = AccountEvent::decode("account.opened", 4, Payload::Text("{}"));
    assert!(
        matches!(
            result,
            Err(DecodeFailure::UnsupportedVersion { current: 3 })
        ),
        "{result:?}"
    );
}

#[test]
fn bad_payload_is_reported() {
    let result = AccountEvent::decode("money.withdrawn", 4, Payload::Text(r#"{"amount":"x"}"#));
    assert!(
        matches!(result, Err(DecodeFailure::Payload(_))),
        "{result:?}"
    );
}

#[test]
fn upcast_chain_decodes_every_version() -> TestResult {
    let expected = AccountOpened {
        owner: "bob".into(),
        currency: "EUR".into(),
        overdraft: 0,
    };
    let v1 = AccountOpened::decode_version(1, Payload::Text(r#"{"owner":"bob"}"#))?;
    assert_eq!(v1, expected);
    let v2 =
        AccountOpened::decode_version(2, Payload::Text(r#"{"owner":"bob","currency":"EUR"}"#))?;
    assert_eq!(v2, expected);
    let v3 = AccountOpened::decode_version(
        3,
        Payload::Text(r#"{"owner":"bob","currency":"EUR","overdraft":0}"#),
    )?;
    assert_eq!(v3, expected);
    // Through the aggregate's event enum as well.
    let event = AccountEvent::decode("account.opened", 1, Payload::Text(r#"{"owner":"bob"}"#))?;
    assert_eq!(event, AccountEvent::AccountOpened(expected));
    Ok(())
}

#[test]
fn upcast_chain_rejects_version_zero_and_bad_old_payloads() {
    let result = AccountOpened::decode_version(0, Payload::Text("{}"));
    assert!(
        matches!(
            result,
            Err(DecodeFailure::UnsupportedVersion { current: 1 })
        ),
        "{result:?}"
    );
    let result = AccountOpened::decode_version(1, Payload::Text(r#"{"name":"bob"}"#));
    assert!(
        matches!(result, Err(DecodeFailure::Payload(_))),
        "{result:?}"
    );
}

#[test]
fn apply_event_dispatches_to_each_apply_impl() {
    let mut account = Account::default();
    let events = [
        AccountEvent::from(AccountOpened {
            owner: "ann".into(),
            currency: "EUR".into(),
            overdraft: 0,
        }),
        AccountEvent::from(MoneyDeposited(10)),
        AccountEvent::from(MoneyWithdrawn { amount: 4 }),
        AccountEvent::from(AccountClosed),
    ];
    for event in &events {
        account.apply_event(event);
    }
    assert_eq!(account.owner, "ann");
    assert_eq!(account.balance, 6);
    assert!(account.closed);

    let mut wallet = Wallet::default();
    wallet.apply_event(&Ledger::from(MoneyDeposited(7)));
    assert_eq!(wallet.0, 7);
}

#[test]
fn handlers_return_events_in_any_shape() {
    let mut out: Vec<AccountEvent> = Vec::new();
    (MoneyDeposited(1), Some(MoneyWithdrawn { amount: 1 })).into_events(&mut out);
    None::<AccountClosed>.into_events(&mut out);
    vec![MoneyDeposited(2)].into_events(&mut out);
    assert_eq!(
        out,
        [
            AccountEvent::from(MoneyDeposited(1)),
            AccountEvent::from(MoneyWithdrawn { amount: 1 }),
            AccountEvent::from(MoneyDeposited(2)),
        ]
    );
}
