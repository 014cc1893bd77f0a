//! The PostgreSQL backend: [`PostgresStore`], whose docs describe the layout, the
//! global order and its cost, connections and reads.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use postgres::error::{DbError, SqlState};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls, Row, Statement};

use super::{AppendResult, EventStore, Visitor};
use crate::error::{AppendError, ReadError, StoreError};
use crate::event::{NewEvent, RecordedEventRef, Timestamp};
use crate::version::{ExpectedVersion, Position, StreamId, Version};

/// The schema [`PostgresStore::connect`] uses.
const DEFAULT_SCHEMA: &str = "public";

/// First key of the append lock ("ESRC"); the second is the `events` table's oid, so
/// stores in different schemas do not wait for each other.
const APPEND_LOCK_CLASS: i32 = 0x4553_5243;

/// The advisory lock held while creating or migrating a schema ("ESRCDDL").
const DDL_LOCK: i64 = 0x4553_5243_4444_4c00;

/// How many idle connections the pool keeps; more are closed when returned.
const MAX_IDLE: usize = 16;

/// The longest PostgreSQL identifier (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER_LEN: usize = 63;

const STREAM_VERSION_KEY: &str = "events_stream_version_key";
const EVENT_ID_KEY: &str = "events_event_id_key";

/// Schema migrations, `{schema}` standing for the quoted schema name: entry `i` takes a
/// store from schema version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r"
CREATE TABLE {schema}.events (
    position       BIGINT      NOT NULL,
    aggregate_type TEXT        NOT NULL,
    stream_id      TEXT        NOT NULL,
    version        BIGINT      NOT NULL,
    event_type     TEXT        NOT NULL,
    event_version  BIGINT      NOT NULL,
    event_id       UUID        NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    payload        JSONB       NOT NULL,
    metadata       JSONB       NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_position_check CHECK (position >= 1),
    CONSTRAINT events_version_check CHECK (version >= 1),
    CONSTRAINT events_event_version_check CHECK (event_version >= 1),
    CONSTRAINT events_stream_version_key UNIQUE (aggregate_type, stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);
COMMENT ON TABLE {schema}.events IS
    'eventsource: append-only; UPDATE, DELETE and TRUNCATE are refused by a trigger';
CREATE FUNCTION {schema}.events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'eventsource: the events table is append-only; % is refused', TG_OP
        USING HINT = 'Events are facts: append a compensating event instead.';
END
$$;
CREATE TRIGGER events_refuse_change
    BEFORE UPDATE OR DELETE OR TRUNCATE ON {schema}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.events_refuse_change();
"];

/// The schema version this build writes and reads.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The statements of one store, with its schema spelled in.
#[derive(Debug)]
struct Sql {
    begin_append: String,
    append: String,
    stream_version: String,
    read_stream: String,
    read_all: String,
    stored_ids: String,
    check_json: String,
}

impl Sql {
    /// The statements of the store in `schema` (quoted), whose `events` table has the oid
    /// `table_oid`.
    fn new(schema: &str, table_oid: u32) -> Self {
        const COLUMNS: &str = "position, version, event_type, event_version, event_id::text, \
             recorded_at, payload::text, metadata::text";
        Sql {
            // One round trip; the lock keys are numbers, safe to spell in.
            begin_append: format!(
                "BEGIN; SELECT pg_advisory_xact_lock({APPEND_LOCK_CLASS}, {})",
                table_oid.cast_signed()
            ),
            // A statement of its own after the lock, so its snapshot sees every earlier
            // append. It inserts only when the stream matches the expectation ($3: 0 any,
            // 1 no stream, 2 stream exists, 3 exactly $4, else never) and the versions
            // fit, and returns what it found either way.
            append: format!(
                "WITH head AS (SELECT \
                   (SELECT coalesce(max(version), 0) FROM {schema}.events \
                    WHERE aggregate_type = $1 AND stream_id = $2) AS version, \
                   (SELECT coalesce(max(position), 0) FROM {schema}.events) AS position), \
                 inserted AS (\
                   INSERT INTO {schema}.events (position, aggregate_type, stream_id, version, \
                   event_type, event_version, event_id, recorded_at, payload, metadata) \
                   SELECT head.position + e.n, $1, $2, head.version + e.n, e.event_type, \
                   e.event_version, e.event_id::uuid, statement_timestamp(), \
                   e.payload::jsonb, e.metadata::jsonb \
                   FROM head, unnest($5::text[], $6::bigint[], $7::text[], $8::text[], \
                   $9::text[]) WITH ORDINALITY AS e(event_type, event_version, event_id, \
                   payload, metadata, n) \
                   WHERE CASE $3::int WHEN 0 THEN true WHEN 1 THEN head.version = 0 \
                   WHEN 2 THEN head.version > 0 WHEN 3 THEN head.version = $4::bigint \
                   ELSE false END \
                   AND head.version <= 9223372036854775807 - cardinality($5::text[]) \
                   RETURNING 1) \
                 SELECT head.version, head.position, (SELECT count(*) FROM inserted) FROM head"
            ),
            stream_version: format!(
                "SELECT coalesce(max(version), 0) FROM {schema}.events \
                 WHERE aggregate_type = $1 AND stream_id = $2"
            ),
            read_stream: format!(
                "SELECT {COLUMNS} FROM {schema}.events \
                 WHERE aggregate_type = $1 AND stream_id = $2 AND version >= $3 \
                 ORDER BY version LIMIT $4"
            ),
            read_all: format!(
                "SELECT {COLUMNS}, aggregate_type, stream_id FROM {schema}.events \
                 WHERE position > $1 ORDER BY position LIMIT $2"
            ),
            stored_ids: format!(
                "SELECT event_id::text FROM {schema}.events WHERE event_id = ANY($1::text[]::uuid[])"
            ),
            check_json: "SELECT $1::text::jsonb, $2::text::jsonb".into(),
        }
    }
}

/// The hot statements, prepared once per connection.
struct Statements {
    append: Statement,
    stream_version: Statement,
    read_stream: Statement,
    read_all: Statement,
}

impl Statements {
    fn prepare(client: &mut Client, sql: &Sql) -> Result<Self, postgres::Error> {
        Ok(Statements {
            append: client.prepare(&sql.append)?,
            stream_version: client.prepare(&sql.stream_version)?,
            read_stream: client.prepare(&sql.read_stream)?,
            read_all: client.prepare(&sql.read_all)?,
        })
    }
}

/// A pooled connection.
struct Conn {
    client: Client,
    stmts: Statements,
    /// Set when the connection must not go back to the pool (a read left rows unread).
    discard: bool,
}

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
/// - `eventsource_meta`: one row with the schema version. A store written by a newer
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
/// (`pg_advisory_xact_lock`, keyed by the table's oid), then, in one statement, reads the
/// stream's version and `max(position)`, checks the expected version and inserts at
/// `max(position) + 1, ...`. PostgreSQL makes a commit
/// visible before it releases the transaction's locks, so the next append sees it and
/// commits after it: commit order is position order. Hence the events any snapshot sees
/// are exactly the positions `1..=n` for some `n` (no holes, nothing visible out of
/// order), and `read_all_with(after)` in a loop sees every event exactly once. The same
/// lock makes the expected-version check exact across connections and processes; the
/// unique constraints stay as a backstop. Every writer must go through this type (or take
/// the same lock) for the guarantee to hold.
///
/// The price: appends to one store are serialised, each holding the lock for two round
/// trips (the insert and the commit) and its WAL flush. Throughput is bounded by that
/// latency, not by the number of writers (about a thousand single-event appends a second
/// on a local server): batch events into one append where the domain allows. A writer
/// that stalls inside its transaction holds everyone else up, so set
/// `idle_in_transaction_session_timeout` on the server.
///
/// # Connections and reads
/// [`postgres::Client`] is not `Sync`; the store keeps a pool of up to 16 idle
/// connections, each with its statements prepared, and opens another whenever all are
/// busy (so it uses as many connections as it has concurrent calls). A connection found
/// closed after a call is dropped; one the server closed while it was idle fails the next
/// call made on it with [`StoreError::Postgres`], which can be retried. Connections are
/// made without TLS.
///
/// Reads are one statement each, so one snapshot, and streamed: rows are decoded from the
/// socket one at a time (the driver reads ahead a bounded amount) and lent to the visitor
/// as a [`RecordedEventRef`] with payload and metadata borrowed from the row, so no read
/// holds a whole stream in memory. A read that the visitor stops early closes its
/// connection rather than draining the remaining rows.
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
    schema: String,
    sql: Sql,
    idle: Mutex<Vec<Conn>>,
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
        let quoted = quote_schema(schema)?;
        let config: Config = url.parse()?;
        let mut client = config.connect(NoTls)?;
        prepare_schema(&mut client, schema, &quoted)?;
        let table_oid: u32 = client
            .query_one(
                "SELECT $1::text::regclass::oid",
                &[&format!("{quoted}.events")],
            )?
            .try_get(0)?;
        let sql = Sql::new(&quoted, table_oid);
        let stmts = Statements::prepare(&mut client, &sql)?;
        Ok(PostgresStore {
            config,
            schema: schema.to_owned(),
            sql,
            idle: Mutex::new(vec![Conn {
                client,
                stmts,
                discard: false,
            }]),
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

    /// Runs `f` on an idle connection, opening one when none is idle. The connection goes
    /// back to the pool unless it failed or `f` left it unusable.
    fn with_conn<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.open().map_err(StoreError::Postgres)?,
        };
        // A panic in `f` (a visitor's) drops the connection: its state is unknown.
        let result = f(&mut conn);
        if !conn.discard && !conn.client.is_closed() {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        result
    }

    fn open(&self) -> Result<Conn, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        let stmts = Statements::prepare(&mut client, &self.sql)?;
        Ok(Conn {
            client,
            stmts,
            discard: false,
        })
    }
}

