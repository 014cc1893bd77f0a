//! Upcasters are user code run on stored data: one that panics on a payload it did not
//! expect (`p["order_id"] = p["order"].take()` on a stored array, an `expect` in a typed
//! chain's `From`) is `ReadError::Upcast` with `UpcastError::Panicked`, naming the stored
//! event and carrying the panic's message, from `load`, `execute` and `Upcasters::decode`;
//! `Verify` lists it as a failure and goes on. The panic never reaches the caller.
//! (The panic hook still prints the panic to stderr, as for any caught panic.)

use std::error::Error;

use eventsource::{
    Aggregate, Apply, EventLocation, EventStore, ExecuteError, ExpectedVersion, NewEvent, Position,
    ReadError, Repository, SqliteStore, StreamId, UpcastError, Upcasters, Verify, Version, event,
};
use eventsource_tests::TempStore;
use eventsource_tests::pg::{self, TestSchema};
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn Error>>;

/// An order was placed (version 1 called the field `order`).
#[event(name = "order.placed", version = 2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: u64,
}

/// Version 1 of `item.added`: a signed quantity.
#[event(name = "item.added", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAddedV1 {
    /// The quantity.
    pub qty: i64,
}

/// An item was added.
#[event(name = "item.added", version = 2, upcast_from = ItemAddedV1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAdded {
    /// The quantity.
    pub qty: u32,
}

impl From<ItemAddedV1> for ItemAdded {
    fn from(v1: ItemAddedV1) -> Self {
        // A typed upcaster that trusts the stored data.
        ItemAdded {
            qty: u32::try_from(v1.qty).expect("a stored quantity fits in u32"),
        }
    }
}

/// An order.
#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "order", events(OrderPlaced, ItemAdded))]
pub struct Order {
    /// The order id.
    pub id: u64,
    /// Items added.
    pub items: u64,
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, e: &OrderPlaced) {
        self.id = e.order_id;
    }
}

impl Apply<ItemAdded> for Order {
    fn apply(&mut self, e: &ItemAdded) {
        self.items += u64::from(e.qty);
    }
}

/// The JSON upcaster as the README once wrote it: it panics on a payload that is not an
/// object (and not null).
fn readme_upcasters() -> Upcasters {
    Upcasters::new().payload("order.placed", 1, |mut p| {
        p["order_id"] = p["order"].take();
        Ok(p)
    })
}

