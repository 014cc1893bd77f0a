//! The schema of a PostgreSQL store: checking the schema name, creating and migrating
//! the tables under the DDL lock, and the names of the constraints an append can break.

use std::path::PathBuf;

use postgres::{Client, GenericClient};

use crate::error::StoreError;

/// The advisory lock held while creating or migrating a schema ("ESRCDDL").
const DDL_LOCK: i64 = 0x4553_5243_4444_4c00;

/// The longest PostgreSQL identifier (`NAMEDATALEN - 1`).
const MAX_IDENTIFIER_LEN: usize = 63;

/// The constraints of [`MIGRATIONS`] whose violation an append explains.
pub(super) const STREAM_VERSION_KEY: &str = "events_stream_version_key";
pub(super) const EVENT_ID_KEY: &str = "events_event_id_key";
pub(super) const COMMAND_ID_KEY: &str = "commands_pkey";
pub(super) const POSITION_KEY: &str = "events_pkey";

/// Schema migrations, `{schema}` standing for the quoted schema name: entry `i` takes a
/// store from schema version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    r"
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
",
    r"
CREATE TABLE {schema}.snapshots (
    aggregate_type TEXT        NOT NULL,
    stream_id      TEXT        NOT NULL,
    state_version  BIGINT      NOT NULL,
    version        BIGINT      NOT NULL,
    state          JSONB       NOT NULL,
    taken_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (aggregate_type, stream_id, state_version, version)
);
COMMENT ON TABLE {schema}.snapshots IS
    'eventsource: a disposable cache of aggregate states; the events table is the truth';
CREATE TABLE {schema}.commands (
    command_id     TEXT        NOT NULL,
    aggregate_type TEXT        NOT NULL,
    stream_id      TEXT        NOT NULL,
    stream_version BIGINT      NOT NULL,
    positions      BIGINT[]    NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT commands_pkey PRIMARY KEY (command_id),
    CONSTRAINT commands_stream_version_check CHECK (stream_version >= 0),
    CONSTRAINT commands_positions_check CHECK (1 <= ALL (positions))
);
COMMENT ON TABLE {schema}.commands IS
    'eventsource: the idempotent commands that ran, each written with its events; append-only';
CREATE FUNCTION {schema}.commands_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'eventsource: the commands table is append-only; % is refused', TG_OP
        USING HINT = 'A command id records that the command ran: use a new id to run it again.';
END
$$;
CREATE TRIGGER commands_refuse_change
    BEFORE UPDATE OR DELETE OR TRUNCATE ON {schema}.commands
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.commands_refuse_change();
",
    r"
CREATE INDEX events_by_event_type ON {schema}.events (event_type, position);
CREATE INDEX events_by_aggregate_type ON {schema}.events (aggregate_type, position);
CREATE TABLE {schema}.projections (
    name       TEXT        NOT NULL,
    version    BIGINT      NOT NULL,
    position   BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT projections_pkey PRIMARY KEY (name),
    CONSTRAINT projections_version_check CHECK (version >= 1),
    CONSTRAINT projections_position_check CHECK (position >= 0)
);
COMMENT ON TABLE {schema}.projections IS
    'eventsource: the checkpoint of each projection, moved in the transaction that writes its read model';
",
    // Tamper evidence (see `chain`): each event appended from now on carries a SHA-256
    // over its content and the previous event's hash; the head of the chain is kept
    // apart. Rows stored before keep a NULL hash: the chain starts after them.
    r"
ALTER TABLE {schema}.events ADD COLUMN hash BYTEA,
    ADD CONSTRAINT events_hash_check CHECK (hash IS NULL OR length(hash) = 32);
CREATE TABLE {schema}.chain (
    id        BOOLEAN NOT NULL DEFAULT TRUE,
    encoding  INTEGER NOT NULL,
    starts_at BIGINT  NOT NULL,
    position  BIGINT  NOT NULL,
    hash      BYTEA   NOT NULL,
    count     BIGINT  NOT NULL,
    CONSTRAINT chain_pkey PRIMARY KEY (id),
    CONSTRAINT chain_id_check CHECK (id),
    CONSTRAINT chain_starts_at_check CHECK (starts_at >= 1),
    CONSTRAINT chain_hash_check CHECK (length(hash) = 32),
    CONSTRAINT chain_count_check CHECK (count >= 0)
);
COMMENT ON TABLE {schema}.chain IS
    'eventsource: the head of the hash chain over the events table; it only moves forward';
INSERT INTO {schema}.chain (encoding, starts_at, position, hash, count)
SELECT 1, coalesce(max(position), 0) + 1, coalesce(max(position), 0),
       decode(repeat('00', 32), 'hex'), 0
FROM {schema}.events;
CREATE FUNCTION {schema}.chain_refuse_rewind() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.position < OLD.position OR NEW.count < OLD.count
        OR NEW.starts_at <> OLD.starts_at THEN
        RAISE EXCEPTION 'eventsource: the chain head only moves forward; % is refused', TG_OP;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER chain_refuse_rewind
    BEFORE UPDATE OR DELETE ON {schema}.chain
    FOR EACH ROW EXECUTE FUNCTION {schema}.chain_refuse_rewind();
