//! `eventsource streams`, `events` and `tail`: listings of streams and events.

use std::io::Write;

use clap::Args;
use eventsource::{
    EventFilter, EventStore, Inspect, Position, ProjectionStore, RecordedEvent, RecordedEventRef,
    StreamId, Subscription, Version,
};

use crate::error::CliError;
use crate::output::{EVENT_HEADER, Stop, StreamingTable, event_json, event_row, json_line, time};
use crate::target::{Store, on_store};

/// How many events a listing reads per page.
const PAGE: usize = 500;

#[derive(Debug, Args)]
pub struct StreamsArgs {
    /// A SQLite file or a PostgreSQL connection string.
    #[arg(value_name = "STORE")]
    pub store: String,
    /// Only streams of this aggregate type (default: every type, in name order).
    #[arg(long = "type", value_name = "AGGREGATE_TYPE")]
    aggregate_type: Option<String>,
    /// At most this many streams.
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: usize,
    /// Start after this stream id (the last id of the previous page); needs --type.
    #[arg(long, requires = "aggregate_type", value_name = "STREAM_ID")]
    after: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["stream", "all"]))]
pub struct EventsArgs {
    /// A SQLite file or a PostgreSQL connection string.
    #[arg(value_name = "STORE")]
    pub store: String,
    /// The stream, as `AGGREGATE_TYPE/ID` (e.g. `account/acc-1`).
    stream: Option<String>,
    /// Every stream, in global order.
    #[arg(long)]
    all: bool,
    /// First stream version to show.
    #[arg(long, conflicts_with = "all", value_name = "VERSION")]
    from: Option<u64>,
    /// Last stream version to show.
    #[arg(long, conflicts_with = "all", value_name = "VERSION")]
    to: Option<u64>,
    /// Only events after this global position.
    #[arg(long, conflicts_with = "stream", value_name = "POSITION")]
    after: Option<u64>,
    /// Only events of this event type (repeat for several).
    #[arg(long = "type", conflicts_with = "stream", value_name = "EVENT_TYPE")]
    event_types: Vec<String>,
    /// At most this many events.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// One JSON object per line (metadata included) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// A SQLite file or a PostgreSQL connection string.
    #[arg(value_name = "STORE")]
    pub store: String,
    /// How many of the newest events to show.
    #[arg(short = 'n', long = "lines", default_value_t = 10, value_name = "N")]
    count: u64,
    /// Then keep showing new events as they commit, until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// One JSON object per line (metadata included) instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn streams(store: &Store, args: &StreamsArgs) -> Result<(), CliError> {
    on_store!(store, s => list_streams(s, args))
}

fn list_streams(store: &impl Inspect, args: &StreamsArgs) -> Result<(), CliError> {
    let types = match &args.aggregate_type {
        Some(t) => vec![t.clone()],
        None => store.aggregate_types()?,
    };
    let mut out = std::io::stdout().lock();
    let mut table = StreamingTable::new(
        &mut out,
        ["STREAM", "VERSION", "FIRST RECORDED", "LAST RECORDED"],
    );
    let mut left = args.limit;
    let mut last = None;
    for aggregate_type in &types {
        let mut after = args.after.clone();
        while left > 0 {
            let want = left.min(PAGE);
            let page = store.list_streams(aggregate_type, after.as_deref(), want)?;
            for info in &page {
                if args.json {
                    json_line(
                        table.out(),
                        &serde_json::json!({
                            "aggregate_type": info.stream.aggregate_type(),
                            "stream_id": info.stream.id(),
                            "version": info.version.get(),
                            "first_recorded_at": info.first_recorded_at.to_string(),
                            "last_recorded_at": info.last_recorded_at.to_string(),
                        }),
                    )?;
                } else {
                    table.row([
                        info.stream.to_string(),
                        info.version.get().to_string(),
                        time(Some(info.first_recorded_at)),
                        time(Some(info.last_recorded_at)),
                    ])?;
                }
                left -= 1;
            }
            last = page.last().map(|info| info.stream.clone()).or(last);
            if page.len() < want {
                break;
            }
            after = last.as_ref().map(|s| s.id().to_owned());
        }
    }
    if !args.json {
        table.flush()?;
    }
    if let (0, Some(last)) = (left, last) {
        let _ = writeln!(
            std::io::stderr(),
            "(limit reached; the next page, if any: --type {} --after {})",
            last.aggregate_type(),
            last.id()
        );
    }
    Ok(())
}

