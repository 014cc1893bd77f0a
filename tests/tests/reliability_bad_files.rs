//! Bad files and environments, beyond `sqlite_store.rs` (a directory, a file that is not
//! SQLite, another application's database, a newer schema): a read-only file, a full
//! disk, a truncated or damaged file, a missing folder, a write lock held by someone
//! else. Each gives a typed error; nothing partial is stored; the file is left as it was
//! and works again once the cause is gone.
//!
//! The tests run as root, for whom permission bits do not stop a write: a read-only file
//! is made with `chattr +i` (the immutable attribute, which stops root too; the test
//! says `skipped` where the file system does not support it) and, everywhere, with
//! SQLite's `query_only` pragma. A full disk is SQLite's `max_page_count`.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use eventsource::{
    AppendError, EventStore, ExecuteError, ExpectedVersion, NewEvent, Position, ReadError,
    Repository, SqliteOptions, SqliteStore, StoreError, StreamId, Version,
};
use eventsource_tests::reliability::sqlite_rows;
use eventsource_tests::{Account, TempStore};
use rusqlite::ErrorCode;

type TestResult = Result<(), Box<dyn Error>>;

fn note(n: usize, pad: usize) -> NewEvent {
    NewEvent::new(
        "note.added",
        1,
        format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(pad)),
    )
}

/// The SQLite error code inside a store error, if it is one.
fn store_code(e: &StoreError) -> Option<ErrorCode> {
    match e {
        StoreError::Sqlite(e) => e.sqlite_error_code(),
        _ => None,
    }
}

fn append_code(result: Result<eventsource::AppendResult, AppendError>) -> Option<ErrorCode> {
    match result {
        Err(AppendError::Store(e)) => store_code(&e),
        other => panic!("expected a store error, got {other:?}"),
    }
}

/// A store file with an opened account (`account/a`, 100 deposited) and five notes,
/// closed, so that everything is in the main file.
fn a_closed_store() -> Result<TempStore, Box<dyn Error>> {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let accounts = Repository::<Account, _>::new(&store);
    accounts.execute("a", |a| a.open("ann"))?;
    accounts.execute("a", |a| a.deposit(100))?;
    let batch: Vec<NewEvent> = (0..5).map(|n| note(n, 10)).collect();
    store.append(
        &StreamId::new("note", "n"),
        ExpectedVersion::NoStream,
        &batch,
    )?;
    Ok(tmp)
}

/// Checks that `store` reads everything `a_closed_store` wrote.
fn reads_everything(store: &SqliteStore) -> TestResult {
    let loaded = Repository::<Account, _>::new(store).load("a")?;
    assert_eq!(
        (loaded.state.balance, loaded.version),
        (100, Version::new(2))
    );
    assert_eq!(store.read_all(Position::START).count(), 7);
    Ok(())
}

/// Removes the immutable attribute again, whatever happens in the test.
struct Immutable(PathBuf);

