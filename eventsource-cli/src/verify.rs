//! `eventsource verify`: structural checks of a whole store, streamed.
//!
//! - opening the store runs the library's own checks: tables and the append-only
//!   triggers present and unaltered (`StoreError::Damaged` otherwise), schema known;
//! - SQLite: `PRAGMA quick_check` (the file's b-trees and indexes agree);
//! - positions strictly increasing and without gaps, in the order the store reads them;
//! - each stream's versions 1, 2, 3, ... in position order (no gap, no repeat);
//! - every payload is JSON, every metadata a JSON object, every event id a UUID, and
//!   every row readable (the store's `ReadError::Corrupt` otherwise).
//!
//! Memory grows with the number of streams (one version per stream), not of events. The
//! library's `Verify` (does every event still decode?) needs the application's event
//! types, which a command-line tool does not have.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::ExitCode;

use eventsource::{EventId, Metadata, Position, ProjectionStore, ReadError, StoreError};
use serde_json::json;

use crate::error::CliError;
use crate::output::{json_line, progress};
use crate::target::{self, Store, on_store};

/// How many problems are reported in full; later ones are counted.
const MAX_REPORTED: usize = 100;
const PAGE: usize = 1_000;

#[derive(Debug, Default)]
struct Report {
    events: u64,
    streams: u64,
    problems: Vec<String>,
    more: u64,
}

impl Report {
    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_REPORTED {
            self.problems.push(text);
        } else {
            self.more += 1;
        }
    }

    fn sound(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn run(target_arg: &str, schema: &str, json: bool) -> Result<ExitCode, CliError> {
    let mut report = Report::default();
    match target::open(target_arg, schema) {
        Ok(store) => {
            if let Store::Sqlite(sqlite) = &store {
                quick_check(sqlite, &mut report)?;
            }
            on_store!(&store, s => scan(s, &mut report, json))?;
        }
        Err(CliError::Open {
            source: StoreError::Damaged { missing, .. },
            ..
        }) => {
            report.problem(format!(
                "the store is damaged: missing or altered {}",
                missing.join(", ")
            ));
        }
        Err(e) => return Err(e),
    }
    let mut out = std::io::stdout().lock();
    if json {
        json_line(
            &mut out,
            &json!({
                "sound": report.sound(),
                "events": report.events,
                "streams": report.streams,
                "problems": report.problems,
                "problems_not_listed": report.more,
            }),
        )?;
    } else if report.sound() {
        writeln!(
            out,
            "sound: {} events in {} streams, positions and stream versions contiguous, every row well-formed, triggers intact",
            report.events, report.streams
        )?;
    } else {
        for problem in &report.problems {
            writeln!(out, "problem: {problem}")?;
        }
        if report.more > 0 {
            writeln!(out, "... and {} more problems", report.more)?;
        }
        writeln!(
            out,
            "NOT SOUND: {} problems in {} events checked",
            report.problems.len() as u64 + report.more,
            report.events
        )?;
    }
    Ok(if report.sound() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn quick_check(store: &eventsource::SqliteStore, report: &mut Report) -> Result<(), CliError> {
    let lines: Vec<String> = store.read(|conn| {
        conn.prepare("PRAGMA quick_check")?
            .query_map([], |row| row.get(0))?
            .collect()
    })?;
    for line in lines.into_iter().filter(|line| line != "ok") {
        report.problem(format!("sqlite quick_check: {line}"));
    }
    Ok(())
}

fn scan<S: ProjectionStore>(store: &S, report: &mut Report, json: bool) -> Result<(), CliError> {
    let bar = progress(store.head()?.get(), "verify", json);
    // Each stream's last version, keyed by `aggregate_type \0 id` (a NUL is in no
    // stream id).
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut key = String::new();
    let mut after = Position::START;
    loop {
        let mut read = 0;
        let result = store.read_all_with(after, PAGE, &mut |e| {
            read += 1;
            report.events += 1;
            let at = format!(
                "position {} ({}/{} version {})",
                e.position, e.aggregate_type, e.stream_id, e.version
            );
            if e.position.get() != after.get() + 1 {
                if e.position <= after {
                    report.problem(format!("{at}: not after position {after}"));
                } else {
                    report.problem(format!(
                        "{at}: positions {} to {} are missing",
                        after.get() + 1,
                        e.position.get() - 1
                    ));
                }
            }
            after = e.position;
            key.clear();
            key.push_str(e.aggregate_type);
            key.push('\0');
            key.push_str(e.stream_id);
            let last = match versions.get_mut(key.as_str()) {
                Some(last) => last,
                None => versions.entry(key.clone()).or_insert(0),
            };
            if e.version.get() != *last + 1 {
                report.problem(format!(
                    "{at}: the stream's previous version is {last}, so this should be version {}",
                    *last + 1
                ));
            }
            *last = (*last).max(e.version.get());
            if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(e.payload) {
                report.problem(format!("{at}: the payload is not JSON ({err})"));
            }
            if let Err(err) = serde_json::from_str::<Metadata>(e.metadata) {
                report.problem(format!("{at}: the metadata is not a JSON object ({err})"));
            }
            if let Err(err) = e.event_id.parse::<EventId>() {
                report.problem(format!(
                    "{at}: the event id `{}` is not a UUID ({err})",
                    e.event_id
                ));
            }
            Ok(())
        });
        bar.set_position(after.get());
        match result {
            Ok(()) if read < PAGE => break,
            Ok(()) => {}
            Err(ReadError::Corrupt { position, reason }) => {
                report.problem(format!("position {position}: unreadable row: {reason}"));
                match u64::try_from(position)
                    .ok()
                    .map(Position::new)
                    .filter(|&p| p > after)
                {
                    Some(p) => after = p,
                    None => break,
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    bar.finish_and_clear();
    report.streams = versions.len() as u64;
    Ok(())
}
