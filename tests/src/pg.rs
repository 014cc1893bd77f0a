//! PostgreSQL fixtures: the server named by `EVENTSOURCE_POSTGRES_URL`, a fresh schema
//! per test, and raw SQL through a plain connection that has nothing to do with the
//! store under test.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use eventsource::{PostgresStore, StoreError};

/// The environment variable with the connection string of the test server, e.g.
/// `host=127.0.0.1 port=5432 user=postgres dbname=test`.
pub const URL_VAR: &str = "EVENTSOURCE_POSTGRES_URL";

/// The test server's connection string, or `None` when [`URL_VAR`] is not set: the
/// caller then passes without testing anything. The first skip of a test binary says so
/// on the real stderr, which the test harness does not capture, so `cargo test` shows a
/// line such as `note: EVENTSOURCE_POSTGRES_URL is not set: the PostgreSQL tests of
/// postgres-... pass without running` next to the `ok`s.
pub fn url() -> Option<String> {
    let url = configured_url();
    if url.is_none() {
        static NOTE: std::sync::Once = std::sync::Once::new();
        NOTE.call_once(|| {
            let binary = std::env::args().next().unwrap_or_default();
            let binary = binary.rsplit('/').next().unwrap_or_default();
            let note = format!(
                "\nnote: {URL_VAR} is not set: the PostgreSQL tests of {binary} pass without \
                 running (set it to a server's connection string to run them)\n"
            );
            // Not `eprintln!`: the harness captures that, and a passing test's output is
            // never shown.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
        });
    }
    url
}

/// [`URL_VAR`] when it is set and not blank, without the note of [`url`].
pub fn configured_url() -> Option<String> {
    std::env::var(URL_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A schema name no other test, run or process uses: `es_test_<pid>_<n>_<nanos>`.
pub fn unique_schema_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    format!("es_test_{}_{n}_{nanos}", std::process::id())
}

/// A schema of its own for one test, dropped (with everything in it) on drop.
#[derive(Debug)]
pub struct TestSchema {
    /// The server's connection string.
    pub url: String,
    /// The schema's name.
    pub name: String,
}

impl TestSchema {
    /// A fresh schema name on the server at `url` (created by the first connect).
    pub fn new(url: &str) -> Self {
        TestSchema {
            url: url.to_owned(),
            name: unique_schema_name(),
        }
    }

    /// A store in the schema, with its own connections.
    ///
    /// # Errors
    /// As [`PostgresStore::connect_with_schema`].
    pub fn connect(&self) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with_schema(&self.url, &self.name)
    }

    /// Runs `statement` with the schema first on the search path, through a plain
    /// connection.
    ///
    /// # Errors
    /// The server's message when the statement failed.
    pub fn sql(&self, statement: &str) -> Result<String, String> {
        sql(
            &self.url,
            &[&format!("SET search_path TO \"{}\"", self.name), statement],
        )
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // The triggers refuse DELETE and TRUNCATE, not DROP.
        let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        if let Err(e) = sql(&self.url, &["SET client_min_messages TO warning", &drop]) {
            eprintln!("could not drop test schema {}: {e}", self.name);
        }
    }
}

/// Runs each of `statements` in one session of a plain connection to the server at
/// `url` (not the store's), stopping at the first error. Returns the rows as text, one
/// line per row with columns separated by `|`.
///
/// # Errors
/// The server's message (and hint) when a statement failed, or why it could not connect.
pub fn sql(url: &str, statements: &[&str]) -> Result<String, String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let mut out = String::new();
    for statement in statements {
        let messages = client
            .simple_query(statement)
            .map_err(|e| match e.as_db_error() {
                Some(db) => format!(
                    "ERROR: {}{}",
                    db.message(),
                    db.hint()
                        .map(|h| format!("\nHINT: {h}"))
                        .unwrap_or_default()
                ),
                None => e.to_string(),
            })?;
        for message in messages {
            if let postgres::SimpleQueryMessage::Row(row) = message {
                let columns: Vec<&str> = (0..row.len()).map(|i| row.get(i).unwrap_or("")).collect();
                out.push_str(&columns.join("|"));
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// Runs `test` in a fresh schema, or passes (after saying so) when no server is
/// configured.
///
/// # Errors
/// The test's error.
pub fn with_schema(
    test: impl FnOnce(&TestSchema) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    match url() {
        Some(url) => test(&TestSchema::new(&url)),
        None => Ok(()),
    }
}

/// Joins scoped threads, passing a thread's panic on to the test.
pub fn join_all<T>(handles: Vec<std::thread::ScopedJoinHandle<'_, T>>) -> Vec<T> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
        .collect()
}
