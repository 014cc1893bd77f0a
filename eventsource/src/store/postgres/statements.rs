//! The SQL of one PostgreSQL store (its schema spelled into every statement) and the
//! statements each pooled connection prepares.

use postgres::{Client, Statement};

use super::APPEND_LOCK_CLASS;
use super::read::{
    LIST_STREAMS_AFTER, LIST_STREAMS_FIRST, LOAD_SNAPSHOT, READ_ALL, READ_COMMAND, READ_STREAM,
    REPLAY_STREAM, STREAM_VERSION,
};
use super::write::{
    APPEND, APPEND_NAME, APPEND_TYPES, CHECK_JSON, FIND_EVENTS, HEAD, HEAD_NAME, SAVE_SNAPSHOT,
    STORED_IDS,
};

/// The statements of one store, with its schema spelled in.
#[derive(Debug)]
pub(super) struct Sql {
    /// The quoted schema name.
    pub(super) schema: String,
    /// The channel appends notify on commit, and live readers listen on.
    pub(super) channel: String,
    pub(super) begin_append: String,
    /// Prepares by name what a batch of appends reads under the lock and its insert, for
    /// the simple queries that run them with literal arguments.
    pub(super) prepare_head: String,
    pub(super) append: String,
    pub(super) stream_version: String,
    pub(super) read_stream: String,
    pub(super) replay_stream: String,
    pub(super) read_all: String,
    pub(super) read_command: String,
    pub(super) stored_ids: String,
    pub(super) find_events: String,
    pub(super) check_json: String,
    pub(super) load_snapshot: String,
    pub(super) save_snapshot: String,
    pub(super) list_streams_first: String,
    pub(super) list_streams_after: String,
}

impl Sql {
    /// The statements of the store in `schema` (quoted), whose `events` table has the oid
    /// `table_oid`.
    pub(super) fn new(schema: &str, table_oid: u32) -> Self {
        let spell = |template: &str| template.replace("{schema}", schema);
        let channel = format!("eventsource_{table_oid}");
        Sql {
            schema: schema.to_owned(),
            // One round trip; the lock keys and the channel are numbers, safe to spell in.
            // The notification is sent when (and only if) the append commits.
            begin_append: format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; \
                 NOTIFY {channel}; \
                 SELECT pg_advisory_xact_lock({APPEND_LOCK_CLASS}, {})",
                table_oid.cast_signed()
            ),
            channel,
            prepare_head: format!(
                "PREPARE {HEAD_NAME} (text[], text[], text[]) AS {}; \
                 PREPARE {APPEND_NAME} ({APPEND_TYPES}) AS {}",
                spell(HEAD),
                spell(APPEND)
            ),
            append: spell(APPEND),
            stream_version: spell(STREAM_VERSION),
            read_stream: spell(READ_STREAM),
            replay_stream: spell(REPLAY_STREAM),
            read_all: spell(READ_ALL),
            read_command: spell(READ_COMMAND),
            stored_ids: spell(STORED_IDS),
            find_events: spell(FIND_EVENTS),
            check_json: CHECK_JSON.into(),
            load_snapshot: spell(LOAD_SNAPSHOT),
            save_snapshot: spell(SAVE_SNAPSHOT),
            list_streams_first: spell(LIST_STREAMS_FIRST),
            list_streams_after: spell(LIST_STREAMS_AFTER),
        }
    }
}

/// The hot statements, prepared once per connection. Snapshot statements are not among
/// them: a connection must not fail because someone dropped that disposable table.
pub(super) struct Statements {
    pub(super) append: Statement,
    pub(super) stream_version: Statement,
    pub(super) read_stream: Statement,
    pub(super) replay_stream: Statement,
    pub(super) read_all: Statement,
    pub(super) read_command: Statement,
}

impl Statements {
    pub(super) fn prepare(client: &mut Client, sql: &Sql) -> Result<Self, postgres::Error> {
        client.batch_execute(&sql.prepare_head)?;
        Ok(Statements {
            append: client.prepare(&sql.append)?,
            stream_version: client.prepare(&sql.stream_version)?,
            read_stream: client.prepare(&sql.read_stream)?,
            replay_stream: client.prepare(&sql.replay_stream)?,
            read_all: client.prepare(&sql.read_all)?,
            read_command: client.prepare(&sql.read_command)?,
        })
    }
}

/// A pooled connection.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) stmts: Statements,
    /// Set when the connection must not go back to the pool (a read left rows unread).
    pub(super) discard: bool,
}
