//! Helper process of `tests/reliability_first_open.rs`: opens the store at a path that
//! may not exist yet (as several other processes do at the same moment), appends one
//! event to its own stream and prints `ok`, or `error <message>` and exits with 1.
//!
//! ```text
//! es_open <path> <n>
//! ```

use std::process::ExitCode;

use eventsource::{EventStore, ExpectedVersion, NewEvent, SqliteStore, StreamId};

fn run(path: &str, n: &str) -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open(path)?;
    store.append(
        &StreamId::new("opener", n),
        ExpectedVersion::NoStream,
        &[NewEvent::new("opener.opened", 1, "{}")],
    )?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [path, n] => run(path, n),
        _ => Err("usage: es_open <path> <n>".into()),
    };
    match result {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error {e}");
            ExitCode::FAILURE
        }
    }
}
