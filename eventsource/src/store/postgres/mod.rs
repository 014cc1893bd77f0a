//! The PostgreSQL backend: [`PostgresStore`], whose docs describe the layout, the
//! global order and its cost, idempotent commands, connections and reads.

mod chain;
mod event_store;
mod import;
mod pool;
mod project;
mod read;
mod schema;
mod statements;
mod tls;
mod write;

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, Config};

use self::pool::Pool;
pub use self::pool::PostgresOptions;
use self::read::explain_filtered;
use self::schema::{prepare_schema, quote_schema};
use self::statements::{Conn, Sql, Statements};
use self::tls::Connector;
#[cfg(feature = "tls")]
pub use self::tls::PostgresTls;
use self::write::{AppendFailure, find_batch};
use super::EventFilter;
use super::group_commit::{GroupCommit, Outcome, Request};
use crate::error::{AppendError, StoreError};
use crate::version::Position;

/// The schema [`PostgresStore::connect`] uses.
const DEFAULT_SCHEMA: &str = "public";

/// First key of the append lock ("ESRC"); the second is the `events` table's oid, so
/// stores in different schemas do not wait for each other.
const APPEND_LOCK_CLASS: i32 = 0x4553_5243;

/// How many rows a filtered read fetches per statement.
const FILTERED_PAGE: usize = 512;

