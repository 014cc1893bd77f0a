//! `eventsource`: look into, follow, verify, export and copy an eventsource store on
//! SQLite or PostgreSQL, through the library's public API.
//!
//! Exit codes: 0 done (and, for `verify`, the store is sound); 1 the command failed or
//! `verify` found a problem; 2 the arguments are wrong (usage error).

mod error;
mod events;
mod info;
mod jsonl;
mod output;
mod stats;
mod target;
mod transfer;
mod verify;

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::error::CliError;

/// Inspect, follow, verify, export and copy an eventsource store.
///
/// A STORE is a SQLite file path or a PostgreSQL connection string (a URL starting with
/// `postgres://` or `postgresql://`, or key-value pairs such as
/// `host=127.0.0.1 user=postgres dbname=app`).
#[derive(Debug, Parser)]
#[command(name = "eventsource", version, max_term_width = 100)]
struct Cli {
    /// The PostgreSQL schema that holds the store.
    #[arg(long, global = true, default_value = "public", value_name = "SCHEMA")]
    schema: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Backend, schema version, counts, size, first and last event, projections.
    Info {
        #[command(flatten)]
        store: StoreArg,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Streams with their version and last timestamp, a page at a time.
    Streams(events::StreamsArgs),
    /// The events of one stream, or of the whole store in global order.
    Events(events::EventsArgs),
    /// The newest events, then (with --follow) new ones as they commit.
    Tail(events::TailArgs),
    /// Counts and payload bytes per aggregate type, event type and stored event version.
    Stats {
        #[command(flatten)]
        store: StoreArg,
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Structural and tamper checks of the whole store (the hash chain, positions,
    /// stream versions, triggers); exit code 0 when sound, 1 otherwise.
    Verify {
        #[command(flatten)]
        store: StoreArg,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// A checkpoint printed by an earlier verify (`POSITION:HASH`): the store must
        /// still hold that hash at that position.
        #[arg(long, value_parser = verify::parse_checkpoint)]
        checkpoint: Option<(eventsource::Position, eventsource::ChainHash)>,
    },
    /// Every event to a versioned JSON Lines file (`-`: standard output).
    Export {
        #[command(flatten)]
        store: StoreArg,
        /// The file to write (`-`: standard output). An existing file is refused.
        file: String,
    },
    /// A JSON Lines export into an empty store (`-`: standard input).
    Import {
        #[command(flatten)]
        store: StoreArg,
        /// The file to read (`-`: standard input).
        file: String,
    },
    /// Every event of FROM into TO, keeping positions, ids and timestamps; run it again
    /// after an interruption and it goes on where TO ends.
    Copy(transfer::CopyArgs),
}

/// The store a command works on.
#[derive(Debug, Args)]
struct StoreArg {
    /// A SQLite file or a PostgreSQL connection string.
    #[arg(value_name = "STORE")]
    store: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = format!("eventsource: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                let _ = write!(message, "\n  caused by: {cause}");
                source = cause.source();
            }
            let _ = writeln!(std::io::stderr(), "{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let schema = cli.schema.as_str();
    match cli.command {
        Command::Info { store, json } => info::run(&target::open(&store.store, schema)?, json)?,
        Command::Streams(args) => events::streams(&target::open(&args.store, schema)?, &args)?,
        Command::Events(args) => events::events(&target::open(&args.store, schema)?, &args)?,
        Command::Tail(args) => events::tail(&target::open(&args.store, schema)?, &args)?,
        Command::Stats { store, json } => stats::run(&target::open(&store.store, schema)?, json)?,
        Command::Verify {
            store,
            json,
            checkpoint,
        } => return verify::run(&store.store, schema, json, checkpoint),
        Command::Export { store, file } => {
            transfer::export(&target::open(&store.store, schema)?, &file)?;
        }
        Command::Import { store, file } => {
            transfer::import(&target::create(&store.store, schema)?, &file)?;
        }
        Command::Copy(args) => transfer::copy(&args, schema)?,
    }
    Ok(ExitCode::SUCCESS)
}
