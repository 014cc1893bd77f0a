//! Helper process of `tests/commands.rs`: runs one idempotent deposit with
//! `Repository::execute_once` on a shared SQLite file, as one of several processes.
//!
//! ```text
//! es_once <path> <account> <command-id> <amount>
//! ```
//!
//! Prints `ready`, waits for a line on stdin (so that every process starts at once), runs
//! the command and prints `ran <version> <position>` or `already_done <version> <position>`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use eventsource::{Repository, SqliteStore};
use eventsource_tests::Account;

type Error = Box<dyn std::error::Error>;

fn run(args: &[String]) -> Result<(), Error> {
    let [path, account, command_id, amount] = args else {
        return Err("usage: es_once <path> <account> <command-id> <amount>".into());
    };
    let amount: u64 = amount.parse()?;
    let accounts = Repository::<Account, _>::new(SqliteStore::open(path)?).with_retries(100);
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    std::io::stdin().lock().read_line(&mut String::new())?;
    let done = accounts
        .execute_once(account, command_id, |a| a.deposit(amount))
        .map_err(|e| format!("{e:?}"))?;
    let outcome = if done.already_done {
        "already_done"
    } else {
        "ran"
    };
    let position = done.positions.first().map_or(0, |p| p.get());
    writeln!(out, "{outcome} {} {position}", done.version)?;
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error {e}");
            ExitCode::FAILURE
        }
    }
}
