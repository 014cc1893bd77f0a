//! Read-model fixtures: where a read model lives (a SQLite file or a PostgreSQL schema)
//! and a balances projection that writes through the batch's transaction on either.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use eventsource::{Context, HandlerResult, Position, Project, Projection};

use crate::{MoneyDeposited, MoneyWithdrawn, pg};

/// The database a read model lives in, beside the events.
#[derive(Debug, Clone)]
pub enum Db {
    /// The store's SQLite file.
    Sqlite(PathBuf),
    /// The store's PostgreSQL schema.
    Postgres {
        /// The server.
        url: String,
        /// The store's schema (the read model's tables go there too).
        schema: String,
    },
}

impl Db {
    /// `name` qualified for SQL: in the store's schema on PostgreSQL.
    pub fn table(&self, name: &str) -> String {
        match self {
            Db::Sqlite(_) => name.to_owned(),
            Db::Postgres { schema, .. } => format!("\"{schema}\".{name}"),
        }
    }

    /// Runs `sql` (several statements) through a plain connection.
    ///
    /// # Errors
    /// The database's message.
    pub fn exec(&self, sql: &str) -> Result<(), String> {
        match self {
            Db::Sqlite(path) => Self::sqlite(path)?
                .execute_batch(sql)
                .map_err(|e| e.to_string()),
            Db::Postgres { url, .. } => pg::sql(url, &[sql]).map(drop),
        }
    }

    fn sqlite(path: &std::path::Path) -> Result<rusqlite::Connection, String> {
        let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        Ok(conn)
    }

    /// Runs the query `sql` through a plain connection: its rows as text, one line per
    /// row, columns separated by `|`.
    ///
    /// # Errors
    /// The database's message.
    pub fn rows(&self, sql: &str) -> Result<Vec<String>, String> {
        match self {
            Db::Sqlite(path) => {
                let conn = Self::sqlite(path)?;
                let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
                let columns = stmt.column_count();
                let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                    let mut line = Vec::with_capacity(columns);
                    for i in 0..columns {
                        let value = match row.get_ref(i).map_err(|e| e.to_string())? {
                            rusqlite::types::ValueRef::Null => String::new(),
                            rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                            rusqlite::types::ValueRef::Real(f) => f.to_string(),
                            rusqlite::types::ValueRef::Text(t)
                            | rusqlite::types::ValueRef::Blob(t) => {
                                String::from_utf8_lossy(t).into_owned()
                            }
                        };
                        line.push(value);
                    }
                    out.push(line.join("|"));
                }
                Ok(out)
            }
            Db::Postgres { url, .. } => {
                Ok(pg::sql(url, &[sql])?.lines().map(str::to_owned).collect())
            }
        }
    }

    /// Creates the tables of [`Balances`] (idempotent).
    ///
    /// # Errors
    /// The database's message.
    pub fn create_balances(&self) -> Result<(), String> {
        self.exec(&format!(
            "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, balance BIGINT NOT NULL); \
             CREATE TABLE IF NOT EXISTS {} (position BIGINT NOT NULL, stream TEXT NOT NULL)",
            self.table("balances"),
            self.table("applied"),
        ))
    }

    /// The balances table, sorted: `id|balance` lines.
    ///
    /// # Errors
    /// The database's message.
    pub fn balances(&self) -> Result<Vec<String>, String> {
        self.rows(&format!(
            "SELECT id, balance FROM {} ORDER BY id",
            self.table("balances")
        ))
    }

    /// The positions applied, in the order applied (with duplicates, if any).
    ///
    /// # Errors
    /// The database's message.
    pub fn applied(&self) -> Result<Vec<u64>, String> {
        self.rows(&format!(
            "SELECT position FROM {} ORDER BY position",
            self.table("applied")
        ))?
        .iter()
        .map(|line| line.parse::<u64>().map_err(|e| e.to_string()))
        .collect()
    }
}