/// Stores `o/json` (a good v1 order, then a v1 order stored as an array) and `o/typed`
/// (a good v1 item, then one with a negative quantity), then one good event on each.
fn store_orders<S: EventStore>(store: &S) -> TestResult {
    let append = |id: &str, events: &[NewEvent]| {
        store.append(&StreamId::new("order", id), ExpectedVersion::Any, events)
    };
    append(
        "json",
        &[
            NewEvent::new("order.placed", 1, r#"{"order":7}"#),
            NewEvent::new("order.placed", 1, "[7]"),
        ],
    )?;
    append(
        "typed",
        &[
            NewEvent::new("item.added", 1, r#"{"qty":2}"#),
            NewEvent::new("item.added", 1, r#"{"qty":-1}"#),
        ],
    )?;
    append(
        "json",
        &[NewEvent::new("order.placed", 2, r#"{"order_id":8}"#)],
    )?;
    append("typed", &[NewEvent::new("item.added", 2, r#"{"qty":3}"#)])?;
    Ok(())
}

/// The position, stream and types of the bad row of stream `id`.
fn bad_row(id: &str, position: u64, event_type: &str) -> EventLocation {
    EventLocation {
        position: Position::new(position),
        stream: StreamId::new("order", id),
        version: Version::new(2),
        event_type: event_type.to_owned(),
        event_version: 1,
    }
}

fn assert_panicked(
    result: Result<impl std::fmt::Debug, ReadError>,
    at: &EventLocation,
    message: &str,
) {
    match result {
        Err(ReadError::Upcast { at: found, source }) => {
            assert_eq!(*found, *at);
            match &source {
                UpcastError::Panicked {
                    upcaster,
                    message: m,
                } => {
                    assert_eq!(upcaster.to_string(), format!("{}@1", at.event_type));
                    assert!(m.contains(message), "{m}");
                }
                other => panic!("expected a panicked upcaster, got {other:?}"),
            }
            assert!(source.to_string().contains("panicked"), "{source}");
        }
        other => panic!("expected an upcast error, got {other:?}"),
    }
}

fn panics_are_upcast_errors<S: EventStore>(store: &S) -> TestResult {
    store_orders(store)?;
    let orders = Repository::<Order, _>::new(store).with_upcasters(readme_upcasters())?;
    let json_at = bad_row("json", 2, "order.placed");
    let typed_at = bad_row("typed", 4, "item.added");
    assert_panicked(orders.load("json"), &json_at, "cannot access key \"order\"");
    assert_panicked(
        orders.load("typed"),
        &typed_at,
        "a stored quantity fits in u32",
    );
    // What comes before the bad row still loads, and a command stores nothing.
    assert_eq!(orders.load_at("json", 1)?.state.id, 7);
    assert_eq!(orders.load_at("typed", 1)?.state.items, 2);
    match orders.execute("typed", |_| ItemAdded { qty: 1 }) {
        Err(ExecuteError::Read(e)) => assert_panicked(Err::<(), _>(e), &typed_at, "fits in u32"),
        other => panic!("expected a read error, got {other:?}"),
    }
    assert_eq!(
        store.stream_version(&StreamId::new("order", "typed"))?,
        Version::new(3)
    );

    // Verify lists both and reads on to the end.
    let upcasters = readme_upcasters();
    let report = Verify::new(store).aggregate::<Order>(&upcasters)?.run()?;
    assert_eq!(report.decoded(), 4);
    assert_eq!(report.failed(), 2);
    let failed: Vec<(u64, bool)> = report
        .failures
        .iter()
        .map(|f| {
            let panicked = matches!(
                &f.error,
                ReadError::Upcast {
                    source: UpcastError::Panicked { .. },
                    ..
                }
            );
            (f.position.get(), panicked)
        })
        .collect();
    assert_eq!(failed, [(2, true), (4, true)]);
    assert_eq!(report.last_position, Position::new(6));
    Ok(())
}

#[test]
fn sqlite_a_panicking_upcaster_is_an_upcast_error() -> TestResult {
    let tmp = TempStore::new()?;
    panics_are_upcast_errors(&SqliteStore::open(&tmp.path)?)
}

#[test]
fn postgres_a_panicking_upcaster_is_an_upcast_error() -> TestResult {
    pg::with_schema(|schema: &TestSchema| panics_are_upcast_errors(&schema.connect()?))
}

/// The non-panicking form: `payload_object` hands the upcaster the payload's fields and
/// refuses a payload that is not an object with `UpcastError::NotAnObject`.
#[test]
fn payload_object_refuses_a_payload_that_is_not_an_object() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    store_orders(&store)?;
    let upcasters = Upcasters::new().payload_object("order.placed", 1, |fields| {
        if let Some(order) = fields.remove("order") {
            fields.insert("order_id".to_owned(), order);
        }
        Ok(())
    });
    let orders = Repository::<Order, _>::new(&store).with_upcasters(upcasters)?;
    match orders.load("json") {
        Err(ReadError::Upcast { at, source }) => {
            assert_eq!(*at, bad_row("json", 2, "order.placed"));
            assert!(
                matches!(&source, UpcastError::NotAnObject { found } if *found == "an array"),
                "{source:?}"
            );
            assert_eq!(
                source.to_string(),
                "the payload is an array, not a JSON object"
            );
        }
        other => panic!("expected an upcast error, got {other:?}"),
    }
    assert_eq!(orders.load_at("json", 1)?.state.id, 7);
    Ok(())
}
