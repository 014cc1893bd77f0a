//! Printing: the machine, and one table row per measurement.

use std::time::Duration;

use crate::Options;

/// Prints what the figures came from.
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
    println!();
    println!("| workload | eventsource | raw rusqlite | ratio (eventsource / raw) |");
    println!("|---|---|---|---|");
}

/// Events or commands per second.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let count = count as f64;
    count / elapsed.as_secs_f64().max(1e-9)
}

/// A throughput row: higher is better.
pub fn throughput(name: &str, unit: &str, ours: f64, raw: f64) {
    println!(
        "| {name} | {ours:.0} {unit}/s | {raw:.0} {unit}/s | {:.2} |",
        ours / raw.max(1e-9)
    );
}

/// A free-form row.
pub fn row(name: &str, ours: &str, raw: &str, ratio: &str) {
    println!("| {name} | {ours} | {raw} | {ratio} |");
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