impl Immutable {
    /// `chattr +i path`, or `None` when the file system or the user cannot.
    fn set(path: &Path) -> Option<Self> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        // As root a file with the attribute refuses writes; make sure it does here.
        let refuses = ok && fs::OpenOptions::new().append(true).open(path).is_err();
        if ok && !refuses {
            drop(Immutable(path.to_owned()));
        }
        refuses.then(|| Immutable(path.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_file_reads_and_refuses_appends_with_a_typed_error() -> TestResult {
    let tmp = a_closed_store()?;
    let bytes = fs::read(&tmp.path)?;
    let Some(immutable) = Immutable::set(&tmp.path) else {
        eprintln!("skipped: `chattr +i` is not available here");
        return Ok(());
    };
    let store = SqliteStore::open(&tmp.path)?;
    reads_everything(&store)?;
    let s = StreamId::new("note", "n");
    let code = append_code(store.append(&s, ExpectedVersion::Any, &[note(9, 10)]));
    assert_eq!(code, Some(ErrorCode::ReadOnly));
    match Repository::<Account, _>::new(&store).execute("a", |a| a.deposit(1)) {
        Err(ExecuteError::Append(AppendError::Store(e))) => {
            assert_eq!(store_code(&e), Some(ErrorCode::ReadOnly));
        }
        other => panic!("expected a read-only error, got {other:?}"),
    }
    reads_everything(&store)?;
    drop(store);
    assert_eq!(fs::read(&tmp.path)?, bytes, "the read-only file changed");

    drop(immutable);
    let store = SqliteStore::open(&tmp.path)?;
    store.append(&s, ExpectedVersion::Exact(Version::new(5)), &[note(9, 10)])?;
    assert_eq!(store.read_all(Position::START).count(), 8);
    Ok(())
}

#[test]
fn a_query_only_connection_refuses_appends_with_a_typed_error() -> TestResult {
    let tmp = a_closed_store()?;
    let rows = sqlite_rows(&tmp.path)?;
    let options =
        SqliteOptions::new().on_connect(|conn| conn.pragma_update(None, "query_only", true));
    let store = SqliteStore::open_with(&tmp.path, options)?;
    reads_everything(&store)?;
    let code = append_code(store.append(
        &StreamId::new("note", "n"),
        ExpectedVersion::Any,
        &[note(9, 10)],
    ));
    assert_eq!(code, Some(ErrorCode::ReadOnly));
    assert_eq!(sqlite_rows(&tmp.path)?, rows);
    Ok(())
}

/// Appends batches of 10 events of about 2 KiB until the store refuses one; returns how
/// many were stored and the refused batch.
fn fill<S: EventStore>(
    store: &S,
    s: &StreamId,
) -> Result<(u64, Vec<NewEvent>, AppendError), Box<dyn Error>> {
    let mut stored = 0;
    for round in 0..1_000 {
        let batch: Vec<NewEvent> = (0..10).map(|i| note(round * 10 + i, 2_000)).collect();
        match store.append(s, ExpectedVersion::Exact(Version::new(stored)), &batch) {
            Ok(appended) => stored = appended.stream_version.get(),
            Err(e) => return Ok((stored, batch, e)),
        }
    }
    Err("the store never filled up".into())
}

#[test]
fn a_full_disk_refuses_the_whole_append_and_the_store_recovers() -> TestResult {
    let tmp = TempStore::new()?;
    let limited =
        SqliteOptions::new().on_connect(|conn| conn.pragma_update(None, "max_page_count", 64));
    let store = SqliteStore::open_with(&tmp.path, limited)?;
    let s = StreamId::new("note", "full");
    let (stored, refused, err) = fill(&store, &s)?;
    assert!(stored > 0, "nothing fit");
    match err {
        AppendError::Store(e) => assert_eq!(store_code(&e), Some(ErrorCode::DiskFull), "{e:?}"),
        other => panic!("expected a full disk, got {other:?}"),
    }
    // Nothing of the refused batch is stored; everything acknowledged reads back.
    assert_eq!(store.stream_version(&s)?, Version::new(stored));
    let events: Vec<_> = store
        .read_stream(&s, Version::new(1))
        .collect::<Result<_, _>>()?;
    assert_eq!(events.len() as u64, stored);
    // Still full: the same batch is refused again, the same way.
    let again = store.append(&s, ExpectedVersion::Exact(Version::new(stored)), &refused);
    assert_eq!(append_code(again), Some(ErrorCode::DiskFull));
    // A command through the repository fails the same way and stores nothing.
    let accounts = Repository::<Account, _>::new(&store);
    let big_owner = "o".repeat(100_000);
    match accounts.execute("a", |a| a.open(&big_owner)) {
        Err(ExecuteError::Append(AppendError::Store(e))) => {
            assert_eq!(store_code(&e), Some(ErrorCode::DiskFull));
        }
        other => panic!("expected a full disk, got {other:?}"),
    }
    assert_eq!(accounts.load("a")?.version, Version::NONE);
    let rows = sqlite_rows(&tmp.path)?;
    assert_eq!(rows.len() as u64, stored);
    let check: String =
        rusqlite::Connection::open(&tmp.path)?
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(check, "ok");
    drop(store);

    // Room again: the refused batch goes in after what was there.
    let store = SqliteStore::open(&tmp.path)?;
    let appended = store.append(&s, ExpectedVersion::Exact(Version::new(stored)), &refused)?;
    assert_eq!(appended.stream_version, Version::new(stored + 10));
    assert_eq!(sqlite_rows(&tmp.path)?[..rows.len()], rows[..]);
    accounts_open_after_the_disk_has_room(&store)?;
    Ok(())
}

fn accounts_open_after_the_disk_has_room(store: &SqliteStore) -> TestResult {
    let accounts = Repository::<Account, _>::new(store);
    accounts.execute("a", |a| a.open("ann"))?;
    assert_eq!(accounts.load("a")?.version, Version::new(1));
    Ok(())
}

#[test]
fn a_full_in_memory_store_refuses_the_whole_append_and_keeps_reading() -> TestResult {
    let limited =
        SqliteOptions::new().on_connect(|conn| conn.pragma_update(None, "max_page_count", 32));
    let store = SqliteStore::in_memory_with(limited)?;
    let s = StreamId::new("note", "full");
    let (stored, _, err) = fill(&store, &s)?;
    match err {
        AppendError::Store(e) => assert_eq!(store_code(&e), Some(ErrorCode::DiskFull), "{e:?}"),
        other => panic!("expected a full disk, got {other:?}"),
    }
    assert_eq!(store.stream_version(&s)?, Version::new(stored));
    assert_eq!(store.read_all(Position::START).count() as u64, stored);
    // A small append may still fit in the pages the refused one left free.
    let small = store.append(
        &s,
        ExpectedVersion::Exact(Version::new(stored)),
        &[note(0, 0)],
    );
    if let Err(e) = small {
        assert!(matches!(e, AppendError::Store(_)), "{e:?}");
    }
    Ok(())
}

#[test]
fn a_truncated_store_file_gives_typed_errors_and_is_left_untouched() -> TestResult {
    let tmp = TempStore::new()?;
    let store = SqliteStore::open(&tmp.path)?;
    let batch: Vec<NewEvent> = (0..200).map(|n| note(n, 500)).collect();
    store.append(
        &StreamId::new("note", "n"),
        ExpectedVersion::NoStream,
        &batch,
    )?;
    drop(store);
    let full = fs::read(&tmp.path)?;
    assert!(full.len() > 16 * 4096, "{} bytes", full.len());
    // Cut in the middle of the table's pages, as a copy cut short would.
    let cut = &full[..full.len() / 2];
    fs::write(&tmp.path, cut)?;

    // Refused on open (what happens now: the schema pages are gone), or, if a store
    // opens lazily, on first use.
    match SqliteStore::open(&tmp.path) {
        Err(e) => assert_eq!(store_code(&e), Some(ErrorCode::DatabaseCorrupt), "{e:?}"),
        Ok(store) => {
            let s = StreamId::new("note", "n");
            let read: Result<Vec<_>, _> = store.read_stream(&s, Version::new(1)).collect();
            match read {
                Err(ReadError::Store(e)) => {
                    assert_eq!(store_code(&e), Some(ErrorCode::DatabaseCorrupt), "{e:?}");
                }
                other => panic!(
                    "expected a corrupt database, got {:?}",
                    other.map(|v| v.len())
                ),
            }
            let code = append_code(store.append(&s, ExpectedVersion::Any, &[note(0, 0)]));
            assert_eq!(code, Some(ErrorCode::DatabaseCorrupt));
        }
    }
    assert_eq!(fs::read(&tmp.path)?, cut, "the damaged file was changed");
    Ok(())
}

#[test]
fn a_sqlite_header_followed_by_garbage_is_refused_and_left_untouched() -> TestResult {
    let tmp = TempStore::new()?;
    let mut bytes = b"SQLite format 3\0".to_vec();
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    while bytes.len() < 8192 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(&tmp.path, &bytes)?;
    let err = SqliteStore::open(&tmp.path).err().ok_or("opened garbage")?;
    assert!(
        matches!(&err, StoreError::NotAStore { reason, .. } if reason.contains("not a SQLite database")),
        "{err:?}"
    );
    assert_eq!(fs::read(&tmp.path)?, bytes);
    Ok(())
}

#[test]
fn an_empty_file_becomes_a_store() -> TestResult {
    let tmp = TempStore::new()?;
    fs::write(&tmp.path, b"")?;
    let store = SqliteStore::open(&tmp.path)?;
    store.append(
        &StreamId::new("note", "n"),
        ExpectedVersion::NoStream,
        &[note(1, 1)],
    )?;
    assert_eq!(store.read_all(Position::START).count(), 1);
    Ok(())
}

#[test]
fn a_missing_folder_is_a_typed_error_and_nothing_is_created() -> TestResult {
    let tmp = TempStore::new()?;
    let path = tmp.dir.path().join("no").join("such").join("store.db");
    let err = SqliteStore::open(&path)
        .err()
        .ok_or("opened in a missing folder")?;
    assert_eq!(store_code(&err), Some(ErrorCode::CannotOpen), "{err:?}");
    assert!(!tmp.dir.path().join("no").exists());
    Ok(())
}

#[test]
fn a_write_lock_held_elsewhere_is_a_typed_busy_error_and_passes() -> TestResult {
    let tmp = a_closed_store()?;
    let options = SqliteOptions::new().busy_timeout(Duration::from_millis(50));
    let store = SqliteStore::open_with(&tmp.path, options)?;
    let rows = sqlite_rows(&tmp.path)?;
    let blocker = rusqlite::Connection::open(&tmp.path)?;
    blocker.execute_batch("BEGIN IMMEDIATE")?;

    let s = StreamId::new("note", "n");
    let code = append_code(store.append(&s, ExpectedVersion::Any, &[note(9, 1)]));
    assert_eq!(code, Some(ErrorCode::DatabaseBusy));
    match Repository::<Account, _>::new(&store).execute("a", |a| a.deposit(1)) {
        Err(ExecuteError::Append(AppendError::Store(e))) => {
            assert_eq!(store_code(&e), Some(ErrorCode::DatabaseBusy));
        }
        other => panic!("expected a busy error, got {other:?}"),
    }
    // Readers are not blocked by a writer (WAL).
    reads_everything(&store)?;
    blocker.execute_batch("ROLLBACK")?;
    assert_eq!(sqlite_rows(&tmp.path)?, rows);

    store.append(&s, ExpectedVersion::Exact(Version::new(5)), &[note(9, 1)])?;
    Repository::<Account, _>::new(&store).execute("a", |a| a.deposit(1))?;
    assert_eq!(store.read_all(Position::START).count(), 9);
    Ok(())
}

#[test]
fn a_store_whose_table_was_dropped_is_refused_and_not_rebuilt() -> TestResult {
    let tmp = a_closed_store()?;
    rusqlite::Connection::open(&tmp.path)?.execute_batch("DROP TABLE events")?;
    match SqliteStore::open(&tmp.path) {
        Err(StoreError::Damaged { missing, .. }) => {
            assert!(missing.contains(&"events".to_owned()), "{missing:?}");
        }
        other => panic!("expected a damaged store, got {other:?}"),
    }
    let tables: i64 = rusqlite::Connection::open(&tmp.path)?.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(tables, 0, "the library silently recreated the table");
    Ok(())
}

#[test]
fn a_store_whose_trigger_was_dropped_is_refused() -> TestResult {
    let tmp = a_closed_store()?;
    rusqlite::Connection::open(&tmp.path)?.execute_batch("DROP TRIGGER events_refuse_delete")?;
    match SqliteStore::open(&tmp.path) {
        Err(e @ StoreError::Damaged { .. }) => {
            assert!(
                e.to_string().contains("missing events_refuse_delete"),
                "{e}"
            );
        }
        other => panic!("expected a damaged store, got {other:?}"),
    }
    Ok(())
}

/// Opens `path`, expects `NotAStore` whose reason contains `reason`, and checks that
/// the file (and no journal or WAL beside it) is byte for byte as before.
fn refused_untouched(path: &Path, reason: &str) -> TestResult {
    let before = fs::read(path)?;
    let err = SqliteStore::open(path)
        .err()
        .ok_or("the file was opened as a store")?;
    assert!(
        matches!(&err, StoreError::NotAStore { reason: r, .. } if r.contains(reason)),
        "{err:?}, expected a reason with {reason:?}"
    );
    assert_eq!(fs::read(path)?, before, "the refused file was written to");
    for suffix in ["-wal", "-journal"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        assert!(
            !side.exists() || fs::metadata(&side)?.len() == 0,
            "{} was written",
            side.display()
        );
    }
    Ok(())
}

#[test]
fn files_too_short_to_be_sqlite_are_refused_and_left_untouched() -> TestResult {
    let tmp = TempStore::new()?;
    for len in [1, 15, 100, 511] {
        fs::write(&tmp.path, vec![b'x'; len])?;
        refused_untouched(&tmp.path, &format!("{len} bytes long"))?;
    }
    // A 1-byte file of a zero byte, which SQLite would take for an empty database.
    fs::write(&tmp.path, [0_u8])?;
    refused_untouched(&tmp.path, "1 bytes long")
}

/// A foreign SQLite database made by a plain connection running `setup`.
fn foreign(path: &Path, setup: &str) -> TestResult {
    let _ = fs::remove_file(path);
    rusqlite::Connection::open(path)?.execute_batch(setup)?;
    Ok(())
}

#[test]
fn foreign_sqlite_files_are_never_stamped_or_given_our_tables() -> TestResult {
    let tmp = TempStore::new()?;
    // No tables, but another application set its user_version: not empty.
    foreign(&tmp.path, "PRAGMA user_version = 7")?;
    refused_untouched(&tmp.path, "user_version 7")?;
    // Our application id on a database with other tables and no schema version.
    foreign(
        &tmp.path,
        "PRAGMA application_id = 1163088451; CREATE TABLE notes (body TEXT)",
    )?;
    refused_untouched(&tmp.path, "schema version 0")?;
    // Our application id and a schema version, but no events table.
    foreign(
        &tmp.path,
        "PRAGMA application_id = 1163088451; PRAGMA user_version = 1; CREATE TABLE notes (body TEXT)",
    )?;
    refused_untouched(&tmp.path, "no `events` table")?;
    // Our application id with a schema version no eventsource writes.
    for bad in ["-1", "-2147483648", "0"] {
        foreign(
            &tmp.path,
            &format!(
                "PRAGMA application_id = 1163088451; PRAGMA user_version = {bad}; CREATE TABLE events (x)"
            ),
        )?;
        refused_untouched(&tmp.path, &format!("schema version {bad}"))?;
    }
    // An empty database with only an application id of its own.
    foreign(&tmp.path, "PRAGMA application_id = 42")?;
    refused_untouched(&tmp.path, "another application")?;
    // A database that SQLite made empty (a page, no settings) still becomes a store.
    foreign(&tmp.path, "VACUUM")?;
    let store = SqliteStore::open(&tmp.path)?;
    store.append(
        &StreamId::new("note", "n"),
        ExpectedVersion::NoStream,
        &[note(1, 1)],
    )?;
    Ok(())
}

/// Small appends per round of [`a_full_group`].
const GROUP_SMALL: usize = 4;

/// `GROUP_SMALL` threads append a small event each and one thread a `big`-byte event,
/// all to fresh streams, while another connection holds the write lock: a first append
/// waits for the lock and the others queue behind it, so that they are committed in one
/// group once the lock is released. Then every outcome is checked against the store:
/// `Ok` means stored as acknowledged, an error (a full disk) means nothing stored.
/// Returns (small appends stored, big appends refused).
fn a_full_group(
    store: &SqliteStore,
    rounds: usize,
    big: usize,
) -> Result<(usize, usize), Box<dyn Error>> {
    let path = store.path().ok_or("no file")?;
    let blocker = rusqlite::Connection::open(path)?;
    let (mut stored_small, mut refused_big) = (0, 0);
    for round in 0..rounds {
        blocker.execute_batch("BEGIN IMMEDIATE")?;
        let barrier = std::sync::Barrier::new(GROUP_SMALL + 2);
        let outcomes: Vec<(StreamId, Result<eventsource::AppendResult, AppendError>)> =
            std::thread::scope(|s| {
                let lead = s.spawn(move || {
                    let stream = StreamId::new("note", format!("r{round}lead"));
                    let outcome = store.append(&stream, ExpectedVersion::NoStream, &[note(0, 10)]);
                    (stream, outcome)
                });
                let handles: Vec<_> = (0..=GROUP_SMALL)
                    .map(|t| {
                        let barrier = &barrier;
                        s.spawn(move || {
                            let stream = StreamId::new("note", format!("r{round}t{t}"));
                            let pad = if t == GROUP_SMALL { big } else { 500 };
                            barrier.wait();
                            let outcome =
                                store.append(&stream, ExpectedVersion::NoStream, &[note(t, pad)]);
                            (stream, outcome)
                        })
                    })
                    .collect();
                // Let the lead reach the lock and the others queue behind it.
                std::thread::sleep(Duration::from_millis(20));
                barrier.wait();
                std::thread::sleep(Duration::from_millis(80));
                let released = blocker.execute_batch("COMMIT");
                let mut all = eventsource_tests::pg::join_all(handles);
                all.push(lead.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
                released.map(|()| all)
            })?;
        for (t, (stream, outcome)) in outcomes.into_iter().enumerate() {
            let events: Vec<_> = store
                .read_stream(&stream, Version::new(1))
                .collect::<Result<_, _>>()?;
            match outcome {
                Ok(appended) => {
                    assert_eq!(events.len(), 1, "{stream}: acknowledged but not stored");
                    assert_eq!(events[0].position, appended.positions[0], "{stream}");
                    if t < GROUP_SMALL {
                        stored_small += 1;
                    }
                }
                Err(e) => {
                    assert!(
                        events.is_empty(),
                        "{stream}: reported failed ({e}) but stored"
                    );
                    match &e {
                        AppendError::Store(e) => {
                            assert_eq!(store_code(e), Some(ErrorCode::DiskFull), "{stream}: {e:?}");
                        }
                        other => panic!("{stream}: expected a full disk, got {other:?}"),
                    }
                    if t == GROUP_SMALL {
                        refused_big += 1;
                    }
                }
            }
        }
    }
    let check: String = blocker.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    assert_eq!(check, "ok");
    Ok((stored_small, refused_big))
}

/// SQLite's page limit as the full disk: the big append of each group is refused
/// with `DiskFull`, the small ones are stored, and each is told exactly that.
#[test]
fn a_full_disk_in_a_group_commit_tells_every_append_the_truth() -> TestResult {
    let tmp = TempStore::new()?;
    let limited =
        SqliteOptions::new().on_connect(|conn| conn.pragma_update(None, "max_page_count", 300));
    let store = SqliteStore::open_with(&tmp.path, limited)?;
    let (stored_small, refused_big) = a_full_group(&store, 30, 2_000_000)?;
    eprintln!("max_page_count: {stored_small} small appends stored, {refused_big} big refused");
    assert_eq!(refused_big, 30);
    assert_eq!(stored_small, 30 * GROUP_SMALL);
    Ok(())
}

/// A real full disk: the store on an 8 MiB tmpfs, groups with one 9 MB append. On
/// `ENOSPC` SQLite may roll the whole transaction back; the appends of the group that
/// were not the cause are redone and stored, and each is told the truth. Needs root
/// (`mount`); says `skipped` and passes elsewhere.
#[test]
fn a_real_full_disk_in_a_group_commit_tells_every_append_the_truth() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(dir.path())
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "skipped: cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Ok(());
        }
        Err(e) => {
            eprintln!("skipped: cannot run mount: {e}");
            return Ok(());
        }
    }
    let result = (|| -> TestResult {
        let store = SqliteStore::open(dir.path().join("store.db"))?;
        let (stored_small, refused_big) = a_full_group(&store, 20, 9_000_000)?;
        eprintln!("tmpfs: {stored_small} small appends stored, {refused_big} big refused");
        assert_eq!(refused_big, 20);
        // The appends that did not fill the disk are stored, whatever group they shared.
        assert_eq!(stored_small, 20 * GROUP_SMALL);
        Ok(())
    })();
    let unmounted = Command::new("umount").arg(dir.path()).status();
    result?;
    assert!(
        unmounted.is_ok_and(|s| s.success()),
        "could not unmount the tmpfs"
    );
    Ok(())
}
