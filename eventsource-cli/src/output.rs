//! What commands print: events as table rows or JSON lines, aligned tables, and progress
//! bars (on a terminal only).

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write};

use eventsource::{ReadError, RecordedEventRef, StoreError, Timestamp};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::error::CliError;

/// A progress bar on standard error for `total` units, shown only when standard error is
/// a terminal and the output is not JSON; hidden (and free) otherwise.
pub fn progress(total: u64, what: &str, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {pos}/{len} positions ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// JSON text as a JSON value, or as a string when it is not JSON (the store may hold a
/// damaged row; showing it beats failing).
fn json_or_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// One event as a JSON object: every stored column, payload and metadata as JSON.
pub fn event_json(e: &RecordedEventRef<'_>) -> Value {
    json!({
        "position": e.position.get(),
        "aggregate_type": e.aggregate_type,
        "stream_id": e.stream_id,
        "version": e.version.get(),
        "event_type": e.event_type,
        "event_version": e.event_version,
        "event_id": e.event_id,
        "recorded_at": e.recorded_at.to_string(),
        "payload": json_or_text(e.payload),
        "metadata": json_or_text(e.metadata),
    })
}

/// Writes `value` as one line.
pub fn json_line(out: &mut impl Write, value: &Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// The header of the human event table.
pub const EVENT_HEADER: [&str; 6] = [
    "POSITION",
    "STREAM",
    "VERSION",
    "TYPE",
    "RECORDED AT",
    "PAYLOAD",
];

/// One event as a row of the human table.
pub fn event_row(e: &RecordedEventRef<'_>) -> [String; 6] {
    [
        e.position.get().to_string(),
        format!("{}/{}", e.aggregate_type, e.stream_id),
        e.version.get().to_string(),
        format!("{} v{}", e.event_type, e.event_version),
        e.recorded_at.to_string(),
        e.payload.replace('\n', " "),
    ]
}

/// Rows printed as they come, columns padded to fixed widths (the widest seen so far in
/// the first page): for listings too long to hold in memory.
pub struct StreamingTable<'w, W: Write, const N: usize> {
    out: &'w mut W,
    widths: [usize; N],
    pending: Vec<[String; N]>,
    flushed: bool,
}

/// How many rows are held to size the columns before printing starts.
const SIZING_ROWS: usize = 100;

impl<'w, W: Write, const N: usize> StreamingTable<'w, W, N> {
    pub fn new(out: &'w mut W, header: [&str; N]) -> Self {
        let mut table = StreamingTable {
            out,
            widths: [0; N],
            pending: Vec::new(),
            flushed: false,
        };
        table.pending.push(header.map(str::to_owned));
        table
    }

    /// Where the table writes (for output that is not a row: JSON lines).
    pub fn out(&mut self) -> &mut W {
        self.out
    }

    pub fn row(&mut self, row: [String; N]) -> std::io::Result<()> {
        if self.flushed {
            return write_row(self.out, &self.widths, &row);
        }
        self.pending.push(row);
        if self.pending.len() > SIZING_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        if !self.flushed {
            for row in &self.pending {
                for (width, cell) in self.widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            for row in std::mem::take(&mut self.pending) {
                write_row(self.out, &self.widths, &row)?;
            }
            self.flushed = true;
        }
        self.out.flush()
    }
}

fn write_row<W: Write>(out: &mut W, widths: &[usize], row: &[String]) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
        if i + 1 == row.len() {
            line.push_str(cell);
        } else {
            let _ = write!(line, "{cell:<width$}  ");
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// A timestamp for people, `-` when there is none.
pub fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_string())
}

/// Carries an output error (a closed pipe, a full disk) out of a read's visitor, which
/// can only return read errors: the visitor stops the read with a stand-in error and
/// [`Stop::finish`] returns the output error itself.
#[derive(Debug, Default)]
pub struct Stop(Option<std::io::Error>);

impl Stop {
    /// `written`, or the stand-in error that stops the read.
    pub fn check(&mut self, written: std::io::Result<()>) -> Result<(), ReadError> {
        written.map_err(|e| {
            self.0 = Some(e);
            ReadError::Store(StoreError::Unsupported {
                feature: "writing the output",
            })
        })
    }

    /// The read's outcome, the output error first.
    pub fn finish(self, read: Result<(), ReadError>) -> Result<(), CliError> {
        match self.0 {
            Some(e) => Err(e.into()),
            None => Ok(read?),
        }
    }
}
