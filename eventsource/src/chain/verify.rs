//! Walking the hash chain: [`ChainVerify`], started by [`Verify::chain`](crate::Verify::chain).

use std::fmt;

use super::{ChainHash, Hasher, Link};
use crate::error::{ReadError, StoreError};
use crate::event::{EventId, RecordedEventRef};
use crate::store::EventStore;
use crate::version::{Position, StreamId, Version};

/// How many rows one read of the walk fetches.
const PAGE_SIZE: usize = 1_000;

/// How many problems a [`ChainReport`] keeps in full.
const MAX_PROBLEMS: usize = 100;

/// The head of the hash chain, as the store keeps it apart from the events: an edit that
/// removes the newest events must forge it too. Print it (or keep a [`ChainReport`]'s
/// [`checkpoint`](ChainReport::checkpoint)) somewhere the database's users cannot write:
/// that is what proves the newest events were not removed and the chain not rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// The version of the encoding the store writes.
    pub encoding: u32,
    /// The first position the chain covers: events before it were stored before the
    /// store was upgraded to a chained schema, and carry no hash.
    pub starts_at: Position,
    /// The chained event the head was last moved to (`starts_at - 1` while none is): the
    /// newest one, or on SQLite one of the last few (see
    /// [`SqliteOptions::chain_head_interval`](crate::SqliteOptions::chain_head_interval)).
    pub position: Position,
    /// Its hash ([`ChainHash::GENESIS`] while none is).
    pub hash: ChainHash,
    /// How many chained events there are up to `position`.
    pub count: u64,
}

/// An event whose stream has no event at the version before its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionGap {
    /// The event's position.
    pub position: Position,
    /// Its stream.
    pub stream: StreamId,
    /// Its version: the stream has no `version - 1`.
    pub version: Version,
}

/// What [`ChainVerify`] found wrong, at [`ChainProblem::position`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainProblemKind {
    /// The row's content, or its link to the row before, does not match its stored
    /// hash: the row (or the hash) was edited, or rows were reordered.
    Edited,
    /// The rows from this position up to `up_to` are missing: deleted.
    Missing {
        /// The last missing position.
        up_to: Position,
    },
    /// A row the chain covers has no hash (or not a 32-byte one): inserted or edited by
    /// hand.
    Unchained,
    /// The row cannot be read, or its payload or metadata is not JSON.
    Unreadable {
        /// Why.
        reason: String,
    },
    /// The chain's head is at `head`, but the newest stored row is at `last`, before
    /// it: the newest events were removed.
    Head {
        /// The head's position.
        head: Position,
        /// The newest row's position.
        last: Position,
    },
    /// The newest row's hash is not the head's.
    HeadHash {
        /// The head's hash.
        head: ChainHash,
        /// The newest row's.
        stored: ChainHash,
    },
    /// The head counts `head` chained events; the walk found `found`.
    Count {
        /// The head's count.
        head: u64,
        /// Rows walked from `starts_at`.
        found: u64,
    },
    /// The store has no chain head (its row or table was deleted).
    NoHead,
    /// A checkpoint kept elsewhere does not match: the row at its position has another
    /// hash (`found`), or is gone (`None`).
    Checkpoint {
        /// The checkpoint's hash.
        expected: ChainHash,
        /// The stored hash at its position.
        found: Option<ChainHash>,
    },
    /// The event's stream has no event at the version before this one.
    VersionGap {
        /// The stream.
        stream: StreamId,
        /// The event's version.
        version: Version,
    },
}

/// One problem the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    /// Where: the first position affected.
    pub position: Position,
    /// What.
    pub kind: ChainProblemKind,
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.position;
        match &self.kind {
            ChainProblemKind::Edited => write!(
                f,
                "position {p}: the event does not match its hash (edited, or rows reordered)"
            ),
            ChainProblemKind::Missing { up_to } if *up_to == p => {
                write!(f, "position {p}: the event is missing (deleted)")
            }
            ChainProblemKind::Missing { up_to } => {
                write!(
                    f,
                    "positions {p} to {up_to}: the events are missing (deleted)"
                )
            }
            ChainProblemKind::Unchained => {
                write!(
                    f,
                    "position {p}: the event has no chain hash (inserted or edited by hand)"
                )
            }
            ChainProblemKind::Unreadable { reason } => {
                write!(f, "position {p}: the event cannot be read: {reason}")
            }
            ChainProblemKind::Head { head, last } => write!(
                f,
                "position {p}: the chain's head is at {head} but the newest event is at {last} (the newest events were removed)"
            ),
            ChainProblemKind::HeadHash { head, stored } => write!(
                f,
                "position {p}: the newest event's hash {stored} is not the chain head's {head}"
            ),
            ChainProblemKind::Count { head, found } => write!(
                f,
                "the chain's head counts {head} events, the store holds {found} from where the chain starts"
            ),
            ChainProblemKind::NoHead => write!(f, "the store's chain head is missing"),
            ChainProblemKind::Checkpoint {
                expected,
                found: Some(found),
            } => write!(
                f,
                "position {p}: the checkpoint says {expected}, the store has {found} (history rewritten)"
            ),
            ChainProblemKind::Checkpoint {
                expected,
                found: None,
            } => write!(
                f,
                "position {p}: the checkpoint says {expected}, the store has no event there (truncated)"
            ),
            ChainProblemKind::VersionGap { stream, version } => write!(
                f,
                "position {p}: stream {stream} has version {version} but not the version before"
            ),
        }
    }
}

