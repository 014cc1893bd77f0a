//! Fixtures of the reliability suite (`tests/reliability_*.rs`), its helper binaries
//! (`src/bin/es_*.rs`) and the fuzz target (`fuzz/`): a seeded random generator, the
//! line protocol the helpers print, snapshots of a SQLite file's rows taken through a
//! plain connection, and the contract of reading arbitrary rows ([`load_rows`]).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use eventsource::{
    Aggregate, Apply, EventStore, Position, RawEvent, ReadError, Repository, SqliteOptions,
    SqliteStore, StreamId, UpcastError, Upcasters, Version,
};
use serde_json::{Value, json};

use crate::{AccountOpened, MoneyDeposited, MoneyWithdrawn};

/// A small deterministic generator (SplitMix64): the same seed gives the same sequence on
/// every machine, so a failing run can be replayed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The seed named by the environment variable `var`, or `default`.
    pub fn seed_from_env(var: &str, default: u64) -> u64 {
        std::env::var(var)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(default)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high` (slightly biased, which does not matter here).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// What one command of the `es_deposit` helper came to, as it prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositOutcome {
    /// `ok <amount> <version> <position> <calls>`: committed at `version`, the handler
    /// having run `calls` times (more than once after lost races).
    Committed {
        /// The amount deposited (unique per command in a run).
        amount: u64,
        /// The stream version of the deposit.
        version: Version,
        /// Its global position.
        position: Position,
        /// How often the handler ran.
        calls: u32,
    },
    /// `conflict <amount> <attempts> <calls>`: every attempt lost the race and the
    /// repository reported `ExecuteError::Conflict` after `attempts` attempts.
    Conflict {
        /// The amount that was not deposited.
        amount: u64,
        /// The attempts the error reported.
        attempts: u32,
        /// How often the handler ran.
        calls: u32,
    },
}

impl fmt::Display for DepositOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DepositOutcome::Committed {
                amount,
                version,
                position,
                calls,
            } => write!(f, "ok {amount} {version} {position} {calls}"),
            DepositOutcome::Conflict {
                amount,
                attempts,
                calls,
            } => write!(f, "conflict {amount} {attempts} {calls}"),
        }
    }
}

impl FromStr for DepositOutcome {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let bad = || format!("not a deposit outcome: {line:?}");
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> Result<u64, String> {
            words.get(i).and_then(|w| w.parse().ok()).ok_or_else(bad)
        };
        let small = |i: usize| -> Result<u32, String> { u32::try_from(num(i)?).map_err(|_| bad()) };
        match words.first() {
            Some(&"ok") if words.len() == 5 => Ok(DepositOutcome::Committed {
                amount: num(1)?,
                version: Version::new(num(2)?),
                position: Position::new(num(3)?),
                calls: small(4)?,
            }),
            Some(&"conflict") if words.len() == 4 => Ok(DepositOutcome::Conflict {
                amount: num(1)?,
                attempts: small(2)?,
                calls: small(3)?,
            }),
            _ => Err(bad()),
        }
    }
}

/// The payload of event `index` of a batch of `size` events that the crash writer
/// appends: enough to tell, reading the store, whether a batch is complete.
pub fn batch_payload(batch: &str, index: u64, size: u64) -> String {
    format!(r#"{{"batch":"{batch}","index":{index},"size":{size}}}"#)
}

/// One acknowledged append of the `es_crash_writer` helper:
/// `ack <batch> <stream id> <first version> <last version> <p1,p2,...>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The batch id.
    pub batch: String,
    /// The stream's id (aggregate type `crash`).
    pub stream: String,
    /// The version of the first event of the batch.
    pub first: Version,
    /// The version of its last event.
    pub last: Version,
    /// The positions, in order.
    pub positions: Vec<Position>,
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let positions: Vec<String> = self.positions.iter().map(ToString::to_string).collect();
        write!(
            f,
            "ack {} {} {} {} {}",
            self.batch,
            self.stream,
            self.first,
            self.last,
            positions.join(",")
        )
    }
}

impl FromStr for Ack {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let bad = || format!("not an ack: {line:?}");
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() != 6 || words[0] != "ack" {
            return Err(bad());
        }
        let version = |w: &str| w.parse().map(Version::new).map_err(|_| bad());
        let positions = words[5]
            .split(',')
            .map(|p| p.parse().map(Position::new).map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        Ok(Ack {
            batch: words[1].to_owned(),
            stream: words[2].to_owned(),
            first: version(words[3])?,
            last: version(words[4])?,
            positions,
        })
    }
}

