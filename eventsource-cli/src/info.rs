//! `eventsource info`: what a store is and holds.

use std::io::Write as _;

use eventsource::{EventStore, Inspect, Position, ProjectionStore, Timestamp};
use serde_json::json;

use crate::error::CliError;
use crate::output::{json_line, time};
use crate::target::{Store, on_store};

/// Where and when an event is.
#[derive(Clone, Copy)]
pub struct Mark {
    pub position: Position,
    pub recorded_at: Timestamp,
}

/// The first event after `after`.
pub fn first_after(store: &impl EventStore, after: Position) -> Result<Option<Mark>, CliError> {
    let mut mark = None;
    store.read_all_with(after, 1, &mut |e| {
        mark = Some(Mark {
            position: e.position,
            recorded_at: e.recorded_at,
        });
        Ok(())
    })?;
    Ok(mark)
}

pub fn run(store: &Store, json: bool) -> Result<(), CliError> {
    on_store!(store, s => info(s, json))
}

fn info<S: Inspect + ProjectionStore>(store: &S, json: bool) -> Result<(), CliError> {
    let summary = store.summary()?;
    let first = first_after(store, Position::START)?;
    let head = store.head()?;
    let last = match head.get().checked_sub(1) {
        Some(before) => first_after(store, Position::new(before))?,
        None => None,
    };
    let checkpoints = store.checkpoints()?;
    let mut out = std::io::stdout().lock();
    if json {
        let mark = |m: Option<Mark>| {
            m.map(
                |m| json!({"position": m.position.get(), "recorded_at": m.recorded_at.to_string()}),
            )
        };
        let projections: Vec<_> = checkpoints
            .iter()
            .map(|c| {
                json!({"name": c.name, "version": c.version, "position": c.position.get(),
                       "lag": c.lag, "updated_at": c.updated_at.to_string()})
            })
            .collect();
        json_line(
            &mut out,
            &json!({
                "backend": summary.backend,
                "schema_version": summary.schema_version,
                "events": summary.events,
                "streams": summary.streams,
                "size_bytes": summary.size_bytes,
                "first": mark(first),
                "last": mark(last),
                "projections": projections,
            }),
        )?;
        return Ok(());
    }
    let position =
        |m: Option<Mark>| m.map_or_else(|| "-".to_owned(), |m| m.position.get().to_string());
    writeln!(out, "backend:         {}", summary.backend)?;
    writeln!(out, "schema version:  {}", summary.schema_version)?;
    writeln!(out, "events:          {}", summary.events)?;
    writeln!(out, "streams:         {}", summary.streams)?;
    writeln!(
        out,
        "size:            {} ({} bytes)",
        human_bytes(summary.size_bytes),
        summary.size_bytes
    )?;
    writeln!(
        out,
        "first position:  {} at {}",
        position(first),
        time(first.map(|m| m.recorded_at))
    )?;
    writeln!(
        out,
        "last position:   {} at {}",
        position(last),
        time(last.map(|m| m.recorded_at))
    )?;
    if checkpoints.is_empty() {
        writeln!(out, "projections:     none")?;
    } else {
        writeln!(out, "projections:")?;
        for c in &checkpoints {
            writeln!(
                out,
                "  {} v{}: at position {} ({} behind), updated {}",
                c.name,
                c.version,
                c.position.get(),
                c.lag,
                c.updated_at
            )?;
        }
    }
    Ok(())
}

/// `bytes` in KiB, MiB or GiB with one decimal.
#[allow(
    clippy::cast_precision_loss,
    reason = "a size for people, to one decimal"
)]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
