//! The schema lock: a plain-text file that records the shape of every event version an
//! aggregate's code has stored, checked against the code by [`assert_locked`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::io;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use super::SchemaError;
use super::shape;
use crate::aggregate::{Aggregate, EventSet};
use crate::error::RegistrationError;
use crate::event::EventKey;
use crate::upcast::Upcasters;

/// The environment variable that makes [`assert_locked`] write the lock: `1` records
/// new event versions, `overwrite` also replaces changed shapes of locked versions.
pub const UPDATE_ENV: &str = "EVENTSOURCE_UPDATE_LOCK";

/// How [`SchemaLock::record`] changes a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Adds the event versions the lock does not have yet; a changed shape of a locked
    /// version is left for [`SchemaLock::check`] to report.
    New,
    /// Also replaces the locked shape of a version whose shape changed: for changes that
    /// keep every stored event decodable (a new field with `#[serde(default)]`).
    Overwrite,
}

impl UpdateMode {
    /// The mode [`UPDATE_ENV`] asks for: `None` when unset, empty or `0`;
    /// [`UpdateMode::Overwrite`] for `overwrite`; [`UpdateMode::New`] otherwise.
    pub fn from_env() -> Option<Self> {
        let value = std::env::var(UPDATE_ENV).ok()?;
        match value.trim() {
            "" | "0" | "false" | "no" => None,
            "overwrite" => Some(UpdateMode::Overwrite),
            _ => Some(UpdateMode::New),
        }
    }
}

/// The locked shapes, per aggregate type, per stored (event type, version).
///
/// The file is plain text: a section per aggregate type and one line per
/// `name@version` with its shape ([`Event::SHAPE`](crate::Event::SHAPE)), sorted.
/// Versions are never removed: the events stay in the store.
///
/// ```
/// use eventsource::schema::{LockViolation, SchemaLock, UpdateMode};
/// use eventsource::{event, Aggregate, Apply, EventKey, Upcasters};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "money.deposited")]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct Deposited { pub amount: i64 }
///
/// #[derive(Debug, Default, Aggregate)]
/// #[aggregate(name = "account", events(Deposited))]
/// pub struct Account;
/// # impl Apply<Deposited> for Account { fn apply(&mut self, _: &Deposited) {} }
///
/// // The lock as committed, when `amount` was still a `u64`.
/// let lock = SchemaLock::parse("[account]\nmoney.deposited@1 {amount: u64}\n")?;
/// let violations = lock.check::<Account>(&Upcasters::new());
/// assert_eq!(violations[0].changes(), ["field `amount`: type changed from `u64` to `i64`"]);
///
/// let mut fresh = SchemaLock::new();
/// fresh.record::<Account>(UpdateMode::New);
/// assert_eq!(fresh.shape("account", "money.deposited", 1), Some("{amount: i64}"));
/// assert!(fresh.check::<Account>(&Upcasters::new()).is_empty());
/// # Ok::<(), eventsource::schema::SchemaError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaLock {
    aggregates: BTreeMap<String, BTreeMap<EventKey, String>>,
}

/// A difference between a [`SchemaLock`] and the code, found by [`SchemaLock::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockViolation {
    /// The shape of a locked version changed while its version did not: stored events
    /// of that version may no longer decode. Bump the version (keeping the old shape
    /// readable), or if the change keeps stored events decodable, overwrite the lock.
    Changed {
        /// The aggregate type.
        aggregate_type: String,
        /// The event version.
        event: EventKey,
        /// The shape in the lock.
        locked: String,
        /// The shape in the code.
        current: String,
    },
    /// A version the code decodes is not in the lock yet: record it.
    Unlocked {
        /// The aggregate type.
        aggregate_type: String,
        /// The event version.
        event: EventKey,
        /// Its shape.
        shape: String,
    },
    /// A locked version that nothing decodes any more: no `upcast_from` chain includes it
    /// and no upcaster lifts it (or its upcasters do not reach a decodable version).
    NoPath {
        /// The aggregate type.
        aggregate_type: String,
        /// The locked event version.
        event: EventKey,
        /// The current version of the event type of that name, if there is one.
        current_version: Option<u32>,
        /// Why its upcasters do not reach a decodable version, when it has some.
        cause: Option<RegistrationError>,
    },
    /// The upcasters do not fit the aggregate's events.
    Registration {
        /// The aggregate type.
        aggregate_type: String,
        /// What is wrong.
        error: RegistrationError,
    },
}

