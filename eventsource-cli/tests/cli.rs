//! The `eventsource` binary against real SQLite files and the PostgreSQL server named by
//! `EVENTSOURCE_POSTGRES_URL`: each command's output and exit code.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    Schema, TestResult, eventsource, pg_url, run, same_events, small_store, stderr, stdout,
};
use eventsource::{EventStore, ExpectedVersion, NewEvent, SqliteStore, StreamId};
use serde_json::Value;

fn sqlite_store() -> Result<(tempfile::TempDir, String), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.db");
    small_store(&SqliteStore::open(&path)?)?;
    let path = path.to_str().ok_or("path not UTF-8")?.to_owned();
    Ok((dir, path))
}

fn json_lines(text: &str) -> Result<Vec<Value>, serde_json::Error> {
    text.lines().map(serde_json::from_str).collect()
}

#[test]
fn info_describes_the_store() -> TestResult {
    let (_dir, db) = sqlite_store()?;
    let out = run(["info", &db])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "backend:         sqlite",
        "schema version:  4",
        "events:          5",
        "streams:         3",
        "first position:  1 at 20",
        "last position:   5 at 20",
        "projections:     none",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    let out = run(["info", &db, "--json"])?;
    let info: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(info["events"], 5);
    assert_eq!(info["streams"], 3);
    assert_eq!(info["last"]["position"], 5);
    assert!(info["size_bytes"].as_u64().is_some_and(|n| n > 0));
    Ok(())
}

#[test]
fn streams_are_listed_by_type_and_paged() -> TestResult {
    let (_dir, db) = sqlite_store()?;
    let out = run(["streams", &db])?;
    assert!(out.status.success());
    let text = stdout(&out);
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[0].starts_with("STREAM"), "{text}");
    assert!(rows[1].starts_with("account/acc-1  3 "), "{text}");
    assert!(rows[2].starts_with("account/acc-2  1 "), "{text}");
    assert!(rows[3].starts_with("order/o-1      1 "), "{text}");
    let out = run([
        "streams", &db, "--type", "account", "--limit", "1", "--json",
    ])?;
    let page = json_lines(&stdout(&out))?;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["stream_id"], "acc-1");
    assert_eq!(page[0]["version"], 3);
    assert!(
        stderr(&out).contains("--type account --after acc-1"),
        "{}",
        stderr(&out)
    );
    let out = run([
        "streams", &db, "--type", "account", "--after", "acc-1", "--json",
    ])?;
    let page = json_lines(&stdout(&out))?;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["stream_id"], "acc-2");
    Ok(())
}

