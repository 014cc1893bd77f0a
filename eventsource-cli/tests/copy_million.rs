//! `eventsource copy` of a 1,000,000-event store, SQLite -> PostgreSQL -> SQLite, with
//! the first copy killed (SIGKILL) midway and resumed: every event compared through the
//! API at the end. The million runs in release builds (`cargo test --release -p
//! eventsource-cli`); a debug build runs the same test with 100,000 events (a debug
//! SQLite is several times slower). `EVENTSOURCE_CLI_COPY_EVENTS` sets another size.

mod common;

use std::time::{Duration, Instant};

use common::{Schema, TestResult, eventsource, fill, pg_url, run, same_events, stderr};
use eventsource::{ProjectionStore, SqliteOptions, SqliteStore, Synchronous};

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a million events: run in release, `cargo test --release -p eventsource-cli`"
)]
fn a_million_events_copy_to_postgres_and_back_exactly_across_a_kill() -> TestResult {
    copy_round_trip(1_000_000)
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "the release build runs the million")]
fn a_hundred_thousand_events_copy_to_postgres_and_back_exactly_across_a_kill() -> TestResult {
    copy_round_trip(100_000)
}

fn copy_round_trip(default_count: u64) -> TestResult {
    let Some(url) = pg_url() else { return Ok(()) };
    let count: u64 = match std::env::var("EVENTSOURCE_CLI_COPY_EVENTS") {
        Ok(n) => n.parse()?,
        Err(_) => default_count,
    };
    let dir = tempfile::tempdir()?;
    let source_path = dir.path().join("source.db");
    let started = Instant::now();
    {
        let source = SqliteStore::open_with(
            &source_path,
            SqliteOptions::new().synchronous(Synchronous::Normal),
        )?;
        fill(&source, count, 1_000)?;
    }
    eprintln!("filled {count} events in {:?}", started.elapsed());
    let source = source_path.to_str().ok_or("path not UTF-8")?;
    let schema = Schema::new(&url);

    // The first copy, killed once the target holds some events but not all.
    let mut child = eventsource(["copy", source, &url, "--schema", &schema.name])
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let target = loop {
        if let Ok(store) = schema.connect() {
            break store;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let deadline = Instant::now() + Duration::from_mins(5);
    while target.head()?.get() < count / 10 {
        assert!(Instant::now() < deadline, "the copy made no progress");
        assert!(
            child.try_wait()?.is_none(),
            "the copy ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    let interrupted = target.head()?.get();
    eprintln!(
        "killed the copy at position {interrupted} after {:?}",
        started.elapsed()
    );
    assert!(interrupted < count, "the copy finished before the kill");

    // Resumed: it goes on after what is there.
    let resumed = run(["copy", source, &url, "--schema", &schema.name])?;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let report = stderr(&resumed);
    assert!(
        report.contains(&format!("up to position {interrupted}: going on after it")),
        "{report}"
    );
    assert!(
        report.contains(&format!("copied {} events", count - interrupted)),
        "{report}"
    );
    assert!(
        report.contains(&format!("both hold {count} events")),
        "{report}"
    );
    eprintln!("resumed copy done after {:?}", started.elapsed());

    // And back into a new SQLite file.
    let back_path = dir.path().join("back.db");
    let back = back_path.to_str().ok_or("path not UTF-8")?;
    let copied = run(["copy", &url, back, "--schema", &schema.name])?;
    assert!(copied.status.success(), "{}", stderr(&copied));
    eprintln!("copied back after {:?}", started.elapsed());

    let source = SqliteStore::open(source)?;
    assert_eq!(same_events(&source, &target)?, count);
    assert_eq!(same_events(&source, &SqliteStore::open(back)?)?, count);
    eprintln!("compared after {:?}", started.elapsed());
    Ok(())
}
