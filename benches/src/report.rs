//! Printing: the machine, and one table row per measurement.

use std::error::Error;
use std::time::Duration;

use crate::Options;
use crate::raw::Table;

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// How many times each side of a comparison runs, interleaved.
pub const ROUNDS: usize = 3;

/// Prints what the figures came from, and the table's header.
pub fn machine(options: &Options) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!("machine: {cpu}, {cores} cores; scale {}", options.scale);
    println!(
        "each side runs {ROUNDS} times, interleaved (eventsource, raw on our table, raw on the \
         minimal table, eventsource, ...): figures are medians, ratios the median of the \
         per-round ratios with their range (min-max)"
    );
    println!();
    cells([
        "workload",
        "eventsource",
        "raw, our table",
        "raw, minimal table",
        "eventsource / raw, our table (library overhead)",
        "eventsource / raw, minimal (design cost)",
    ]);
    cells(["---"; 6]);
}

/// Events or commands per second.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let count = count as f64;
    count / elapsed.as_secs_f64().max(1e-9)
}

/// One figure per round of each side of a comparison.
#[derive(Debug)]
pub struct Rounds<T> {
    /// eventsource.
    pub ours: Vec<T>,
    /// Raw rusqlite on the library's table.
    pub same: Vec<T>,
    /// Raw rusqlite on the minimal table.
    pub minimal: Vec<T>,
}

impl<T> Rounds<T> {
    /// Each figure through `f`.
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> Rounds<U> {
        Rounds {
            ours: self.ours.iter().map(&mut f).collect(),
            same: self.same.iter().map(&mut f).collect(),
            minimal: self.minimal.iter().map(&mut f).collect(),
        }
    }
}

/// Runs the sides [`ROUNDS`] times, interleaved: eventsource, raw on our table, raw on
/// the minimal table, eventsource, ... so that load from elsewhere on the machine hits
/// all alike. Each closure gets the round's index.
///
/// # Errors
/// The first error of a side.
pub fn interleaved<T>(
    mut ours: impl FnMut(usize) -> Result<T>,
    mut raw: impl FnMut(Table, usize) -> Result<T>,
) -> Result<Rounds<T>> {
    let mut rounds = Rounds {
        ours: Vec::new(),
        same: Vec::new(),
        minimal: Vec::new(),
    };
    for round in 0..ROUNDS {
        rounds.ours.push(ours(round)?);
        rounds.same.push(raw(Table::Ours, round)?);
        rounds.minimal.push(raw(Table::Minimal, round)?);
    }
    Ok(rounds)
}

/// The median (the upper one of an even count; 0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `num / den` per round: the median and the range, as `0.62 (0.58-0.66)`.
pub fn ratio(num: &[f64], den: &[f64]) -> String {
    let mut r: Vec<f64> = num.iter().zip(den).map(|(a, b)| a / b.max(1e-9)).collect();
    r.sort_by(f64::total_cmp);
    match (r.first(), r.last()) {
        (Some(lo), Some(hi)) => format!("{:.2} ({lo:.2}-{hi:.2})", median(&r)),
        _ => String::new(),
    }
}

/// A throughput row (higher is better): the medians and both ratios, eventsource / raw.
pub fn throughput(name: &str, unit: &str, r: &Rounds<f64>) {
    cells([
        name,
        &format!("{:.0} {unit}/s", median(&r.ours)),
        &format!("{:.0} {unit}/s", median(&r.same)),
        &format!("{:.0} {unit}/s", median(&r.minimal)),
        &ratio(&r.ours, &r.same),
        &ratio(&r.ours, &r.minimal),
    ]);
}

/// A row of the table: the workload, then five cells.
pub fn cells(cells: [&str; 6]) {
    println!("| {} |", cells.join(" | "));
}

/// A row with one raw column: eventsource, raw (on our table) and their ratio; the
/// minimal table's cells empty.
pub fn row(name: &str, ours: &str, raw: &str, ratio: &str) {
    cells([name, ours, raw, "", ratio, ""]);
}

/// Peak resident memory since the last [`reset_peak_rss`], in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak-RSS counter (Linux: `echo 5 > /proc/self/clear_refs`).
pub fn reset_peak_rss() {
    // Not fatal where unsupported: the figure is then the process's peak so far.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The `p`th percentile (0..=100) of sorted durations, in microseconds.
pub fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[idx].as_secs_f64() * 1e6
}