/// Wraps a driver error in the operation's error type.
fn pg<E: From<StoreError>>(e: postgres::Error) -> E {
    E::from(StoreError::Postgres(e))
}

/// Checks that `name` is a plain identifier and returns it double-quoted.
fn quote_schema(name: &str) -> Result<String, StoreError> {
    let valid = name.len() <= MAX_IDENTIFIER_LEN
        && name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.to_ascii_lowercase().starts_with("pg_");
    if valid {
        Ok(format!("\"{name}\""))
    } else {
        Err(StoreError::NotAStore {
            path: PathBuf::from(name),
            reason: "a schema name must be 1 to 63 ASCII letters, digits and `_`, \
                     not starting with a digit or `pg_`"
                .into(),
        })
    }
}

/// The schema version recorded in `quoted`, `None` when it has no eventsource tables.
fn schema_version(
    client: &mut impl GenericClient,
    quoted: &str,
) -> Result<Option<i64>, StoreError> {
    if !relation_exists(client, &format!("{quoted}.eventsource_meta"))? {
        return Ok(None);
    }
    let row = client.query_opt(
        &format!("SELECT schema_version FROM {quoted}.eventsource_meta"),
        &[],
    )?;
    Ok(Some(match row {
        Some(row) => row.try_get(0)?,
        None => 0,
    }))
}

