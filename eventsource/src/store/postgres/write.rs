//! Writing to a PostgreSQL store: appends (with or without a command id) in one
//! statement under the append lock, the explanation of a refused insert, snapshots.

use std::collections::{HashMap, HashSet};

use postgres::Client;
use postgres::error::{DbError, Severity, SqlState};
use postgres::types::ToSql;

use super::schema::{COMMAND_ID_KEY, EVENT_ID_KEY, POSITION_KEY, STREAM_VERSION_KEY};
use super::{Conn, Sql, pg, read, sql_int, stored_u64};
use crate::error::{AppendError, StoreError};
use crate::event::NewEvent;
use crate::snapshot::Snapshot;
use crate::store::AppendResult;
use crate::store::encode::{content_digests, encode_metadata};
use crate::version::{ExpectedVersion, Position, StreamId, Version};

/// An append, run as a statement of its own after the append lock, so that its snapshot
/// sees every earlier append and command. It inserts only when the command id (`$10`,
/// NULL for a plain append) is not recorded, the stream matches the expectation (`$3`:
/// 0 any, 1 no stream, 2 stream exists, 3 exactly `$4`, else never) and the versions
/// fit; then it records the command id with the stream's new version and the events'
/// positions. It returns what it found either way, and the time it stored with the events
/// and the command.
///
/// Each event's chain hash is computed here, by a recursive step per event from the
/// newest stored hash (`links`), from the content digests the client computed (`$11`):
/// see `chain` for the encoding. The time is `statement_timestamp()` in microseconds,
/// spelled so that it is exact on servers whose `extract` returns a float; the chain's
/// head moves in the same statement.
pub(super) const APPEND: &str = "WITH RECURSIVE tail AS (\
       SELECT position, hash FROM {schema}.events ORDER BY position DESC LIMIT 1), \
     head AS (SELECT \
       (SELECT coalesce(max(version), 0) FROM {schema}.events \
        WHERE aggregate_type = $1 AND stream_id = $2) AS version, \
       coalesce((SELECT position FROM tail), 0) AS position, \
       coalesce((SELECT hash FROM tail WHERE length(hash) = 32), \
         decode(repeat('00', 32), 'hex')) AS hash, \
       extract(epoch FROM date_trunc('second', statement_timestamp()))::bigint * 1000000 \
         + extract(microseconds FROM statement_timestamp())::bigint % 1000000 AS micros, \
       EXISTS (SELECT 1 FROM {schema}.commands WHERE command_id = $10::text) AS done), \
     accepted AS (SELECT NOT head.done \
       AND CASE $3::int WHEN 0 THEN true WHEN 1 THEN head.version = 0 \
       WHEN 2 THEN head.version > 0 WHEN 3 THEN head.version = $4::bigint ELSE false END \
       AND head.version <= 9223372036854775807 - cardinality($5::text[]) \
       AND head.position <= 9223372036854775807 - cardinality($5::text[]) AS ok FROM head), \
     input AS (SELECT * FROM unnest($5::text[], $6::bigint[], $7::text[], $8::text[], \
       $9::text[], $11::bytea[]) WITH ORDINALITY AS e(event_type, event_version, event_id, \
       payload, metadata, content, n)), \
     links (n, hash) AS (\
       SELECT 0::bigint, head.hash FROM head, accepted WHERE accepted.ok \
       UNION ALL \
       SELECT l.n + 1, sha256(convert_to('eventsource.chain.v1', 'UTF8') || l.hash \
         || int8send(head.position + l.n + 1) || int8send(head.version + l.n + 1) \
         || int8send(head.micros) || e.content) \
       FROM links l JOIN input e ON e.n = l.n + 1 CROSS JOIN head), \
     inserted AS (\
       INSERT INTO {schema}.events (position, aggregate_type, stream_id, version, \
       event_type, event_version, event_id, recorded_at, payload, metadata, hash) \
       SELECT head.position + e.n, $1, $2, head.version + e.n, e.event_type, \
       e.event_version, e.event_id::uuid, statement_timestamp(), \
       e.payload::jsonb, e.metadata::jsonb, l.hash \
       FROM head, input e JOIN links l ON l.n = e.n \
       RETURNING position), \
     chained AS (\
       UPDATE {schema}.chain SET position = head.position + cardinality($5::text[]), \
       hash = (SELECT hash FROM links ORDER BY n DESC LIMIT 1), \
       count = count + cardinality($5::text[]) \
       FROM head, accepted WHERE accepted.ok AND cardinality($5::text[]) > 0 \
       RETURNING 1), \
     recorded AS (\
       INSERT INTO {schema}.commands (command_id, aggregate_type, stream_id, stream_version, \
       positions, recorded_at) \
       SELECT $10::text, $1, $2, head.version + cardinality($5::text[]), \
       ARRAY(SELECT position FROM inserted ORDER BY position), statement_timestamp() \
       FROM head, accepted WHERE accepted.ok AND $10::text IS NOT NULL \
       RETURNING 1) \
     SELECT head.version, head.position, accepted.ok, head.done, statement_timestamp() \
     FROM head, accepted";

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

/// An append's events as the columns of the insert, checked to be JSON.
pub(super) struct Batch<'e> {
    events: &'e [NewEvent],
    event_types: Vec<&'e str>,
    event_versions: Vec<i64>,
    event_ids: Vec<String>,
    payloads: Vec<&'e str>,
    metadata: Vec<String>,
    /// Each event's content digest, which its chain hash covers (see `chain`).
    contents: Vec<[u8; 32]>,
}