/// What [`ChainVerify::run`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainReport {
    /// The store's chain head, if it has one.
    pub head: Option<ChainHead>,
    /// Rows read, chained or not.
    pub events: u64,
    /// Rows before the chain's start (stored before the upgrade; not covered).
    pub unchained: u64,
    /// The newest rows, stored after the position the head was last moved to: their
    /// links are checked, but removing them would not show without a checkpoint kept
    /// elsewhere. A SQLite store moves its head every few commits and when its last
    /// handle is dropped; a PostgreSQL store with every append.
    pub after_head: u64,
    /// The newest row and its stored hash: a checkpoint to keep elsewhere.
    pub last: Option<(Position, ChainHash)>,
    /// The first problems found (at most 100), in position order within each kind of
    /// check.
    pub problems: Vec<ChainProblem>,
    /// How many problems there were in all.
    pub problem_count: u64,
}

impl ChainReport {
    /// Whether nothing was found wrong.
    pub fn is_sound(&self) -> bool {
        self.problem_count == 0
    }

    /// The problem at the smallest position.
    pub fn first_problem(&self) -> Option<&ChainProblem> {
        self.problems.iter().min_by_key(|p| p.position)
    }

    /// `(position, hash)` of the newest event: keep it elsewhere and give it to
    /// [`ChainVerify::checkpoint`] later.
    pub fn checkpoint(&self) -> Option<(Position, ChainHash)> {
        self.last
    }

    fn problem(&mut self, position: Position, kind: ChainProblemKind) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(ChainProblem { position, kind });
        }
    }
}

impl fmt::Display for ChainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.head {
            Some(head) => write!(
                f,
                "{} events; the chain covers positions from {} ({} events before it are not covered)",
                self.events, head.starts_at, self.unchained
            )?,
            None => write!(f, "{} events; no chain head", self.events)?,
        }
        if let Some((position, hash)) = self.last {
            write!(f, "\ncheckpoint: {position} {hash}")?;
        }
        if let Some(head) = &self.head
            && self.after_head > 0
        {
            write!(
                f,
                "\nthe newest {} events are past the chain's head at {}: their links are checked, their removal would show only against a checkpoint",
                self.after_head, head.position
            )?;
        }
        if self.is_sound() {
            write!(f, "\nthe chain is intact")
        } else {
            write!(f, "\n{} problem(s):", self.problem_count)?;
            for problem in &self.problems {
                write!(f, "\n  {problem}")?;
            }
            Ok(())
        }
    }
}

/// Progress of a [`ChainVerify`] walk, given to its callback after each page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainProgress {
    /// The last position checked.
    pub position: Position,
    /// Rows read so far.
    pub events: u64,
}

/// Walks the hash chain of a store in constant memory (see
/// [`Verify::chain`](crate::Verify::chain)).
pub struct ChainVerify<'s, S: ?Sized> {
    store: &'s S,
    checkpoints: Vec<(Position, ChainHash)>,
    progress: Option<Box<dyn FnMut(ChainProgress) + 's>>,
}

impl<S: ?Sized> fmt::Debug for ChainVerify<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainVerify")
            .field("checkpoints", &self.checkpoints)
            .finish_non_exhaustive()
    }
}

impl<'s, S: EventStore + ?Sized> ChainVerify<'s, S> {
    pub(crate) fn new(store: &'s S) -> Self {
        ChainVerify {
            store,
            checkpoints: Vec::new(),
            progress: None,
        }
    }

