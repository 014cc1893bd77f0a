//! `eventsource stats`: counts and payload sizes per aggregate type, event type and
//! stored event version, in one streaming pass (memory grows with the number of
//! distinct types, not of events).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;

use eventsource::{Position, ProjectionStore};
use serde_json::json;

use crate::error::CliError;
use crate::info::human_bytes;
use crate::output::{StreamingTable, json_line, progress};
use crate::target::{Store, on_store};

/// Events and payload bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    events: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: usize) {
        self.events += 1;
        self.bytes += bytes as u64;
    }
}

pub fn run(store: &Store, json: bool) -> Result<(), CliError> {
    on_store!(store, s => stats(s, json))
}

fn stats<S: ProjectionStore>(store: &S, json: bool) -> Result<(), CliError> {
    let bar = progress(store.head()?.get(), "stats", json);
    let mut aggregates: HashMap<String, Tally> = HashMap::new();
    let mut versions: HashMap<String, HashMap<u32, Tally>> = HashMap::new();
    let mut total = Tally::default();
    let mut after = Position::START;
    loop {
        let mut read = 0;
        store.read_all_with(after, 1_000, &mut |e| {
            read += 1;
            after = e.position;
            let bytes = e.payload.len();
            total.add(bytes);
            // Look up before inserting: a key is allocated once per distinct type.
            match aggregates.get_mut(e.aggregate_type) {
                Some(t) => t.add(bytes),
                None => aggregates
                    .entry(e.aggregate_type.to_owned())
                    .or_default()
                    .add(bytes),
            }
            match versions.get_mut(e.event_type) {
                Some(by_version) => by_version.entry(e.event_version).or_default().add(bytes),
                None => versions
                    .entry(e.event_type.to_owned())
                    .or_default()
                    .entry(e.event_version)
                    .or_default()
                    .add(bytes),
            }
            Ok(())
        })?;
        bar.set_position(after.get());
        if read < 1_000 {
            break;
        }
    }
    bar.finish_and_clear();
    print(total, aggregates, versions, json)
}

fn print(
    total: Tally,
    aggregates: HashMap<String, Tally>,
    versions: HashMap<String, HashMap<u32, Tally>>,
    json: bool,
) -> Result<(), CliError> {
    let aggregates: BTreeMap<_, _> = aggregates.into_iter().collect();
    let versions: BTreeMap<_, BTreeMap<_, _>> = versions
        .into_iter()
        .map(|(event_type, by_version)| (event_type, by_version.into_iter().collect()))
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        let tally = |t: &Tally| json!({"events": t.events, "payload_bytes": t.bytes});
        let event_types: BTreeMap<_, _> = versions
            .iter()
            .map(|(event_type, by_version)| {
                let sum = by_version.values().fold(Tally::default(), |a, t| Tally {
                    events: a.events + t.events,
                    bytes: a.bytes + t.bytes,
                });
                let by_version: BTreeMap<_, _> =
                    by_version.iter().map(|(v, t)| (v.to_string(), tally(t))).collect();
                (
                    event_type,
                    json!({"events": sum.events, "payload_bytes": sum.bytes, "versions": by_version}),
                )
            })
            .collect();
        let aggregate_types: BTreeMap<_, _> =
            aggregates.iter().map(|(a, t)| (a, tally(t))).collect();
        json_line(
            &mut out,
            &json!({
                "events": total.events,
                "payload_bytes": total.bytes,
                "aggregate_types": aggregate_types,
                "event_types": event_types,
            }),
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{} events, {} of payload",
        total.events,
        human_bytes(total.bytes)
    )?;
    writeln!(out)?;
    let mut table = StreamingTable::new(
        &mut out,
        ["AGGREGATE TYPE", "EVENTS", "PAYLOAD BYTES", "AVG"],
    );
    for (name, t) in &aggregates {
        table.row([
            name.clone(),
            t.events.to_string(),
            t.bytes.to_string(),
            average(t),
        ])?;
    }
    table.flush()?;
    writeln!(out)?;
    let mut table = StreamingTable::new(
        &mut out,
        ["EVENT TYPE", "VERSION", "EVENTS", "PAYLOAD BYTES", "AVG"],
    );
    for (name, by_version) in &versions {
        for (version, t) in by_version {
            table.row([
                name.clone(),
                version.to_string(),
                t.events.to_string(),
                t.bytes.to_string(),
                average(t),
            ])?;
        }
    }
    table.flush()?;
    Ok(())
}

fn average(t: &Tally) -> String {
    t.bytes.checked_div(t.events).unwrap_or(0).to_string()
}
