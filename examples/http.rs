//! A bank as an HTTP service: axum on tokio, the async facade over a SQLite file, a
//! read model kept by a projection, optimistic concurrency over HTTP.
//!
//! ```text
//! cargo run --example http                        # 127.0.0.1:3000, ./http.db
//! cargo run --example http -- 127.0.0.1:8080 /tmp/bank.db
//! curl -i -X POST localhost:3000/accounts/acc-1/open -H 'content-type: application/json' -d '{"owner":"ann"}'
//! curl -i -X POST localhost:3000/accounts/acc-1/deposit -H 'if-match: "1"' -H 'content-type: application/json' -d '{"amount":100}'
//! curl -i localhost:3000/accounts/acc-1
//! curl -i 'localhost:3000/balances/acc-1?after=2'
//! ```
//!
//! | request | answer |
//! |---|---|
//! | `POST /accounts/{id}/open` `{"owner"}` | `201`, `ETag: "<version>"`, `{"version", "position"}` |
//! | `POST /accounts/{id}/deposit` / `withdraw` `{"amount"}` | `200`, as above |
//! | `GET /accounts/{id}` | `200` `{"owner", "balance", "version"}` with its `ETag`; `404` |
//! | `GET /balances/{id}?after=<position>` | `200` `{"balance"}` from the read model, once it has applied `position`; `404` |
//!
//! A command with `If-Match: "<version>"` runs only on that version
//! (`Repository::execute_expected`): a mismatch is `412 Precondition Failed`. A domain
//! error (insufficient funds, not open) is `422`; a conflict that outlived its retries
//! is `409`; a store that cannot answer is `503`; an outcome the store could not learn
//! (a lost COMMIT answer) is `500` with a message saying to check before retrying.

// A binary: its items are read, not linked against.
#![allow(missing_docs, clippy::missing_errors_doc)]

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventsource::{
    Aggregate, AppendError, Apply, AsyncRepository, Committed, Context, ExecuteError,
    HandlerResult, IntoEvents, Position, Project, Projection, ProjectionHandle, Projector,
    Repository, SqliteStore, Version, event, run_blocking,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

// ---- The domain. ----

#[event(name = "account.opened")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountOpened {
    pub owner: String,
}

#[event(name = "money.deposited")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyDeposited {
    pub amount: u64,
}

#[event(name = "money.withdrawn")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneyWithdrawn {
    pub amount: u64,
}

#[derive(Debug, Default, Aggregate)]
#[aggregate(
    name = "account",
    events(AccountOpened, MoneyDeposited, MoneyWithdrawn)
)]
pub struct Account {
    owner: String,
    balance: u64,
    open: bool,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, e: &AccountOpened) {
        self.open = true;
        self.owner.clone_from(&e.owner);
    }
}
impl Apply<MoneyDeposited> for Account {
    fn apply(&mut self, e: &MoneyDeposited) {
        self.balance += e.amount;
    }
}
impl Apply<MoneyWithdrawn> for Account {
    fn apply(&mut self, e: &MoneyWithdrawn) {
        self.balance -= e.amount;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankError {
    AlreadyOpen,
    NotOpen,
    InsufficientFunds { balance: u64 },
}

impl fmt::Display for BankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BankError::AlreadyOpen => f.write_str("the account is already open"),
            BankError::NotOpen => f.write_str("the account is not open"),
            BankError::InsufficientFunds { balance } => {
                write!(f, "insufficient funds (balance {balance})")
            }
        }
    }
}

impl Error for BankError {}

impl Account {
    pub fn open(&self, owner: String) -> Result<AccountOpened, BankError> {
        if self.open {
            return Err(BankError::AlreadyOpen);
        }
        Ok(AccountOpened { owner })
    }

    pub fn deposit(&self, amount: u64) -> Result<MoneyDeposited, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        Ok(MoneyDeposited { amount })
    }

    pub fn withdraw(&self, amount: u64) -> Result<MoneyWithdrawn, BankError> {
        if !self.open {
            return Err(BankError::NotOpen);
        }
        if amount > self.balance {
            return Err(BankError::InsufficientFunds {
                balance: self.balance,
            });
        }
        Ok(MoneyWithdrawn { amount })
    }
}

// ---- The read model: `balances (id, balance)` in the same file. ----

#[derive(Debug, Projection)]
#[projection(name = "balances", events(MoneyDeposited, MoneyWithdrawn), reset = Self::clear)]
pub struct Balances;

impl Balances {
    fn clear(_: &mut Self, ctx: &mut Context<'_>) -> HandlerResult {
        ctx.sqlite()?.execute("DELETE FROM balances", ())?;
        Ok(())
    }