fn relation_exists(client: &mut impl GenericClient, qualified: &str) -> Result<bool, StoreError> {
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])?
        .try_get(0)?)
}

fn newer_schema(schema: &str, found: i64) -> StoreError {
    StoreError::NewerSchema {
        path: PathBuf::from(schema),
        found,
        supported: SCHEMA_VERSION,
    }
}

/// Checks that `schema` holds a store of a version we know, creating or migrating it
/// otherwise. Nothing is written to a schema that is refused.
fn prepare_schema(client: &mut Client, schema: &str, quoted: &str) -> Result<(), StoreError> {
    // The common case needs no lock (nor the privilege to create anything).
    match schema_version(client, quoted)? {
        Some(found) if found > SCHEMA_VERSION => return Err(newer_schema(schema, found)),
        Some(SCHEMA_VERSION) => return Ok(()),
        _ => {}
    }
    // A session lock taken before the transaction: a transaction that began before
    // another process committed its DDL could still find that DDL's tables missing in its
    // catalog caches. On an error the caller drops the connection, which releases it.
    client.execute("SELECT pg_advisory_lock($1)", &[&DDL_LOCK])?;
    migrate(client, schema, quoted)?;
    client.execute("SELECT pg_advisory_unlock($1)", &[&DDL_LOCK])?;
    Ok(())
}

