//! Writing to a PostgreSQL store: batches of appends (see `group_commit`), with or
//! without command ids, in one transaction under the append lock; the explanation of a
//! refused insert; snapshots.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use postgres::error::{DbError, Severity, SqlState};
use postgres::types::ToSql;
use postgres::{Client, SimpleQueryMessage};

use super::schema::{COMMAND_ID_KEY, EVENT_ID_KEY, POSITION_KEY, STREAM_VERSION_KEY};
use super::{Conn, Sql, pg, read, sql_int, stored_u64};
use crate::chain::{ChainHash, chain_link};
use crate::error::{AppendError, StoreError};
use crate::event::{NewEvent, Timestamp};
use crate::snapshot::Snapshot;
use crate::store::AppendResult;
use crate::store::group_commit::{Outcome, Request};
use crate::version::{Position, StreamId, Version};

/// What a batch of appends reads under the append lock, in the same round trip as the
/// lock (see [`head_query`]): the newest event's position and chain hash (zeros when it
/// has none: the chain starts after rows stored before it); the time the batch is stored
/// with, in microseconds, from the server's clock once the lock is granted (so times do
/// not decrease along positions unless that clock is set back); then, one per append in
/// order, its stream's version and whether its command id is recorded (`1`, else `0`).
/// Prepared by name on each connection (see [`HEAD_NAME`]), so that it is planned once
/// and runs in the lock's round trip: `$1`, `$2` and `$3` are the appends' aggregate
/// types, stream ids and command ids.
pub(super) const HEAD: &str = "WITH tail AS (\
       SELECT position, hash FROM {schema}.events ORDER BY position DESC LIMIT 1), \
     now AS (SELECT clock_timestamp() AS at) \
     SELECT coalesce((SELECT position FROM tail), 0), \
       coalesce((SELECT encode(hash, 'hex') FROM tail WHERE length(hash) = 32), \
         repeat('00', 32)), \
       (SELECT extract(epoch FROM date_trunc('second', at))::bigint * 1000000 \
         + extract(microseconds FROM at)::bigint % 1000000 FROM now), \
       (SELECT string_agg(v::text, ',' ORDER BY n) FROM (\
         SELECT k.n, (SELECT coalesce(max(version), 0) FROM {schema}.events \
           WHERE aggregate_type = k.a AND stream_id = k.s) AS v \
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(a, s, n)) AS x), \
       (SELECT string_agg(d::int::text, ',' ORDER BY n) FROM (\
         SELECT k.n, EXISTS (SELECT 1 FROM {schema}.commands WHERE command_id = k.c) AS d \
         FROM unnest($3::text[]) WITH ORDINALITY AS k(c, n)) AS x)";

/// The name [`HEAD`] is prepared under on each pooled connection.
pub(super) const HEAD_NAME: &str = "eventsource_append_head";

/// The accepted appends of a batch, in one statement: their events at the positions,
/// versions and chain hashes the client computed from the [`HEAD`] read under the same
/// lock, the chain's head moved past them, and the commands' rows (positions
/// `first..first + count`). Returns how many events and commands it inserted.
pub(super) const APPEND: &str = "WITH inserted AS (\
       INSERT INTO {schema}.events (position, aggregate_type, stream_id, version, \
       event_type, event_version, event_id, recorded_at, payload, metadata, hash) \
       SELECT p, a, s, v, t, ev, id::uuid, $11::timestamptz, pl::jsonb, m::jsonb, h \
       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
         $6::bigint[], $7::text[], $8::text[], $9::text[], $10::bytea[]) \
         AS e(p, a, s, v, t, ev, id, pl, m, h) \
       RETURNING 1), \
     chained AS (\
       UPDATE {schema}.chain SET position = $12::bigint, hash = $13::bytea, \
       count = count + $14::bigint WHERE id AND $14::bigint > 0 RETURNING 1), \
     recorded AS (\
       INSERT INTO {schema}.commands (command_id, aggregate_type, stream_id, stream_version, \
       positions, recorded_at) \
       SELECT c, a, s, v, ARRAY(SELECT generate_series(f, f + n - 1)), $11::timestamptz \
       FROM unnest($15::text[], $16::text[], $17::text[], $18::bigint[], $19::bigint[], \
         $20::bigint[]) AS k(c, a, s, v, f, n) \
       RETURNING 1) \
     SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM recorded), \
       (SELECT count(*) FROM chained)";

