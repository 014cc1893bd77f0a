//! A store-wide check: [`Verify`] reads every stored event of the aggregates given to it
//! through their upcasters and decoders, and reports what decodes and what does not.
//!
//! It reads [`EventStore::read_all_with`] a page at a time and keeps only counters and
//! (a bounded number of) failures, so it runs in constant memory on a store of any size,
//! on any backend.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as _;
use std::fmt;

use crate::aggregate::Aggregate;
use crate::error::ReadError;
use crate::error::RegistrationError;
use crate::event::{EventLocation, RecordedEventRef};
use crate::store::EventStore;
use crate::upcast::Upcasters;
use crate::version::Position;

/// How many events [`Verify::run`] reads per page, by default.
const DEFAULT_PAGE_SIZE: usize = 1_000;
/// How many failures a [`VerifyReport`] keeps in full, by default.
const DEFAULT_MAX_FAILURES: usize = 1_000;

type DecodeFn<'a> = dyn Fn(&RecordedEventRef<'_>) -> Result<(), ReadError> + 'a;

/// Per event type, per stored version: (decoded, failed).
type ByType = HashMap<String, HashMap<u32, (u64, u64)>>;

/// One aggregate type to check.
struct Checked<'a> {
    name: &'static str,
    decode: Box<DecodeFn<'a>>,
}

/// Checks that every stored event of the given aggregate types still decodes, through
/// the same upcasters and decoders a [`Repository`](crate::Repository) uses. Run it
/// after deploying new event code, or in CI against a copy of production.
///
/// ```
/// use eventsource::{event, Aggregate, Apply, EventStore, ExpectedVersion, NewEvent, SqliteStore, StreamId, Upcasters, Verify};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "note.added")]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct NoteAdded { pub text: String }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "note", events(NoteAdded))]
/// pub struct Note;
/// # impl Apply<NoteAdded> for Note { fn apply(&mut self, _: &NoteAdded) {} }
///
/// let store = SqliteStore::in_memory()?;
/// store.append(&StreamId::new("note", "1"), ExpectedVersion::Any, &[
///     NewEvent::new("note.added", 1, r#"{"text":"hi"}"#),
///     NewEvent::new("note.added", 1, r#"{"txt":"typo"}"#),
/// ])?;
/// store.append(&StreamId::new("order", "1"), ExpectedVersion::Any, &[NewEvent::new("order.placed", 1, "{}")])?;
///
/// let upcasters = Upcasters::new();
/// let report = Verify::new(&store).aggregate::<Note>(&upcasters)?.run()?;
/// assert_eq!(report.decoded(), 1);
/// assert_eq!(report.failures.len(), 1);
/// assert_eq!(report.failures[0].position.get(), 2);
/// assert_eq!(report.skipped["order"], 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Verify<'a, S> {
    store: &'a S,
    aggregates: Vec<Checked<'a>>,
    page_size: usize,
    max_failures: usize,
}

