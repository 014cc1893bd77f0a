//! Stores up to eight arbitrary rows (type, versions, payload and metadata bytes) in an
//! in-memory store with raw SQL, then loads both streams through the repository with
//! upcasters, reads them and reads everything: each read must give a value or a typed
//! error, never a panic (see `eventsource_tests::reliability::load_rows`).

#![no_main]

use arbitrary::Arbitrary;
use eventsource_tests::reliability::{ArbitraryRow, INTERESTING_TYPES, load_rows};
use libfuzzer_sys::fuzz_target;

/// One row as the fuzzer builds it.
#[derive(Debug, Arbitrary)]
struct Row {
    stream: u8,
    version: i64,
    /// An index into the interesting types, or (past them) `custom_type`.
    known_type: u8,
    custom_type: String,
    event_version: i64,
    payload: Vec<u8>,
    payload_blob: bool,
    metadata: Vec<u8>,
}

impl From<Row> for ArbitraryRow {
    fn from(row: Row) -> Self {
        let event_type = INTERESTING_TYPES
            .get(usize::from(row.known_type))
            .map_or(row.custom_type, |t| (*t).to_owned());
        ArbitraryRow {
            stream: row.stream,
            // Small versions most of the time, so that streams form.
            version: if row.version.unsigned_abs() < 1 << 60 {
                row.version.rem_euclid(6)
            } else {
                row.version
            },
            event_type,
            event_version: if row.event_version.unsigned_abs() < 1 << 60 {
                row.event_version.rem_euclid(4)
            } else {
                row.event_version
            },
            payload: row.payload,
            payload_blob: row.payload_blob,
            metadata: row.metadata,
        }
    }
}

fuzz_target!(|rows: Vec<Row>| {
    let rows: Vec<ArbitraryRow> = rows.into_iter().take(8).map(ArbitraryRow::from).collect();
    if let Err(broken) = load_rows(&rows) {
        panic!("{broken}\nrows: {rows:#?}");
    }
});