pub(super) const STORED_IDS: &str =
    "SELECT event_id::text FROM {schema}.events WHERE event_id = ANY($1::text[]::uuid[])";

/// Where the events with the given ids are stored, if they are.
pub(super) const FIND_EVENTS: &str = "SELECT event_id::text, aggregate_type, stream_id, \
     version, position FROM {schema}.events WHERE event_id = ANY($1::text[]::uuid[])";

pub(super) const CHECK_JSON: &str = "SELECT $1::text::jsonb, $2::text::jsonb";

/// Saves a snapshot and keeps the newest three of the stream (snapshots are a cache; the
/// events table is never pruned). The delete sees the table as it was before the insert,
/// so the saved version is counted in by hand.
pub(super) const SAVE_SNAPSHOT: &str = "WITH saved AS (\
       INSERT INTO {schema}.snapshots (aggregate_type, stream_id, state_version, version, \
       state, taken_at) VALUES ($1, $2, $3, $4, $5::text::jsonb, $6) \
       ON CONFLICT (aggregate_type, stream_id, state_version, version) \
       DO UPDATE SET state = excluded.state, taken_at = excluded.taken_at RETURNING 1) \
     DELETE FROM {schema}.snapshots WHERE aggregate_type = $1 AND stream_id = $2 \
     AND version < (SELECT min(version) FROM (\
       SELECT version FROM (\
         SELECT version FROM {schema}.snapshots WHERE aggregate_type = $1 AND stream_id = $2 \
         AND NOT (state_version = $3 AND version = $4) \
         UNION ALL SELECT $4::bigint) AS kept \
       ORDER BY version DESC LIMIT 3) AS newest)";

/// The `text[]` literal of `values` (NULL for `None`), each value an escape string
/// (`E'...'`, which reads the same whatever `standard_conforming_strings` says) with its
/// quotes and backslashes doubled. Literals, not functions of them, so that the planner
/// sees constants and probes the stream index. A value holding NUL cannot be sent: the
/// driver refuses the whole query before sending it.
fn text_array<'v>(values: impl Iterator<Item = Option<&'v str>>) -> String {
    let mut sql = String::from("ARRAY[");
    for (i, value) in values.enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let Some(value) = value else {
            sql.push_str("NULL");
            continue;
        };
        sql.push_str("E'");
        for c in value.chars() {
            match c {
                '\'' => sql.push_str("''"),
                '\\' => sql.push_str("\\\\"),
                c => sql.push(c),
            }
        }
        sql.push('\'');
    }
    sql.push_str("]::text[]");
    sql
}

/// The most payload and metadata text an insert spells into its query (see
/// [`inline_params`]); larger batches bind their parameters, one more round trip.
const INLINE_LIMIT: usize = 16 * 1024;

/// The name [`APPEND`] is prepared under on each pooled connection.
pub(super) const APPEND_NAME: &str = "eventsource_append";

/// The parameter types of [`APPEND`], for `PREPARE`.
pub(super) const APPEND_TYPES: &str = "bigint[], text[], text[], bigint[], text[], bigint[], \
     text[], text[], text[], bytea[], timestamptz, bigint, bytea, bigint, text[], text[], \
     text[], bigint[], bigint[], bigint[]";

/// The `bigint[]` literal of `values`.
fn int_array(values: &[i64]) -> String {
    let mut sql = String::from("ARRAY[");
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&value.to_string());
    }
    sql.push_str("]::bigint[]");
    sql
}

/// The `bytea` literal of `hash`.
fn bytea(hash: &ChainHash) -> String {
    format!("E'\\\\x{hash}'::bytea")
}

