//! `eventsource export`, `import` and `copy`: moving every event out of a store and into
//! another, keeping positions, ids and timestamps, in constant memory (one batch at a
//! time).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use clap::Args;
use eventsource::{EventStore, Import, Inspect, Position, ProjectionStore, RecordedEvent};

use crate::error::CliError;
use crate::jsonl::{FORMAT, Header, Line, VERSION};
use crate::output::{Stop, progress};
use crate::target::{self, Store, on_store};

/// Events read per page and imported per transaction.
const BATCH: usize = 1_000;

/// What `import` and `copy` need of a target store.
pub trait Target: Import + Inspect + ProjectionStore {}
impl<S: Import + Inspect + ProjectionStore> Target for S {}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The store to copy from (SQLite file or PostgreSQL connection string).
    from: String,
    /// The store to copy into: created if it does not exist; if it holds events, they
    /// must be the source's first ones (an interrupted copy), and the copy goes on after
    /// them.
    to: String,
    /// The PostgreSQL schema of TO (default: --schema).
    #[arg(long, value_name = "SCHEMA")]
    to_schema: Option<String>,
    /// Events per transaction in TO.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
}

pub fn export(store: &Store, file: &str) -> Result<(), CliError> {
    on_store!(store, s => export_from(s, file))
}

fn export_from<S: ProjectionStore>(store: &S, file: &str) -> Result<(), CliError> {
    let started = Instant::now();
    let (mut out, what): (Box<dyn Write>, String) = if file == "-" {
        (Box::new(std::io::stdout().lock()), "standard output".into())
    } else {
        let created = File::options()
            .write(true)
            .create_new(true)
            .open(file)
            .map_err(CliError::io(format!(
                "cannot create {file} (an existing file is never overwritten)"
            )))?;
        (Box::new(created), file.to_owned())
    };
    let mut out = BufWriter::with_capacity(1 << 16, &mut out);
    let write_error = CliError::io(format!("cannot write to {what}"));
    let mut header =
        serde_json::to_vec(&Header::current()).map_err(|e| CliError::Refused(e.to_string()))?;
    header.push(b'\n');
    if let Err(e) = out.write_all(&header) {
        return Err(write_error(e));
    }
    let bar = progress(store.head()?.get(), "export", false);
    let mut after = Position::START;
    let mut count: u64 = 0;
    loop {
        let mut read = 0;
        let mut stop = Stop::default();
        let result = store.read_all_with(after, BATCH, &mut |e| {
            read += 1;
            after = e.position;
            let written = serde_json::to_writer(&mut out, &Line::of(&e))
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            stop.check(written)
        });
        match stop.finish(result) {
            Ok(()) => {}
            Err(CliError::Io { source, .. }) => return Err(write_error(source)),
            Err(e) => return Err(e),
        }
        count += read;
        bar.set_position(after.get());
        if read < BATCH as u64 {
            break;
        }
    }
    out.flush()
        .map_err(CliError::io(format!("cannot write to {what}")))?;
    drop(out);
    bar.finish_and_clear();
    eprintln!(
        "exported {count} events (last position {after}) to {what} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn import(store: &Store, file: &str) -> Result<(), CliError> {
    on_store!(store, s => import_into(s, file))
}

fn import_into<S: Target>(store: &S, file: &str) -> Result<(), CliError> {
    let head = store.head()?;
    if head > Position::START {
        return Err(CliError::Refused(format!(
            "refusing to import: the store already holds events (last position {head}); \
             import only goes into an empty store"
        )));
    }
    let started = Instant::now();
    let input: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(BufReader::with_capacity(
            1 << 16,
            File::open(file).map_err(CliError::io(format!("cannot open {file}")))?,
        ))
    };
    let name = if file == "-" { "standard input" } else { file };
    let mut reader = LineReader {
        input,
        buf: String::new(),
        line: 0,
        file: name.to_owned(),
    };
    let Some(first) = reader.next()? else {
        return Err(reader.error("the file is empty: an export starts with a header line"));
    };
    let header: Header = serde_json::from_str(first)
        .map_err(|e| reader.error(&format!("not an eventsource export header: {e}")))?;
    if header.format != FORMAT {
        return Err(reader.error(&format!(
            "the format is `{}`, not `{FORMAT}`",
            header.format
        )));
    }
    if header.version != VERSION {
        return Err(reader.error(&format!(
            "format version {} is not the version {VERSION} this eventsource reads",
            header.version
        )));
    }
    let mut batch = Vec::with_capacity(BATCH);
    let mut count: u64 = 0;
    let mut last = Position::START;
    while let Some(text) = reader.next()? {
        if text.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str::<Line<'_>>(text)
            .map_err(|e| e.to_string())
            .and_then(Line::into_event)
            .map_err(|reason| reader.error(&reason))?;
        batch.push(event);
        if batch.len() == BATCH {
            last = store.import_batch(&batch)?;
            count += batch.len() as u64;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        last = store.import_batch(&batch)?;
        count += batch.len() as u64;
    }
    eprintln!(
        "imported {count} events (last position {last}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Lines of an import, read into one reused buffer.
struct LineReader {
    input: Box<dyn BufRead>,
    buf: String,
    line: u64,
    file: String,
}

impl LineReader {
    fn next(&mut self) -> Result<Option<&str>, CliError> {
        self.buf.clear();
        let n = self
            .input
            .read_line(&mut self.buf)
            .map_err(CliError::io(format!("cannot read {}", self.file)))?;
        self.line += 1;
        Ok((n > 0).then_some(self.buf.trim_end_matches(['\n', '\r'])))
    }

    fn error(&self, reason: &str) -> CliError {
        CliError::Format {
            file: self.file.clone(),
            line: self.line,
            reason: reason.to_owned(),
        }
    }
}

pub fn copy(args: &CopyArgs, schema: &str) -> Result<(), CliError> {
    let source = target::open(&args.from, schema)?;
    let to_schema = args.to_schema.as_deref().unwrap_or(schema);
    let target = target::create(&args.to, to_schema)?;
    let batch = args.batch as usize;
    on_store!(&source, s => on_store!(&target, t => copy_between(s, t, batch)))
}

/// Whether two reads of the same event agree: every field equal, the payload as text or
/// (PostgreSQL stores JSONB, which prints JSON its own way) as a JSON value.
fn same_event(a: &RecordedEvent, b: &RecordedEvent) -> bool {
    let payload = a.payload == b.payload
        || serde_json::from_str::<serde_json::Value>(&a.payload)
            .ok()
            .is_some_and(|a| serde_json::from_str::<serde_json::Value>(&b.payload).ok() == Some(a));
    payload
        && a.position == b.position
        && a.stream == b.stream
        && a.version == b.version
        && a.event_type == b.event_type
        && a.event_version == b.event_version
        && a.event_id == b.event_id
        && a.recorded_at == b.recorded_at
        && a.metadata == b.metadata
}

/// Up to `max` events after `after`.
fn page(
    store: &impl EventStore,
    after: Position,
    max: usize,
) -> Result<Vec<RecordedEvent>, CliError> {
    let mut events = Vec::with_capacity(max.min(BATCH * 4));
    store.read_all_with(after, max, &mut |e| {
        events.push(e.to_owned()?);
        Ok(())
    })?;
    Ok(events)
}

/// Checks that `target`'s last events are `source`'s at the same positions, so that a
/// copy can go on after them; returns where it goes on.
fn resume_point(
    source: &impl EventStore,
    target: &impl ProjectionStore,
) -> Result<Position, CliError> {
    let head = target.head()?;
    if head == Position::START {
        return Ok(head);
    }
    let from = Position::new(head.get().saturating_sub(BATCH as u64));
    let copied = page(target, from, BATCH)?;
    let original = page(source, from, copied.len())?;
    for (i, t) in copied.iter().enumerate() {
        match original.get(i) {
            Some(s) if same_event(s, t) => {}
            Some(s) => {
                return Err(CliError::Refused(format!(
                    "TO is not an interrupted copy of FROM: at position {} TO holds {}/{} version {} ({}), \
                     FROM holds position {} {} version {} ({})",
                    t.position,
                    t.stream.aggregate_type(),
                    t.stream.id(),
                    t.version,
                    t.event_id,
                    s.position,
                    s.stream,
                    s.version,
                    s.event_id
                )));
            }
            None => {
                return Err(CliError::Refused(format!(
                    "TO is not an interrupted copy of FROM: TO holds position {}, which FROM does not",
                    t.position
                )));
            }
        }
    }
    eprintln!("TO already holds FROM's events up to position {head}: going on after it");
    Ok(head)
}

fn copy_between<S, T>(source: &S, target: &T, batch: usize) -> Result<(), CliError>
where
    S: Inspect + ProjectionStore,
    T: Target,
{
    let started = Instant::now();
    let after = resume_point(source, target)?;
    let bar = progress(source.head()?.get(), "copy", false);
    bar.set_position(after.get());
    let (send, receive) = mpsc::sync_channel::<Vec<RecordedEvent>>(2);
    let mut copied: u64 = 0;
    // Reading and writing overlap: one thread reads the next batch while this one
    // writes the last.
    let read = thread::scope(|scope| -> Result<Result<(), CliError>, CliError> {
        let reader = scope.spawn(move || -> Result<(), CliError> {
            let mut after = after;
            loop {
                let events = page(source, after, batch)?;
                let done = events.len() < batch;
                if let Some(last) = events.last() {
                    after = last.position;
                    if send.send(events).is_err() {
                        return Ok(()); // the writer stopped, with its own error
                    }
                }
                if done {
                    return Ok(());
                }
            }
        });
        for events in receive {
            let last = target.import_batch(&events)?;
            copied += events.len() as u64;
            bar.set_position(last.get());
        }
        Ok(reader
            .join()
            .unwrap_or_else(|_| Err(CliError::Refused("the thread reading FROM panicked".into()))))
    })?;
    read?;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let (from, to) = (source.summary()?, target.summary()?);
    let (from_head, to_head) = (source.head()?, target.head()?);
    if from.events != to.events || from_head != to_head {
        return Err(CliError::Refused(format!(
            "after copying, FROM holds {} events up to position {from_head} but TO holds {} up to \
             position {to_head} (if FROM is being written to, run copy again)",
            from.events, to.events
        )));
    }
    #[allow(clippy::cast_precision_loss, reason = "a rate for people")]
    let rate = copied as f64 / elapsed.max(1e-9);
    eprintln!(
        "copied {copied} events in {elapsed:.1} s ({rate:.0} events/s); FROM and TO both hold {} events, last position {to_head}",
        to.events
    );
    Ok(())
}