/// How long the store tries to find out whether an append whose COMMIT went unanswered
/// is stored before it reports [`AppendError::Unknown`]; and how long each try may wait
/// to connect and for the append lock.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// An event store in a PostgreSQL database: every event in one append-only table that
/// any number of processes on any number of nodes share.
///
/// # Layout
/// Each store lives in one PostgreSQL schema (`public` unless
/// [`PostgresStore::connect_with_schema`] names another) and holds:
///
/// - `events`: `position` (the global order, `BIGINT` primary key), `aggregate_type`,
///   `stream_id`, `version`, `event_type`, `event_version`, `event_id` (`UUID`),
///   `recorded_at` (`TIMESTAMPTZ`, from the server's clock when the insert starts, so it
///   does not decrease along positions unless that clock is set back), `payload` and
///   `metadata` (`JSONB`). `(aggregate_type, stream_id, version)` and `event_id` are
///   unique.
/// - a statement-level trigger that makes every UPDATE, DELETE and TRUNCATE of `events`
///   fail with `eventsource: the events table is append-only; UPDATE is refused` (or
///   DELETE, TRUNCATE); only the table's owner can disable it, and this crate never does.
/// - `commands`: one row per idempotent command that ran
///   ([`EventStore::append_command`](crate::EventStore::append_command)): `command_id` (`TEXT` primary key),
///   `aggregate_type`, `stream_id`, `stream_version` (the stream's version after the
///   command), `positions` (`BIGINT[]`, those of its events, possibly none) and
///   `recorded_at` (the same time as its events'). Append-only like `events`, by the same
///   kind of trigger: `eventsource: the commands table is append-only; DELETE is refused`.
/// - `snapshots`: a disposable cache of aggregate states ([`EventStore::save_snapshot`](crate::EventStore::save_snapshot)),
///   `state` as `JSONB`; each save keeps the three newest of the stream. Dropping its
///   rows loses nothing but replay time.
/// - `eventsource_meta`: one row with the schema version (2). A store written by a newer
///   eventsource is refused with [`StoreError::NewerSchema`].
///
/// The schema and its objects are created on first connect, in one transaction, under
/// an advisory lock taken before that transaction begins, so processes that start at the
/// same time do not race. Connecting to an existing store of the current version takes no
/// lock and needs no privilege to create anything.
///
/// Payloads are stored as `JSONB`, so they can be indexed and queried, and are read back
/// as PostgreSQL prints them: the same JSON value, but whitespace, key order and
/// duplicate keys are not preserved. `JSONB` cannot hold the character U+0000 (`\u0000`);
/// such an append is refused with [`AppendError::Encode`].
///
/// # Global order
/// Positions must reach readers in order: a reader that has seen position `p` and then
/// asks for everything after `p` must never miss an event committed later with a smaller
/// position. Sequences do not give that (a transaction can take a value, then commit
/// after a transaction that took a larger one).
///
/// So every append takes a transaction-scoped advisory lock on the table
/// (`pg_advisory_xact_lock`, keyed by the table's oid), then reads the last position,
/// its chain hash and the streams' versions, checks the expected versions and inserts at
/// `max(position) + 1, ...`. PostgreSQL makes a commit
/// visible before it releases the transaction's locks, so the next append sees it and
/// commits after it: commit order is position order. Hence the events any snapshot sees
/// are exactly the positions `1..=n` for some `n` (no holes, nothing visible out of
/// order), and `read_all_with(after)` in a loop sees every event exactly once. The same
/// lock makes the expected-version check exact across connections and processes; the
/// unique constraints stay as a backstop. Every writer must go through this type (or take
/// the same lock) for the guarantee to hold.
///
/// The append's transaction sets its own isolation level, `READ COMMITTED`, whatever the
/// session's `default_transaction_isolation`: under `REPEATABLE READ` or `SERIALIZABLE`
/// its snapshot would be taken before the lock is granted and miss the append it waited
/// for. Reads are single statements and work under any level.
///
/// An idempotent command is an append whose statement, under the same lock, first looks
/// its id up in `commands` and, when the id is new and the expected version matches,
/// inserts the events and the command's row together: so a command id is refused with
/// [`AppendError::DuplicateCommand`] exactly, across connections, processes and
/// restarts, with nothing stored. A writer that bypassed the lock and recorded the id
/// first makes the insert violate `commands_pkey`, which is reported the same way.
///
/// The price: appends to one store are serialised, each transaction holding the lock
/// for two round trips (`BEGIN`, the lock and the reads in one; the insert and `COMMIT`
/// in the other, with the arguments spelled into the query as literals; a batch of more
/// than 16 KiB of JSON binds them instead, in one more round trip) and its WAL flush. Appends made at the same time through one `PostgresStore` share
/// that cost (group commit, as [`SqliteStore`](crate::SqliteStore) does): the first
/// thread to find no commit under way takes every append queued so far into one
/// transaction, decides each in order as it would alone (its own conflict, duplicate
/// command or refused event, never the others'), and inserts the accepted ones in one
/// statement. An insert the database refuses (a repeated event id, JSON that `JSONB`
/// cannot hold) fails the whole transaction; each of its appends is then tried again
/// alone, so each gets its own outcome. Throughput across processes is still bounded by
/// that latency: share one handle between threads, and batch events into one append
/// where the domain allows. A writer that stalls inside its transaction holds everyone
/// else up, so set `idle_in_transaction_session_timeout` on the server.
///
/// # A commit whose answer is lost
/// When the connection breaks after COMMIT was sent (the server or a proxy closed it,
/// the backend was terminated), the append may be stored even though no answer came;
/// so may every other append of its group commit, each of which is looked up the same
/// way.
/// The store then finds out on a new connection: it takes the append lock, which the
/// broken session held until its transaction ended, so that transaction has committed or
/// rolled back for good; then it looks up the batch's event ids (and the command's row),
/// which that transaction would have inserted at known versions and positions. Found: the
/// append returns its result as if the answer had come. Not found: the driver's error,
/// as definite as any other ([`AppendError::Store`], nothing stored). When no lookup
/// succeeds within 5 seconds (it tries again after 50 ms, 100 ms, ... up to a second),
/// the append fails with [`AppendError::Unknown`]: it may or may not be stored. An `ERROR`
/// answer to COMMIT (a serialization failure, for example) means it rolled back and is
/// reported as [`AppendError::Store`] without a lookup.
///
/// # Connections and reads
/// [`postgres::Client`] is not `Sync`; the store keeps a pool of connections, each with
/// its statements prepared: at most 16 open at once by default
/// ([`PostgresOptions::max_connections`]). A call that finds them all busy waits for one
/// to be returned, up to 30 seconds by default ([`PostgresOptions::acquire_timeout`]),
/// then fails with [`StoreError::PoolExhausted`], which can be retried. Each running
/// projector or subscription holds one connection of its own besides. A connection found
/// closed after a call is dropped; one the server closed while it was idle fails the
/// next call made on it with [`StoreError::Postgres`], which can be retried. Connections
/// are made without TLS.
///
/// Reads are one statement each, so one snapshot, and streamed: rows are decoded from the
/// socket one at a time (the driver reads ahead a bounded amount) and lent to the visitor
/// as a [`RecordedEventRef`](crate::RecordedEventRef) with payload and metadata borrowed
/// from the row, so no read holds a whole stream in memory.
/// [`EventStore::replay_stream_with`](crate::EventStore::replay_stream_with) selects only the five columns decoding needs
/// (position, version, event type and version, payload). A read that the visitor stops
/// early closes its connection rather than draining the remaining rows.
///
/// # Example
/// `url` is a libpq-style connection string, as key-value pairs or a URL.
///
/// ```no_run
/// use eventsource::{EventStore, ExpectedVersion, NewEvent, PostgresStore, StreamId};
///
/// let store = PostgresStore::connect("host=127.0.0.1 user=postgres dbname=bank")?;
/// let stream = StreamId::new("account", "acc-1");
/// let appended = store.append(&stream, ExpectedVersion::NoStream, &[
///     NewEvent::new("account.opened", 1, r#"{"owner":"ann"}"#),
/// ])?;
/// assert_eq!(appended.stream_version.get(), 1);
/// # Ok::<(), eventsource::Error>(())
/// ```
pub struct PostgresStore {
    config: Config,
    connector: Connector,
    schema: String,
    sql: Sql,
    pool: Pool,
    group: GroupCommit,
}

