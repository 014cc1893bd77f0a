//! Helper process of `tests/reliability_projection_crash.rs`: runs the balances
//! projection (`eventsource_tests::read_model::Balances`) over a store until it has
//! caught up, in small batches, printing `event <position>` as each event is handled
//! (before its batch commits), so that a test can kill it in the middle of a batch.
//!
//! ```text
//! es_projector <path>
//! es_projector --postgres <url> <schema>
//! ```
//!
//! Prints `batch <checkpoint>` after each committed batch and `done <applied>` at the
//! end; any failure is printed as `error ...` with exit status 1.

use std::io::Write;
use std::process::ExitCode;

use eventsource::{PostgresStore, ProjectionStore, Projector, SqliteStore};
use eventsource_tests::read_model::{Balances, Db};

type Error = Box<dyn std::error::Error>;

const USAGE: &str = "usage: es_projector <path> | --postgres <url> <schema>";

fn run<S: ProjectionStore>(store: S, db: &Db) -> Result<(), Error> {
    let mut balances = Balances::new(db);
    balances.announce = true;
    let mut projector = Projector::new(store, balances).batch_size(13);
    let mut out = std::io::stdout();
    // `rebuild` reports each batch; the first run resets an empty read model only.
    let mut applied = 0;
    loop {
        let report = projector.run_until_caught_up()?;
        applied += report.applied;
        writeln!(out, "batch {}", report.checkpoint)?;
        out.flush()?;
        if report.checkpoint >= projector.store().head()? {
            break;
        }
    }
    writeln!(out, "done {applied}")?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [flag, url, schema] if flag == "--postgres" => {
            PostgresStore::connect_with_schema(url, schema)
                .map_err(Error::from)
                .and_then(|store| {
                    run(
                        store,
                        &Db::Postgres {
                            url: url.clone(),
                            schema: schema.clone(),
                        },
                    )
                })
        }
        [path] => SqliteStore::open(path)
            .map_err(Error::from)
            .and_then(|store| run(store, &Db::Sqlite(path.into()))),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error {e}");
            ExitCode::FAILURE
        }
    }
}