/// Creates or migrates the schema; the caller holds the DDL lock.
fn migrate(client: &mut Client, schema: &str, quoted: &str) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    // Another process may have created or migrated the schema meanwhile.
    let from = match schema_version(&mut tx, quoted)? {
        Some(found) if found > SCHEMA_VERSION => return Err(newer_schema(schema, found)),
        Some(SCHEMA_VERSION) => return Ok(()),
        Some(found) => usize::try_from(found).map_err(|_| StoreError::NotAStore {
            path: PathBuf::from(schema),
            reason: format!("its eventsource_meta records schema version {found}"),
        })?,
        None => {
            if relation_exists(&mut tx, &format!("{quoted}.events"))? {
                return Err(StoreError::NotAStore {
                    path: PathBuf::from(schema),
                    reason: "it has an `events` table that eventsource did not create".into(),
                });
            }
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    &[&schema],
                )?
                .try_get(0)?;
            if !exists {
                tx.batch_execute(&format!("CREATE SCHEMA {quoted}"))?;
            }
            tx.batch_execute(&format!(
                "CREATE TABLE {quoted}.eventsource_meta (\
                     id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id), \
                     schema_version BIGINT NOT NULL)"
            ))?;
            0
        }
    };
    for migration in MIGRATIONS.iter().skip(from) {
        tx.batch_execute(&migration.replace("{schema}", quoted))?;
    }
    tx.execute(
        &format!(
            "INSERT INTO {quoted}.eventsource_meta (schema_version) VALUES ($1) \
             ON CONFLICT (id) DO UPDATE SET schema_version = excluded.schema_version"
        ),
        &[&SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}

/// A version, position or count as a SQL `BIGINT`, saturating: every stored value is at
/// most `i64::MAX`, so a larger bound reads the same.
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `BIGINT` column that the table's CHECK constraints keep non-negative.
fn stored_u64(n: i64) -> u64 {
    n.unsigned_abs()
}

fn encode_error(stream: &StreamId, event: &NewEvent, source: serde_json::Error) -> AppendError {
    AppendError::Encode {
        stream: stream.clone(),
        event_type: event.event_type.to_string(),
        source,
    }
}

/// An append's events as the columns of the insert, checked to be JSON.
struct Batch<'e> {
    events: &'e [NewEvent],
    event_types: Vec<&'e str>,
    event_versions: Vec<i64>,
    event_ids: Vec<String>,
    payloads: Vec<&'e str>,
    metadata: Vec<String>,
}

impl<'e> Batch<'e> {
    fn new(stream: &StreamId, events: &'e [NewEvent]) -> Result<Self, AppendError> {
        let mut batch = Batch {
            events,
            event_types: Vec::with_capacity(events.len()),
            event_versions: Vec::with_capacity(events.len()),
            event_ids: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
        };
        for event in events {
            serde_json::from_str::<serde::de::IgnoredAny>(&event.payload)
                .map_err(|source| encode_error(stream, event, source))?;
            let metadata = event
                .metadata
                .to_json()
                .map_err(|source| encode_error(stream, event, source))?;
            batch.event_types.push(&event.event_type);
            batch.event_versions.push(i64::from(event.event_version));
            batch.event_ids.push(event.event_id.to_string());
            batch.payloads.push(&event.payload);
            batch.metadata.push(metadata);
        }
        Ok(batch)
    }

    fn len(&self) -> u64 {
        self.events.len() as u64
    }
}

/// Why an insert failed, as far as the append can tell.
enum InsertFailure {
    DuplicateEventId,
    StreamVersionTaken,
    NotJsonb,
    Other,
}

