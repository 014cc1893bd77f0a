//! The hash chain, on a SQLite file and on the PostgreSQL server: every event carries a
//! SHA-256 over its content and the previous event's hash, and `Verify::chain` finds any
//! edit made through a plain connection with the triggers dropped (or disabled) and put
//! back: an edited payload or metadata, a deleted middle or last row, a forged row at the
//! next version, two rows' payloads swapped, each at the right position. A checkpoint
//! kept elsewhere finds what the chain alone cannot: the newest events removed together
//! with the chain's head. A store copied from one backend to the other has the same
//! hashes.

use eventsource::{
    ChainProblemKind, ChainReport, EventStore, ExpectedVersion, Metadata, NewEvent, Position,
    SqliteStore, StreamId, Verify,
};
use eventsource_tests::TempStore;
use eventsource_tests::pg::{self, TestSchema};

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

/// 3 streams x 4 events, appended in batches of 2 (positions 1 to 12).
fn fill(store: &impl EventStore) -> TestResult {
    for round in 0..2 {
        for s in 0..3 {
            let events: Vec<NewEvent> = (0..2)
                .map(|i| {
                    NewEvent::new(
                        "note.added",
                        1,
                        format!(r#"{{"n":{},"s":{s}}}"#, round * 2 + i),
                    )
                    .with_metadata(Metadata::new().correlation_id(format!("c-{s}")))
                })
                .collect();
            store.append(
                &StreamId::new("note", format!("n-{s}")),
                ExpectedVersion::Any,
                &events,
            )?;
        }
    }
    Ok(())
}

/// A filled store on one backend, edited by hand.
trait Backend {
    /// Runs `sql` through a plain connection with the refusing triggers out of the way,
    /// then puts them back as they were (so the store opens again).
    fn tamper(&self, sql: &str) -> TestResult;
    /// `Verify::chain` of the store, with a checkpoint if given.
    fn verify(
        &self,
        checkpoint: Option<(Position, eventsource::ChainHash)>,
    ) -> Fallible<ChainReport>;
    /// Which SQL to use.
    fn is_sqlite(&self) -> bool;
}

struct Sqlite(TempStore);

impl Sqlite {
    fn new() -> Fallible<Self> {
        let tmp = TempStore::new()?;
        fill(&SqliteStore::open(&tmp.path)?)?;
        Ok(Sqlite(tmp))
    }
}

impl Backend for Sqlite {
    fn tamper(&self, sql: &str) -> TestResult {
        let conn = rusqlite::Connection::open(&self.0.path)?;
        let triggers: Vec<(String, String)> = conn
            .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (name, _) in &triggers {
            conn.execute_batch(&format!("DROP TRIGGER {name}"))?;
        }
        conn.execute_batch(sql)?;
        for (_, sql) in &triggers {
            conn.execute_batch(sql)?;
        }
        Ok(())
    }

    fn verify(
        &self,
        checkpoint: Option<(Position, eventsource::ChainHash)>,
    ) -> Fallible<ChainReport> {
        let store = SqliteStore::open(&self.0.path)?;
        let mut verify = Verify::chain(&store);
        if let Some((position, hash)) = checkpoint {
            verify = verify.checkpoint(position, hash);
        }
        Ok(verify.run()?)
    }

    fn is_sqlite(&self) -> bool {
        true
    }
}

struct Postgres(TestSchema);

impl Postgres {
    fn new(url: &str) -> Fallible<Self> {
        let schema = TestSchema::new(url);
        fill(&schema.connect()?)?;
        Ok(Postgres(schema))
    }
}

impl Backend for Postgres {
    fn tamper(&self, sql: &str) -> TestResult {
        self.0.sql(&format!(
            "ALTER TABLE events DISABLE TRIGGER USER; ALTER TABLE chain DISABLE TRIGGER USER; \
             {sql}; ALTER TABLE events ENABLE TRIGGER USER; ALTER TABLE chain ENABLE TRIGGER USER"
        ))?;
        Ok(())
    }

    fn verify(
        &self,
        checkpoint: Option<(Position, eventsource::ChainHash)>,
    ) -> Fallible<ChainReport> {
        let store = self.0.connect()?;
        let mut verify = Verify::chain(&store);
        if let Some((position, hash)) = checkpoint {
            verify = verify.checkpoint(position, hash);
        }
        Ok(verify.run()?)
    }

    fn is_sqlite(&self) -> bool {
        false
    }
}

/// Runs `test` on a fresh filled SQLite file and, when the server is configured, on a
/// fresh filled PostgreSQL schema.
fn on_both(test: impl Fn(&dyn Backend) -> TestResult) -> TestResult {
    test(&Sqlite::new()?)?;
    if let Some(url) = pg::url() {
        test(&Postgres::new(&url)?)?;
    }
    Ok(())
}

/// The first problem's position and kind.
fn first(report: &ChainReport) -> Result<(u64, ChainProblemKind), String> {
    report
        .first_problem()
        .map(|p| (p.position.get(), p.kind.clone()))
        .ok_or_else(|| format!("nothing found: {report}"))
}

#[test]
fn an_untouched_store_verifies_and_gives_a_checkpoint() -> TestResult {
    on_both(|b| {
        let report = b.verify(None)?;
        assert!(report.is_sound(), "{report}");
        assert_eq!((report.events, report.unchained), (12, 0));
        let head = report.head.ok_or("no head")?;
        assert_eq!(
            (head.starts_at.get(), head.position.get(), head.count),
            (1, 12, 12)
        );
        let (position, hash) = report.checkpoint().ok_or("no checkpoint")?;
        assert_eq!((position.get(), hash), (12, head.hash));
        assert!(b.verify(Some((position, hash)))?.is_sound());
        assert!(report.to_string().contains("the chain is intact"));
        Ok(())
    })
}

#[test]
fn an_edited_payload_is_found_at_its_position() -> TestResult {
    on_both(|b| {
        b.tamper(r#"UPDATE events SET payload = '{"n":99,"s":1}' WHERE position = 5"#)?;
        let report = b.verify(None)?;
        assert_eq!(first(&report)?, (5, ChainProblemKind::Edited));
        assert_eq!(report.problem_count, 1, "{report}");
        Ok(())
    })
}

#[test]
fn a_respelled_payload_is_not_an_edit() -> TestResult {
    on_both(|b| {
        // The same JSON value, spelled otherwise.
        b.tamper(r#"UPDATE events SET payload = '{ "s": 1.0, "n" : 0 }' WHERE position = 3"#)?;
        let report = b.verify(None)?;
        assert!(report.is_sound(), "{report}");
        Ok(())
    })
}

#[test]
fn edited_metadata_is_found_at_its_position() -> TestResult {
    on_both(|b| {
        b.tamper(
            r#"UPDATE events SET metadata = '{"correlation_id":"forged"}' WHERE position = 8"#,
        )?;
        assert_eq!(first(&b.verify(None)?)?, (8, ChainProblemKind::Edited));
        Ok(())
    })
}

#[test]
fn a_deleted_middle_row_is_found_at_its_position() -> TestResult {
    on_both(|b| {
        b.tamper("DELETE FROM events WHERE position = 6")?;
        let report = b.verify(None)?;
        assert_eq!(
            first(&report)?,
            (
                6,
                ChainProblemKind::Missing {
                    up_to: Position::new(6)
                }
            )
        );
        // Its stream now lacks a version, and the head counts one event more.
        assert!(
            report
                .problems
                .iter()
                .any(|p| matches!(&p.kind, ChainProblemKind::VersionGap { .. })),
            "{report}"
        );
        assert!(
            report.problems.iter().any(|p| matches!(
                p.kind,
                ChainProblemKind::Count {
                    head: 12,
                    found: 11
                }
            )),
            "{report}"
        );
        Ok(())
    })
}

#[test]
fn a_deleted_last_row_is_found_by_the_head() -> TestResult {
    on_both(|b| {
        b.tamper("DELETE FROM events WHERE position = 12")?;
        let report = b.verify(None)?;
        assert_eq!(
            first(&report)?,
            (
                12,
                ChainProblemKind::Head {
                    head: Position::new(12),
                    last: Position::new(11)
                }
            )
        );
        Ok(())
    })
}

#[test]
fn a_forged_row_at_the_next_version_is_found() -> TestResult {
    let columns = "position, aggregate_type, stream_id, version, event_type, event_version, \
                   event_id, recorded_at, payload, metadata, hash";
    on_both(|b| {
        let (time, hash) = if b.is_sqlite() {
            ("0", "NULL")
        } else {
            ("now()", "NULL")
        };
        b.tamper(&format!(
            "INSERT INTO events ({columns}) VALUES (13, 'note', 'n-0', 5, 'note.added', 1, \
             '0190f2c4-0000-7000-8000-000000000001', {time}, '{{}}', '{{}}', {hash})"
        ))?;
        assert_eq!(first(&b.verify(None)?)?, (13, ChainProblemKind::Unchained));
        Ok(())
    })?;
    on_both(|b| {
        let (time, hash) = if b.is_sqlite() {
            ("0", "randomblob(32)")
        } else {
            ("now()", "sha256('forged')")
        };
        b.tamper(&format!(
            "INSERT INTO events ({columns}) VALUES (13, 'note', 'n-0', 5, 'note.added', 1, \
             '0190f2c4-0000-7000-8000-000000000001', {time}, '{{}}', '{{}}', {hash})"
        ))?;
        let report = b.verify(None)?;
        assert_eq!(first(&report)?.0, 13, "{report}");
        assert!(
            report.problems.iter().all(|p| p.position.get() >= 13),
            "{report}"
        );
        Ok(())
    })
}

#[test]
fn swapped_payloads_are_found_at_both_rows() -> TestResult {
    on_both(|b| {
        b.tamper(
            "CREATE TEMP TABLE swap AS SELECT position, payload FROM events WHERE position IN (4, 9); \
             UPDATE events SET payload = (SELECT payload FROM swap WHERE swap.position = 13 - events.position) \
             WHERE position IN (4, 9)",
        )?;
        let report = b.verify(None)?;
        let edited: Vec<u64> = report
            .problems
            .iter()
            .filter(|p| p.kind == ChainProblemKind::Edited)
            .map(|p| p.position.get())
            .collect();
        assert_eq!(edited, [4, 9], "{report}");
        Ok(())
    })
}

#[test]
fn truncation_with_a_forged_head_is_found_only_by_a_checkpoint() -> TestResult {
    on_both(|b| {
        let (position, hash) = b.verify(None)?.checkpoint().ok_or("no checkpoint")?;
        // The newest two events removed, and the head moved back to match.
        b.tamper(
            "DELETE FROM events WHERE position > 10; \
             UPDATE chain SET position = 10, count = 10, \
               hash = (SELECT hash FROM events WHERE position = 10)",
        )?;
        let alone = b.verify(None)?;
        assert!(alone.is_sound(), "the chain alone cannot see this: {alone}");
        let report = b.verify(Some((position, hash)))?;
        assert_eq!(
            first(&report)?,
            (
                12,
                ChainProblemKind::Checkpoint {
                    expected: hash,
                    found: None
                }
            )
        );
        Ok(())
    })
}

/// The chain head's trigger replaced by one that does nothing is noticed on open, as the
/// events table's triggers are.
#[test]
fn a_chain_trigger_that_does_nothing_is_noticed_on_open() -> TestResult {
    let tmp = TempStore::new()?;
    drop(SqliteStore::open(&tmp.path)?);
    let conn = rusqlite::Connection::open(&tmp.path)?;
    conn.execute_batch(
        "DROP TRIGGER chain_refuse_rewind; \
         CREATE TRIGGER chain_refuse_rewind BEFORE UPDATE ON chain WHEN 0 \
         BEGIN SELECT RAISE(ABORT, 'never'); END",
    )?;
    drop(conn);
    match SqliteStore::open(&tmp.path) {
        Err(eventsource::StoreError::Damaged { missing, .. }) => {
            assert_eq!(missing, ["chain_refuse_rewind (altered)"]);
        }
        other => panic!("expected a damaged store, got {other:?}"),
    }
    if let Some(url) = pg::url() {
        let schema = TestSchema::new(&url);
        drop(schema.connect()?);
        schema.sql(
            "CREATE OR REPLACE FUNCTION chain_refuse_rewind() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        )?;
        match schema.connect() {
            Err(eventsource::StoreError::Damaged { missing, .. }) => {
                assert_eq!(missing, ["chain_refuse_rewind (altered)"]);
            }
            other => panic!("expected a damaged store, got {other:?}"),
        }
    }
    Ok(())
}

/// An untouched store of 1,000,000 events (10,000 streams, appends of 1,000 events
/// across 10 streams each) verifies clean, on both stores.
#[test]
fn a_million_events_verify_clean() -> TestResult {
    fn fill_million(store: &impl EventStore) -> TestResult {
        let mut next = vec![0u64; 10_000];
        for batch in 0..1_000u64 {
            for k in 0..10u64 {
                let s = usize::try_from((batch * 10 + k) % 10_000)?;
                let events: Vec<NewEvent> = (0..100)
                    .map(|i| {
                        NewEvent::new(
                            "note.added",
                            1,
                            format!(
                                r#"{{"n":{},"text":"note {i}","tags":["a","b"],"amount":12.50}}"#,
                                next[s] + i
                            ),
                        )
                    })
                    .collect();
                store.append(
                    &StreamId::new("note", format!("n-{s}")),
                    ExpectedVersion::Any,
                    &events,
                )?;
                next[s] += 100;
            }
        }
        Ok(())
    }
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    fill_million(&store)?;
    let report = Verify::chain(&store).run()?;
    assert!(report.is_sound(), "{report}");
    assert_eq!(report.events, 1_000_000);
    if let Some(url) = pg::url() {
        let schema = TestSchema::new(&url);
        let store = schema.connect()?;
        fill_million(&store)?;
        let report = Verify::chain(&store).run()?;
        assert!(report.is_sound(), "{report}");
        assert_eq!(report.events, 1_000_000);
    }
    Ok(())
}

#[test]
fn the_sqlite_head_moves_every_few_commits_and_when_the_handle_is_dropped() -> TestResult {
    use eventsource::SqliteOptions;

    let tmp = TempStore::new()?;
    let options = || SqliteOptions::new().chain_head_interval(3);
    let stream = StreamId::new("note", "lag");
    let head_of = |report: &ChainReport| {
        report
            .head
            .map(|h| (h.position.get(), h.count, report.after_head))
    };
    let store = SqliteStore::open_with(&tmp.path, options())?;
    for n in 1..=7 {
        store.append(
            &stream,
            ExpectedVersion::Any,
            &[NewEvent::new("note.added", 1, format!(r#"{{"n":{n}}}"#))],
        )?;
    }
    // Moved with the 3rd and the 6th commit; the 7th is past it, covered by its link.
    let report = Verify::chain(&store).run()?;
    assert!(report.is_sound(), "{report}");
    assert_eq!(head_of(&report), Some((6, 6, 1)));
    assert!(
        report
            .to_string()
            .contains("the newest 1 events are past the chain's head at 6")
    );
    drop(store);
    let store = SqliteStore::open_with(&tmp.path, options())?;
    let report = Verify::chain(&store).run()?;
    assert!(report.is_sound(), "{report}");
    assert_eq!(head_of(&report), Some((7, 7, 0)));

    // A handle that is never dropped (a crash) leaves the head behind; the store still
    // verifies, and the next handle moves the head past those events too.
    store.append(
        &stream,
        ExpectedVersion::Any,
        &[NewEvent::new("note.added", 1, "{}")],
    )?;
    std::mem::forget(store);
    let store = SqliteStore::open_with(&tmp.path, SqliteOptions::new().chain_head_interval(1))?;
    let report = Verify::chain(&store).run()?;
    assert!(report.is_sound(), "{report}");
    assert_eq!(head_of(&report), Some((7, 7, 1)));
    store.append(
        &stream,
        ExpectedVersion::Any,
        &[NewEvent::new("note.added", 1, "{}")],
    )?;
    let report = Verify::chain(&store).run()?;
    assert!(report.is_sound(), "{report}");
    assert_eq!(head_of(&report), Some((9, 9, 0)));
    Ok(())
}