impl LockViolation {
    /// For [`LockViolation::Changed`], what changed, one line per field (empty for the
    /// other variants).
    pub fn changes(&self) -> Vec<String> {
        match self {
            LockViolation::Changed {
                locked, current, ..
            } => shape::diff(locked, current),
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for LockViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockViolation::Changed { event, .. } => {
                write!(
                    f,
                    "`{event}` changed its shape but kept version {}:",
                    event.version
                )?;
                for change in self.changes() {
                    write!(f, "\n      {change}")?;
                }
                Ok(())
            }
            LockViolation::Unlocked { event, shape, .. } => {
                write!(f, "`{event}` is not in the lock yet (`{shape}`)")
            }
            LockViolation::NoPath {
                event,
                current_version,
                cause,
                ..
            } => {
                write!(
                    f,
                    "`{event}` is in the lock but nothing decodes it any more: "
                )?;
                match (cause, current_version) {
                    (Some(cause), _) => write!(f, "{cause}"),
                    (None, Some(current)) => write!(
                        f,
                        "`{}` is now version {current}, no `upcast_from` chain reaches \
                         version {} and no upcaster lifts it",
                        event.event_type, event.version
                    ),
                    (None, None) => write!(
                        f,
                        "the aggregate has no event `{}` and no upcaster lifts it",
                        event.event_type
                    ),
                }
            }
            LockViolation::Registration { error, .. } => write!(f, "{error}"),
        }
    }
}