fn classify(db: Option<&DbError>) -> InsertFailure {
    let Some(db) = db else {
        return InsertFailure::Other;
    };
    let code = db.code();
    if *code == SqlState::UNIQUE_VIOLATION {
        match db.constraint() {
            Some(EVENT_ID_KEY) => InsertFailure::DuplicateEventId,
            Some(STREAM_VERSION_KEY) => InsertFailure::StreamVersionTaken,
            _ => InsertFailure::Other,
        }
    } else if *code == SqlState::UNTRANSLATABLE_CHARACTER
        || *code == SqlState::INVALID_TEXT_REPRESENTATION
    {
        InsertFailure::NotJsonb
    } else {
        InsertFailure::Other
    }
}

/// `expected` as the `$3` and `$4` of [`Sql::append`].
fn expectation(expected: ExpectedVersion) -> (i32, i64) {
    match expected {
        ExpectedVersion::Any => (0, 0),
        ExpectedVersion::NoStream => (1, 0),
        ExpectedVersion::StreamExists => (2, 0),
        // No stream can be at a version past `i64::MAX`.
        ExpectedVersion::Exact(v) => i64::try_from(v.get()).map_or((4, 0), |v| (3, v)),
    }
}

/// The transaction of an append, begun together with the append lock in one round
/// trip; rolled back on drop unless committed.
struct AppendTransaction<'c> {
    client: &'c mut Client,
    open: bool,
}

impl<'c> AppendTransaction<'c> {
    fn begin(client: &'c mut Client, begin: &str) -> Result<Self, postgres::Error> {
        let tx = AppendTransaction { client, open: true };
        tx.client.batch_execute(begin)?;
        Ok(tx)
    }

    fn commit(mut self) -> Result<(), postgres::Error> {
        // A failed COMMIT ends the transaction too.
        self.open = false;
        self.client.batch_execute("COMMIT")
    }
}

impl Drop for AppendTransaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // Fails only on a broken connection, which the pool then drops.
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

impl Conn {
    fn stream_version(&mut self, stream: &StreamId) -> Result<Version, postgres::Error> {
        let row = self.client.query_one(
            &self.stmts.stream_version,
            &[&stream.aggregate_type(), &stream.id()],
        )?;
        Ok(Version::new(stored_u64(row.try_get(0)?)))
    }