/// A client closes its connection by blocking on a runtime of its own, which panics on
/// a thread of a tokio runtime: there, the idle connections close on a thread of their
/// own (the async facade drops its stores off the runtime; this covers a store dropped
/// by other async code).
#[cfg(feature = "tokio")]
impl Drop for PostgresStore {
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            let idle = self.pool.take_idle();
            if !idle.is_empty() {
                thread::spawn(move || drop(idle));
            }
        }
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Config`'s Debug redacts the password.
        f.debug_struct("PostgresStore")
            .field("config", &self.config)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and uses the store in its `public` schema,
    /// creating the tables if they do not exist.
    ///
    /// ```no_run
    /// use eventsource::PostgresStore;
    ///
    /// let store = PostgresStore::connect("postgres://postgres@127.0.0.1/bank")?;
    /// assert_eq!(store.schema(), "public");
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    ///
    /// # Errors
    /// As [`PostgresStore::connect_with_schema`].
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_schema(url, DEFAULT_SCHEMA)
    }

    /// Connects to the database at `url` and uses the store in `schema`, creating the
    /// schema and its tables if they do not exist. Stores in different schemas of one
    /// database are independent: separate events, positions and append locks.
    ///
    /// `schema` is used exactly as given (quoted, so case matters): ASCII letters, digits
    /// and `_`, not starting with a digit or `pg_`, at most 63 bytes.
    ///
    /// ```no_run
    /// use eventsource::PostgresStore;
    ///
    /// let billing = PostgresStore::connect_with_schema("host=127.0.0.1 user=postgres dbname=app", "billing")?;
    /// let shipping = PostgresStore::connect_with_schema("host=127.0.0.1 user=postgres dbname=app", "shipping")?;
    /// assert_ne!(billing.schema(), shipping.schema());
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Postgres`] when `url` is malformed, the server cannot be reached or
    /// refuses a statement (missing privileges, for example);
    /// [`StoreError::NotAStore`] (its `path` is the schema name) when `schema` is not a
    /// valid name or holds an `events` table that eventsource did not create;
    /// [`StoreError::NewerSchema`] when the store was written by a newer eventsource.
    /// Nothing is changed in a schema that is refused.
    pub fn connect_with_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::new().schema(schema))
    }

    /// Connects to the database at `url` with `options`: the schema, and the bounds of
    /// the connection pool.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use eventsource::{PostgresOptions, PostgresStore};
    ///
    /// let options = PostgresOptions::new().schema("billing").max_connections(8).acquire_timeout(Duration::from_secs(2));
    /// let store = PostgresStore::connect_with("host=127.0.0.1 user=postgres dbname=app", options)?;
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    ///
    /// # Errors
    /// As [`PostgresStore::connect_with_schema`].
    #[allow(
        clippy::needless_pass_by_value,
        reason = "options are built inline and given away, as `SqliteStore::open_with`'s"
    )]
    pub fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let schema = options.schema.as_str();
        let quoted = quote_schema(schema)?;
        let mut config: Config = url.parse()?;
        let connector = Connector::new(&mut config, options.tls.as_ref())?;
        let mut client = connector.connect(&config)?;
        prepare_schema(&mut client, schema, &quoted)?;
        let table_oid: u32 = client
            .query_one(
                "SELECT $1::text::regclass::oid",
                &[&format!("{quoted}.events")],
            )?
            .try_get(0)?;
        let sql = Sql::new(&quoted, table_oid);
        let stmts = Statements::prepare(&mut client, &sql)?;
        let first = Conn {
            client,
            stmts,
            discard: false,
        };
        Ok(PostgresStore {
            config,
            connector,
            schema: schema.to_owned(),
            sql,
            pool: Pool::new(first, &options),
            group: GroupCommit::default(),
        })
    }

    /// The PostgreSQL schema that holds the store.
    ///
    /// ```no_run
    /// use eventsource::PostgresStore;
    ///
    /// let store = PostgresStore::connect_with_schema("host=127.0.0.1 user=postgres dbname=app", "orders")?;
    /// assert_eq!(store.schema(), "orders");
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `EXPLAIN (ANALYZE, TIMING OFF)` of the statement
    /// [`EventStore::read_all_filtered_with`] runs for `filter` after `after`, one line
    /// per plan line. Not public API: for the tests that check that a filtered read does
    /// not sort a large input.
    ///
    /// # Errors
    /// When PostgreSQL fails.
    #[doc(hidden)]
    pub fn explain_filtered(
        &self,
        filter: &EventFilter,
        after: Position,
    ) -> Result<String, StoreError> {
        self.with_conn(|conn| explain_filtered(&mut conn.client, &self.sql.schema, after, filter))
    }

    /// `EXPLAIN` of the statement [`EventStore::list_streams`] runs for a later page. Not
    /// public API: for the tests of its plan.
    ///
    /// # Errors
    /// When PostgreSQL fails.
    #[doc(hidden)]
    pub fn explain_list_streams(&self, aggregate_type: &str) -> Result<String, StoreError> {
        let statement = format!("EXPLAIN {}", self.sql.list_streams_after);
        self.with_conn(|conn| {
            let rows = conn
                .client
                .query(statement.as_str(), &[&aggregate_type, &"", &10_i64])?;
            let lines = rows
                .iter()
                .map(|row| row.try_get::<_, String>(0))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(lines.join("\n"))
        })
    }

    /// Runs `f` on a connection of the pool (an idle one, a new one, or the first one
    /// returned: see [`PostgresOptions`]). The connection goes back to the pool unless it
    /// failed, `f` left it unusable, or `f` panicked (its state is then unknown).
    fn with_conn<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.pool.acquire(|| self.open())?;
        f(&mut conn)
    }

    fn open(&self) -> Result<Conn, postgres::Error> {
        let mut client = self.connector.connect(&self.config)?;
        let stmts = Statements::prepare(&mut client, &self.sql)?;
        Ok(Conn {
            client,
            stmts,
            discard: false,
        })
    }

    /// Writes a batch of appends (see `group_commit`) in one transaction on a pooled
    /// connection, one outcome per append. When the COMMIT went unanswered, finds out on
    /// new connections whether each append is stored (see [`find_batch`]), trying again
    /// with growing pauses for up to [`LOOKUP_TIMEOUT`] in all.
    fn commit(&self, batch: &[Request<'_>]) -> Vec<Outcome> {
        let _span = trace_span!(
            "eventsource.append",
            backend = "postgres",
            appends = batch.len(),
            events = batch.iter().map(|r| r.events.len()).sum::<usize>(),
        );
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut rest = batch;
        // A connection that cannot be had fails the first append only; the others try
        // again (nothing of them was sent), so each gets an error of its own.
        let results = loop {
            let Some((_, others)) = rest.split_first() else {
                return outcomes;
            };
            match self.pool.acquire(|| self.open()) {
                Ok(mut conn) => break conn.append(&self.sql, rest),
                Err(e) => {
                    outcomes.push(Err(AppendError::Store(e)));
                    rest = others;
                }
            }
        };
        let mut unknown = Vec::new();
        for (request, result) in rest.iter().zip(results) {
            outcomes.push(match result {
                Ok(appended) => Ok(appended),
                Err(AppendFailure::Failed(e)) => Err(e),
                Err(AppendFailure::CommitUnknown(commit)) => {
                    unknown.push((outcomes.len(), request, commit));
                    // Replaced below.
                    Err(AppendError::Store(StoreError::Interrupted))
                }
            });
        }
        if !unknown.is_empty() {
            for (i, outcome) in self.resolve(unknown) {
                outcomes[i] = outcome;
            }
        }
        outcomes
    }

    /// Whether the appends whose COMMIT went unanswered are stored, looked up on new
    /// connections: the result of each that is; the driver's error for each that is
    /// not (definite); [`AppendError::Unknown`] for each still open at the deadline.
    fn resolve(
        &self,
        mut open: Vec<(usize, &Request<'_>, Box<write::CommitUnknown>)>,
    ) -> Vec<(usize, Outcome)> {
        let mut resolved = Vec::with_capacity(open.len());
        let deadline = Instant::now() + LOOKUP_TIMEOUT;
        let mut pause = Duration::from_millis(50);
        loop {
            if let Ok(mut client) = self.connect_for_lookup() {
                open.retain_mut(|(i, request, commit)| {
                    match find_batch(&mut client, &self.sql, request, &commit.if_committed) {
                        Ok(Some(appended)) => resolved.push((*i, Ok(appended))),
                        // Rolled back: the error is as definite as any other.
                        Ok(None) => {
                            let error =
                                std::mem::replace(&mut commit.error, StoreError::Interrupted);
                            resolved.push((*i, Err(AppendError::Store(error))));
                        }
                        Err(_) => return true,
                    }
                    false
                });
            }
            if open.is_empty() {
                return resolved;
            }
            if Instant::now() + pause >= deadline {
                resolved.extend(open.into_iter().map(|(i, request, commit)| {
                    (
                        i,
                        Err(AppendError::Unknown {
                            stream: request.stream.clone(),
                            source: commit.error,
                        }),
                    )
                }));
                return resolved;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// A new connection for [`find_batch`], never pooled, that gives up on connecting
    /// (unless the connection string says otherwise) and on the append lock after
    /// [`LOOKUP_TIMEOUT`].
    fn connect_for_lookup(&self) -> Result<Client, StoreError> {
        let mut config = self.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(LOOKUP_TIMEOUT);
        }
        let mut client = self.connector.connect(&config)?;
        client.batch_execute(&format!(
            "SET lock_timeout = {}",
            LOOKUP_TIMEOUT.as_millis()
        ))?;
        Ok(client)
    }
}

/// Wraps a driver error in the operation's error type.
fn pg<E: From<StoreError>>(e: postgres::Error) -> E {
    E::from(StoreError::from(e))
}

/// A version, position or count as a SQL `BIGINT`, saturating: every stored value is at
/// most `i64::MAX`, so a larger bound reads the same.
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `BIGINT` column that the tables' CHECK constraints keep non-negative.
fn stored_u64(n: i64) -> u64 {
    n.unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PostgresStore>();
    }

    #[test]
    fn every_statement_names_the_schema() {
        let sql = Sql::new(r#""s""#, 42);
        assert!(
            sql.begin_append
                .ends_with("NOTIFY eventsource_42; SELECT pg_advisory_xact_lock(1163088451, 42)")
        );
        for statement in [
            &sql.prepare_head,
            &sql.append,
            &sql.stream_version,
            &sql.read_stream,
            &sql.replay_stream,
            &sql.read_all,
            &sql.read_command,
            &sql.stored_ids,
            &sql.find_events,
            &sql.load_snapshot,
            &sql.save_snapshot,
            &sql.list_streams_first,
            &sql.list_streams_after,
        ] {
            assert!(!statement.contains("{schema}"), "{statement}");
            assert!(statement.contains(r#""s"."#), "{statement}");
        }
    }
}
