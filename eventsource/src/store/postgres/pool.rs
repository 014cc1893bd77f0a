//! The connection pool of a PostgreSQL store: at most `max` connections open at once;
//! a call that finds them all busy waits for one, up to a timeout.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::Conn;
use super::tls::PostgresTls;
use crate::error::StoreError;

/// Options for [`PostgresStore::connect_with`](super::PostgresStore::connect_with).
///
/// ```
/// use std::time::Duration;
/// use eventsource::PostgresOptions;
///
/// let options = PostgresOptions::new()
///     .schema("billing")
///     .max_connections(32)
///     .acquire_timeout(Duration::from_secs(5));
/// assert_eq!(options.get_max_connections(), 32);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    pub(super) schema: String,
    pub(super) max_connections: usize,
    pub(super) acquire_timeout: Duration,
    pub(super) tls: Option<PostgresTls>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresOptions {
    /// The most connections a store opens unless told otherwise.
    ///
    /// ```
    /// use eventsource::PostgresOptions;
    /// assert_eq!(PostgresOptions::new().get_max_connections(), PostgresOptions::DEFAULT_MAX_CONNECTIONS);
    /// ```
    pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

    /// How long a call waits for a busy pool unless told otherwise.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

    /// Schema `public`, at most [`Self::DEFAULT_MAX_CONNECTIONS`] (16) connections, a 30 s
    /// wait for a busy pool.
    pub fn new() -> Self {
        PostgresOptions {
            schema: super::DEFAULT_SCHEMA.to_owned(),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            tls: None,
        }
    }

    /// The PostgreSQL schema of the store (see
    /// [`PostgresStore::connect_with_schema`](super::PostgresStore::connect_with_schema)).
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the store's calls use at once (at least 1). Each running
    /// [`Projector`](crate::Projector) and [`Subscription`](crate::Subscription) holds
    /// one more of its own, and the rare lookup after a lost COMMIT answer opens one
    /// outside the pool.
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits when every connection is busy before failing with
    /// [`StoreError::PoolExhausted`].
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// TLS for every connection of the store (feature `tls`), which is then refused
    /// rather than made in plain text when the server does not offer TLS. See
    /// [`PostgresTls`] for the choices; without this, TLS is used only when the
    /// connection string says `sslmode=require` (as [`PostgresTls::unverified`]).
    ///
    /// ```
    /// use eventsource::{PostgresOptions, PostgresTls};
    ///
    /// let options = PostgresOptions::new().tls(PostgresTls::system_roots()?);
    /// # Ok::<(), eventsource::StoreError>(())
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, tls: PostgresTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS configuration given to [`PostgresOptions::tls`], if any (feature `tls`).
    #[cfg(feature = "tls")]
    pub fn get_tls(&self) -> Option<&PostgresTls> {
        self.tls.as_ref()
    }

    /// The most connections the pool opens.
    pub fn get_max_connections(&self) -> usize {
        self.max_connections
    }
}

#[derive(Default)]
struct State {
    idle: Vec<Conn>,
    /// Connections open: idle, lent out, or being opened.
    open: usize,
}

/// At most `max` connections; the idle ones kept for the next call.
pub(super) struct Pool {
    state: Mutex<State>,
    returned: Condvar,
    max: usize,
    timeout: Duration,
}

impl Pool {
    /// A pool holding `first` (idle), bounded as `options` say.
    pub(super) fn new(first: Conn, options: &PostgresOptions) -> Self {
        Pool {
            state: Mutex::new(State {
                idle: vec![first],
                open: 1,
            }),
            returned: Condvar::new(),
            max: options.max_connections.max(1),
            timeout: options.acquire_timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle connection, or a new one (`open`) while fewer than `max` are open, or the
    /// first one returned within the timeout.
    pub(super) fn acquire(
        &self,
        open: impl FnOnce() -> Result<Conn, postgres::Error>,
    ) -> Result<Lease<'_>, StoreError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(Lease {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match open() {
                    Ok(conn) => Ok(Lease {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.forget();
                        Err(StoreError::from(e))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::PoolExhausted {
                    max: self.max,
                    waited: now - started,
                });
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// A connection that was closed or dropped: room for another.
    fn forget(&self) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        drop(state);
        self.returned.notify_one();
    }

    /// Takes the idle connections (to close them elsewhere).
    #[cfg(feature = "tokio")]
    pub(super) fn take_idle(&mut self) -> Vec<Conn> {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        state.open = state.open.saturating_sub(state.idle.len());
        std::mem::take(&mut state.idle)
    }
}

/// A connection lent out by the pool: it goes back when dropped, unless it is closed,
/// marked `discard`, or the thread is panicking (its state is then unknown).
pub(super) struct Lease<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if conn.discard || conn.client.is_closed() || std::thread::panicking() {
            drop(conn);
            self.pool.forget();
            return;
        }
        self.pool.lock().idle.push(conn);
        self.pool.returned.notify_one();
    }
}