impl<'e> Batch<'e> {
    pub(super) fn new(stream: &StreamId, events: &'e [NewEvent]) -> Result<Self, AppendError> {
        let mut batch = Batch {
            events,
            event_types: Vec::with_capacity(events.len()),
            event_versions: Vec::with_capacity(events.len()),
            event_ids: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
            contents: Vec::new(),
        };
        let metadata = encode_metadata(stream, events)?;
        batch.contents = content_digests(stream, events, &metadata)?;
        for event in events {
            batch.event_types.push(&event.event_type);
            batch.event_versions.push(i64::from(event.event_version));
            batch.event_ids.push(event.event_id.to_string());
            batch.payloads.push(&event.payload);
        }
        batch.metadata = metadata;
        Ok(batch)
    }

    pub(super) fn len(&self) -> u64 {
        self.events.len() as u64
    }
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
    /// The driver's error from COMMIT.
    pub(super) error: postgres::Error,
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

/// `expected` as the `$3` and `$4` of [`APPEND`].
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
    command: Option<&str>,
    stream: &StreamId,
    batch: &Batch<'_>,
    if_committed: &AppendResult,
) -> Result<Option<AppendResult>, StoreError> {
    let tx = AppendTransaction::begin(client, &sql.begin_append)?;
    let mut found = HashMap::with_capacity(batch.event_ids.len());
    for row in tx.client.query(&sql.find_events, &[&batch.event_ids])? {
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
        .saturating_sub(batch.len());
    let events_stored = batch.event_ids.len() == if_committed.positions.len()
        && batch
            .event_ids
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

impl Conn {
    /// Appends `batch` in one transaction under the append lock, recording `command` with
    /// it when there is one.
    pub(super) fn append(
        &mut self,
        sql: &Sql,
        command: Option<&str>,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch<'_>,
    ) -> Result<AppendResult, AppendFailure> {
        let (kind, exact) = expectation(expected);
        let contents: Vec<&[u8]> = batch.contents.iter().map(|c| &c[..]).collect();
        let params: [&(dyn ToSql + Sync); 11] = [
            &stream.aggregate_type(),
            &stream.id(),
            &kind,
            &exact,
            &batch.event_types,
            &batch.event_versions,
            &batch.event_ids,
            &batch.payloads,
            &batch.metadata,
            &command,
            &contents,
        ];
        let tx = AppendTransaction::begin(&mut self.client, &sql.begin_append)
            .map_err(StoreError::from)?;
        let head = match tx.client.query_one(&self.stmts.append, &params) {
            Ok(head) => head,
            Err(e) => {
                drop(tx); // rolls back, so the connection can explain the failure
                return Err(self
                    .explain(e, sql, command, stream, expected, batch)
                    .into());
            }
        };
        let actual = Version::new(stored_u64(head.try_get(0).map_err(StoreError::from)?));
        let last_position = stored_u64(head.try_get(1).map_err(StoreError::from)?);
        let accepted: bool = head.try_get(2).map_err(StoreError::from)?;
        let done: bool = head.try_get(3).map_err(StoreError::from)?;
        let recorded_at = read::saturating_timestamp(head.try_get(4).map_err(StoreError::from)?);
        if !accepted {
            drop(tx);
            return Err(AppendFailure::Failed(match command {
                Some(command_id) if done => AppendError::DuplicateCommand {
                    command_id: command_id.to_owned(),
                },
                _ if last_position > i64::MAX.unsigned_abs() - batch.len() => {
                    AppendError::Store(StoreError::PositionsExhausted {
                        last: last_position,
                        count: batch.events.len(),
                    })
                }
                _ if expected.matches(actual) => AppendError::VersionOverflow {
                    stream: stream.clone(),
                },
                _ => AppendError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual,
                },
            }));
        }
        let first = last_position + 1;
        let appended = AppendResult {
            stream_version: Version::new(actual.get() + batch.len()),
            positions: (first..first + batch.len()).map(Position::new).collect(),
            recorded_at,
        };
        match tx.commit() {
            Ok(()) => Ok(appended),
            Err(error) if commit_outcome_unknown(&error) => {
                Err(AppendFailure::CommitUnknown(Box::new(CommitUnknown {
                    if_committed: appended,
                    error,
                })))
            }
            Err(error) => Err(pg(error)),
        }
    }

    /// Turns a failed insert into the error of the event (or command) that caused it,
    /// looking outside the aborted transaction. Falls back to the driver's error.
    fn explain(
        &mut self,
        e: postgres::Error,
        sql: &Sql,
        command: Option<&str>,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &Batch<'_>,
    ) -> AppendError {
        let explained = match classify(e.as_db_error()) {
            InsertFailure::DuplicateEventId => self.duplicate_event_id(sql, stream, batch),
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
    fn every_expectation_has_its_own_code() {
        let codes = [
            ExpectedVersion::Any,
            ExpectedVersion::NoStream,
            ExpectedVersion::StreamExists,
            ExpectedVersion::Exact(Version::new(7)),
            ExpectedVersion::Exact(Version::new(u64::MAX)),
        ]
        .map(expectation);
        assert_eq!(codes, [(0, 0), (1, 0), (2, 0), (3, 7), (4, 0)]);
    }
}