    /// Also checks that the event at `position` still has `hash`: a checkpoint taken
    /// earlier ([`ChainReport::checkpoint`]) and kept where the database's users cannot
    /// write. This is what detects the newest events removed together with the head, or
    /// a chain rewritten from some point on.
    ///
    /// ```
    /// use eventsource::{EventStore, ExpectedVersion, NewEvent, SqliteStore, StreamId, Verify};
    ///
    /// let store = SqliteStore::in_memory()?;
    /// store.append(&StreamId::new("note", "1"), ExpectedVersion::Any, &[NewEvent::new("note.added", 1, "{}")])?;
    /// let (position, hash) = Verify::chain(&store).run()?.checkpoint().expect("one event");
    /// let report = Verify::chain(&store).checkpoint(position, hash).run()?;
    /// assert!(report.is_sound());
    /// # Ok::<(), eventsource::Error>(())
    /// ```
    #[must_use]
    pub fn checkpoint(mut self, position: Position, hash: ChainHash) -> Self {
        self.checkpoints.push((position, hash));
        self
    }

    /// Calls `progress` after each page of rows (for a progress bar).
    #[must_use]
    pub fn progress(mut self, progress: impl FnMut(ChainProgress) + 's) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Walks every row in position order: recomputes each chained event's hash from its
    /// content and the previous row's stored hash, and checks positions have no gap,
    /// the head matches the newest row and the count, the checkpoints, and that every
    /// stream's versions run 1, 2, 3, ... Reports problems; fails only when the store
    /// cannot be read at all.
    ///
    /// ```
    /// use eventsource::{EventStore, ExpectedVersion, NewEvent, SqliteStore, StreamId, Verify};
    ///
    /// let store = SqliteStore::in_memory()?;
    /// store.append(&StreamId::new("note", "1"), ExpectedVersion::Any, &[
    ///     NewEvent::new("note.added", 1, r#"{"text":"hi"}"#),
    ///     NewEvent::new("note.added", 1, r#"{"text":"again"}"#),
    /// ])?;
    /// let report = Verify::chain(&store).run()?;
    /// assert!(report.is_sound(), "{report}");
    /// assert_eq!(report.events, 2);
    /// # Ok::<(), eventsource::Error>(())
    /// ```
    ///
    /// # Errors
    /// The store cannot be read, or does not keep a hash chain
    /// ([`StoreError::Unsupported`]).
    pub fn run(mut self) -> Result<ChainReport, StoreError> {
        let head = self.store.chain_head()?;
        if head.is_some_and(|h| h.encoding != super::ENCODING_VERSION) {
            return Err(StoreError::Unsupported {
                feature: "a newer encoding of the hash chain",
            });
        }
        self.checkpoints.sort_by_key(|(p, _)| *p);
        let mut walk = Walk {
            report: ChainReport {
                head,
                events: 0,
                unchained: 0,
                after_head: 0,
                last: None,
                problems: Vec::new(),
                problem_count: 0,
            },
            starts_at: head.map_or(Position::new(1), |h| h.starts_at),
            checkpoints: &self.checkpoints,
            next_checkpoint: 0,
            hasher: Hasher::default(),
            expected_next: 1,
            prev: Some(ChainHash::GENESIS),
            chained: 0,
            chained_to_head: 0,
            at_head: None,
            after: Position::START,
        };
        if head.is_none() {
            walk.report
                .problem(Position::START, ChainProblemKind::NoHead);
        }
        loop {
            let mut read = 0usize;
            let after = walk.after;
            self.store
                .read_chain_with(after, PAGE_SIZE, &mut |position, row| {
                    read += 1;
                    walk.row(position, row);
                    Ok(())
                })?;
            if let Some(progress) = &mut self.progress {
                progress(ChainProgress {
                    position: walk.after,
                    events: walk.report.events,
                });
            }
            if read < PAGE_SIZE {
                break;
            }
        }
        walk.finish();
        let mut report = walk.report;
        for gap in self.store.version_gaps(MAX_PROBLEMS)? {
            report.problem(
                gap.position,
                ChainProblemKind::VersionGap {
                    stream: gap.stream,
                    version: gap.version,
                },
            );
        }
        Ok(report)
    }
}

/// The state of one walk over the rows.
struct Walk<'c> {
    report: ChainReport,
    starts_at: Position,
    checkpoints: &'c [(Position, ChainHash)],
    next_checkpoint: usize,
    hasher: Hasher,
    /// The position the next row should have.
    expected_next: u64,
    /// The hash the next row links to; `None` right after a row whose link cannot be
    /// checked (missing, unreadable): the next row's link is then taken as stored.
    prev: Option<ChainHash>,
    /// Rows walked from `starts_at`.
    chained: u64,
    /// Rows walked from `starts_at` up to the head's position.
    chained_to_head: u64,
    /// The stored hash of the row at the head's position, once walked (if it has one).
    at_head: Option<ChainHash>,
    /// The last row read.
    after: Position,
}