impl SchemaLock {
    /// An empty lock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a lock from its text.
    ///
    /// # Errors
    /// [`SchemaError::Parse`] naming the first line that is not a comment, a
    /// `[aggregate]` header or a `name@version shape` entry.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        let mut lock = SchemaLock::new();
        let mut section: Option<String> = None;
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let fail = |reason: String| SchemaError::Parse {
                line: line_no,
                reason,
            };
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(unescape(name).ok_or_else(|| fail("bad escape".into()))?);
                continue;
            }
            let Some(aggregate) = &section else {
                return Err(fail("an entry before any `[aggregate]` header".into()));
            };
            let (key, shape) = line.split_once(' ').unwrap_or((line, ""));
            let (name, version) = key
                .rsplit_once('@')
                .ok_or_else(|| fail(format!("expected `name@version`, found `{key}`")))?;
            let version = version
                .parse()
                .map_err(|_| fail(format!("`{version}` is not a version")))?;
            let name = unescape(name).ok_or_else(|| fail("bad escape".into()))?;
            let event = EventKey::new(name, version);
            let entries = lock.aggregates.entry(aggregate.clone()).or_default();
            if entries.insert(event.clone(), shape.to_owned()).is_some() {
                return Err(fail(format!("`{event}` is listed twice")));
            }
        }
        Ok(lock)
    }

    /// Reads the lock file at `path`.
    ///
    /// # Errors
    /// [`SchemaError::Io`] when the file cannot be read (`NotFound` when it does not
    /// exist), [`SchemaError::Parse`] as [`SchemaLock::parse`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self, SchemaError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Writes the lock to `path`, replacing the file in one step (through a temporary
    /// file next to it).
    ///
    /// # Errors
    /// [`SchemaError::Io`] when the file cannot be written.
    ///
    /// ```
    /// use eventsource::schema::SchemaLock;
    ///
    /// let lock = SchemaLock::parse("[account]\nmoney.deposited@1 {amount: u64}\n")?;
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("events.lock");
    /// lock.write(&path)?;
    /// assert_eq!(SchemaLock::read(&path)?, lock);
    /// assert!(std::fs::read_to_string(&path)?.ends_with("[account]\nmoney.deposited@1 {amount: u64}\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), SchemaError> {
        let path = path.as_ref();
        let io_error = |source| SchemaError::Io {
            path: path.to_owned(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        std::fs::write(&tmp, self.to_string()).map_err(io_error)?;
        std::fs::rename(&tmp, path).map_err(io_error)
    }

    /// The locked shape of `event_type@version` of `aggregate_type`.
    pub fn shape(&self, aggregate_type: &str, event_type: &str, version: u32) -> Option<&str> {
        let key = EventKey::new(event_type, version);
        self.aggregates
            .get(aggregate_type)?
            .get(&key)
            .map(String::as_str)
    }

    /// Whether the lock has no entry.
    pub fn is_empty(&self) -> bool {
        self.aggregates.values().all(BTreeMap::is_empty)
    }

    /// Records the shapes of every version `A`'s events decode ([`EventSet::HISTORIES`]).
    /// Nothing is ever removed. Returns whether the lock changed.
    pub fn record<A: Aggregate>(&mut self, mode: UpdateMode) -> bool {
        let entries = self.aggregates.entry(A::NAME.to_owned()).or_default();
        let mut changed = false;
        for (event, shape) in current::<A>() {
            match entries.get_mut(&event) {
                None => {
                    entries.insert(event, shape.to_owned());
                    changed = true;
                }
                Some(locked) if mode == UpdateMode::Overwrite && locked != shape => {
                    shape.clone_into(locked);
                    changed = true;
                }
                Some(_) => {}
            }
        }
        changed
    }

    /// Compares the lock with `A`'s events and `upcasters`: every version the code
    /// decodes must be locked with the same shape, and every locked version must still
    /// decode (through an `upcast_from` chain or the upcasters).
    pub fn check<A: Aggregate>(&self, upcasters: &Upcasters) -> Vec<LockViolation> {
        let aggregate_type = || A::NAME.to_owned();
        let mut violations = Vec::new();
        if let Err(error) = upcasters.validate::<A::Event>() {
            violations.push(LockViolation::Registration {
                aggregate_type: aggregate_type(),
                error,
            });
        }
        let current = current::<A>();
        let locked = self.aggregates.get(A::NAME);
        for (event, shape) in &current {
            match locked.and_then(|entries| entries.get(event)) {
                None => violations.push(LockViolation::Unlocked {
                    aggregate_type: aggregate_type(),
                    event: event.clone(),
                    shape: (*shape).to_owned(),
                }),
                Some(locked) if locked != shape => violations.push(LockViolation::Changed {
                    aggregate_type: aggregate_type(),
                    event: event.clone(),
                    locked: locked.clone(),
                    current: (*shape).to_owned(),
                }),
                Some(_) => {}
            }
        }
        let gone = locked
            .into_iter()
            .flatten()
            .filter(|(event, _)| !current.contains_key(*event));
        for (event, _) in gone {
            if let Err(cause) = upcasters.reaches::<A::Event>(event) {
                let handled = upcasters.handles(&event.event_type, event.version);
                violations.push(LockViolation::NoPath {
                    aggregate_type: aggregate_type(),
                    event: event.clone(),
                    current_version: A::Event::TYPES
                        .iter()
                        .find(|t| t.name == event.event_type)
                        .map(|t| t.version),
                    cause: handled.then_some(cause),
                });
            }
        }
        violations
    }
}

/// Every (name, version) `A`'s events decode, with its shape.
fn current<A: Aggregate>() -> BTreeMap<EventKey, &'static str> {
    A::Event::HISTORIES
        .iter()
        .flat_map(|history| history.iter())
        .map(|s| (EventKey::new(s.name, s.version), s.shape))
        .collect()
}

impl fmt::Display for SchemaLock {
    /// The lock file's text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# eventsource schema lock: the JSON shape of every event version stored by this \
             code.\n# Checked by `eventsource::schema::assert_locked`; old versions stay \
             forever.\n# Never edit a shape: a changed shape needs a new version.\n\
             # Record new versions with {UPDATE_ENV}=1."
        )?;
        for (aggregate, entries) in &self.aggregates {
            writeln!(f, "\n[{}]", escape(aggregate))?;
            for (event, shape) in entries {
                write!(f, "{}@{}", escape(&event.event_type), event.version)?;
                if shape.is_empty() {
                    writeln!(f)?;
                } else {
                    writeln!(f, " {shape}")?;
                }
            }
        }
        Ok(())
    }
}