impl<'a, S: EventStore> Verify<'a, S> {
    /// Walks the store's hash chain (see [`ChainVerify`](crate::ChainVerify)): every
    /// event checked against its hash and the one before, positions without gaps, the
    /// chain's head, stream versions 1, 2, 3, ..., and checkpoints kept elsewhere.
    ///
    /// ```
    /// use eventsource::{SqliteStore, Verify};
    ///
    /// let store = SqliteStore::in_memory()?;
    /// assert!(Verify::chain(&store).run()?.is_sound());
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    pub fn chain(store: &'a S) -> crate::ChainVerify<'a, S> {
        crate::ChainVerify::new(store)
    }

    /// A check of `store` that knows no aggregate yet (every event is skipped).
    pub fn new(store: &'a S) -> Self {
        Verify {
            store,
            aggregates: Vec::new(),
            page_size: DEFAULT_PAGE_SIZE,
            max_failures: DEFAULT_MAX_FAILURES,
        }
    }

    /// Checks the events of aggregate type `A` (streams `A::NAME/...`), decoded through
    /// `upcasters` as its repository does. Given twice, the later one counts.
    ///
    /// # Errors
    /// [`RegistrationError`] when the upcasters do not fit `A`'s events
    /// ([`Upcasters::validate`]).
    pub fn aggregate<A: Aggregate>(
        mut self,
        upcasters: &'a Upcasters,
    ) -> Result<Self, RegistrationError> {
        upcasters.validate::<A::Event>()?;
        self.aggregates.retain(|checked| checked.name != A::NAME);
        self.aggregates.push(Checked {
            name: A::NAME,
            decode: Box::new(move |event| upcasters.decode::<A::Event>(event, drop)),
        });
        Ok(self)
    }

    /// How many events to read per page (1,000 by default; at least 1).
    #[must_use]
    pub fn page_size(mut self, events: usize) -> Self {
        self.page_size = events.max(1);
        self
    }

    /// How many failures the report keeps in full (1,000 by default); later ones are only
    /// counted, so memory stays bounded however broken the store is.
    #[must_use]
    pub fn max_failures(mut self, failures: usize) -> Self {
        self.max_failures = failures;
        self
    }

    /// Reads the whole store in global order and reports. A stored event that does not
    /// decode (an upcaster that panics on it included), or a row the store finds
    /// corrupt, is a failure in the report and the check goes on with the next event.
    ///
    /// # Errors
    /// [`ReadError::Store`] when the backend fails (the check cannot go on), or the
    /// store's error for a corrupt row it cannot read past.
    pub fn run(&self) -> Result<VerifyReport, ReadError> {
        let mut tally = Tally {
            counts: self
                .aggregates
                .iter()
                .map(|checked| (checked.name, HashMap::new()))
                .collect(),
            skipped: HashMap::new(),
            report: VerifyReport::default(),
            max_failures: self.max_failures,
        };
        let mut after = Position::START;
        loop {
            let from = after;
            let mut read = 0;
            let result = self
                .store
                .read_all_with(from, self.page_size, &mut |event| {
                    read += 1;
                    after = event.position;
                    self.check(&event, &mut tally);
                    Ok(())
                });
            match result {
                Ok(()) if read < self.page_size => break,
                Ok(()) => {}
                Err(ReadError::Corrupt { position, reason }) => {
                    // Go on after the corrupt row, if that moves forward.
                    let at = u64::try_from(position).ok().map(Position::new);
                    match at.filter(|&at| at > after) {
                        Some(at) => {
                            after = at;
                            tally.fail(at, None, ReadError::Corrupt { position, reason });
                        }
                        None => return Err(ReadError::Corrupt { position, reason }),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(tally.finish(after))
    }

    fn check(&self, event: &RecordedEventRef<'_>, tally: &mut Tally) {
        let Some(index) = self
            .aggregates
            .iter()
            .position(|checked| checked.name == event.aggregate_type)
        else {
            match tally.skipped.get_mut(event.aggregate_type) {
                Some(n) => *n += 1,
                None => {
                    tally.skipped.insert(event.aggregate_type.to_owned(), 1);
                }
            }
            return;
        };
        let result = (self.aggregates[index].decode)(event);
        let by_type = &mut tally.counts[index].1;
        let counts = match by_type.get_mut(event.event_type) {
            Some(by_version) => by_version.entry(event.event_version).or_default(),
            None => by_type
                .entry(event.event_type.to_owned())
                .or_default()
                .entry(event.event_version)
                .or_default(),
        };
        match result {
            Ok(()) => counts.0 += 1,
            Err(error) => {
                counts.1 += 1;
                tally.fail(event.position, Some(event.location()), error);
            }
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Verify<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.aggregates.iter().map(|c| c.name).collect();
        f.debug_struct("Verify")
            .field("store", &self.store)
            .field("aggregates", &names)
            .field("page_size", &self.page_size)
            .field("max_failures", &self.max_failures)
            .finish()
    }
}

/// The counters of a run: per checked aggregate (in the order of `Verify::aggregates`),
/// per event type, per version, (decoded, failed).
struct Tally {
    counts: Vec<(&'static str, ByType)>,
    skipped: HashMap<String, u64>,
    report: VerifyReport,
    max_failures: usize,
}

impl Tally {
    fn fail(&mut self, position: Position, at: Option<EventLocation>, error: ReadError) {
        if self.report.failures.len() < self.max_failures {
            self.report.failures.push(VerifyFailure {
                position,
                at,
                error,
            });
        } else {
            self.report.failures_not_kept += 1;
        }
    }

    fn finish(self, last_position: Position) -> VerifyReport {
        let mut report = self.report;
        report.last_position = last_position;
        report.skipped = self.skipped.into_iter().collect();
        for (aggregate_type, by_type) in self.counts {
            for (event_type, by_version) in by_type {
                for (event_version, (decoded, failed)) in by_version {
                    report.counts.push(VerifyCount {
                        aggregate_type: aggregate_type.to_owned(),
                        event_type: event_type.clone(),
                        event_version,
                        decoded,
                        failed,
                    });
                }
            }
        }
        report.counts.sort_by(|a, b| {
            (&a.aggregate_type, &a.event_type, a.event_version).cmp(&(
                &b.aggregate_type,
                &b.event_type,
                b.event_version,
            ))
        });
        report
    }
}

/// How many events of one (aggregate type, event type, stored version) were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyCount {
    /// The aggregate type of the streams.
    pub aggregate_type: String,
    /// The stored event type.
    pub event_type: String,
    /// The stored event version.
    pub event_version: u32,
    /// How many decoded.
    pub decoded: u64,
    /// How many failed (each one is in [`VerifyReport::failures`], up to its limit).
    pub failed: u64,
}

/// A stored event that does not decode, or a row the store could not read.
#[derive(Debug)]
pub struct VerifyFailure {
    /// The global position of the row.
    pub position: Position,
    /// Where the event is (stream, version, type, event version); `None` for a row too
    /// corrupt to say.
    pub at: Option<EventLocation>,
    /// Why: [`ReadError::Decode`], [`ReadError::Upcast`] or [`ReadError::Corrupt`].
    pub error: ReadError,
}

impl fmt::Display for VerifyFailure {
    /// The error and its causes, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        let mut source = self.error.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// What [`Verify::run`] found. `Display` prints it as a table.
///
/// ```
/// use eventsource::{event, Aggregate, Apply, EventStore, ExpectedVersion, NewEvent, SqliteStore, StreamId, Upcasters, Verify};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "light.switched")]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct Switched { pub on: bool }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "light", events(Switched))]
/// pub struct Light;
/// # impl Apply<Switched> for Light { fn apply(&mut self, _: &Switched) {} }
///
/// let store = SqliteStore::in_memory()?;
/// store.append(&StreamId::new("light", "1"), ExpectedVersion::Any, &[
///     NewEvent::new("light.switched", 1, r#"{"on":true}"#),
///     NewEvent::new("light.dimmed", 1, "{}"),
/// ])?;
/// let upcasters = Upcasters::new();
/// let report = Verify::new(&store).aggregate::<Light>(&upcasters)?.run()?;
/// assert_eq!(report.count("light", "light.switched", 1).map(|c| c.decoded), Some(1));
/// assert_eq!(report.count("light", "light.dimmed", 1).map(|c| c.failed), Some(1));
/// let failure = &report.failures[0];
/// assert_eq!(
///     failure.to_string(),
///     "cannot decode event `light.dimmed` v1 at position 2 (stream light/1, version 2): \
///      the aggregate has no event type of this name"
/// );
/// assert!(report.to_string().contains("1 failures:"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Per (aggregate type, event type, stored version) of the checked aggregates, sorted.
    pub counts: Vec<VerifyCount>,
    /// Events of aggregate types not given to [`Verify`], per aggregate type.
    pub skipped: BTreeMap<String, u64>,
    /// The failures in global order, at most [`Verify::max_failures`].
    pub failures: Vec<VerifyFailure>,
    /// Failures beyond [`Verify::max_failures`], counted only.
    pub failures_not_kept: u64,
    /// The position of the last event read.
    pub last_position: Position,
}

impl VerifyReport {
    /// Whether every event of the checked aggregates decoded.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty() && self.failures_not_kept == 0
    }

    /// How many events of the checked aggregates decoded.
    pub fn decoded(&self) -> u64 {
        self.counts.iter().map(|c| c.decoded).sum()
    }

    /// How many failed, including corrupt rows.
    pub fn failed(&self) -> u64 {
        self.failures.len() as u64 + self.failures_not_kept
    }

    /// The count of one (aggregate type, event type, stored version).
    pub fn count(
        &self,
        aggregate_type: &str,
        event_type: &str,
        event_version: u32,
    ) -> Option<&VerifyCount> {
        self.counts.iter().find(|c| {
            c.aggregate_type == aggregate_type
                && c.event_type == event_type
                && c.event_version == event_version
        })
    }
}

impl fmt::Display for VerifyReport {
    /// A table of the counts, the skipped aggregate types and every failure kept.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:<24} {:>7} {:>10} {:>8}",
            "aggregate", "event type", "version", "decoded", "failed"
        )?;
        for c in &self.counts {
            writeln!(
                f,
                "{:<16} {:<24} {:>7} {:>10} {:>8}",
                c.aggregate_type, c.event_type, c.event_version, c.decoded, c.failed
            )?;
        }
        for (aggregate_type, n) in &self.skipped {
            writeln!(
                f,
                "skipped: {n} events of aggregate type `{aggregate_type}`"
            )?;
        }
        if self.is_ok() {
            return writeln!(
                f,
                "every event decodes (up to position {})",
                self.last_position
            );
        }
        writeln!(f, "{} failures:", self.failed())?;
        for failure in &self.failures {
            writeln!(f, "  {failure}")?;
        }
        if self.failures_not_kept > 0 {
            writeln!(f, "  ... and {} more", self.failures_not_kept)?;
        }
        Ok(())
    }
}