impl Walk<'_> {
    fn row(
        &mut self,
        position: Position,
        row: Result<(RecordedEventRef<'_>, Option<&[u8]>), ReadError>,
    ) {
        self.after = position;
        self.report.events += 1;
        let p = position.get();
        if p != self.expected_next {
            self.report.problem(
                Position::new(self.expected_next),
                ChainProblemKind::Missing {
                    up_to: Position::new(p.saturating_sub(1)),
                },
            );
            self.prev = None;
        }
        self.expected_next = p + 1;
        self.checkpoints_before(position);
        let head = self.report.head.map_or(Position::START, |h| h.position);
        if position > head {
            self.report.after_head += 1;
        }
        let (event, stored) = match row {
            Ok(row) => row,
            Err(e) => {
                if position >= self.starts_at {
                    self.chained += 1;
                    if position <= head {
                        self.chained_to_head += 1;
                    }
                }
                let reason = e.to_string();
                self.report
                    .problem(position, ChainProblemKind::Unreadable { reason });
                self.prev = None;
                return;
            }
        };
        let stored = stored.and_then(ChainHash::from_slice);
        if position == head {
            self.at_head = stored;
        }
        if let Some(&(at, expected)) = self.checkpoints.get(self.next_checkpoint)
            && at == position
        {
            self.next_checkpoint += 1;
            if stored != Some(expected) {
                self.report.problem(
                    position,
                    ChainProblemKind::Checkpoint {
                        expected,
                        found: stored,
                    },
                );
            }
        }
        if position < self.starts_at {
            self.report.unchained += 1;
            return;
        }
        self.chained += 1;
        if position <= head {
            self.chained_to_head += 1;
        }
        let Some(stored) = stored else {
            self.report.problem(position, ChainProblemKind::Unchained);
            self.prev = None;
            return;
        };
        self.report.last = Some((position, stored));
        if let Some(linked_to) = self.prev {
            match self.link(linked_to, p, &event) {
                Ok(computed) if computed == stored => {}
                Ok(_) => self.report.problem(position, ChainProblemKind::Edited),
                Err(reason) => {
                    self.report
                        .problem(position, ChainProblemKind::Unreadable { reason });
                }
            }
        }
        self.prev = Some(stored);
    }

    /// The hash `event` at `position` should have after `prev`.
    fn link(
        &mut self,
        prev: ChainHash,
        position: u64,
        event: &RecordedEventRef<'_>,
    ) -> Result<ChainHash, String> {
        let id = event
            .event_id
            .parse::<EventId>()
            .map_err(|e| format!("event id: {e}"))?;
        let link = Link {
            position,
            aggregate_type: event.aggregate_type,
            stream_id: event.stream_id,
            version: event.version.get(),
            event_type: event.event_type,
            event_version: event.event_version,
            event_id: &id,
            recorded_at: event.recorded_at.as_micros(),
            payload: event.payload,
            metadata: event.metadata,
        };
        self.hasher.link(&prev, &link).map_err(|e| e.to_string())
    }

    /// Reports the checkpoints before `position` that no row matched: their rows are
    /// gone.
    fn checkpoints_before(&mut self, position: Position) {
        while let Some(&(at, expected)) = self.checkpoints.get(self.next_checkpoint) {
            if at >= position {
                break;
            }
            self.next_checkpoint += 1;
            self.report.problem(
                at,
                ChainProblemKind::Checkpoint {
                    expected,
                    found: None,
                },
            );
        }
    }

    /// After the last row: checkpoints past it, and the head against the rows. The head
    /// may lag behind the newest rows (a SQLite store moves it every few commits, see
    /// `SqliteOptions::chain_head_interval`): rows after it are checked by their links.
    fn finish(&mut self) {
        self.checkpoints_before(Position::new(u64::MAX));
        let Some(head) = self.report.head else {
            return;
        };
        let last = self.after;
        if last < head.position {
            self.report.problem(
                head.position,
                ChainProblemKind::Head {
                    head: head.position,
                    last,
                },
            );
        } else if head.position >= head.starts_at
            && let Some(stored) = self.at_head
            && stored != head.hash
        {
            self.report.problem(
                head.position,
                ChainProblemKind::HeadHash {
                    head: head.hash,
                    stored,
                },
            );
        }
        if last >= head.position && self.chained_to_head != head.count {
            self.report.problem(
                head.position,
                ChainProblemKind::Count {
                    head: head.count,
                    found: self.chained_to_head,
                },
            );
        }
    }
}
