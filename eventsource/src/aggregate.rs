//! Aggregates: the [`Aggregate`] trait that `#[derive(Aggregate)]` implements, the
//! [`Apply`] trait the user implements once per event, the generated event enum's
//! [`EventSet`] trait, and [`IntoEvents`] and [`Decision`] for what command handlers
//! return.

use std::convert::Infallible;
use std::fmt;

use crate::event::EventShape;
use crate::event::{DecodeFailure, Event, Payload};
use crate::repository::Repository;
use crate::store::EventStore;

/// An aggregate root: a consistency boundary whose state is the fold of its events.
///
/// Business logic lives in two places. Command handlers are plain methods taking
/// `&self` that validate a command against the current state and return the events
/// that record the decision (or the user's own error). [`Apply`] impls change the state
/// from an event and must never fail: an event is a fact that already happened.
///
/// Derive it and list the events:
///
/// ```
/// use eventsource::{event, Aggregate, Apply};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "light.switched")]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct Switched { pub on: bool }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "light", events(Switched))]
/// pub struct Light { on: bool }
///
/// impl Apply<Switched> for Light {
///     fn apply(&mut self, e: &Switched) { self.on = e.on; }
/// }
///
/// let mut light = Light::default();
/// light.apply_event(&LightEvent::from(Switched { on: true }));
/// assert!(light.on);
/// assert_eq!(<Light as Aggregate>::NAME, "light");
/// ```
pub trait Aggregate: Default + Send + 'static {
    /// The aggregate type's stable name: the namespace of its streams.
    const NAME: &'static str;
    /// The enum of every event the aggregate records (generated as `<Name>Event`).
    type Event: EventSet;

    /// Applies one event to the state (dispatches to the [`Apply`] impls).
    fn apply_event(&mut self, event: &Self::Event);

    /// A [`Repository`] of this aggregate type in `store`: the same as
    /// `Repository::<Self, _>::new(store)`, with its defaults (no upcasters, 10 retries,
    /// the default [`Backoff`](crate::Backoff)).
    ///
    /// ```
    /// use eventsource::{event, Aggregate, Apply, SqliteStore};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[event(name = "light.switched")]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct Switched { pub on: bool }
    ///
    /// #[derive(Debug, Default, Aggregate)]
    /// #[aggregate(name = "light", events(Switched))]
    /// pub struct Light { on: bool }
    /// impl Apply<Switched> for Light { fn apply(&mut self, e: &Switched) { self.on = e.on; } }
    ///
    /// let lights = Light::repository(SqliteStore::in_memory()?);
    /// lights.execute("hall", |_| Switched { on: true })?;
    /// assert!(lights.load("hall")?.state.on);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn repository<S: EventStore>(store: S) -> Repository<Self, S> {
        Repository::new(store)
    }
}

/// How an aggregate changes when one event type is applied. Implement it once for each
/// event listed in `#[aggregate(events(...))]`.
#[diagnostic::on_unimplemented(
    message = "aggregate `{Self}` lists event `{E}` but does not apply it",
    label = "missing `impl Apply<{E}> for {Self}`",
    note = "add `impl eventsource::Apply<{E}> for {Self} {{ fn apply(&mut self, event: &{E}) {{ ... }} }}`"
)]
pub trait Apply<E> {
    /// Changes the state to reflect `event`. Must not fail: the event already happened.
    fn apply(&mut self, event: &E);
}

/// The name and current version of one event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventType {
    /// The event's stable name ([`Event::NAME`]).
    pub name: &'static str,
    /// The event's current version ([`Event::VERSION`]).
    pub version: u32,
}