#[test]
fn events_of_a_stream_and_of_the_store() -> TestResult {
    let (_dir, db) = sqlite_store()?;
    let out = run(["events", &db, "account/acc-1", "--from", "2", "--to", "3"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("money.deposited v1"), "{text}");
    assert!(text.contains(r#"{"amount": 30}"#), "{text}");
    let out = run(["events", &db, "account/acc-1", "--json"])?;
    let events = json_lines(&stdout(&out))?;
    let versions: Vec<u64> = events
        .iter()
        .filter_map(|e| e["version"].as_u64())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(events[0]["metadata"]["actor"], "ann");
    assert_eq!(events[0]["metadata"]["tenant"], "t1");
    assert_eq!(events[0]["payload"]["owner"], "ann");
    assert_eq!(events[0]["event_version"], 2);
    let out = run([
        "events",
        &db,
        "--all",
        "--after",
        "1",
        "--type",
        "account.opened",
        "--json",
    ])?;
    let events = json_lines(&stdout(&out))?;
    let positions: Vec<u64> = events
        .iter()
        .filter_map(|e| e["position"].as_u64())
        .collect();
    assert_eq!(positions, [3]);
    let out = run(["events", &db, "--all", "--limit", "2", "--json"])?;
    assert_eq!(json_lines(&stdout(&out))?.len(), 2);
    let out = run(["events", &db, "nostream"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("AGGREGATE_TYPE/ID"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn tail_shows_the_newest_events_then_follows_new_ones() -> TestResult {
    let (_dir, db) = sqlite_store()?;
    let out = run(["tail", &db, "-n", "2", "--json"])?;
    let positions: Vec<u64> = json_lines(&stdout(&out))?
        .iter()
        .filter_map(|e| e["position"].as_u64())
        .collect();
    assert_eq!(positions, [4, 5]);
    let mut child = eventsource(["tail", db.as_str(), "-n", "1", "--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let first: Value = serde_json::from_str(&lines.next().ok_or("no line")??)?;
    assert_eq!(first["position"], 5);
    SqliteStore::open(&db)?.append(
        &StreamId::new("order", "o-2"),
        ExpectedVersion::NoStream,
        &[NewEvent::new("order.placed", 1, "{}")],
    )?;
    let started = Instant::now();
    let next: Value = serde_json::from_str(&lines.next().ok_or("no line")??)?;
    assert_eq!(next["position"], 6);
    assert_eq!(next["stream_id"], "o-2");
    assert!(started.elapsed() < Duration::from_secs(10));
    child.kill()?;
    child.wait()?;
    Ok(())
}

#[test]
fn stats_count_types_and_stored_versions() -> TestResult {
    let (_dir, db) = sqlite_store()?;
    let out = run(["stats", &db, "--json"])?;
    assert!(out.status.success());
    let stats: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(stats["events"], 5);
    assert_eq!(stats["aggregate_types"]["account"]["events"], 4);
    assert_eq!(stats["aggregate_types"]["order"]["events"], 1);
    let opened = &stats["event_types"]["account.opened"];
    assert_eq!(opened["events"], 2);
    assert_eq!(opened["versions"]["1"]["events"], 1);
    assert_eq!(opened["versions"]["2"]["events"], 1);
    assert_eq!(
        opened["versions"]["2"]["payload_bytes"],
        r#"{"owner": "ann"}"#.len()
    );
    let text = stdout(&run(["stats", &db])?);
    assert!(text.contains("EVENT TYPE"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("account.opened   2 ")),
        "{text}"
    );
    Ok(())
}

#[test]
fn bad_arguments_are_usage_errors() -> TestResult {
    let (_dir, db) = sqlite_store()?;
    for args in [
        vec![],
        vec!["bogus"],
        vec!["info"],
        vec!["events", db.as_str()],
        vec!["events", db.as_str(), "account/acc-1", "--all"],
        vec!["events", db.as_str(), "--all", "--from", "2"],
        vec!["streams", db.as_str(), "--after", "x"],
        vec!["streams", db.as_str(), "--limit", "many"],
        vec!["tail", db.as_str(), "-n", "-3"],
        vec!["copy", db.as_str()],
        vec!["copy", db.as_str(), "x.db", "--batch", "0"],
        vec!["info", db.as_str(), "--frobnicate"],
    ] {
        let out = run(&args)?;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("error: ") || stderr(&out).contains("Usage:"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{args:?}");
    }
    Ok(())
}

#[test]
fn a_missing_or_foreign_file_is_an_error_and_nothing_is_created() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("typo.db");
    let out = run(["info".as_ref(), missing.as_os_str()])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no such store file"),
        "{}",
        stderr(&out)
    );
    assert!(!missing.exists());
    let foreign = dir.path().join("notes.txt");
    std::fs::write(
        &foreign,
        "not a database, but long enough to be looked at by SQLite. ".repeat(20),
    )?;
    let out = run(["verify".as_ref(), foreign.as_os_str()])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not an eventsource store"),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn export_then_import_round_trips_and_import_refuses_a_store_with_events() -> TestResult {
    let (dir, db) = sqlite_store()?;
    let file = dir.path().join("export.jsonl");
    let out = run(["export".as_ref(), db.as_ref(), file.as_os_str()])?;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file)?;
    let lines = json_lines(&text)?;
    assert_eq!(
        lines[0],
        serde_json::json!({"format": "eventsource-export", "version": 1})
    );
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[1]["position"], 1);
    assert!(
        lines[1]["metadata"]
            .as_str()
            .is_some_and(|m| m.contains("tenant"))
    );
    // Never overwrites.
    let again = run(["export".as_ref(), db.as_ref(), file.as_os_str()])?;
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&file)?, text);

    let copy = dir.path().join("copy.db");
    let out = run(["import".as_ref(), copy.as_os_str(), file.as_os_str()])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        same_events(&SqliteStore::open(&db)?, &SqliteStore::open(&copy)?)?,
        5
    );

    let refused = run(["import".as_ref(), copy.as_os_str(), file.as_os_str()])?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("already holds events (last position 5)"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        same_events(&SqliteStore::open(&db)?, &SqliteStore::open(&copy)?)?,
        5
    );

    // Through standard output and input.
    let piped = dir.path().join("piped.db");
    let exported = run(["export", db.as_str(), "-"])?;
    assert_eq!(exported.stdout, text.as_bytes());
    let mut child = eventsource(["import".as_ref(), piped.as_os_str(), "-".as_ref()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(&exported.stdout)?;
    assert!(child.wait()?.success());
    assert_eq!(
        same_events(&SqliteStore::open(&db)?, &SqliteStore::open(&piped)?)?,
        5
    );
    Ok(())
}

#[test]
fn import_refuses_a_file_that_is_not_an_export() -> TestResult {
    let dir = tempfile::tempdir()?;
    let target = dir.path().join("t.db");
    for (content, expected) in [
        ("", "line 1: the file is empty"),
        (
            "{\"format\":\"other\",\"version\":1}\n",
            "line 1: the format is `other`",
        ),
        (
            "{\"format\":\"eventsource-export\",\"version\":2}\n",
            "line 1: format version 2",
        ),
        (
            "{\"format\":\"eventsource-export\",\"version\":1}\n{\"position\":1}\n",
            "line 2: missing field",
        ),
    ] {
        let file = dir.path().join("in.jsonl");
        std::fs::write(&file, content)?;
        let out = run(["import".as_ref(), target.as_os_str(), file.as_os_str()])?;
        assert_eq!(out.status.code(), Some(1), "{content}");
        assert!(
            stderr(&out).contains(expected),
            "{expected}: {}",
            stderr(&out)
        );
    }
    Ok(())
}

/// Runs `statements` on the file with a plain connection.
fn sqlite(path: &str, statements: &str) -> TestResult {
    let conn = eventsource::rusqlite::Connection::open(path)?;
    conn.execute_batch(statements)?;
    Ok(())
}

fn trigger_sql(path: &str, name: &str) -> Result<String, Box<dyn std::error::Error>> {
    let conn = eventsource::rusqlite::Connection::open(path)?;
    Ok(conn.query_row(
        "SELECT sql FROM sqlite_master WHERE name = ?1",
        [name],
        |r| r.get(0),
    )?)
}

/// The newest event removed, and the chain's head moved back to match: only the
/// checkpoint kept elsewhere sees it.
#[test]
fn verify_with_a_checkpoint_finds_a_truncated_store() -> TestResult {
    let (_dir5, truncated) = sqlite_store()?;
    let report: Value = serde_json::from_slice(&run(["verify", &truncated, "--json"])?.stdout)?;
    let checkpoint = format!(
        "{}:{}",
        report["checkpoint"]["position"],
        report["checkpoint"]["hash"].as_str().unwrap_or_default()
    );
    let delete = trigger_sql(&truncated, "events_refuse_delete")?;
    sqlite(
        &truncated,
        &format!(
            "DROP TRIGGER events_refuse_delete; DROP TRIGGER chain_refuse_rewind; \
             DELETE FROM events WHERE position = 5; \
             UPDATE chain SET position = 4, count = 4, hash = (SELECT hash FROM events WHERE position = 4); \
             {delete}; CREATE TRIGGER chain_refuse_rewind BEFORE UPDATE ON chain \
             WHEN NEW.position < OLD.position OR NEW.count < OLD.count OR NEW.starts_at != OLD.starts_at \
             BEGIN SELECT RAISE(ABORT, 'eventsource: the chain head only moves forward'); END;"
        ),
    )?;
    assert_eq!(run(["verify", &truncated])?.status.code(), Some(0));
    let out = run(["verify", &truncated, "--checkpoint", &checkpoint])?;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("the store has no event there (truncated)"),
        "{}",
        stdout(&out)
    );
    Ok(())
}

#[test]
fn verify_passes_a_sound_store_and_fails_damaged_ones() -> TestResult {
    let (_dir, db) = sqlite_store()?;
    let out = run(["verify", &db])?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("sound: 5 events in 3 streams"),
        "{}",
        stdout(&out)
    );
    let report: Value = serde_json::from_slice(&run(["verify", &db, "--json"])?.stdout)?;
    assert_eq!(report["sound"], true);
    let checkpoint = format!(
        "{}:{}",
        report["checkpoint"]["position"],
        report["checkpoint"]["hash"].as_str().unwrap_or_default()
    );
    let out = run(["verify", &db, "--checkpoint", &checkpoint])?;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = run(["verify", &db, "--checkpoint", "5:not-a-hash"])?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A trigger dropped.
    let (_dir2, dropped) = sqlite_store()?;
    sqlite(&dropped, "DROP TRIGGER events_refuse_delete")?;
    let out = run(["verify", &dropped, "--json"])?;
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["sound"], false);
    assert!(
        report["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("events_refuse_delete")),
        "{report}"
    );

    // A row edited with the triggers dropped and re-created afterwards.
    let (_dir3, edited) = sqlite_store()?;
    let update = trigger_sql(&edited, "events_refuse_update")?;
    sqlite(
        &edited,
        &format!(
            "DROP TRIGGER events_refuse_update; \
             UPDATE events SET payload = '{{\"amount\": 1000' WHERE position = 2; \
             UPDATE events SET version = 7 WHERE position = 5; {update};"
        ),
    )?;
    let out = run(["verify", &edited])?;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("position 2: the event cannot be read: the payload is not JSON"),
        "{text}"
    );
    assert!(
        text.contains("position 5: the event does not match its hash"),
        "{text}"
    );
    assert!(
        text.contains("position 5: stream account/acc-1 has version 7 but not the version before"),
        "{text}"
    );
    assert!(text.contains("NOT SOUND: 3 problems"), "{text}");

    // A gap: a row inserted by hand (INSERT is allowed) skipping versions.
    let (_dir4, gap) = sqlite_store()?;
    sqlite(
        &gap,
        "INSERT INTO events (aggregate_type, stream_id, version, event_type, event_version, \
         event_id, recorded_at, payload, metadata) VALUES ('order', 'o-1', 3, 'order.paid', 1, \
         '01900000-0000-7000-8000-000000000001', 0, '{}', '{}')",
    )?;
    let out = run(["verify", &gap])?;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("position 6: the event has no chain hash (inserted or edited by hand)"),
        "{text}"
    );
    assert!(
        text.contains("position 6: stream order/o-1 has version 3 but not the version before"),
        "{text}"
    );
    Ok(())
}

/// The copy's hash chain is the source's, link for link: both verify, with the same
/// checkpoint.
fn same_chain(db: &str, url: &str, schema: &str) -> TestResult {
    let out = run(["verify", url, "--schema", schema])?;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let source: Value = serde_json::from_slice(&run(["verify", db, "--json"])?.stdout)?;
    let copied: Value =
        serde_json::from_slice(&run(["verify", url, "--schema", schema, "--json"])?.stdout)?;
    assert_eq!(source["sound"], true, "{source}");
    assert_eq!(copied["sound"], true, "{copied}");
    assert_eq!(source["checkpoint"], copied["checkpoint"]);
    assert_eq!(copied["checkpoint"]["position"], 5);
    Ok(())
}

#[test]
fn postgres_commands_and_a_copy_there_and_back() -> TestResult {
    let Some(url) = pg_url() else { return Ok(()) };
    let (dir, db) = sqlite_store()?;
    let schema = Schema::new(&url);
    let out = run(["copy", &db, &url, "--schema", &schema.name])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("copied 5 events"), "{}", stderr(&out));
    assert_eq!(
        same_events(&SqliteStore::open(&db)?, &schema.connect()?)?,
        5
    );

    let info: Value =
        serde_json::from_slice(&run(["info", &url, "--schema", &schema.name, "--json"])?.stdout)?;
    assert_eq!(info["backend"], "postgres");
    assert_eq!(info["events"], 5);
    assert_eq!(info["streams"], 3);
    let streams = json_lines(&stdout(&run([
        "streams",
        &url,
        "--schema",
        &schema.name,
        "--json",
    ])?))?;
    assert_eq!(streams.len(), 3);
    let events = json_lines(&stdout(&run([
        "events",
        &url,
        "--schema",
        &schema.name,
        "account/acc-1",
        "--json",
    ])?))?;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["metadata"]["tenant"], "t1");
    same_chain(&db, &url, &schema.name)?;
    let stats: Value =
        serde_json::from_slice(&run(["stats", &url, "--schema", &schema.name, "--json"])?.stdout)?;
    assert_eq!(stats["events"], 5);

    // Export from PostgreSQL, import into a fresh schema; import into a store with
    // events is refused.
    let file = dir.path().join("pg.jsonl");
    assert!(
        run([
            "export".as_ref(),
            url.as_ref(),
            "--schema".as_ref(),
            schema.name.as_ref(),
            file.as_os_str()
        ])?
        .status
        .success()
    );
    let second = Schema::new(&url);
    let out = run([
        "import".as_ref(),
        url.as_ref(),
        "--schema".as_ref(),
        second.name.as_ref(),
        file.as_os_str(),
    ])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(same_events(&schema.connect()?, &second.connect()?)?, 5);
    let out = run([
        "import".as_ref(),
        url.as_ref(),
        "--schema".as_ref(),
        second.name.as_ref(),
        file.as_os_str(),
    ])?;
    assert_eq!(out.status.code(), Some(1));

    // And back to SQLite: the same events as the original file.
    let back = dir.path().join("back.db");
    let out = run([
        "copy".as_ref(),
        url.as_ref(),
        back.as_os_str(),
        "--schema".as_ref(),
        schema.name.as_ref(),
    ])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        same_events(&SqliteStore::open(&db)?, &SqliteStore::open(&back)?)?,
        5
    );

    // Appends after a copy continue after the copied positions.
    let appended = schema.connect()?.append(
        &StreamId::new("order", "o-1"),
        ExpectedVersion::Any,
        &[NewEvent::new("order.paid", 1, "{}")],
    )?;
    assert_eq!(appended.positions[0].get(), 6);

    // A dropped trigger fails verify.
    let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
    client.batch_execute(&format!(
        "DROP TRIGGER events_refuse_change ON \"{}\".events",
        second.name
    ))?;
    let out = run(["verify", &url, "--schema", &second.name])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("events_refuse_change"),
        "{}",
        stdout(&out)
    );
    Ok(())
}

#[test]
fn copy_refuses_a_target_that_is_not_a_prefix_of_the_source() -> TestResult {
    let (_dir, db) = sqlite_store()?;
    let (_dir2, other) = sqlite_store()?; // same shape, other event ids
    let out = run(["copy", &db, &other])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("TO is not an interrupted copy of FROM"),
        "{}",
        stderr(&out)
    );
    Ok(())
}