pub fn events(store: &Store, args: &EventsArgs) -> Result<(), CliError> {
    on_store!(store, s => list_events(s, args))
}

/// Prints events as a table or JSON lines.
struct Printer<'w, W: Write> {
    json: bool,
    table: StreamingTable<'w, W, 6>,
}

impl<W: Write> Printer<'_, W> {
    fn event(&mut self, e: &RecordedEventRef<'_>) -> std::io::Result<()> {
        if self.json {
            json_line(self.table.out(), &event_json(e))
        } else {
            self.table.row(event_row(e))
        }
    }
}

fn list_events(store: &impl EventStore, args: &EventsArgs) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let mut printer = Printer {
        json: args.json,
        table: StreamingTable::new(&mut out, EVENT_HEADER),
    };
    let mut left = args.limit.unwrap_or(usize::MAX);
    if let Some(stream) = &args.stream {
        let stream = parse_stream(stream)?;
        let to = args.to.map_or(Version::MAX, Version::new);
        let mut next = Version::new(args.from.unwrap_or(1));
        while left > 0 && next <= to {
            let mut read = 0;
            let page = PAGE.min(left);
            let mut stop = Stop::default();
            let result = store.read_stream_with(&stream, next, page, &mut |e| {
                read += 1;
                next = e.version.next();
                if e.version <= to {
                    left -= 1;
                    stop.check(printer.event(&e))?;
                }
                Ok(())
            });
            stop.finish(result)?;
            if read < page {
                break;
            }
        }
    } else {
        let mut filter = EventFilter::all();
        if !args.event_types.is_empty() {
            filter = filter.event_types(args.event_types.iter().cloned());
        }
        let mut after = Position::new(args.after.unwrap_or(0));
        while left > 0 {
            let mut read = 0;
            let page = PAGE.min(left);
            let mut stop = Stop::default();
            let result = store.read_all_filtered_with(after, &filter, page, &mut |e| {
                read += 1;
                after = e.position;
                left -= 1;
                stop.check(printer.event(&e))
            });
            stop.finish(result)?;
            if read < page {
                break;
            }
        }
    }
    if !args.json {
        printer.table.flush()?;
    }
    Ok(())
}

/// `type/id` as a stream id.
pub fn parse_stream(text: &str) -> Result<StreamId, CliError> {
    match text.split_once('/') {
        Some((aggregate_type, id)) if !aggregate_type.is_empty() && !id.is_empty() => {
            Ok(StreamId::new(aggregate_type, id))
        }
        _ => Err(CliError::Refused(format!(
            "`{text}` is not a stream: give AGGREGATE_TYPE/ID, e.g. account/acc-1"
        ))),
    }
}

pub fn tail(store: &Store, args: &TailArgs) -> Result<(), CliError> {
    on_store!(store, s => tail_events(s, args))
}

fn tail_events<S: ProjectionStore>(store: &S, args: &TailArgs) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let mut printer = Printer {
        json: args.json,
        table: StreamingTable::new(&mut out, EVENT_HEADER),
    };
    let head = store.head()?;
    let mut after = Position::new(head.get().saturating_sub(args.count));
    if args.count > 0 {
        loop {
            let mut read = 0;
            let mut stop = Stop::default();
            let result = store.read_all_with(after, PAGE, &mut |e| {
                read += 1;
                after = e.position;
                stop.check(printer.event(&e))
            });
            stop.finish(result)?;
            if read < PAGE {
                break;
            }
        }
    } else {
        after = head;
    }
    if !args.json {
        // Printed now: a followed table must show each row as it comes.
        printer.table.flush()?;
    }
    if !args.follow {
        return Ok(());
    }
    for event in Subscription::new(store, after) {
        let event = event?;
        printer.owned(&event)?;
    }
    Ok(())
}

impl<W: Write> Printer<'_, W> {
    fn owned(&mut self, e: &RecordedEvent) -> Result<(), CliError> {
        let metadata = serde_json::to_string(&e.metadata)
            .map_err(|e| CliError::Refused(format!("cannot print metadata as JSON: {e}")))?;
        let id = e.event_id.to_string();
        let view = RecordedEventRef {
            position: e.position,
            aggregate_type: e.stream.aggregate_type(),
            stream_id: e.stream.id(),
            version: e.version,
            event_type: &e.event_type,
            event_version: e.event_version,
            event_id: &id,
            recorded_at: e.recorded_at,
            payload: &e.payload,
            metadata: &metadata,
        };
        self.event(&view)?;
        self.table.out().flush()?;
        Ok(())
    }
}