    fn append(
        &mut self,
        sql: &Sql,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch<'_>,
    ) -> Result<AppendResult, AppendError> {
        let (kind, exact) = expectation(expected);
        let params: [&(dyn ToSql + Sync); 9] = [
            &stream.aggregate_type(),
            &stream.id(),
            &kind,
            &exact,
            &batch.event_types,
            &batch.event_versions,
            &batch.event_ids,
            &batch.payloads,
            &batch.metadata,
        ];
        let tx = AppendTransaction::begin(&mut self.client, &sql.begin_append)
            .map_err(StoreError::Postgres)?;
        let head = match tx.client.query_one(&self.stmts.append, &params) {
            Ok(head) => head,
            Err(e) => {
                drop(tx); // rolls back, so the connection can explain the failure
                return Err(self.explain(e, sql, stream, expected, batch));
            }
        };
        let actual = Version::new(stored_u64(head.try_get(0).map_err(StoreError::Postgres)?));
        let last_position = stored_u64(head.try_get(1).map_err(StoreError::Postgres)?);
        let inserted = stored_u64(head.try_get(2).map_err(StoreError::Postgres)?);
        if inserted != batch.len() {
            drop(tx);
            return Err(if expected.matches(actual) {
                AppendError::VersionOverflow {
                    stream: stream.clone(),
                }
            } else {
                AppendError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual,
                }
            });
        }
        tx.commit().map_err(StoreError::Postgres)?;
        let first = last_position + 1;
        Ok(AppendResult {
            stream_version: Version::new(actual.get() + batch.len()),
            positions: (first..first + batch.len()).map(Position::new).collect(),
        })
    }

    /// Turns a failed insert into the error of the event that caused it, looking outside
    /// the aborted transaction. Falls back to the driver's error.
    fn explain(
        &mut self,
        e: postgres::Error,
        sql: &Sql,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch<'_>,
    ) -> AppendError {
        let explained = match classify(e.as_db_error()) {
            InsertFailure::DuplicateEventId => self.duplicate_event_id(sql, stream, batch),
            // Only a writer that bypassed the append lock can take the version first.
            InsertFailure::StreamVersionTaken => self.stream_version(stream).map(|actual| {
                Some(AppendError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual,
                })
            }),
            InsertFailure::NotJsonb => self.not_jsonb(sql, stream, batch),
            InsertFailure::Other => Ok(None),
        };
        match explained {
            Ok(Some(explained)) => explained,
            Ok(None) | Err(_) => pg(e),
        }
    }

    /// The first event whose id is already stored or repeats an earlier one of the batch.
    fn duplicate_event_id(
        &mut self,
        sql: &Sql,
        stream: &StreamId,
        batch: &Batch<'_>,
    ) -> Result<Option<AppendError>, postgres::Error> {
        let stored = self
            .client
            .query(&sql.stored_ids, &[&batch.event_ids])?
            .iter()
            .map(|row| row.try_get::<_, String>(0))
            .collect::<Result<HashSet<_>, _>>()?;
        let mut seen = HashSet::new();
        Ok(batch
            .events
            .iter()
            .zip(&batch.event_ids)
            .find(|(_, id)| stored.contains(*id) || !seen.insert(*id))
            .map(|(event, _)| AppendError::DuplicateEventId {
                stream: stream.clone(),
                event_id: event.event_id,
            }))
    }

    /// The first event whose payload or metadata is JSON that `JSONB` refuses (it cannot
    /// hold U+0000, for example).
    fn not_jsonb(
        &mut self,
        sql: &Sql,
        stream: &StreamId,
        batch: &Batch<'_>,
    ) -> Result<Option<AppendError>, postgres::Error> {
        for (i, event) in batch.events.iter().enumerate() {
            let (payload, metadata) = (batch.payloads[i], batch.metadata[i].as_str());
            let Err(e) = self
                .client
                .query_one(&sql.check_json, &[&payload, &metadata])
            else {
                continue;
            };
            let Some(db) = e.as_db_error() else {
                return Err(e);
            };
            if !matches!(classify(Some(db)), InsertFailure::NotJsonb) {
                return Err(e);
            }
            let reason = match db.detail() {
                Some(detail) => format!(
                    "PostgreSQL refused it as JSONB: {} ({detail})",
                    db.message()
                ),
                None => format!("PostgreSQL refused it as JSONB: {}", db.message()),
            };
            let source = <serde_json::Error as serde::de::Error>::custom(reason);
            return Ok(Some(encode_error(stream, event, source)));
        }
        Ok(None)
    }

    /// Streams the rows of a prepared read to `visit`.
    fn read(
        &mut self,
        read_all: bool,
        params: &[&(dyn ToSql + Sync)],
        stream: Option<&StreamId>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        let statement = if read_all {
            &self.stmts.read_all
        } else {
            &self.stmts.read_stream
        };
        let mut rows = self
            .client
            .query_raw(statement, params.iter().copied())
            .map_err(StoreError::Postgres)?;
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => return Ok(()),
                Err(e) => return Err(pg(e)),
            };
            let visited = match stream {
                Some(stream) => decode_row(&row, stream.aggregate_type(), stream.id()),
                None => decode_row_with_stream(&row),
            }
            .and_then(&mut *visit);
            if let Err(e) = visited {
                // Closing the connection stops the server sending the rest; draining
                // could read a whole table.
                self.discard = true;
                return Err(e);
            }
        }
    }
}

impl EventStore for PostgresStore {
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, AppendError> {
        let batch = Batch::new(stream, events)?;
        if events.is_empty() {
            let actual = self.stream_version(stream)?;
            if !expected.matches(actual) {
                return Err(AppendError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual,
                });
            }
            return Ok(AppendResult {
                stream_version: actual,
                positions: Vec::new(),
            });
        }
        self.with_conn(|conn| conn.append(&self.sql, stream, expected, &batch))
    }

    fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.with_conn(|conn| conn.stream_version(stream).map_err(StoreError::Postgres))
    }

    fn read_stream_with(
        &self,
        stream: &StreamId,
        from: Version,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        let from = sql_int(from.get().max(1));
        let limit = sql_int(max_count as u64);
        let params: [&(dyn ToSql + Sync); 4] =
            [&stream.aggregate_type(), &stream.id(), &from, &limit];
        self.with_conn(|conn| conn.read(false, &params, Some(stream), visit))
    }

    fn read_all_with(
        &self,
        after: Position,
        max_count: usize,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        let after = sql_int(after.get());
        let limit = sql_int(max_count as u64);
        let params: [&(dyn ToSql + Sync); 2] = [&after, &limit];
        self.with_conn(|conn| conn.read(true, &params, None, visit))
    }
}

