//! Typed reads of the global order through a repository's registry and upcasters:
//! [`Repository::read_all`] and [`TypedEvents`].

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use super::Repository;
use crate::aggregate::{Aggregate, EventSet, EventType};
use crate::error::ReadError;
use crate::event::EventEnvelope;
use crate::store::{EventFilter, EventStore, Events};
use crate::upcast::Upcasters;
use crate::version::Position;

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// Every event of every aggregate of type `A` after global position `after`, in
    /// global order, decoded through the repository's upcasters: an iterator that reads
    /// pages of bounded size, filtered in SQL to the aggregate type `A::NAME` (see
    /// [`EventStore::read_all_filtered`]).
    ///
    /// An upcaster may turn one stored event into several envelopes (in the order it
    /// produced them) or none. A stored event that cannot be decoded yields its
    /// [`ReadError`] in place of its envelopes; the iterator goes on with the next one
    /// if called again. A store error ends it.
    ///
    /// ```
    /// use eventsource::{event, Aggregate, Apply, Position, Repository, SqliteStore};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[event(name = "counter.incremented")]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct Incremented { pub by: u32 }
    ///
    /// #[derive(Debug, Default, Aggregate)]
    /// #[aggregate(name = "counter", events(Incremented))]
    /// pub struct Counter { value: u32 }
    /// # impl Apply<Incremented> for Counter { fn apply(&mut self, e: &Incremented) { self.value += e.by; } }
    ///
    /// let counters = Repository::<Counter, _>::new(SqliteStore::in_memory()?);
    /// counters.execute("a", |_| Incremented { by: 1 })?;
    /// counters.execute("b", |_| Incremented { by: 2 })?;
    /// let mut total = 0;
    /// for envelope in counters.read_all(Position::START) {
    ///     let CounterEvent::Incremented(e) = envelope?.event;
    ///     total += e.by;
    /// }
    /// assert_eq!(total, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all(&self, after: Position) -> TypedEvents<'_, A, S> {
        let filter = EventFilter::all().aggregate_type(A::NAME);
        TypedEvents::new(
            self.store.read_all_filtered(after, filter),
            &self.upcasters,
            None,
        )
    }

    /// [`Repository::read_all`] narrowed to the events of the types `event_types`
    /// (typically `EventType::of::<E>()` of some of `A`'s events). The read is filtered in
    /// SQL to the stored types that can decode into them: each type's own name, the names
    /// of its typed `upcast_from` chain, and the types from which the repository's
    /// upcasters lead to one of those; the decoded events of other types (an upcaster
    /// that splits a stored event may produce some) are skipped.
    ///
    /// ```
    /// use eventsource::{event, Aggregate, Apply, EventType, Position, Repository, SqliteStore};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[event(name = "account.opened")]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct Opened;
    ///
    /// #[event(name = "money.deposited")]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct Deposited { pub amount: u64 }
    ///
    /// #[derive(Debug, Default, Aggregate)]
    /// #[aggregate(name = "account", events(Opened, Deposited))]
    /// pub struct Account;
    /// # impl Apply<Opened> for Account { fn apply(&mut self, _: &Opened) {} }
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, _: &Deposited) {} }
    ///
    /// let accounts = Repository::<Account, _>::new(SqliteStore::in_memory()?);
    /// accounts.execute("a", |_| (Opened, Deposited { amount: 5 }))?;
    /// let deposits: Vec<_> = accounts
    ///     .read_all_filtered(Position::START, &[EventType::of::<Deposited>()])
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(deposits.len(), 1);
    /// assert_eq!(deposits[0].event, AccountEvent::Deposited(Deposited { amount: 5 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_all_filtered(
        &self,
        after: Position,
        event_types: &[EventType],
    ) -> TypedEvents<'_, A, S> {
        let wanted: BTreeSet<&'static str> = event_types.iter().map(|t| t.name).collect();
        let mut stored: BTreeSet<String> = wanted.iter().map(|&n| n.to_owned()).collect();
        for (ty, history) in <A::Event as EventSet>::TYPES
            .iter()
            .zip(<A::Event as EventSet>::HISTORIES)
        {
            if wanted.contains(ty.name) {
                stored.extend(history.iter().map(|schema| schema.name.to_owned()));
            }
        }
        self.upcasters.sources_of(&mut stored);
        let filter = EventFilter::all()
            .aggregate_type(A::NAME)
            .event_types(stored);
        TypedEvents::new(
            self.store.read_all_filtered(after, filter),
            &self.upcasters,
            Some(wanted),
        )
    }
}

/// The typed events of one aggregate type in global order: see
/// [`Repository::read_all`] and [`Repository::read_all_filtered`].
pub struct TypedEvents<'r, A: Aggregate, S> {
    stored: Events<'r, S>,
    upcasters: &'r Upcasters,
    /// The names of the event types to keep (`None`: all).
    keep: Option<BTreeSet<&'static str>>,
    /// The decoded envelopes of the last stored event not yet yielded.
    ready: VecDeque<EventEnvelope<A::Event>>,
}

impl<'r, A: Aggregate, S> TypedEvents<'r, A, S> {
    fn new(
        stored: Events<'r, S>,
        upcasters: &'r Upcasters,
        keep: Option<BTreeSet<&'static str>>,
    ) -> Self {
        TypedEvents {
            stored,
            upcasters,
            keep,
            ready: VecDeque::new(),
        }
    }
}

impl<A: Aggregate, S: EventStore> Iterator for TypedEvents<'_, A, S> {
    type Item = Result<EventEnvelope<A::Event>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(envelope) = self.ready.pop_front() {
                return Some(Ok(envelope));
            }
            let stored = match self.stored.next()? {
                Ok(stored) => stored,
                Err(e) => return Some(Err(e)),
            };
            let mut decoded = Vec::new();
            if let Err(e) = self
                .upcasters
                .decode_recorded::<A::Event>(&stored, |e| decoded.push(e))
            {
                return Some(Err(e));
            }
            let keep = &self.keep;
            self.ready.extend(
                decoded
                    .into_iter()
                    .filter(|e| {
                        keep.as_ref()
                            .is_none_or(|k| k.contains(e.event_type().name))
                    })
                    .map(|event| EventEnvelope {
                        position: stored.position,
                        stream: stored.stream.clone(),
                        version: stored.version,
                        event_id: stored.event_id,
                        recorded_at: stored.recorded_at,
                        metadata: stored.metadata.clone(),
                        event,
                    }),
            );
        }
    }
}

impl<A: Aggregate, S: fmt::Debug> fmt::Debug for TypedEvents<'_, A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedEvents")
            .field("aggregate", &std::any::type_name::<A>())
            .field("stored", &self.stored)
            .field("keep", &self.keep)
            .field("ready", &self.ready.len())
            .finish()
    }
}