",
];

/// The schema version this build writes and reads.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Checks that `name` is a plain identifier and returns it double-quoted.
pub(super) fn quote_schema(name: &str) -> Result<String, StoreError> {
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
pub(super) fn prepare_schema(
    client: &mut Client,
    schema: &str,
    quoted: &str,
) -> Result<(), StoreError> {
    // The common case needs no lock (nor the privilege to create anything).
    match schema_version(client, quoted)? {
        Some(found) if found > SCHEMA_VERSION => return Err(newer_schema(schema, found)),
        Some(SCHEMA_VERSION) => return check_triggers(client, schema, quoted),
        _ => {}
    }
    // A session lock taken before the transaction: a transaction that began before
    // another process committed its DDL could still find that DDL's tables missing in its
    // catalog caches. On an error the caller drops the connection, which releases it.
    client.execute("SELECT pg_advisory_lock($1)", &[&DDL_LOCK])?;
    migrate(client, schema, quoted)?;
    client.execute("SELECT pg_advisory_unlock($1)", &[&DDL_LOCK])?;
    check_triggers(client, schema, quoted)
}

/// The triggers the append-only guarantee rests on, by table, with their
/// `pg_trigger.tgtype`.
const REQUIRED_TRIGGERS: &[(&str, &str, i16)] = &[
    ("events", "events_refuse_change", REFUSING_TGTYPE),
    ("commands", "commands_refuse_change", REFUSING_TGTYPE),
    ("chain", "chain_refuse_rewind", CHAIN_TGTYPE),
];

/// `pg_trigger.tgtype` of the refusing triggers: `BEFORE` (2), `DELETE` (8), `UPDATE`
/// (16), `TRUNCATE` (32), `FOR EACH STATEMENT` (row bit 1 clear).
const REFUSING_TGTYPE: i16 = 2 | 8 | 16 | 32;

/// `pg_trigger.tgtype` of the chain head's trigger: `FOR EACH ROW` (1), `BEFORE` (2),
/// `DELETE` (8), `UPDATE` (16).
const CHAIN_TGTYPE: i16 = 1 | 2 | 8 | 16;

/// The body the migrations give the trigger function `function`, as `pg_proc.prosrc`
/// keeps it (the text between the `$$`).
fn expected_body(function: &str) -> Option<&'static str> {
    let head = format!("{{schema}}.{function}() RETURNS trigger LANGUAGE plpgsql AS $$");
    MIGRATIONS.iter().find_map(|migration| {
        let start = migration.find(&head)? + head.len();
        let len = migration[start..].find("$$")?;
        Some(&migration[start..start + len])
    })
}

/// Refuses a store whose refusing triggers were dropped, disabled (or enabled for
/// replication sessions only), or replaced by ones that do not refuse: the trigger must
/// fire `BEFORE UPDATE OR DELETE OR TRUNCATE FOR EACH STATEMENT` (the chain head's:
/// `BEFORE UPDATE OR DELETE FOR EACH ROW`) with no `WHEN`, in every session (`tgenabled` `O` or `A`), and call the store's function in the same
/// schema with the body the migrations gave it. It is not repaired behind the user's back.
fn check_triggers(client: &mut Client, schema: &str, quoted: &str) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    for (table, trigger, expected_tgtype) in REQUIRED_TRIGGERS {
        let row = client.query_opt(
            "SELECT t.tgenabled::text, t.tgtype, t.tgqual IS NULL, p.proname::text, \
             n.nspname::text, p.prosrc \
             FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
             JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE t.tgrelid = $1::text::regclass AND t.tgname = $2",
            &[&format!("{quoted}.{table}"), trigger],
        )?;
        let Some(row) = row else {
            missing.push((*trigger).to_owned());
            continue;
        };
        let enabled: String = row.try_get(0)?;
        let tgtype: i16 = row.try_get(1)?;
        let unconditional: bool = row.try_get(2)?;
        let function: String = row.try_get(3)?;
        let function_schema: String = row.try_get(4)?;
        let body: String = row.try_get(5)?;
        if enabled == "D" {
            missing.push(format!("{trigger} (disabled)"));
        } else if enabled != "O" && enabled != "A" {
            missing.push(format!("{trigger} (fires for replication sessions only)"));
        } else if tgtype != *expected_tgtype
            || !unconditional
            || function != *trigger
            || function_schema != schema
            || expected_body(trigger) != Some(body.as_str())
        {
            missing.push(format!("{trigger} (altered)"));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Damaged {
            path: PathBuf::from(schema),
            missing,
        })
    }
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
    fn every_migration_names_the_schema_it_runs_in() {
        for migration in MIGRATIONS {
            for statement in migration.split(';').filter(|s| s.contains("CREATE")) {
                assert!(statement.contains("{schema}."), "{statement}");
            }
        }
    }
}