fn corrupt(position: i64, column: &str, e: &dyn fmt::Display) -> ReadError {
    ReadError::Corrupt {
        position,
        reason: format!("column `{column}`: {e}"),
    }
}

fn micros_since_epoch(t: SystemTime) -> Option<i64> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).ok(),
        Err(before) => i64::try_from(before.duration().as_micros())
            .ok()
            .map(|m| -m),
    }
}

/// Borrows one row of a read (the first eight columns, the same for both reads).
fn decode_row<'r>(
    row: &'r Row,
    aggregate_type: &'r str,
    stream_id: &'r str,
) -> Result<RecordedEventRef<'r>, ReadError> {
    let position: i64 = row.try_get(0).map_err(StoreError::Postgres)?;
    let get_u64 = |idx: usize, column: &str| -> Result<u64, ReadError> {
        let n: i64 = row.try_get(idx).map_err(StoreError::Postgres)?;
        u64::try_from(n).map_err(|e| corrupt(position, column, &e))
    };
    let text = |idx: usize| -> Result<&'r str, ReadError> {
        Ok(row.try_get(idx).map_err(StoreError::Postgres)?)
    };
    let recorded_at: SystemTime = row.try_get(5).map_err(StoreError::Postgres)?;
    Ok(RecordedEventRef {
        position: Position::new(get_u64(0, "position")?),
        aggregate_type,
        stream_id,
        version: Version::new(get_u64(1, "version")?),
        event_type: text(2)?,
        event_version: u32::try_from(get_u64(3, "event_version")?)
            .map_err(|e| corrupt(position, "event_version", &e))?,
        event_id: text(4)?,
        recorded_at: Timestamp::from_micros(
            micros_since_epoch(recorded_at)
                .ok_or_else(|| corrupt(position, "recorded_at", &"out of range"))?,
        ),
        payload: text(6)?,
        metadata: text(7)?,
    })
}

/// Borrows one row of the read of all streams (its stream in columns 8 and 9).
fn decode_row_with_stream(row: &Row) -> Result<RecordedEventRef<'_>, ReadError> {
    let aggregate_type = row.try_get(8).map_err(StoreError::Postgres)?;
    let stream_id = row.try_get(9).map_err(StoreError::Postgres)?;
    decode_row(row, aggregate_type, stream_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() -> Result<(), StoreError> {
        assert_eq!(quote_schema("public")?, r#""public""#);
        assert_eq!(quote_schema("Es_test_1")?, r#""Es_test_1""#);
        assert_eq!(
            quote_schema(&"a".repeat(63))?,
            format!("\"{}\"", "a".repeat(63))
        );
        for bad in [
            "",
            "1abc",
            "a-b",
            "a\"b",
            "a b",
            "pg_x",
            "PG_x",
            "é",
            &"a".repeat(64),
        ] {
            let err = quote_schema(bad);
            assert!(
                matches!(&err, Err(StoreError::NotAStore { path, .. }) if path.as_os_str() == bad),
                "{bad:?}: {err:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_batch_refuses_payloads_that_are_not_json() {
        let stream = StreamId::new("note", "1");
        let events = [
            NewEvent::new("note.added", 1, "{}"),
            NewEvent::new("note.broken", 1, "{nope"),
        ];
        let err = Batch::new(&stream, &events).err();
        assert!(matches!(
            err,
            Some(AppendError::Encode { ref event_type, .. }) if event_type == "note.broken"
        ));
    }

    #[test]
    fn micros_round_trip_on_both_sides_of_the_epoch() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -1_700_000_000_123_456] {
            let t = Timestamp::from_micros(micros).to_system_time();
            assert_eq!(micros_since_epoch(t), Some(micros));
        }
    }

    #[test]
    fn the_store_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PostgresStore>();
    }
}