/// Runs `sql` with the parameters `$1` (text) and `$2` (integer) in the batch's
/// transaction, on whichever backend runs the projection.
///
/// # Errors
/// The database's error.
pub fn exec(ctx: &mut Context<'_>, sql: &str, text: &str, number: i64) -> HandlerResult {
    if let Ok(tx) = ctx.sqlite() {
        tx.execute(sql, (text, number))?;
        return Ok(());
    }
    ctx.postgres()?.execute(sql, &[&text, &number])?;
    Ok(())
}

/// Adds `delta` to the balance of the event's stream in `table` (`id`, `balance`).
///
/// # Errors
/// The database's error.
pub fn add_to_balance(ctx: &mut Context<'_>, table: &str, delta: i64) -> HandlerResult {
    let id = ctx.stream_id().to_owned();
    exec(
        ctx,
        &format!(
            "INSERT INTO {table} AS b (id, balance) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET balance = b.balance + excluded.balance"
        ),
        &id,
        delta,
    )
}

/// Account balances: deposits add, withdrawals subtract. Every applied position is also
/// recorded in `applied`, which has no unique key, so an event applied twice shows up
/// as a duplicate; a position out of order fails the handler.
#[derive(Debug, Projection)]
#[projection(name = "balances", version = 1, events(MoneyDeposited, MoneyWithdrawn), reset = Self::clear)]
pub struct Balances {
    /// The balances table, qualified.
    pub balances: String,
    /// The applied-positions table, qualified.
    pub applied: String,
    /// A deposit of this amount makes the handler fail.
    pub fail_on: Option<u64>,
    /// The last position applied in this process.
    pub last: Position,
    /// How many events this instance applied (rolled-back batches included).
    pub calls: u64,
    /// Print `event <position>` (flushed) as each event is handled, before its batch
    /// commits: a test reading the lines can kill the process in the middle of a batch.
    pub announce: bool,
}

impl Balances {
    /// The projection over the tables of `db`.
    pub fn new(db: &Db) -> Self {
        Balances {
            balances: db.table("balances"),
            applied: db.table("applied"),
            fail_on: None,
            last: Position::START,
            calls: 0,
            announce: false,
        }
    }

    fn clear(&mut self, ctx: &mut Context<'_>) -> HandlerResult {
        self.last = Position::START;
        let (balances, applied) = (self.balances.clone(), self.applied.clone());
        if let Ok(tx) = ctx.sqlite() {
            tx.execute_batch(&format!("DELETE FROM {balances}; DELETE FROM {applied}"))?;
            return Ok(());
        }
        ctx.postgres()?
            .batch_execute(&format!("DELETE FROM {balances}; DELETE FROM {applied}"))?;
        Ok(())
    }

    fn add(&mut self, ctx: &mut Context<'_>, delta: i64) -> HandlerResult {
        self.calls += 1;
        if self.announce {
            let mut out = std::io::stdout();
            writeln!(out, "event {}", ctx.position())?;
            out.flush()?;
        }
        if ctx.position() <= self.last {
            return Err(format!(
                "position {} after {}: out of order or applied twice",
                ctx.position(),
                self.last
            )
            .into());
        }
        self.last = ctx.position();
        add_to_balance(ctx, &self.balances, delta)?;
        let id = ctx.stream_id().to_owned();
        let position = i64::try_from(ctx.position().get())?;
        exec(
            ctx,
            &format!(
                "INSERT INTO {} (stream, position) VALUES ($1, $2)",
                self.applied
            ),
            &id,
            position,
        )
    }
}

impl Project<MoneyDeposited> for Balances {
    fn project(&mut self, e: &MoneyDeposited, ctx: &mut Context<'_>) -> HandlerResult {
        if self.fail_on == Some(e.amount) {
            return Err(format!("refusing a deposit of {}", e.amount).into());
        }
        self.add(ctx, i64::try_from(e.amount)?)
    }
}

impl Project<MoneyWithdrawn> for Balances {
    fn project(&mut self, e: &MoneyWithdrawn, ctx: &mut Context<'_>) -> HandlerResult {
        self.add(ctx, -i64::try_from(e.amount)?)
    }
}