/// Names with the characters the format uses (`%`, `@`, `#`, `[`, `]`, whitespace,
/// controls) written as `%XX` bytes.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '%' | '@' | '#' | '[' | ']') || c.is_whitespace() || c.is_control() {
            let mut buf = [0; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{byte:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// One writer at a time in this process (tests run in parallel threads).
static WRITING: Mutex<()> = Mutex::new(());

/// The test helper: checks the lock file at `path` against the events of aggregate `A`
/// and its `upcasters`, and panics with a message naming each event version and what
/// changed. Call it from your own test suite, once per aggregate (one file can hold
/// every aggregate):
///
/// ```
/// # use eventsource::{event, Aggregate, Apply, Upcasters};
/// # use serde::{Deserialize, Serialize};
/// # #[event(name = "money.deposited")]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// # pub struct Deposited { pub amount: u64 }
/// # #[derive(Debug, Default, Aggregate)]
/// # #[aggregate(name = "account", events(Deposited))]
/// # pub struct Account;
/// # impl Apply<Deposited> for Account { fn apply(&mut self, _: &Deposited) {} }
/// # fn account_upcasters() -> Upcasters { Upcasters::new() }
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("events.lock");
/// # std::fs::write(&path, "[account]\nmoney.deposited@1 {amount: u64}\n")?;
/// // In a test of your crate, with `events.lock` committed next to its Cargo.toml:
/// // #[test]
/// // fn events_are_locked() {
/// //     eventsource::schema::assert_locked::<Account>("events.lock", &account_upcasters());
/// // }
/// eventsource::schema::assert_locked::<Account>(&path, &account_upcasters());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// It fails when a locked version's shape changed, when a version is not locked yet,
/// when a locked version no longer decodes and when the upcasters do not fit; when every
/// locked version of an aggregate or event name is gone while new names appeared, the
/// message asks whether it was renamed (a new name does not load the stored events). With
/// [`UPDATE_ENV`] set it first records new versions (`1`) or also overwrites changed
/// shapes (`overwrite`), creating the file if needed, then checks the rest.
///
/// # Panics
/// On any violation, and when the file cannot be read or written (by design: it is a
/// test assertion). Use [`SchemaLock::check`] to get the violations as values.
#[track_caller]
pub fn assert_locked<A: Aggregate>(path: impl AsRef<Path>, upcasters: &Upcasters) {
    let path = path.as_ref();
    let mode = UpdateMode::from_env();
    let _writing = WRITING.lock().unwrap_or_else(PoisonError::into_inner);
    let mut lock = match SchemaLock::read(path) {
        Ok(lock) => lock,
        Err(SchemaError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            assert!(
                mode.is_some(),
                "schema lock `{}` does not exist: create it with `{UPDATE_ENV}=1 cargo test` \
                 and commit it",
                path.display()
            );
            SchemaLock::new()
        }
        Err(e) => panic!("schema lock `{}`: {e}", path.display()),
    };
    if let Some(mode) = mode
        && lock.record::<A>(mode)
        && let Err(e) = lock.write(path)
    {
        panic!("schema lock `{}`: {e}", path.display());
    }
    let violations = lock.check::<A>(upcasters);
    assert!(
        violations.is_empty(),
        "{}",
        failure_message(path, &lock, A::NAME, &violations)
    );
}

fn failure_message(
    path: &Path,
    lock: &SchemaLock,
    aggregate: &str,
    violations: &[LockViolation],
) -> String {
    let mut message = format!(
        "schema lock `{}` does not match the events of aggregate `{aggregate}`:",
        path.display()
    );
    for violation in violations {
        let _ = write!(message, "\n  - {violation}");
    }
    let any = |f: fn(&LockViolation) -> bool| violations.iter().any(f);
    if any(|v| matches!(v, LockViolation::Changed { .. })) {
        message.push_str(
            "\nA changed shape needs a new version: keep the old struct, add \
             `#[event(version = N + 1, upcast_from = Old)]` (or an upcaster) and record it. \
             If every stored event still decodes (a new field with `#[serde(default)]`), \
             accept the change with ",
        );
        let _ = write!(message, "`{UPDATE_ENV}=overwrite cargo test`.");
    }
    // Before "record new versions": recording a renamed name leaves the stored events
    // behind.
    for hint in rename_hints(lock, aggregate, violations) {
        let _ = write!(message, "\n{hint}");
    }
    if any(|v| matches!(v, LockViolation::Unlocked { .. })) {
        let _ = write!(
            message,
            "\nRecord new versions with `{UPDATE_ENV}=1 cargo test` and commit the lock."
        );
    }
    message
}

/// "Renamed?" hints: every locked version of a name gone from the code at once, while
/// new, unlocked names appeared, is more likely a rename than a removal and an addition,
/// and recording the new names would leave the stored events behind.
fn rename_hints(lock: &SchemaLock, aggregate: &str, violations: &[LockViolation]) -> Vec<String> {
    let unlocked: BTreeSet<&str> = violations
        .iter()
        .filter_map(|v| match v {
            LockViolation::Unlocked { event, .. } => Some(event.event_type.as_str()),
            _ => None,
        })
        .collect();
    let locked = lock.aggregates.get(aggregate).filter(|e| !e.is_empty());
    let Some(locked) = locked else {
        // The whole aggregate is new to the lock: renamed if the lock knows other ones.
        let others: Vec<String> = lock
            .aggregates
            .iter()
            .filter(|(name, entries)| *name != aggregate && !entries.is_empty())
            .map(|(name, _)| format!("`[{name}]`"))
            .collect();
        if unlocked.is_empty() || others.is_empty() {
            return Vec::new();
        }
        return vec![format!(
            "Aggregate renamed? The lock has no `[{aggregate}]` but has {}: events are \
             stored with the aggregate's name, so a new name starts new, empty streams and \
             leaves the stored ones behind. If this is one of those, give it its old name \
             back with `#[aggregate(name = \"...\")]`.",
            others.join(", ")
        )];
    };
    let new: Vec<String> = unlocked
        .iter()
        .filter(|name| !locked.keys().any(|key| key.event_type == **name))
        .map(|name| format!("`{name}`"))
        .collect();
    if new.is_empty() {
        return Vec::new();
    }
    let no_path = |key: &EventKey| {
        violations
            .iter()
            .any(|v| matches!(v, LockViolation::NoPath { event, .. } if event == key))
    };
    let mut gone: BTreeMap<&str, bool> = BTreeMap::new();
    for key in locked.keys() {
        *gone.entry(key.event_type.as_str()).or_insert(true) &= no_path(key);
    }
    gone.into_iter()
        .filter(|(_, all)| *all)
        .map(|(old, _)| {
            format!(
                "Event renamed? Every locked version of `{old}` no longer decodes while {} \
                 appeared: events are stored under their name, so stored `{old}` events \
                 would no longer load. Keep the stored name with \
                 `#[event(name = \"{old}\")]`, or decode it with `upcast_from` or an \
                 upcaster.",
                new.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{SchemaLock, escape, unescape};
    use crate::event::EventKey;
    use crate::schema::SchemaError;

    #[test]
    fn text_round_trips_and_sorts() -> Result<(), SchemaError> {
        let text = "# comment\n\n[b]\nz@1 {a: u8}\nx%20y%40@2\n[a]\nq@10 (u8, String)\n";
        let lock = SchemaLock::parse(text)?;
        assert_eq!(lock.shape("b", "x y@", 2), Some(""));
        assert_eq!(lock.shape("a", "q", 10), Some("(u8, String)"));
        let written = lock.to_string();
        assert!(
            written.ends_with("\n[a]\nq@10 (u8, String)\n\n[b]\nx%20y%40@2\nz@1 {a: u8}\n"),
            "{written}"
        );
        assert_eq!(SchemaLock::parse(&written)?, lock);
        Ok(())
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = |text: &str| match SchemaLock::parse(text) {
            Err(SchemaError::Parse { line, reason }) => (line, reason),
            other => panic!("expected a parse error, got {other:?}"),
        };
        assert_eq!(
            err("a@1 {}"),
            (1, "an entry before any `[aggregate]` header".into())
        );
        assert_eq!(
            err("[a]\n\nnoversion {}"),
            (3, "expected `name@version`, found `noversion`".into())
        );
        assert_eq!(err("[a]\na@x {}"), (2, "`x` is not a version".into()));
        assert_eq!(err("[a]\na@1\na@1 {}"), (3, "`a@1` is listed twice".into()));
        let _ = EventKey::new("a", 1);
    }

    #[test]
    fn escapes_only_what_the_format_uses() {
        assert_eq!(escape("account.opened"), "account.opened");
        assert_eq!(escape("a b@#[]%é\n"), "a%20b%40%23%5B%5D%25é%0A");
        assert_eq!(
            unescape("a%20b%40%23%5B%5D%25é%0A").as_deref(),
            Some("a b@#[]%é\n")
        );
        assert_eq!(unescape("%2"), None);
    }
}