/// The arguments of [`APPEND`] for `plan`, as literals, in its parameters' order.
fn inline_params(
    plan: &Plan<'_>,
    micros: i64,
    last_position: i64,
    last_hash: &ChainHash,
) -> String {
    let texts = |values: &[&str]| text_array(values.iter().map(|v| Some(*v)));
    let hashes = plan.hashes.iter().map(bytea).collect::<Vec<_>>().join(",");
    [
        int_array(&plan.positions),
        texts(&plan.aggregate_types),
        texts(&plan.stream_ids),
        int_array(&plan.versions),
        texts(&plan.event_types),
        int_array(&plan.event_versions),
        text_array(plan.event_ids.iter().map(|id| Some(id.as_str()))),
        texts(&plan.payloads),
        texts(&plan.metadata),
        format!("ARRAY[{hashes}]::bytea[]"),
        format!("timestamptz 'epoch' + {micros} * interval '1 microsecond'"),
        last_position.to_string(),
        bytea(last_hash),
        plan.positions.len().to_string(),
        texts(&plan.command_ids),
        texts(&plan.command_aggregate_types),
        texts(&plan.command_stream_ids),
        int_array(&plan.command_versions),
        int_array(&plan.command_firsts),
        int_array(&plan.command_counts),
    ]
    .join(", ")
}

/// The events and commands [`APPEND`] inserted, from the answer of its `EXECUTE`.
fn counts(messages: &[SimpleQueryMessage]) -> Option<(i64, i64)> {
    let row = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })?;
    let count = |i: usize| row.get(i)?.parse().ok();
    Some((count(0)?, count(1)?))
}

/// The one round trip that begins a batch's transaction: `BEGIN`, `NOTIFY`, the append
/// lock, then [`HEAD`] for the batch's appends. A simple query, so the statements run in
/// order without waiting for the client; [`HEAD`] runs once the lock is granted and sees
/// every append committed before.
fn head_query(sql: &Sql, batch: &[Request<'_>]) -> String {
    format!(
        "{}; EXECUTE {HEAD_NAME}({}, {}, {})",
        sql.begin_append,
        text_array(batch.iter().map(|r| Some(r.stream.aggregate_type()))),
        text_array(batch.iter().map(|r| Some(r.stream.id()))),
        text_array(batch.iter().map(|r| r.command)),
    )
}

/// What [`HEAD`] read under the lock.
struct Head {
    last_position: u64,
    last_hash: ChainHash,
    micros: i64,
    /// Each append's stream version, in batch order.
    versions: Vec<u64>,
    /// Whether each append's command id is recorded, in batch order.
    done: Vec<bool>,
}

impl Head {
    /// Parses the row of [`HEAD`], the last answer of [`head_query`], for `appends`
    /// appends.
    fn parse(
        messages: &[SimpleQueryMessage],
        schema: &str,
        appends: usize,
    ) -> Result<Self, StoreError> {
        let unexpected = |what: &str| StoreError::NotAStore {
            path: PathBuf::from(schema),
            reason: format!("the append lock's query answered unexpectedly ({what})"),
        };
        let row = messages
            .iter()
            .rev()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .ok_or_else(|| unexpected("no row"))?;
        let column = |i: usize| -> Result<&str, StoreError> {
            row.try_get(i)?.ok_or_else(|| unexpected("a NULL"))
        };
        let number = |text: &str| text.parse::<i64>().map_err(|_| unexpected(text));
        let versions = column(3)?
            .split(',')
            .map(|v| number(v).map(stored_u64))
            .collect::<Result<Vec<_>, _>>()?;
        let done: Vec<bool> = column(4)?.split(',').map(|d| d == "1").collect();
        if versions.len() != appends || done.len() != appends {
            return Err(unexpected("a count"));
        }
        Ok(Head {
            last_position: stored_u64(number(column(0)?)?),
            last_hash: column(1)?.parse().map_err(|_| unexpected("a hash"))?,
            micros: number(column(2)?)?,
            versions,
            done,
        })
    }
}

/// The accepted appends of a batch as the parameters of [`APPEND`], and every append's
/// outcome if the batch commits.
#[derive(Default)]
struct Plan<'b> {
    positions: Vec<i64>,
    aggregate_types: Vec<&'b str>,
    stream_ids: Vec<&'b str>,
    versions: Vec<i64>,
    event_types: Vec<&'b str>,
    event_versions: Vec<i64>,
    event_ids: Vec<String>,
    payloads: Vec<&'b str>,
    metadata: Vec<&'b str>,
    hashes: Vec<ChainHash>,
    command_ids: Vec<&'b str>,
    command_aggregate_types: Vec<&'b str>,
    command_stream_ids: Vec<&'b str>,
    command_versions: Vec<i64>,
    command_firsts: Vec<i64>,
    command_counts: Vec<i64>,
    outcomes: Vec<Outcome>,
    accepted: usize,
}