    fn add(ctx: &mut Context<'_>, delta: i64) -> HandlerResult {
        ctx.sqlite()?.execute(
            "INSERT INTO balances (id, balance) VALUES (?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET balance = balance + excluded.balance",
            (ctx.stream_id(), delta),
        )?;
        Ok(())
    }
}

impl Project<MoneyDeposited> for Balances {
    fn project(&mut self, e: &MoneyDeposited, ctx: &mut Context<'_>) -> HandlerResult {
        Self::add(ctx, i64::try_from(e.amount)?)
    }
}

impl Project<MoneyWithdrawn> for Balances {
    fn project(&mut self, e: &MoneyWithdrawn, ctx: &mut Context<'_>) -> HandlerResult {
        Self::add(ctx, -i64::try_from(e.amount)?)
    }
}

// ---- The service. ----

/// What the handlers share.
#[derive(Clone)]
pub struct Bank {
    accounts: AsyncRepository<Account, Arc<SqliteStore>>,
    store: Arc<SqliteStore>,
    balances: Arc<ProjectionHandle<Balances>>,
}

impl Bank {
    /// Opens the store at `path`, creates the read model's table and starts its
    /// projection (off the runtime's threads).
    pub async fn open(path: std::path::PathBuf, retries: u32) -> Result<Self, Box<dyn Error>> {
        let store = run_blocking(move || -> Result<_, eventsource::StoreError> {
            let store = Arc::new(SqliteStore::open(path)?);
            store.write(|tx| {
                tx.execute_batch(
                    "CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, balance INTEGER NOT NULL)",
                )
            })?;
            Ok(store)
        })
        .await??;
        let balances = Projector::new(Arc::clone(&store), Balances).spawn();
        let accounts =
            AsyncRepository::new(Repository::new(Arc::clone(&store)).with_retries(retries));
        Ok(Bank {
            accounts,
            store,
            balances: Arc::new(balances),
        })
    }
}

/// The routes.
pub fn app(bank: Bank) -> Router {
    Router::new()
        .route("/accounts/{id}", get(get_account))
        .route("/accounts/{id}/open", post(open))
        .route("/accounts/{id}/deposit", post(deposit))
        .route("/accounts/{id}/withdraw", post(withdraw))
        .route("/balances/{id}", get(get_balance))
        .with_state(bank)
}

/// An error answer: a status and `{"error": message}`.
pub struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The status of a failed command, with the message to show.
pub fn problem(e: &ExecuteError<BankError>, if_match: bool) -> Problem {
    let status = match e {
        ExecuteError::Domain(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ExecuteError::Conflict { .. } if if_match => StatusCode::PRECONDITION_FAILED,
        ExecuteError::Conflict { .. } => StatusCode::CONFLICT,
        ExecuteError::Append(AppendError::Unknown { .. }) => {
            return Problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{e}: the outcome is unknown; load the account before retrying"),
            );
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let message = match e {
        ExecuteError::Domain(domain) => domain.to_string(),
        other => other.to_string(),
    };
    Problem(status, message)
}

fn etag(version: Version) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", version.get()))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// The version an `If-Match: "<n>"` header names; `Err` for one that is not a version.
fn if_match(headers: &HeaderMap) -> Result<Option<Version>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_matches('"'))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|v| Some(Version::new(v)))
        .ok_or_else(|| {
            Problem(
                StatusCode::BAD_REQUEST,
                "If-Match must be a version the server sent in an ETag".into(),
            )
        })
}

