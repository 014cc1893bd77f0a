//! `eventsource verify`: structural and tamper checks of a whole store, streamed.
//!
//! - opening the store runs the library's own checks: tables and the append-only
//!   triggers present and unaltered (`StoreError::Damaged` otherwise), schema known;
//! - SQLite: `PRAGMA quick_check` (the file's b-trees and indexes agree);
//! - the library's `Verify::chain`, in constant memory: every event checked against its
//!   hash and the one before (an edited, deleted, inserted or reordered row), positions
//!   without gaps, each stream's versions 1, 2, 3, ..., every payload and metadata JSON,
//!   every event id a UUID, the chain's head and count, and a checkpoint kept elsewhere
//!   (`--checkpoint POSITION:HASH`).
//!
//! The library's `Verify` (does every event still decode?) needs the application's event
//! types, which a command-line tool does not have.

use std::io::Write as _;
use std::process::ExitCode;

use eventsource::{ChainHash, ChainReport, Inspect, Position, ProjectionStore, StoreError, Verify};
use serde_json::json;

use crate::error::CliError;
use crate::output::{json_line, progress};
use crate::target::{self, Store, on_store};

/// A checkpoint given on the command line: `POSITION:HASH`.
pub fn parse_checkpoint(text: &str) -> Result<(Position, ChainHash), String> {
    let (position, hash) = text
        .split_once(':')
        .ok_or_else(|| format!("expected POSITION:HASH, got `{text}`"))?;
    let position = position
        .parse::<u64>()
        .map_err(|e| format!("the position `{position}`: {e}"))?;
    let hash = hash.parse::<ChainHash>().map_err(|e| e.to_string())?;
    Ok((Position::new(position), hash))
}

#[derive(Debug, Default)]
struct Report {
    streams: u64,
    problems: Vec<String>,
    chain: Option<ChainReport>,
}

impl Report {
    fn sound(&self) -> bool {
        self.problems.is_empty() && self.chain.as_ref().is_none_or(ChainReport::is_sound)
    }

    fn problem_count(&self) -> u64 {
        self.problems.len() as u64 + self.chain.as_ref().map_or(0, |c| c.problem_count)
    }
}

pub fn run(
    target_arg: &str,
    schema: &str,
    json: bool,
    checkpoint: Option<(Position, ChainHash)>,
) -> Result<ExitCode, CliError> {
    let mut report = Report::default();
    match target::open(target_arg, schema) {
        Ok(store) => {
            if let Store::Sqlite(sqlite) = &store {
                quick_check(sqlite, &mut report)?;
            }
            report.streams = on_store!(&store, s => s.summary())?.streams;
            report.chain = Some(on_store!(&store, s => walk(s, json, checkpoint))?);
        }
        Err(CliError::Open {
            source: StoreError::Damaged { missing, .. },
            ..
        }) => {
            report.problems.push(format!(
                "the store is damaged: missing or altered {}",
                missing.join(", ")
            ));
        }
        Err(e) => return Err(e),
    }
    write(&report, json)?;
    Ok(if report.sound() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write(report: &Report, json: bool) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let chain = report.chain.as_ref();
    let problems: Vec<String> = report
        .problems
        .iter()
        .cloned()
        .chain(
            chain
                .into_iter()
                .flat_map(|c| c.problems.iter().map(ToString::to_string)),
        )
        .collect();
    let events = chain.map_or(0, |c| c.events);
    let checkpoint = chain.and_then(ChainReport::checkpoint);
    if json {
        json_line(
            &mut out,
            &json!({
                "sound": report.sound(),
                "events": events,
                "streams": report.streams,
                "chain_starts_at": chain.and_then(|c| c.head).map(|h| h.starts_at.get()),
                "unchained": chain.map_or(0, |c| c.unchained),
                "checkpoint": checkpoint.map(|(p, h)| json!({"position": p.get(), "hash": h.to_string()})),
                "problems": problems,
                "problems_not_listed": report.problem_count().saturating_sub(problems.len() as u64),
            }),
        )?;
        return Ok(());
    }
    if report.sound() {
        let starts = chain.and_then(|c| c.head).map_or(1, |h| h.starts_at.get());
        let unchained = chain.map_or(0, |c| c.unchained);
        writeln!(
            out,
            "sound: {events} events in {} streams, hash chain intact from position {starts}{}, positions and stream versions contiguous, every row well-formed, triggers intact",
            report.streams,
            if unchained > 0 {
                format!(" ({unchained} older events stored before the chain)")
            } else {
                String::new()
            }
        )?;
    } else {
        for problem in &problems {
            writeln!(out, "problem: {problem}")?;
        }
        let not_listed = report.problem_count().saturating_sub(problems.len() as u64);
        if not_listed > 0 {
            writeln!(out, "... and {not_listed} more problems")?;
        }
        writeln!(
            out,
            "NOT SOUND: {} problems in {events} events checked",
            report.problem_count()
        )?;
    }
    if let Some((position, hash)) = checkpoint {
        writeln!(
            out,
            "checkpoint: {position}:{hash} (keep it elsewhere; `verify --checkpoint {position}:{hash}` checks the store still has it)"
        )?;
    }
    Ok(())
}

fn quick_check(store: &eventsource::SqliteStore, report: &mut Report) -> Result<(), CliError> {
    let lines: Vec<String> = store.read(|conn| {
        conn.prepare("PRAGMA quick_check")?
            .query_map([], |row| row.get(0))?
            .collect()
    })?;
    for line in lines.into_iter().filter(|line| line != "ok") {
        report.problems.push(format!("sqlite quick_check: {line}"));
    }
    Ok(())
}

fn walk<S: ProjectionStore>(
    store: &S,
    json: bool,
    checkpoint: Option<(Position, ChainHash)>,
) -> Result<ChainReport, CliError> {
    let bar = progress(store.head()?.get(), "verify", json);
    let mut verify = Verify::chain(store).progress(|p| bar.set_position(p.position.get()));
    if let Some((position, hash)) = checkpoint {
        verify = verify.checkpoint(position, hash);
    }
    let report = verify.run()?;
    bar.finish_and_clear();
    Ok(report)
}
