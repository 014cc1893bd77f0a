//! G: the cost of event evolution on replay. The same payments, stored once at version
//! 1 (lifted on every read through a JSON upcaster v1 -> v2, then the typed chain
//! v2 -> v3) and once at the current version 3, replayed by the same repository.

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use eventsource::{
    Aggregate, Apply, EventStore, ExpectedVersion, NewEvent, Repository, SqliteOptions,
    SqliteStore, StreamId, Synchronous, Upcasters, event,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Options;
use crate::raw::{self, Table};
use crate::report::{cells, interleaved, rate, ratio, throughput};

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

/// Version 1 lifted to the current version 3 by JSON upcasters alone (v1 -> v2 as
/// [`upcasters`], then v2 -> v3 adding the fee), with no typed step.
fn json_upcasters() -> Upcasters {
    upcasters().payload("payment.made", 2, |mut p| {
        p["fee"] = json!(0);
        Ok(p)
    })
}

fn v2(n: u64) -> Result<NewEvent, serde_json::Error> {
    let (from, to, amount, reference, memo) = nth(n);
    NewEvent::from_event(&PaymentV2 {
        from,
        to,
        amount,
        currency: "EUR".into(),
        reference,
        memo,
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

/// Version 1 as stored, for the raw side's hand-written lift.
#[derive(Deserialize)]
struct PaymentV1 {
    from: String,
    to: String,
    cents: u64,
    reference: String,
    memo: String,
}

/// The raw side's decoding: the current shape directly, version 1 lifted by hand.
fn decode(event_type: &str, event_version: i64, payload: &str) -> Result<Payment, Box<dyn Error>> {
    match (event_type, event_version) {
        ("payment.made", 3) | ("payment.made.v3", 0) => Ok(serde_json::from_str(payload)?),
        ("payment.made", 1) | ("payment.made.v1", 0) => {
            let v1: PaymentV1 = serde_json::from_str(payload)?;
            Ok(Payment {
                from: v1.from,
                to: v1.to,
                amount: v1.cents,
                currency: "EUR".into(),
                reference: v1.reference,
                memo: v1.memo,
                fee: 0,
            })
        }
        _ => Err(format!("unknown event {event_type} v{event_version}").into()),
    }
}

/// Raw replay of one stream of the evolved ledger.
fn raw_replay(
    conn: &rusqlite::Connection,
    table: Table,
    id: &str,
) -> Result<EvolvedLedger, Box<dyn Error>> {
    let mut ledger = EvolvedLedger::default();
    raw::read(conn, table, "evolved-ledger", id, 0, |t, v, payload| {
        ledger.apply(&decode(t, v, payload)?);
        Ok(())
    })?;
    Ok(ledger)
}

/// The same two streams on the minimal table, the shape version in the type's name.
fn fill_minimal(path: &Path, total: u64) -> Result<(), Box<dyn Error>> {
    raw::create_minimal(path)?;
    let mut conn = raw::connect(path, "NORMAL")?;
    for id in ["old", "current"] {
        let mut n = 0;
        while n < total {
            let tx = conn.transaction()?;
            for i in n..total.min(n + 1_000) {
                let (event_type, event) = if id == "old" {
                    ("payment.made.v1", v1(i))
                } else {
                    ("payment.made.v3", v3(i)?)
                };
                let version = i64::try_from(i + 1)?;
                raw::insert(
                    &tx,
                    Table::Minimal,
                    "",
                    id,
                    version,
                    event_type,
                    0,
                    &event.payload,
                )?;
            }
            tx.commit()?;
            n += 1_000;
        }
    }
    Ok(())
}

/// G: replay of `100,000` version-1 events through the two-step chain, against the same
/// number of current-version events; each against raw decoding with a hand-written lift.
pub fn bench(o: &Options, dir: &Path) -> Result<(), Box<dyn Error>> {
    let total = o.scaled(100_000, 1_000);
    let path = dir.join("g.db");
    let min_path = dir.join("g-min.db");
    for p in [&path, &min_path] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
        }
    }
    let store =
        SqliteStore::open_with(&path, SqliteOptions::new().synchronous(Synchronous::Normal))?;
    for (id, make) in [
        (
            "old",
            (|n| Ok(v1(n))) as fn(u64) -> Result<NewEvent, serde_json::Error>,
        ),
        ("current", v3),
        ("typed", v2),
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
    fill_minimal(&min_path, total)?;
    let ledgers = Repository::<EvolvedLedger, _>::new(&store).with_upcasters(upcasters())?;
    let conns = [
        raw::connect(&path, "NORMAL")?,
        raw::connect(&min_path, "NORMAL")?,
    ];
    // Warm the page cache for all alike.
    let expected = ledgers.load("current")?.state;
    ledgers.load("old")?;
    raw_replay(&conns[1], Table::Minimal, "old")?;
    raw_replay(&conns[1], Table::Minimal, "current")?;
    let check = |who: &str, lifted: &EvolvedLedger, plain: &EvolvedLedger| {
        if lifted != &expected || plain != &expected || lifted.count != total {
            return Err(format!(
                "{who}: replays differ: {lifted:?}, {plain:?}, {expected:?}"
            ));
        }
        Ok(())
    };
    // Each side: events/s stored at v1, then at v3.
    let r = interleaved(
        |_| {
            let t = Instant::now();
            let lifted = ledgers.load("old")?.state;
            let old = t.elapsed();
            let t = Instant::now();
            let plain = ledgers.load("current")?.state;
            let current = t.elapsed();
            check("eventsource", &lifted, &plain)?;
            Ok((rate(total, old), rate(total, current)))
        },
        |table, _| {
            let conn = &conns[usize::from(table == Table::Minimal)];
            let t = Instant::now();
            let lifted = raw_replay(conn, table, "old")?;
            let old = t.elapsed();
            let t = Instant::now();
            let plain = raw_replay(conn, table, "current")?;
            let current = t.elapsed();
            check(&format!("raw {table:?}"), &lifted, &plain)?;
            Ok((rate(total, old), rate(total, current)))
        },
    )?;
    let old = r.map(|&(old, _)| old);
    let current = r.map(|&(_, current)| current);
    throughput(
        &format!(
            "G. replay of {total} events stored at v1 through a 2-step upcast chain (JSON \
             v1->v2, typed v2->v3); raw: decode v1, lift by hand"
        ),
        "events",
        &old,
    );
    throughput(
        &format!("G. replay of the same {total} events stored at v3 (current)"),
        "events",
        &current,
    );
    cells([
        "G. upcast cost: stored at v1 / stored at v3, per run (target for eventsource: >= 0.8 \
         typed chain, >= 0.6 JSON)",
        &ratio(&old.ours, &current.ours),
        &ratio(&old.same, &current.same),
        &ratio(&old.minimal, &current.minimal),
        "",
        "",
    ]);
    typed_and_json_alone(&store, total)
}

/// eventsource alone: events stored at v2 through the typed step only, and events stored
/// at v1 through JSON upcasters only, each against events stored at v3, per run.
fn typed_and_json_alone(store: &SqliteStore, total: u64) -> Result<(), Box<dyn Error>> {
    let typed = Repository::<EvolvedLedger, _>::new(store).with_upcasters(upcasters())?;
    let json = Repository::<EvolvedLedger, _>::new(store).with_upcasters(json_upcasters())?;
    let expected = typed.load("current")?.state;
    let (mut typed_ratios, mut json_ratios) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        let current = typed.load("current")?.state;
        let current_rate = rate(total, t.elapsed());
        let t = Instant::now();
        let lifted = typed.load("typed")?.state;
        let typed_rate = rate(total, t.elapsed());
        let t = Instant::now();
        let jsoned = json.load("old")?.state;
        let json_rate = rate(total, t.elapsed());
        if current != expected || lifted != expected || jsoned != expected {
            return Err(format!("replays differ: {lifted:?}, {jsoned:?}, {expected:?}").into());
        }
        typed_ratios.push(typed_rate / current_rate);
        json_ratios.push(json_rate / current_rate);
    }
    let ones = vec![1.0; typed_ratios.len()];
    cells([
        "G. eventsource alone, per run: stored at v2 through the typed step only (v2->v3) / \
         stored at v3 (target >= 0.8)",
        &ratio(&typed_ratios, &ones),
        "",
        "",
        "",
        "",
    ]);
    cells([
        "G. eventsource alone, per run: stored at v1 through JSON upcasters only \
         (v1->v2->v3) / stored at v3 (target >= 0.6)",
        &ratio(&json_ratios, &ones),
        "",
        "",
        "",
        "",
    ]);
    Ok(())
}
