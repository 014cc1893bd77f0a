//! Benchmarks eventsource against hand-written rusqlite doing the same work, on the
//! library's own table and on a minimal one, interleaved in the same run, and prints the
//! medians and the ratios (median and range over the rounds) as a Markdown table.
//!
//! ```text
//! cargo run --release -p eventsource-bench               # every workload, full size
//! cargo run --release -p eventsource-bench -- --scale 0.1 --only ABC
//! ```

mod chain;
mod domain;
mod postgres;
mod raw;
mod read_side;
mod report;
mod upcast;
mod workloads;

use std::error::Error;

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Multiplies every workload's size (1.0 = the sizes of the README table).
    pub scale: f64,
    /// Which workloads to run (letters A to G, H for the hash chain, P for PostgreSQL, R for
    /// the read side).
    pub only: String,
    /// A PostgreSQL connection string, to add PostgreSQL rows.
    pub postgres: Option<String>,
}

impl Options {
    /// `n` scaled, at least `min`.
    pub fn scaled(&self, n: u64, min: u64) -> u64 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let scaled = (n as f64 * self.scale) as u64;
        scaled.max(min)
    }

    fn parse() -> Result<Self, String> {
        let mut options = Options {
            scale: 1.0,
            only: "ABCDEFGHPR".into(),
            postgres: std::env::var("EVENTSOURCE_POSTGRES_URL").ok(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--scale" => {
                    options.scale = value()?.parse().map_err(|e| format!("--scale: {e}"))?;
                }
                "--only" => options.only = value()?.to_uppercase(),
                "--postgres" => options.postgres = Some(value()?),
                "--no-postgres" => options.postgres = None,
                other => {
                    return Err(format!(
                        "unknown argument `{other}` (expected --scale F, --only LETTERS, --postgres URL, --no-postgres)"
                    ));
                }
            }
        }
        Ok(options)
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = Options::parse()?;
    report::machine(&options);
    let dir = tempfile::tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| ".".into()))?;
    for letter in options.only.chars() {
        match letter {
            'A' => workloads::commands(&options, dir.path())?,
            'B' => workloads::batch_append(&options, dir.path())?,
            'C' => workloads::replay(&options, dir.path())?,
            'D' => workloads::concurrent_writers(&options, dir.path())?,
            'E' => workloads::snapshot_load(&options, dir.path())?,
            'P' => postgres::bench(&options, dir.path())?,
            'F' => workloads::growth(&options, dir.path())?,
            'G' => upcast::bench(&options, dir.path())?,
            'R' => read_side::bench(&options, dir.path())?,
            'H' => chain::bench(&options, dir.path())?,
            other => return Err(format!("unknown workload `{other}`").into()),
        }
    }
    Ok(())
}