/// Decides each append of `batch`, in order, against what the lock's [`Head`] read and
/// the appends before it: a command id already recorded (or earlier in the batch), then
/// the positions, the expected version, the stream's versions, as an append alone would.
/// An accepted append's events get the next positions, versions and chain links.
fn plan<'b>(batch: &'b [Request<'b>], head: &Head) -> Plan<'b> {
    let max = i64::MAX.unsigned_abs();
    let recorded_at = Timestamp::from_micros(head.micros);
    let mut plan = Plan::default();
    let mut streams: HashMap<&StreamId, u64> = HashMap::new();
    let mut commands: HashSet<&str> = HashSet::new();
    let mut last = head.last_position;
    let mut prev = head.last_hash;
    for (i, request) in batch.iter().enumerate() {
        let stream = request.stream;
        let count = request.events.len() as u64;
        let actual = *streams
            .entry(stream)
            .or_insert_with(|| head.versions.get(i).copied().unwrap_or_default());
        let outcome = match request.command {
            Some(command_id)
                if head.done.get(i).copied().unwrap_or_default()
                    || commands.contains(command_id) =>
            {
                Err(AppendError::DuplicateCommand {
                    command_id: command_id.to_owned(),
                })
            }
            _ if last > max - count => Err(AppendError::Store(StoreError::PositionsExhausted {
                last,
                count: request.events.len(),
            })),
            _ if !request.expected.matches(Version::new(actual)) => Err(AppendError::Conflict {
                stream: stream.clone(),
                expected: request.expected,
                actual: Version::new(actual),
            }),
            _ if actual > max - count => Err(AppendError::VersionOverflow {
                stream: stream.clone(),
            }),
            _ => {
                for ((n, event), content) in (1..).zip(request.events).zip(request.contents) {
                    let (position, version) = (last + n, actual + n);
                    prev = chain_link(&prev, position, version, head.micros, content);
                    plan.positions.push(sql_int(position));
                    plan.aggregate_types.push(stream.aggregate_type());
                    plan.stream_ids.push(stream.id());
                    plan.versions.push(sql_int(version));
                    plan.event_types.push(&event.event_type);
                    plan.event_versions.push(i64::from(event.event_version));
                    plan.event_ids.push(event.event_id.to_string());
                    plan.payloads.push(&event.payload);
                    plan.hashes.push(prev);
                }
                plan.metadata
                    .extend(request.metadata.iter().map(String::as_str));
                if let Some(command_id) = request.command {
                    commands.insert(command_id);
                    plan.command_ids.push(command_id);
                    plan.command_aggregate_types.push(stream.aggregate_type());
                    plan.command_stream_ids.push(stream.id());
                    plan.command_versions.push(sql_int(actual + count));
                    plan.command_firsts.push(sql_int(last + 1));
                    plan.command_counts.push(sql_int(count));
                }
                streams.insert(stream, actual + count);
                let first = last + 1;
                last += count;
                plan.accepted += 1;
                Ok(AppendResult {
                    stream_version: Version::new(actual + count),
                    positions: (first..=last).map(Position::new).collect(),
                    recorded_at,
                })
            }
        };
        plan.outcomes.push(outcome);
    }
    plan
}

/// The events' ids as text, as the lookups take them.
fn event_ids(request: &Request<'_>) -> Vec<String> {
    request
        .events
        .iter()
        .map(|event| event.event_id.to_string())
        .collect()
}

fn encode_error(stream: &StreamId, event: &NewEvent, source: serde_json::Error) -> AppendError {
    AppendError::Encode {
        stream: stream.clone(),
        event_type: event.event_type.to_string(),
        source,
    }
}

/// Why an insert failed, as far as the append can tell.
enum InsertFailure {
    DuplicateEventId,
    StreamVersionTaken,
    CommandRecorded,
    NotJsonb,
    Other,
}

/// Recognises a failed insert by its SQLSTATE and, for a unique violation, the name of
/// the constraint (see [`MIGRATIONS`](super::schema::MIGRATIONS)); never by message text.
fn classify(db: Option<&DbError>) -> InsertFailure {
    let Some(db) = db else {
        return InsertFailure::Other;
    };
    let code = db.code();
    if *code == SqlState::UNIQUE_VIOLATION {
        match db.constraint() {
            Some(EVENT_ID_KEY) => InsertFailure::DuplicateEventId,
            // A writer that bypassed the append lock took the stream's next version or
            // the next position: for this append, another writer got there first.
            Some(STREAM_VERSION_KEY | POSITION_KEY) => InsertFailure::StreamVersionTaken,
            Some(COMMAND_ID_KEY) => InsertFailure::CommandRecorded,
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

/// Why [`Conn::append`] did not store its batch, as far as its connection can tell.
pub(super) enum AppendFailure {
    /// A definite failure: nothing is stored.
    Failed(AppendError),
    /// COMMIT was sent and no answer came back: the append may or may not be stored.
    CommitUnknown(Box<CommitUnknown>),
}

/// An append whose COMMIT went unanswered.
pub(super) struct CommitUnknown {
    /// What the append stored if it committed: its transaction had inserted the batch at
    /// exactly these versions and positions.
    pub(super) if_committed: AppendResult,
    /// The driver's error from COMMIT (for the first append of a batch; the connection's
    /// error after it for the others: see [`closed_error`]).
    pub(super) error: StoreError,
}

impl From<AppendError> for AppendFailure {
    fn from(e: AppendError) -> Self {
        AppendFailure::Failed(e)
    }
}

impl From<StoreError> for AppendFailure {
    fn from(e: StoreError) -> Self {
        AppendFailure::Failed(AppendError::Store(e))
    }
}

/// Whether a failed COMMIT leaves the transaction's fate open. An `ERROR` from the server
/// (a serialization failure, a deferred constraint) means it rolled back. Anything else
/// may follow a commit: a connection that broke before the answer arrived, or a session
/// ended by `FATAL` or `PANIC` (PostgreSQL can end a session after committing, for example
/// when a synchronous-replication wait is cancelled).
fn commit_outcome_unknown(e: &postgres::Error) -> bool {
    e.as_db_error()
        .is_none_or(|db| db.parsed_severity() != Some(Severity::Error))
}

/// An error of its own for each further append of a batch whose COMMIT went
/// unanswered. Such a COMMIT failed without an `ERROR` answer, so the connection is gone
/// and any call on it fails with the driver's error; should it answer all the same, the
/// append is reported as interrupted (it may or may not be stored).
fn closed_error(client: &mut Client) -> StoreError {
    match client.batch_execute("") {
        Err(e) => StoreError::Postgres(e),
        Ok(()) => StoreError::Interrupted,
    }
}

/// Each append's outcome once its batch's COMMIT was answered (`commit_error` `None`) or
/// went unanswered: then every accepted append may be stored, and is looked up later.
fn settle(
    outcomes: Vec<Outcome>,
    mut commit_error: Option<StoreError>,
    client: &mut Client,
) -> Vec<Result<AppendResult, AppendFailure>> {
    let unknown = commit_error.is_some();
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(appended) if unknown => Err(AppendFailure::CommitUnknown(Box::new(CommitUnknown {
                if_committed: appended,
                error: commit_error.take().unwrap_or_else(|| closed_error(client)),
            }))),
            Ok(appended) => Ok(appended),
            Err(e) => Err(AppendFailure::Failed(e)),
        })
        .collect()
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

    /// Runs `query`, which ends with `COMMIT`. After an `ERROR` answer the transaction
    /// may still be open (aborted, the statements after the failed one skipped): it is
    /// rolled back on drop.
    fn commit_after(mut self, query: &str) -> Result<Vec<SimpleQueryMessage>, postgres::Error> {
        let answer = self.client.simple_query(query);
        self.open = matches!(&answer, Err(e) if !commit_outcome_unknown(e));
        answer
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

/// Whether the batch that an append with an unanswered COMMIT would have stored as
/// `if_committed` is stored, looked up on `client` (a new connection): the append's
/// result when it is, `None` when nothing of it is.
///
/// The lookup first takes the append lock, which the append's session held from before
/// its insert until its transaction ended: once this session has the lock, that
/// transaction has committed or rolled back, and cannot commit later. Event ids and
/// command ids are unique, and the transaction inserted the batch (and the command's row)
/// exactly as `if_committed` says, all or nothing; so the append committed exactly when
/// its rows are found there.
pub(super) fn find_batch(
    client: &mut Client,
    sql: &Sql,
    request: &Request<'_>,
    if_committed: &AppendResult,
) -> Result<Option<AppendResult>, StoreError> {
    let (command, stream) = (request.command, request.stream);
    let event_ids = event_ids(request);
    let tx = AppendTransaction::begin(client, &sql.begin_append)?;
    let mut found = HashMap::with_capacity(event_ids.len());
    for row in tx.client.query(&sql.find_events, &[&event_ids])? {
        let aggregate_type: &str = row.try_get(1)?;
        let stream_id: &str = row.try_get(2)?;
        if aggregate_type == stream.aggregate_type() && stream_id == stream.id() {
            let version = Version::new(stored_u64(row.try_get(3)?));
            let position = Position::new(stored_u64(row.try_get(4)?));
            found.insert(row.try_get::<_, String>(0)?, (version, position));
        }
    }
    let record = match command {
        Some(command_id) => read::command(tx.client, &sql.read_command, command_id)?,
        None => None,
    };
    // Each event of the batch where the transaction put it.
    let before = if_committed
        .stream_version
        .get()
        .saturating_sub(event_ids.len() as u64);
    let events_stored = event_ids.len() == if_committed.positions.len()
        && event_ids
            .iter()
            .zip(&if_committed.positions)
            .zip(1..)
            .all(|((id, position), n)| {
                found.get(id) == Some(&(Version::new(before + n), *position))
            });
    let command_stored = command.is_none()
        || record.is_some_and(|r| r.stream == *stream && r.result == *if_committed);
    Ok((events_stored && command_stored).then(|| if_committed.clone()))
}

/// Why a batch could not be written as a whole (nothing of it is stored).
enum BatchFailure {
    Driver(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for BatchFailure {
    fn from(e: postgres::Error) -> Self {
        BatchFailure::Driver(e)
    }
}

impl Conn {
    /// Appends a batch in one transaction under the append lock, one outcome per append,
    /// in order. An append that fails its checks stores nothing and does not fail the
    /// others. When the batch fails as a whole before COMMIT (an insert refused, the
    /// connection lost), nothing of it is stored, and each append is tried again alone,
    /// so that each gets its own outcome and error.
    pub(super) fn append(
        &mut self,
        sql: &Sql,
        batch: &[Request<'_>],
    ) -> Vec<Result<AppendResult, AppendFailure>> {
        match self.append_together(sql, batch) {
            Ok(outcomes) => outcomes,
            Err(failure) => match batch {
                [request] => vec![Err(AppendFailure::Failed(match failure {
                    BatchFailure::Driver(e) => self.explain(e, sql, request),
                    BatchFailure::Store(e) => AppendError::Store(e),
                }))],
                _ => batch
                    .iter()
                    .flat_map(|request| self.append(sql, std::slice::from_ref(request)))
                    .collect(),
            },
        }
    }

    fn append_together(
        &mut self,
        sql: &Sql,
        batch: &[Request<'_>],
    ) -> Result<Vec<Result<AppendResult, AppendFailure>>, BatchFailure> {
        let Conn { client, stmts, .. } = self;
        let tx = AppendTransaction {
            client: &mut *client,
            open: true,
        };
        let messages = tx.client.simple_query(&head_query(sql, batch))?;
        let head = Head::parse(&messages, &sql.schema, batch.len()).map_err(BatchFailure::Store)?;
        let plan = plan(batch, &head);
        if plan.accepted == 0 {
            drop(tx);
            return Ok(plan
                .outcomes
                .into_iter()
                .map(|o| o.map_err(AppendFailure::Failed))
                .collect());
        }
        let (last_position, last_hash) = match (plan.positions.last(), plan.hashes.last()) {
            (Some(position), Some(hash)) => (*position, hash),
            // Only commands without events: the chain stays where it is.
            _ => (sql_int(head.last_position), &head.last_hash),
        };
        let count = sql_int(plan.positions.len() as u64);
        let commands = sql_int(plan.command_ids.len() as u64);
        let texts = || {
            plan.payloads
                .iter()
                .chain(&plan.metadata)
                .chain(&plan.event_types)
        };
        // A query cannot carry NUL; such a text is bound, and refused by the server.
        let inline = texts().map(|text| text.len()).sum::<usize>() <= INLINE_LIMIT
            && !texts().any(|text| text.contains('\0'));
        let committed = if inline {
            // The insert and COMMIT in one round trip. An `ERROR` answer (to either)
            // means nothing is stored; any other failure leaves the outcome open.
            let query = format!(
                "EXECUTE {APPEND_NAME}({}); COMMIT",
                inline_params(&plan, head.micros, last_position, last_hash)
            );
            match tx.commit_after(&query) {
                Ok(messages) => match counts(&messages) {
                    Some(found) if found == (count, commands) => Ok(()),
                    _ => Err(StoreError::NotAStore {
                        path: PathBuf::from(&sql.schema),
                        reason: format!(
                            "an append's insert of {count} events answered unexpectedly"
                        ),
                    }),
                },
                Err(error) if commit_outcome_unknown(&error) => Err(StoreError::Postgres(error)),
                Err(error) => return Err(BatchFailure::Driver(error)),
            }
        } else {
            let hashes: Vec<&[u8]> = plan.hashes.iter().map(|h| &h.as_bytes()[..]).collect();
            let recorded_at = Timestamp::from_micros(head.micros).to_system_time();
            let params: [&(dyn ToSql + Sync); 20] = [
                &plan.positions,
                &plan.aggregate_types,
                &plan.stream_ids,
                &plan.versions,
                &plan.event_types,
                &plan.event_versions,
                &plan.event_ids,
                &plan.payloads,
                &plan.metadata,
                &hashes,
                &recorded_at,
                &last_position,
                &&last_hash.as_bytes()[..],
                &count,
                &plan.command_ids,
                &plan.command_aggregate_types,
                &plan.command_stream_ids,
                &plan.command_versions,
                &plan.command_firsts,
                &plan.command_counts,
            ];
            let row = tx.client.query_one(&stmts.append, &params)?;
            let (inserted, recorded): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            if (inserted, recorded) != (count, commands) {
                return Err(BatchFailure::Store(StoreError::NotAStore {
                    path: PathBuf::from(&sql.schema),
                    reason: format!("an append inserted {inserted} of {count} events"),
                }));
            }
            match tx.commit() {
                Ok(()) => Ok(()),
                Err(error) if commit_outcome_unknown(&error) => Err(StoreError::Postgres(error)),
                // Rolled back: definite.
                Err(error) => return Err(BatchFailure::Driver(error)),
            }
        };
        Ok(settle(plan.outcomes, committed.err(), client))
    }

    /// Turns a failed insert into the error of the event (or command) that caused it,
    /// looking outside the aborted transaction. Falls back to the driver's error.
    fn explain(&mut self, e: postgres::Error, sql: &Sql, request: &Request<'_>) -> AppendError {
        let Request {
            stream,
            expected,
            command,
            ..
        } = *request;
        let explained = match classify(e.as_db_error()) {
            InsertFailure::DuplicateEventId => self.duplicate_event_id(sql, request),
            // Only a writer that bypassed the append lock can take the version first...
            InsertFailure::StreamVersionTaken => self.stream_version(stream).map(|actual| {
                Some(AppendError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual,
                })
            }),
            // ... or record the command id between the check and the insert.
            InsertFailure::CommandRecorded => {
                Ok(command.map(|command_id| AppendError::DuplicateCommand {
                    command_id: command_id.to_owned(),
                }))
            }
            InsertFailure::NotJsonb => self.not_jsonb(sql, request),
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
        request: &Request<'_>,
    ) -> Result<Option<AppendError>, postgres::Error> {
        let event_ids = event_ids(request);
        let stored = self
            .client
            .query(&sql.stored_ids, &[&event_ids])?
            .iter()
            .map(|row| row.try_get::<_, String>(0))
            .collect::<Result<HashSet<_>, _>>()?;
        let mut seen = HashSet::new();
        Ok(request
            .events
            .iter()
            .zip(&event_ids)
            .find(|(_, id)| stored.contains(*id) || !seen.insert(*id))
            .map(|(event, _)| AppendError::DuplicateEventId {
                stream: request.stream.clone(),
                event_id: event.event_id,
            }))
    }

    /// The first event whose payload or metadata is JSON that `JSONB` refuses (it cannot
    /// hold U+0000, for example).
    fn not_jsonb(
        &mut self,
        sql: &Sql,
        request: &Request<'_>,
    ) -> Result<Option<AppendError>, postgres::Error> {
        for (event, metadata) in request.events.iter().zip(request.metadata) {
            let (payload, metadata) = (event.payload.as_str(), metadata.as_str());
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
            return Ok(Some(encode_error(request.stream, event, source)));
        }
        Ok(None)
    }

    pub(super) fn save_snapshot(
        &mut self,
        sql: &Sql,
        stream: &StreamId,
        snapshot: &Snapshot,
    ) -> Result<(), postgres::Error> {
        self.client.execute(
            &sql.save_snapshot,
            &[
                &stream.aggregate_type(),
                &stream.id(),
                &i64::from(snapshot.state_version),
                &sql_int(snapshot.version.get()),
                &snapshot.state,
                &snapshot.taken_at.to_system_time(),
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NewEvent;
    use crate::version::ExpectedVersion;

    #[test]
    fn text_arrays_escape_quotes_and_backslashes() {
        assert_eq!(
            text_array([Some(r"a'b\'); --"), None, Some("")].into_iter()),
            r"ARRAY[E'a''b\\''); --',NULL,E'']::text[]"
        );
    }

    #[test]
    fn a_batch_decides_each_append_after_the_ones_before_it() {
        let (a, b) = (StreamId::new("note", "a"), StreamId::new("note", "b"));
        let events = [NewEvent::new("note.added", 1, "{}")];
        let metadata = ["{}".to_owned()];
        let contents = [[7; 32]];
        let request = |stream, expected, command| Request {
            stream,
            expected,
            events: &events,
            command,
            metadata: &metadata,
            contents: &contents,
        };
        let batch = [
            request(&a, ExpectedVersion::Exact(Version::new(2)), None),
            // The append before it took version 3.
            request(&a, ExpectedVersion::Exact(Version::new(2)), None),
            request(&b, ExpectedVersion::NoStream, Some("c1")),
            // Recorded by the append before it.
            request(&b, ExpectedVersion::Any, Some("c1")),
            request(&b, ExpectedVersion::Any, Some("c2")),
        ];
        let head = Head {
            last_position: 10,
            last_hash: ChainHash::GENESIS,
            micros: 5,
            versions: vec![2, 2, 0, 0, 0],
            done: vec![false, false, false, false, true],
        };
        let plan = plan(&batch, &head);
        assert_eq!(plan.accepted, 2);
        assert_eq!(plan.positions, [11, 12]);
        assert_eq!(plan.versions, [3, 1]);
        assert_eq!(plan.command_ids, ["c1"]);
        assert_eq!(plan.command_firsts, [12]);
        let first = chain_link(&ChainHash::GENESIS, 11, 3, 5, &[7; 32]);
        assert_eq!(plan.hashes, [first, chain_link(&first, 12, 1, 5, &[7; 32])]);
        assert!(matches!(&plan.outcomes[0], Ok(r) if r.positions == [Position::new(11)]));
        assert!(matches!(
            &plan.outcomes[1],
            Err(AppendError::Conflict { actual, .. }) if actual.get() == 3
        ));
        assert!(matches!(&plan.outcomes[2], Ok(r) if r.stream_version.get() == 1));
        assert!(matches!(
            &plan.outcomes[3],
            Err(AppendError::DuplicateCommand { command_id }) if command_id == "c1"
        ));
        assert!(matches!(
            &plan.outcomes[4],
            Err(AppendError::DuplicateCommand { command_id }) if command_id == "c2"
        ));
    }
}
