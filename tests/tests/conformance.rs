//! Runs the conformance suite (`eventsource_tests::conformance`) against every backend,
//! each test on a fresh store:
//!
//! - `sqlite_memory`: `SqliteStore::in_memory()`;
//! - `sqlite_file`: a SQLite file in a temporary folder;
//! - `postgres`: a fresh schema on the server named by `EVENTSOURCE_POSTGRES_URL`,
//!   dropped afterwards (each test passes with a note on stderr when it is not set).

use eventsource::{PostgresStore, SqliteStore};
use eventsource_tests::conformance::{self, RawSql, TestResult};
use eventsource_tests::pg::{self, TestSchema};
use eventsource_tests::{TempStore, raw_sqlite};

fn sqlite_memory(test: impl FnOnce(&SqliteStore, RawSql<'_>) -> TestResult) -> TestResult {
    let store = SqliteStore::in_memory()?;
    // An in-memory database has no second connection to tamper through.
    test(&store, &|_| {
        Err("an in-memory store has no other connection".into())
    })
}

fn sqlite_file(test: impl FnOnce(&SqliteStore, RawSql<'_>) -> TestResult) -> TestResult {
    let temp = TempStore::new()?;
    let store = SqliteStore::open(&temp.path)?;
    let raw = |sql: &str| {
        raw_sqlite(&temp.path, sql)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    test(&store, &raw)
}

fn postgres(test: impl FnOnce(&PostgresStore, RawSql<'_>) -> TestResult) -> TestResult {
    let Some(url) = pg::url() else {
        return Ok(());
    };
    let schema = TestSchema::new(&url);
    let store = schema.connect()?;
    let raw = |sql: &str| schema.sql(sql).map(drop);
    let result = test(&store, &raw);
    drop(store); // before the schema is dropped
    result
}

/// One test per backend and conformance test: `<backend>::<test>`.
macro_rules! suite {
    ($($backend:ident),* ; $tests:tt) => {
        $(backend_suite!($backend $tests);)*
    };
}

macro_rules! backend_suite {
    ($backend:ident [$($test:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[test]
                fn $test() -> TestResult {
                    super::$backend(|store, _| conformance::$test(store))
                }
            )*
        }
    };
}

suite!(sqlite_memory, sqlite_file, postgres; [
    expected_versions,
    empty_appends_check_the_expected_version,
    batches_are_atomic,
    order_is_version_and_position_order,
    events_round_trip,
    metadata_round_trips,
    read_stream_from_a_version,
    read_all_after_a_position,
    paging_crosses_page_boundaries,
    aggregate_types_are_separate_streams,
    concurrent_writers_on_one_stream,
    concurrent_writers_on_own_streams,
    a_visitor_error_stops_the_read,
    stream_ids_are_validated,
]);

// Tampering needs a second, plain connection, which an in-memory SQLite store has not.
#[test]
fn sqlite_file_the_table_is_append_only() -> TestResult {
    sqlite_file(conformance::the_table_is_append_only)
}

#[test]
fn postgres_the_table_is_append_only() -> TestResult {
    postgres(conformance::the_table_is_append_only)
}
