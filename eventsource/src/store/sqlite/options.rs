//! [`SqliteOptions`] and [`Synchronous`]: how a [`SqliteStore`](super::SqliteStore) opens
//! its file.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is on disk before it is acknowledged, surviving a power loss.
    #[default]
    Full,
    /// Commits survive a crash of the application but the last ones may be lost on a
    /// power loss or OS crash. Much faster for many small appends.
    Normal,
}

impl Synchronous {
    pub(super) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Options for [`SqliteStore::open_with`](super::SqliteStore::open_with).
///
/// ```
/// use eventsource::{SqliteStore, Synchronous};
/// use eventsource::SqliteOptions;
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("bank.db");
///
/// let options = SqliteOptions::new().synchronous(Synchronous::Normal);
/// let store = SqliteStore::open_with(&path, options)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SqliteOptions {
    pub(super) synchronous: Synchronous,
    pub(super) busy_timeout: Duration,
    pub(super) on_connect: Option<Arc<ConnectHook>>,
    pub(super) hash_chain: bool,
    pub(super) chain_head_interval: u32,
}

type ConnectHook = dyn Fn(&mut Connection) -> rusqlite::Result<()> + Send + Sync;

impl fmt::Debug for SqliteOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteOptions")
            .field("synchronous", &self.synchronous)
            .field("busy_timeout", &self.busy_timeout)
            .field("on_connect", &self.on_connect.is_some())
            .field("hash_chain", &self.hash_chain)
            .field("chain_head_interval", &self.chain_head_interval)
            .finish()
    }
}

impl SqliteOptions {
    /// `synchronous=FULL`, a 5-second busy timeout.
    pub fn new() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            on_connect: None,
            hash_chain: true,
            chain_head_interval: Self::DEFAULT_CHAIN_HEAD_INTERVAL,
        }
    }

    /// How many commits the hash chain's head waits before it moves, by default.
    pub const DEFAULT_CHAIN_HEAD_INTERVAL: u32 = 32;

    /// Moves the hash chain's head (the position, hash and count kept apart from the
    /// events, which shows that the newest events were removed) with every `commits`-th
    /// commit of this handle, and when the handle is dropped; default
    /// [`DEFAULT_CHAIN_HEAD_INTERVAL`](Self::DEFAULT_CHAIN_HEAD_INTERVAL). Every commit
    /// links its events into the chain; only the head lags.
    ///
    /// The head lives on a page of its own, so moving it with every commit writes one
    /// more page per commit: about a sixth more to the write-ahead log for single-event
    /// appends. The cost of a lagging head: removing the newest events stored after the
    /// head's last move (at most `commits - 1` commits, or what a crash left) shows only
    /// against a checkpoint kept elsewhere ([`ChainReport::after_head`](crate::ChainReport::after_head)
    /// says how many events that is). `1` moves the head with every commit.
    ///
    /// ```
    /// use eventsource::{SqliteOptions, SqliteStore};
    ///
    /// let store = SqliteStore::in_memory_with(SqliteOptions::new().chain_head_interval(1))?;
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    #[must_use]
    pub fn chain_head_interval(mut self, commits: u32) -> Self {
        self.chain_head_interval = commits.max(1);
        self
    }

    /// Not public API: appends without chain hashes (they store NULL and leave the
    /// chain's head where it is, so `Verify::chain` reports them), for the benchmark that
    /// measures what the chain costs.
    #[doc(hidden)]
    #[must_use]
    pub fn without_hash_chain_for_benchmarks(mut self) -> Self {
        self.hash_chain = false;
        self
    }

    /// Runs `hook` on every connection the store opens, after the store has configured
    /// it: to set further pragmas (`cache_size`, `max_page_count`, ...), register SQL
    /// functions, or install tracing and authorizer hooks.
    ///
    /// ```
    /// use eventsource::{SqliteOptions, SqliteStore};
    ///
    /// let options = SqliteOptions::new().on_connect(|conn| conn.pragma_update(None, "cache_size", -65_536));
    /// let store = SqliteStore::in_memory_with(options)?;
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    #[must_use]
    pub fn on_connect(
        mut self,
        hook: impl Fn(&mut Connection) -> rusqlite::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.on_connect = Some(Arc::new(hook));
        self
    }

    /// Chooses the durability of commits.
    #[must_use]
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long an append waits for another writer (thread or process) to finish before
    /// failing with a busy error.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self::new()
    }
}
