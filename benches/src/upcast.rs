//! G: the cost of event evolution on replay. The same payments, stored once at version
//! 1 (lifted on every read through a JSON upcaster v1 -> v2, then the typed chain
//! v2 -> v3) and once at the current version 3, replayed by the same repository.

use std::error::Error;
use std::path::Path;
use std::time::{Duration, Instant};

use eventsource::{
    Aggregate, Apply, EventStore, ExpectedVersion, NewEvent, Repository, SqliteOptions,
    SqliteStore, StreamId, Synchronous, Upcasters, event,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Options;
use crate::report::{rate, throughput};

/// Version 2 of `payment.made`: `cents` became `amount` and a currency was added (by the
/// JSON upcaster from version 1).
#[event(name = "payment.made", version = 2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentV2 {
    /// Paying account.
    pub from: String,
    /// Receiving account.
    pub to: String,
    /// Cents.
    pub amount: u64,
    /// ISO currency.
    pub currency: String,
    /// Payment reference.
    pub reference: String,
    /// Free text.
    pub memo: String,
}

/// The current version 3: a fee was added.
#[event(name = "payment.made", version = 3, upcast_from = PaymentV2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// Paying account.
    pub from: String,
    /// Receiving account.
    pub to: String,
    /// Cents.
    pub amount: u64,
    /// ISO currency.
    pub currency: String,
    /// Payment reference.
    pub reference: String,
    /// Free text.
    pub memo: String,
    /// Fee in cents.
    pub fee: u64,
}

impl From<PaymentV2> for Payment {
    fn from(v2: PaymentV2) -> Self {
        Payment {
            from: v2.from,
            to: v2.to,
            amount: v2.amount,
            currency: v2.currency,
            reference: v2.reference,
            memo: v2.memo,
            fee: 0,
        }
    }
}

/// The fold of the payments.
#[derive(Debug, Default, PartialEq, Aggregate)]
#[aggregate(name = "evolved-ledger", events(Payment))]
pub struct EvolvedLedger {
    /// Sum of the amounts.
    pub total: u64,
    /// Number of payments.
    pub count: u64,
}

impl Apply<Payment> for EvolvedLedger {
    fn apply(&mut self, e: &Payment) {
        self.total += e.amount + e.fee;
        self.count += 1;
    }
}

/// Version 1 had `cents` and no currency.
fn upcasters() -> Upcasters {
    Upcasters::new().payload("payment.made", 1, |mut p| {
        p["amount"] = p["cents"].take();
        if let Some(fields) = p.as_object_mut() {
            fields.remove("cents");
        }
        p["currency"] = json!("EUR");
        Ok(p)
    })
}

/// The `n`th payment's fields, shared by both shapes.
fn nth(n: u64) -> (String, String, u64, String, String) {
    (
        format!("DE89 3704 0044 0532 {:04}", n % 10_000),
        "GB29 NWBK 6016 1331 9268 19".into(),
        1_000 + n % 977,
        format!("INV-2026-{n:08}"),
        "monthly subscription, thank you for your business".into(),
    )
}

fn v1(n: u64) -> NewEvent {
    let (from, to, cents, reference, memo) = nth(n);
    let payload =
        json!({ "from": from, "to": to, "cents": cents, "reference": reference, "memo": memo });
    NewEvent::new("payment.made", 1, payload.to_string())
}

fn v3(n: u64) -> Result<NewEvent, serde_json::Error> {
    let (from, to, amount, reference, memo) = nth(n);
    NewEvent::from_event(&Payment {
        from,
        to,
        amount,
        currency: "EUR".into(),
        reference,
        memo,
        fee: 0,
    })
}

/// G: replay of `100,000` version-1 events through the two-step chain, against the same
/// number of current-version events.
pub fn bench(o: &Options, dir: &Path) -> Result<(), Box<dyn Error>> {
    let total = o.scaled(100_000, 1_000);
    let path = dir.join("g.db");
    let store =
        SqliteStore::open_with(&path, SqliteOptions::new().synchronous(Synchronous::Normal))?;
    for (id, make) in [
        (
            "old",
            (|n| Ok(v1(n))) as fn(u64) -> Result<NewEvent, serde_json::Error>,
        ),
        ("current", v3),
    ] {
        let stream = StreamId::new("evolved-ledger", id);
        let mut n = 0;
        while n < total {
            let batch = (n..total.min(n + 1_000))
                .map(make)
                .collect::<Result<Vec<_>, _>>()?;
            store.append(&stream, ExpectedVersion::Any, &batch)?;
            n += 1_000;
        }
    }
    let ledgers = Repository::<EvolvedLedger, _>::new(&store).with_upcasters(upcasters())?;
    // Warm the page cache for both streams alike.
    ledgers.load("old")?;
    ledgers.load("current")?;
    let (mut chain, mut current) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let t = Instant::now();
        let lifted = ledgers.load("old")?.state;
        chain = chain.min(t.elapsed());
        let t = Instant::now();
        let plain = ledgers.load("current")?.state;
        current = current.min(t.elapsed());
        if lifted != plain || lifted.count != total {
            return Err(format!("replays differ: {lifted:?} vs {plain:?}").into());
        }
    }
    throughput(
        &format!(
            "G. replay of {total} events stored at v1 through a 2-step upcast chain \
             (JSON v1->v2, typed v2->v3); second column: the same stored at v3"
        ),
        "events",
        rate(total, chain),
        rate(total, current),
    );
    Ok(())
}