fn committed(status: StatusCode, done: &Committed<Account>) -> Response {
    let position = done.positions.last().map_or(0, |p| p.get());
    let mut response = (
        status,
        Json(json!({ "version": done.version.get(), "position": position })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(done.version));
    response
}

/// Runs a command, against the `If-Match` version when there is one.
async fn run<R: IntoEvents<AccountEvent>>(
    bank: &Bank,
    id: String,
    headers: &HeaderMap,
    handler: impl FnMut(&Account) -> Result<R, BankError> + Send + 'static,
) -> Result<Committed<Account>, Problem> {
    let expected = if_match(headers)?;
    let result = match expected {
        Some(version) => bank.accounts.execute_expected(id, version, handler).await,
        None => bank.accounts.execute(id, handler).await,
    };
    result.map_err(|e| problem(&e, expected.is_some()))
}

#[derive(Deserialize)]
pub struct Open {
    owner: String,
}

#[derive(Deserialize)]
pub struct Amount {
    amount: u64,
}

async fn open(
    State(bank): State<Bank>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Open>,
) -> Result<Response, Problem> {
    let done = run(&bank, id, &headers, move |a| a.open(body.owner.clone())).await?;
    Ok(committed(StatusCode::CREATED, &done))
}

async fn deposit(
    State(bank): State<Bank>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Amount>,
) -> Result<Response, Problem> {
    let done = run(&bank, id, &headers, move |a| a.deposit(body.amount)).await?;
    Ok(committed(StatusCode::OK, &done))
}

async fn withdraw(
    State(bank): State<Bank>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Amount>,
) -> Result<Response, Problem> {
    let done = run(&bank, id, &headers, move |a| a.withdraw(body.amount)).await?;
    Ok(committed(StatusCode::OK, &done))
}

async fn get_account(
    State(bank): State<Bank>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let account = bank
        .accounts
        .load(id)
        .await
        .map_err(|e| Problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if !account.state.open {
        return Err(Problem(StatusCode::NOT_FOUND, "no such account".into()));
    }
    let mut response = Json(json!({
        "owner": account.state.owner,
        "balance": account.state.balance,
        "version": account.version.get(),
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::ETAG, etag(account.version));
    Ok(response)
}

#[derive(Deserialize)]
pub struct After {
    after: Option<u64>,
}

/// The read model's balance, once the projection has applied `after` (read-your-writes:
/// pass the `position` a command answered with).
async fn get_balance(
    State(bank): State<Bank>,
    Path(id): Path<String>,
    Query(query): Query<After>,
) -> Result<Response, Problem> {
    if let Some(after) = query.after {
        bank.balances
            .wait_for_async(Position::new(after), Duration::from_secs(5))
            .await
            .map_err(|e| Problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    }
    let store = Arc::clone(&bank.store);
    let balance = run_blocking(move || {
        store.read(|conn| {
            conn.query_row("SELECT balance FROM balances WHERE id = ?1", [&id], |row| {
                row.get::<_, i64>(0)
            })
        })
    })
    .await
    .and_then(|read| read)
    .map_err(|e| match e {
        eventsource::StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows) => {
            Problem(StatusCode::NOT_FOUND, "no balance for this account".into())
        }
        e => Problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    })?;
    Ok(Json(json!({ "balance": balance })).into_response())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let path = args.next().unwrap_or_else(|| "http.db".into());
    let bank = Bank::open(path.into(), 10).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(bank))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The service on 127.0.0.1 with an ephemeral port, driven by a real HTTP client
    //! (`ureq`, on the blocking pool).

    use std::collections::BTreeMap;

    use super::*;

    type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

    /// One answer: status, `ETag` and JSON body.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        etag: Option<String>,
        body: serde_json::Value,
    }

    /// Sends a request (a JSON body for POST) with optional `If-Match`.
    async fn call(
        url: String,
        body: Option<serde_json::Value>,
        if_match: Option<&'static str>,
    ) -> Result<Answer, Box<dyn Error + Send + Sync>> {
        tokio::task::spawn_blocking(move || -> Result<Answer, Box<dyn Error + Send + Sync>> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut response = match body {
                Some(body) => {
                    let mut request = agent.post(&url);
                    if let Some(version) = if_match {
                        request = request.header("if-match", version);
                    }
                    request
                        .header("content-type", "application/json")
                        .send(serde_json::to_string(&body)?)?
                }
                None => agent.get(&url).call()?,
            };
            let status = response.status().as_u16();
            let etag = response
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = response.body_mut().read_to_string()?;
            let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
            Ok(Answer { status, etag, body })
        })
        .await?
    }

    /// Starts the service on an ephemeral port over a fresh store; its base URL.
    async fn serve(
        retries: u32,
    ) -> Result<(String, tempfile::TempDir), Box<dyn Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        let bank = Bank::open(dir.path().join("bank.db"), retries)
            .await
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app(bank)).await });
        Ok((url, dir))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_queries_and_optimistic_concurrency_over_http() -> TestResult {
        let (url, _dir) = serve(10).await?;
        let acc = format!("{url}/accounts/acc-1");

        let opened = call(format!("{acc}/open"), Some(json!({"owner": "ann"})), None).await?;
        assert_eq!(
            (opened.status, opened.etag.as_deref()),
            (201, Some("\"1\""))
        );
        let again = call(format!("{acc}/open"), Some(json!({"owner": "bob"})), None).await?;
        assert_eq!(again.status, 422);
        assert_eq!(again.body["error"], "the account is already open");

        // If-Match on the version seen: applied; on a stale one: 412, nothing stored.
        let deposit = call(
            format!("{acc}/deposit"),
            Some(json!({"amount": 100})),
            Some("\"1\""),
        )
        .await?;
        assert_eq!(
            (deposit.status, deposit.etag.as_deref()),
            (200, Some("\"2\""))
        );
        let stale = call(
            format!("{acc}/deposit"),
            Some(json!({"amount": 5})),
            Some("\"1\""),
        )
        .await?;
        assert_eq!(stale.status, 412, "{stale:?}");
        let bad = call(
            format!("{acc}/deposit"),
            Some(json!({"amount": 5})),
            Some("soon"),
        )
        .await?;
        assert_eq!(bad.status, 400);

        let overdraw = call(
            format!("{acc}/withdraw"),
            Some(json!({"amount": 500})),
            None,
        )
        .await?;
        assert_eq!(overdraw.status, 422);
        assert_eq!(overdraw.body["error"], "insufficient funds (balance 100)");
        let withdrawn = call(format!("{acc}/withdraw"), Some(json!({"amount": 30})), None).await?;
        assert_eq!(withdrawn.status, 200);

        let account = call(acc.clone(), None, None).await?;
        assert_eq!(account.status, 200);
        assert_eq!(account.etag.as_deref(), Some("\"3\""));
        assert_eq!(
            account.body,
            json!({"owner": "ann", "balance": 70, "version": 3})
        );
        assert_eq!(
            call(format!("{url}/accounts/nobody"), None, None)
                .await?
                .status,
            404
        );

        // Read-your-writes on the read model, from the position the command answered.
        let position = withdrawn.body["position"].as_u64().ok_or("no position")?;
        let balance = call(format!("{url}/balances/acc-1?after={position}"), None, None).await?;
        assert_eq!(
            (balance.status, &balance.body),
            (200, &json!({"balance": 70}))
        );
        Ok(())
    }

    /// Concurrent deposits without If-Match and without retries: each answer is 200
    /// (stored) or 409 (a conflict, nothing stored), and the account holds exactly the
    /// 200s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conflicts_after_retries_are_409() -> TestResult {
        let (url, _dir) = serve(0).await?;
        let acc = format!("{url}/accounts/acc-2");
        assert_eq!(
            call(format!("{acc}/open"), Some(json!({"owner": "ann"})), None)
                .await?
                .status,
            201
        );
        let mut requests = tokio::task::JoinSet::new();
        for amount in 1..=24_u64 {
            let deposit = format!("{acc}/deposit");
            requests.spawn(async move {
                (
                    amount,
                    call(deposit, Some(json!({"amount": amount})), None).await,
                )
            });
        }
        let mut statuses = BTreeMap::new();
        let mut stored = 0;
        while let Some(joined) = requests.join_next().await {
            let (amount, answer) = joined?;
            let answer = answer?;
            *statuses.entry(answer.status).or_insert(0) += 1;
            if answer.status == 200 {
                stored += amount;
            }
        }
        assert!(
            statuses.keys().all(|s| *s == 200 || *s == 409),
            "{statuses:?}"
        );
        let account = call(acc, None, None).await?;
        assert_eq!(account.body["balance"], stored);
        assert_eq!(
            account.body["version"],
            1 + statuses.get(&200).copied().unwrap_or(0)
        );
        Ok(())
    }

    /// Which error is which status, for every kind (conflicts are hard to force over
    /// HTTP on purpose).
    #[test]
    fn errors_map_to_statuses() {
        let stream = eventsource::StreamId::new("account", "a");
        let conflict = || ExecuteError::<BankError>::Conflict {
            stream: stream.clone(),
            expected: Version::new(1),
            actual: Version::new(2),
            attempts: 1,
        };
        assert_eq!(
            problem(&conflict(), true).0,
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(problem(&conflict(), false).0, StatusCode::CONFLICT);
        let domain = problem(&ExecuteError::Domain(BankError::NotOpen), false);
        assert_eq!(
            (domain.0, domain.1.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "the account is not open")
        );
        let unknown = ExecuteError::<BankError>::Append(AppendError::Unknown {
            stream: stream.clone(),
            source: eventsource::StoreError::Interrupted,
        });
        let unknown = problem(&unknown, false);
        assert_eq!(unknown.0, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(unknown.1.contains("unknown"), "{}", unknown.1);
        let busy = ExecuteError::<BankError>::Read(eventsource::ReadError::Store(
            eventsource::StoreError::ShuttingDown,
        ));
        assert_eq!(problem(&busy, false).0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
