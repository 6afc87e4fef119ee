//! The process-wide default client, used where no client is given.

use std::sync::{PoisonError, RwLock};

use crate::client::LockClient;
use crate::error::LockError;
use crate::rt;

/// The URL the default client uses when `REDIS_URL` is not set.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

static DEFAULT: RwLock<Option<LockClient>> = RwLock::new(None);
static INIT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes `client` the process-wide default (replacing any earlier one).
///
/// ```no_run
/// # async fn demo() -> Result<(), lock_runtime::LockError> {
/// let client = lock_runtime::LockClient::connect("redis://10.0.0.5:6379").await?;
/// lock_runtime::set_default_client(client);
/// # Ok(()) }
/// ```
pub fn set_default_client(client: LockClient) {
    *DEFAULT.write().unwrap_or_else(PoisonError::into_inner) = Some(client);
}

/// The process-wide default client: the one set with [`set_default_client`], or else
/// one connected on first use to `REDIS_URL` (default `redis://127.0.0.1:6379`).
///
/// A connection failure is returned (and retried on the next call), never cached.
pub async fn default_client() -> Result<LockClient, LockError> {
    if let Some(client) = current() {
        return Ok(client);
    }
    let _init = INIT.lock().await;
    if let Some(client) = current() {
        return Ok(client);
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
    // Connected on the crate's own runtime, so it outlives the caller's runtime.
    let connect = rt::handle()?.spawn(async move { LockClient::connect(&url).await });
    let client = connect.await.map_err(|error| LockError::Config {
        subject: "the default lock client".to_owned(),
        reason: format!("its connect task failed: {error}"),
    })??;
    set_default_client(client.clone());
    Ok(client)
}

fn current() -> Option<LockClient> {
    DEFAULT
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}
