//! A small bank-style HTTP service: transfers out of an account are serialised by a
//! Redis lock on that account, so its deliberately non-atomic read-modify-write of
//! the balance never loses an update, however many instances serve requests.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lock_runtime::{LockClient, LockError, redis_locked};
use metrics_exporter_prometheus::PrometheusHandle;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where the account locks live.
    pub locks: LockClient,
    /// Where the balances live.
    pub redis: ConnectionManager,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("locks", &self.locks)
            .finish_non_exhaustive()
    }
}

/// `POST /accounts/{id}/transfer` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The account credited.
    pub to: u64,
    /// How much moves (> 0).
    pub amount: i64,
    /// For demos and tests: hold the account this long, as slow work would.
    #[serde(default)]
    pub simulate_work_ms: u64,
}

/// A completed transfer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    /// The debited account.
    pub from: u64,
    /// The credited account.
    pub to: u64,
    /// The debited account's balance afterwards.
    pub balance: i64,
}

/// An account's balance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Balance {
    /// The account.
    pub id: u64,
    /// Its balance.
    pub balance: i64,
}

/// Everything a handler can fail with.
#[derive(Debug)]
pub enum BankError {
    /// The account lock: busy past the wait (423), lease lost or Redis down (503).
    Lock(LockError),
    /// Reading or writing balances failed.
    Storage(redis::RedisError),
    /// Not enough money in the account.
    InsufficientFunds {
        /// The account.
        id: u64,
        /// Its balance.
        balance: i64,
    },
    /// A malformed request.
    BadRequest(&'static str),
}

impl From<LockError> for BankError {
    fn from(error: LockError) -> Self {
        BankError::Lock(error)
    }
}

impl From<redis::RedisError> for BankError {
    fn from(error: redis::RedisError) -> Self {
        BankError::Storage(error)
    }
}

impl IntoResponse for BankError {
    fn into_response(self) -> Response {
        match self {
            BankError::Lock(error) => error.into_response(),
            BankError::Storage(error) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("storage error: {error}"),
            )
                .into_response(),
            BankError::InsufficientFunds { id, balance } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("account {id} has only {balance}"),
            )
                .into_response(),
            BankError::BadRequest(why) => (StatusCode::BAD_REQUEST, why).into_response(),
        }
    }
}

/// The Redis key of an account's balance.
pub fn balance_key(id: u64) -> String {
    format!("bank:balance:{id}")
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/accounts/{id}", get(balance))
        .route("/accounts/{id}/transfer", post(transfer))
        .with_state(state)
}

/// The process's Prometheus recorder for the `metrics` facade, installed on
/// the first call (inside a tokio runtime: it starts the recorder's upkeep);
/// every call returns a handle on it.
pub fn prometheus() -> Result<PrometheusHandle, String> {
    // `get_or_init` runs the install once, also when tasks of several
    // threads ask at the same time (the others wait for it).
    static HANDLE: std::sync::OnceLock<Result<PrometheusHandle, String>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
            // The recorder drains its histograms only on upkeep (or a
            // scrape): run it every few seconds, so an unscraped service does
            // not grow them.
            let upkeep = handle.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    upkeep.run_upkeep();
                }
            });
            Ok(handle)
        })
        .clone()
}

/// `router` with `/metrics`: the lock metrics (lock-runtime's `metrics`
/// feature) in Prometheus's text format, from the recorder `metrics` renders.
pub fn with_metrics(router: Router, metrics: PrometheusHandle) -> Router {
    router.route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    metrics.render(),
                )
            }
        }),
    )
}

/// Moves `amount` from account `id` to `to`. Only one transfer out of an account
/// runs at a time (across all instances); a request waits up to 2 s for its turn,
/// then gets 423 Locked with a `Retry-After`.
#[redis_locked(name = "account:{id}", ttl = 10, wait = "2s", client = state.locks)]
pub async fn transfer(
    Path(id): Path<u64>,
    State(state): State<AppState>,
    Json(request): Json<TransferRequest>,
) -> Result<Json<Receipt>, BankError> {
    if request.amount <= 0 {
        return Err(BankError::BadRequest("amount must be > 0"));
    }
    if request.to == id {
        return Err(BankError::BadRequest("cannot transfer to the same account"));
    }
    let mut redis = state.redis.clone();
    // Read, decide, write: not atomic in Redis. The lock makes it safe.
    let balance: i64 = redis
        .get::<_, Option<i64>>(balance_key(id))
        .await?
        .unwrap_or(0);
    if balance < request.amount {
        return Err(BankError::InsufficientFunds { id, balance });
    }
    if request.simulate_work_ms > 0 {
        tokio::time::sleep(Duration::from_millis(request.simulate_work_ms)).await;
    }
    let balance = balance - request.amount;
    let () = redis.set(balance_key(id), balance).await?;
    // The credit is a single atomic INCRBY: it needs no lock.
    let _: i64 = redis.incr(balance_key(request.to), request.amount).await?;
    Ok(Json(Receipt {
        from: id,
        to: request.to,
        balance,
    }))
}

/// `GET /accounts/{id}`: the balance (no lock: a single read).
pub async fn balance(
    Path(id): Path<u64>,
    State(state): State<AppState>,
) -> Result<Json<Balance>, BankError> {
    let mut redis = state.redis.clone();
    let balance: i64 = redis
        .get::<_, Option<i64>>(balance_key(id))
        .await?
        .unwrap_or(0);
    Ok(Json(Balance { id, balance }))
}