impl EventType {
    /// The name and version of `E`.
    pub const fn of<E: Event>() -> Self {
        EventType {
            name: E::NAME,
            version: E::VERSION,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// The closed set of events of one aggregate: the enum `#[derive(Aggregate)]` generates,
/// with one variant per event type. It is the registry the store uses to encode events
/// as (type, version, JSON) and to decode them on read.
///
/// ```
/// use eventsource::{event, Aggregate, Apply, EventSet, Payload};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "switched")]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct SwitchedV1;
///
/// #[event(name = "light.switched", version = 2, upcast_from = SwitchedV1)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct Switched { pub on: bool }
///
/// impl From<SwitchedV1> for Switched {
///     fn from(_: SwitchedV1) -> Self { Switched { on: true } }
/// }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "light", events(Switched))]
/// pub struct Light { on: bool }
/// # impl Apply<Switched> for Light { fn apply(&mut self, e: &Switched) { self.on = e.on; } }
///
/// // What the aggregate decodes: `light.switched@2`, and `switched@1` through the chain.
/// let decodes: Vec<String> = LightEvent::HISTORIES[0].iter().map(ToString::to_string).collect();
/// assert_eq!(decodes, ["light.switched@2", "switched@1"]);
/// let old = LightEvent::decode("switched", 1, Payload::Text("null"))?;
/// assert_eq!(old, LightEvent::Switched(Switched { on: true }));
/// # Ok::<(), eventsource::DecodeFailure>(())
/// ```
pub trait EventSet: fmt::Debug + Clone + PartialEq + Send + Sync + 'static {
    /// Every event type of the set, in declaration order.
    const TYPES: &'static [EventType];
    /// For each event type, in the order of [`EventSet::TYPES`], its
    /// [`Event::HISTORY`]: every stored (name, version) the set decodes, with its shape.
    const HISTORIES: &'static [&'static [EventShape]];

    /// The name and current version of this event.
    fn event_type(&self) -> EventType;

    /// The event's payload as JSON text.
    ///
    /// # Errors
    /// When serde cannot serialize the event (a `Serialize` impl that fails), or the
    /// event holds a non-finite float (`NaN`, `inf`, `-inf`) anywhere: JSON has no value
    /// for it, and `null` would make the stored event undecodable.
    fn encode(&self) -> Result<String, serde_json::Error>;

    /// Decodes a stored event of type `event_type`, stored at `event_version`, with the
    /// event type whose history holds that (name, version).
    ///
    /// # Errors
    /// [`DecodeFailure::UnknownType`] when no history of the set has that name;
    /// [`DecodeFailure::UnsupportedVersion`] when one has the name at other versions
    /// only; otherwise the failure of that event's [`Event::decode_version`].
    fn decode(
        event_type: &str,
        event_version: u32,
        payload: Payload<'_>,
    ) -> Result<Self, DecodeFailure>;
}

/// What a command handler may return: one event, an `Option`, a `Vec`, an array or a
/// tuple of events, or `()` for none. Each event converts into the aggregate's event
/// enum `E`.
///
/// ```
/// use eventsource::IntoEvents;
/// # use eventsource::{event, Aggregate, Apply};
/// # use serde::{Deserialize, Serialize};
/// # #[event(name = "a")] #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct A;
/// # #[event(name = "b")] #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct B;
/// # #[derive(Default, Aggregate)] #[aggregate(name = "thing", events(A, B))] pub struct Thing;
/// # impl Apply<A> for Thing { fn apply(&mut self, _: &A) {} }
/// # impl Apply<B> for Thing { fn apply(&mut self, _: &B) {} }
/// let mut out: Vec<ThingEvent> = Vec::new();
/// (A, Some(B)).into_events(&mut out);
/// None::<A>.into_events(&mut out);
/// assert_eq!(out, vec![ThingEvent::A(A), ThingEvent::B(B)]);
/// ```
pub trait IntoEvents<E> {
    /// Pushes the events, in order, onto `out`.
    fn into_events(self, out: &mut Vec<E>);
}

impl<E, T: Event + Into<E>> IntoEvents<E> for T {
    fn into_events(self, out: &mut Vec<E>) {
        out.push(self.into());
    }
}

impl<E> IntoEvents<E> for () {
    fn into_events(self, _out: &mut Vec<E>) {}
}

impl<E, T: IntoEvents<E>> IntoEvents<E> for Option<T> {
    fn into_events(self, out: &mut Vec<E>) {
        if let Some(events) = self {
            events.into_events(out);
        }
    }
}

impl<E, T: Into<E>> IntoEvents<E> for Vec<T> {
    fn into_events(self, out: &mut Vec<E>) {
        out.extend(self.into_iter().map(Into::into));
    }
}

impl<E, T: Into<E>, const N: usize> IntoEvents<E> for [T; N] {
    fn into_events(self, out: &mut Vec<E>) {
        out.extend(self.into_iter().map(Into::into));
    }
}

macro_rules! tuple_into_events {
    ($($name:ident)+) => {
        impl<E, $($name: IntoEvents<E>),+> IntoEvents<E> for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_events(self, out: &mut Vec<E>) {
                let ($($name,)+) = self;
                $($name.into_events(out);)+
            }
        }

        impl<E, $($name: IntoEvents<E>),+> Decision<E> for ($($name,)+) {
            type Error = Infallible;

            fn decide(self, out: &mut Vec<E>) -> Result<(), Infallible> {
                self.into_events(out);
                Ok(())
            }
        }
    };
}

