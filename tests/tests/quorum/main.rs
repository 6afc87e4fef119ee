//! lock-runtime on a quorum of independent `redis-server`s (Redlock): each test
//! starts its own five servers (it kills, pauses and restarts them), stopped
//! when the test ends, also when it fails.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions, Wait};
use tests::RedisQuorum;

mod exclusion;
mod failures;
mod fencing;
mod setup;
mod waiting;

/// Options with a ttl in milliseconds.
fn ttl(ms: u64) -> LockOptions {
    LockOptions::new(Duration::from_millis(ms))
}

/// A quorum client of every server of `quorum`, with short timeouts so that
/// tests about dead servers stay quick.
async fn client(quorum: &RedisQuorum) -> LockClient {
    LockClient::builder(quorum.url())
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect("quorum client")
}

/// Tries once to take `name`: held, or why not.
async fn try_once(client: &LockClient, name: &str, options: &LockOptions) -> Result<(), LockError> {
    let guard = client
        .acquire(name, &options.clone().wait(Wait::TryOnce))
        .await?;
    guard.release().await
}