/// One stored value of a SQLite row, byte for byte (text need not be valid UTF-8).
#[derive(Clone, PartialEq, Eq)]
pub enum Cell {
    /// `NULL`.
    Null,
    /// An integer.
    Integer(i64),
    /// A float, by its bits.
    Real(u64),
    /// Text, as stored.
    Text(Vec<u8>),
    /// A BLOB.
    Blob(Vec<u8>),
}

impl fmt::Debug for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Null => f.write_str("NULL"),
            Cell::Integer(i) => write!(f, "{i}"),
            Cell::Real(bits) => write!(f, "{:?}", f64::from_bits(*bits)),
            Cell::Text(t) => write!(f, "{:?}", String::from_utf8_lossy(t)),
            Cell::Blob(b) => {
                f.write_str("X'")?;
                for byte in b {
                    write!(f, "{byte:02X}")?;
                }
                f.write_str("'")
            }
        }
    }
}

impl From<rusqlite::types::ValueRef<'_>> for Cell {
    fn from(value: rusqlite::types::ValueRef<'_>) -> Self {
        use rusqlite::types::ValueRef;
        match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(f) => Cell::Real(f.to_bits()),
            ValueRef::Text(t) => Cell::Text(t.to_vec()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }
}

/// Every row of the `events` table of the SQLite file at `path`, every column, in
/// position order, read through a plain connection: compare two snapshots to prove
/// that nothing was written.
///
/// # Errors
/// SQLite's error.
pub fn sqlite_rows(path: &Path) -> rusqlite::Result<Vec<Vec<Cell>>> {
    let conn = rusqlite::Connection::open(path)?;
    let mut stmt = conn.prepare("SELECT * FROM events ORDER BY position")?;
    let columns = stmt.column_count();
    stmt.query_map([], |row| {
        (0..columns)
            .map(|i| row.get_ref(i).map(Cell::from))
            .collect()
    })?
    .collect()
}

/// An account whose arithmetic cannot overflow, for replaying arbitrary rows: the bank
/// domain's `Account` trusts its stored history (a withdrawal never exceeds the
/// balance), which arbitrary rows do not respect.
#[derive(Debug, Default, Clone, PartialEq, Aggregate)]
#[aggregate(
    name = "account",
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn)
)]
pub struct Tally {
    /// Owners, in order of opening.
    pub owners: Vec<String>,
    /// Deposits minus withdrawals, wrapping.
    pub balance: u64,
    /// How many events were applied.
    pub applied: u64,
}

impl Apply<AccountOpened> for Tally {
    fn apply(&mut self, e: &AccountOpened) {
        self.owners.push(e.owner.clone());
        self.applied += 1;
    }
}

impl Apply<MoneyDeposited> for Tally {
    fn apply(&mut self, e: &MoneyDeposited) {
        self.balance = self.balance.wrapping_add(e.amount);
        self.applied += 1;
    }
}

impl Apply<MoneyWithdrawn> for Tally {
    fn apply(&mut self, e: &MoneyWithdrawn) {
        self.balance = self.balance.wrapping_sub(e.amount);
        self.applied += 1;
    }
}

/// One row as an attacker or a bug might have stored it: any type, versions and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArbitraryRow {
    /// The stream: `account/a` when even, `account/b` when odd.
    pub stream: u8,
    /// The stream version (rows below 1, or taken, are refused by the table).
    pub version: i64,
    /// The event type.
    pub event_type: String,
    /// The event version (rows below 1 are refused by the table).
    pub event_version: i64,
    /// The payload: stored as TEXT, even when it is not UTF-8, unless `payload_blob`.
    pub payload: Vec<u8>,
    /// Store the payload as a BLOB.
    pub payload_blob: bool,
    /// The metadata, stored as TEXT.
    pub metadata: Vec<u8>,
}

/// Event types worth generating often: the aggregate's, older names the upcasters
/// know, and names nothing knows.
pub const INTERESTING_TYPES: &[&str] = &[
    "account.opened",
    "money.deposited",
    "money.withdrawn",
    "AccountCreated",
    "money.moved",
    "batch.split",
    "loop.a",
    "dropped",
    "account.frozen",
    "",
];