tuple_into_events!(A);
tuple_into_events!(A B);
tuple_into_events!(A B C);
tuple_into_events!(A B C D);
tuple_into_events!(A B C D F);
tuple_into_events!(A B C D F G);
tuple_into_events!(A B C D F G H);
tuple_into_events!(A B C D F G H I);

/// What a command handler returns: `Result<R, E>` with `R` any [`IntoEvents`] and `E` the
/// handler's own error, or, for a handler that cannot refuse a command, just `R` (its
/// error type is then [`Infallible`]). [`Repository::execute`] and its siblings, and
/// [`testing::Given::when`](crate::testing::Given::when), take a handler returning a
/// `Decision`.
///
/// ```
/// use eventsource::{event, Aggregate, Apply, ExecuteError, SqliteStore};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "counter.incremented")]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct Incremented { pub by: u32 }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "counter", events(Incremented))]
/// pub struct Counter { value: u32 }
/// impl Apply<Incremented> for Counter { fn apply(&mut self, e: &Incremented) { self.value += e.by; } }
///
/// #[derive(Debug, PartialEq)]
/// pub struct TooBig;
///
/// impl Counter {
///     // Cannot fail: returns the events only.
///     pub fn reset_marker(&self) -> Option<Incremented> { None }
///     // May refuse: returns a `Result`.
///     pub fn increment(&self, by: u32) -> Result<Incremented, TooBig> {
///         if self.value + by > 10 { Err(TooBig) } else { Ok(Incremented { by }) }
///     }
/// }
///
/// let counters = Counter::repository(SqliteStore::in_memory()?);
/// counters.execute("c", |_| Incremented { by: 1 })?;          // ExecuteError<Infallible>
/// counters.execute("c", |c| c.reset_marker())?;
/// let refused = counters.execute("c", |c| c.increment(10));     // ExecuteError<TooBig>
/// assert!(matches!(refused, Err(ExecuteError::Domain(TooBig))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// It is implemented for `Result<R, E>` and for each type [`IntoEvents`] is implemented
/// for here (an event, `()`, `Option`, `Vec`, an array, a tuple). A type of your own
/// that implements [`IntoEvents`] is returned as `Ok::<_, Infallible>(yours)`, or gets a
/// `Decision` impl of its own.
#[diagnostic::on_unimplemented(
    message = "a command handler must return events or `Result<events, YourError>`, not `{Self}`",
    label = "returns `{Self}`",
    note = "events: an `#[event]` type of the aggregate, `()`, an `Option`, a `Vec`, an array or a tuple of them"
)]
pub trait Decision<E> {
    /// The handler's error: [`ExecuteError::Domain`](crate::ExecuteError::Domain) holds
    /// it.
    type Error;

    /// Pushes the events decided, in order, onto `out`, or returns the handler's error.
    ///
    /// # Errors
    /// The handler's own error, when it refused the command.
    fn decide(self, out: &mut Vec<E>) -> Result<(), Self::Error>;
}

impl<E, R: IntoEvents<E>, Er> Decision<E> for Result<R, Er> {
    type Error = Er;

    fn decide(self, out: &mut Vec<E>) -> Result<(), Er> {
        self.map(|events| events.into_events(out))
    }
}

// One impl per `IntoEvents` shape above: a blanket `impl<R: IntoEvents<E>> Decision<E>
// for R` would overlap the `Result` impl (another crate may implement `IntoEvents` for a
// `Result`).
impl<E, T: Event + Into<E>> Decision<E> for T {
    type Error = Infallible;

    fn decide(self, out: &mut Vec<E>) -> Result<(), Infallible> {
        out.push(self.into());
        Ok(())
    }
}

impl<E> Decision<E> for () {
    type Error = Infallible;

    fn decide(self, _out: &mut Vec<E>) -> Result<(), Infallible> {
        Ok(())
    }
}

impl<E, T: IntoEvents<E>> Decision<E> for Option<T> {
    type Error = Infallible;

    fn decide(self, out: &mut Vec<E>) -> Result<(), Infallible> {
        self.into_events(out);
        Ok(())
    }
}

impl<E, T: Into<E>> Decision<E> for Vec<T> {
    type Error = Infallible;

    fn decide(self, out: &mut Vec<E>) -> Result<(), Infallible> {
        self.into_events(out);
        Ok(())
    }
}

impl<E, T: Into<E>, const N: usize> Decision<E> for [T; N] {
    type Error = Infallible;

    fn decide(self, out: &mut Vec<E>) -> Result<(), Infallible> {
        self.into_events(out);
        Ok(())
    }
}
