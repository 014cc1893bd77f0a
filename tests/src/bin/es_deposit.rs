//! Helper process of `tests/reliability_concurrency.rs`: runs deposits through
//! `Repository::execute` on one account of a shared store, as one of several processes.
//!
//! ```text
//! es_deposit sqlite <path> <account> <worker> <commands> <retries>
//! es_deposit postgres <url> <schema> <account> <worker> <commands> <retries>
//! ```
//!
//! Opens the store, prints `ready`, waits for a line on stdin (so that every process
//! starts at once), then runs `commands` deposits of the unique amounts
//! `worker * 1_000_000 + 1, + 2, ...` and prints one line per command (see
//! `eventsource_tests::reliability::DepositOutcome`) and `done` at the end. Any other
//! error is printed as `error ...` and exits with status 1.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use eventsource::{EventStore, ExecuteError, PostgresStore, Repository, SqliteStore};
use eventsource_tests::Account;
use eventsource_tests::reliability::DepositOutcome;

type Error = Box<dyn std::error::Error>;

struct Args {
    account: String,
    worker: u64,
    commands: u64,
    retries: u32,
}

fn parse_tail(tail: &[String]) -> Result<Args, Error> {
    let [account, worker, commands, retries] = tail else {
        return Err("expected <account> <worker> <commands> <retries>".into());
    };
    Ok(Args {
        account: account.clone(),
        worker: worker.parse()?,
        commands: commands.parse()?,
        retries: retries.parse()?,
    })
}

fn run<S: EventStore>(store: S, args: &Args) -> Result<(), Error> {
    let accounts = Repository::<Account, _>::new(store).with_retries(args.retries);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go)?;
    for i in 0..args.commands {
        let amount = args.worker * 1_000_000 + i + 1;
        let mut calls = 0;
        let outcome = match accounts.execute(&args.account, |a| {
            calls += 1;
            a.deposit(amount)
        }) {
            Ok(committed) => DepositOutcome::Committed {
                amount,
                version: committed.version,
                position: *committed.positions.first().ok_or("no position")?,
                calls,
            },
            Err(ExecuteError::Conflict { attempts, .. }) => DepositOutcome::Conflict {
                amount,
                attempts,
                calls,
            },
            Err(e) => return Err(format!("deposit {amount}: {e:?}").into()),
        };
        writeln!(out, "{outcome}")?;
        out.flush()?;
    }
    writeln!(out, "done")?;
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("sqlite") if args.len() == 6 => {
            parse_tail(&args[2..]).and_then(|tail| run(SqliteStore::open(&args[1])?, &tail))
        }
        Some("postgres") if args.len() == 7 => parse_tail(&args[3..]).and_then(|tail| {
            run(
                PostgresStore::connect_with_schema(&args[1], &args[2])?,
                &tail,
            )
        }),
        _ => Err(
            "usage: es_deposit sqlite <path> | postgres <url> <schema>, then \
                  <account> <worker> <commands> <retries>"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error {e}");
            ExitCode::FAILURE
        }
    }
}