/// The upcasters used when replaying arbitrary rows: a rename, a payload lift that can
/// fail, a split, a cycle and a drop.
pub fn arbitrary_row_upcasters() -> Upcasters {
    Upcasters::new()
        .rename("AccountCreated", 1, "account.opened", 1)
        .custom("money.moved", 1, &[("money.deposited", 1)], |raw| match raw
            .payload
            .get("amount")
            .and_then(Value::as_u64)
        {
            Some(amount) => Ok(vec![RawEvent::new(
                "money.deposited",
                1,
                json!({ "amount": amount }),
            )]),
            None => Err(UpcastError::invalid("money.moved without an amount")),
        })
        .custom(
            "batch.split",
            1,
            &[("money.deposited", 1), ("batch.split", 2)],
            |raw| match raw.payload {
                Value::Array(items) => Ok(items
                    .into_iter()
                    .map(|amount| RawEvent::new("money.deposited", 1, json!({ "amount": amount })))
                    .collect()),
                other => Ok(vec![RawEvent::new("batch.split", 2, other)]),
            },
        )
        .rename("loop.a", 1, "loop.b", 1)
        .rename("loop.b", 1, "loop.a", 1)
        .discard("dropped", 1)
}

/// What [`load_rows`] saw, for statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadSummary {
    /// Rows the table accepted.
    pub stored: usize,
    /// Streams that loaded to a value.
    pub loaded: usize,
    /// Streams that gave a typed error.
    pub refused: usize,
}

fn is_typed(e: &ReadError) -> bool {
    // A store failure on an in-memory database reading rows it accepted means an
    // untyped conversion error: a bug. Every other variant names what is wrong.
    !matches!(e, ReadError::Store(_))
}

/// The contract of the read path for arbitrary rows: stores `rows` (those the table
/// accepts) in a fresh in-memory store with raw SQL, then loads both streams (and every
/// prefix of them) with [`arbitrary_row_upcasters`], reads them and reads everything.
/// Each read gives a value or a typed error (not a store error, not a panic); a stream
/// that loads, loads at the version the store reports, and all its prefixes load too.
///
/// # Errors
/// A description of the broken promise.
pub fn load_rows(rows: &[ArbitraryRow]) -> Result<LoadSummary, String> {
    let owned = rows.to_vec();
    let options = SqliteOptions::new().on_connect(move |conn| {
        for row in &owned {
            let stream = if row.stream % 2 == 0 { "a" } else { "b" };
            let payload_sql = if row.payload_blob {
                "?6"
            } else {
                "CAST(?6 AS TEXT)"
            };
            let sql = format!(
                "INSERT INTO events (aggregate_type, stream_id, version, event_type, \
                 event_version, event_id, recorded_at, payload, metadata) VALUES ('account', \
                 ?1, ?2, ?3, ?4, ?5, 0, {payload_sql}, CAST(?7 AS TEXT))"
            );
            // Rows the table refuses (CHECK, UNIQUE) are simply not there.
            let _ = conn.execute(
                &sql,
                (
                    stream,
                    row.version,
                    &row.event_type,
                    row.event_version,
                    eventsource::EventId::new().to_string(),
                    &row.payload,
                    &row.metadata,
                ),
            );
        }
        Ok(())
    });
    let store = SqliteStore::in_memory_with(options).map_err(|e| format!("open: {e:?}"))?;
    let tallies =
        Repository::<Tally, _>::new(&store).with_upcasters_unchecked(arbitrary_row_upcasters());
    let mut summary = LoadSummary::default();
    for id in ["a", "b"] {
        let stream = StreamId::new("account", id);
        let mut count = 0;
        for event in store.read_stream(&stream, Version::new(1)) {
            match event {
                Ok(_) => count += 1,
                Err(e) if is_typed(&e) => break,
                Err(e) => return Err(format!("read_stream({stream}): untyped {e:?}")),
            }
        }
        summary.stored += count;
        match tallies.load(id) {
            Ok(loaded) => {
                summary.loaded += 1;
                let version = store
                    .stream_version(&stream)
                    .map_err(|e| format!("stream_version({stream}): {e:?}"))?;
                if loaded.version != version {
                    return Err(format!(
                        "{stream} loaded at {} but the store is at {version}",
                        loaded.version
                    ));
                }
                for v in 0..=version.get().min(8) {
                    let prefix = tallies
                        .load_at(id, v)
                        .map_err(|e| format!("{stream} loads but not at {v}: {e:?}"))?;
                    if prefix.version != Version::new(v) {
                        return Err(format!("{stream} at {v} loaded as {}", prefix.version));
                    }
                }
            }
            Err(e) if is_typed(&e) => summary.refused += 1,
            Err(e) => return Err(format!("load({stream}): untyped {e:?}")),
        }
    }
    for event in store.read_all(Position::START) {
        match event {
            Ok(_) => {}
            Err(e) if is_typed(&e) => break,
            Err(e) => return Err(format!("read_all: untyped {e:?}")),
        }
    }
    Ok(summary)
}
