//! `ttl` and `wait` from run-time values (configuration), checked by the runtime.
#![allow(dead_code)]

use std::time::Duration;

use lock_runtime::{LockError, Wait, redis_locked};

struct Config {
    ttl: Duration,
    wait: Duration,
}

#[redis_locked(name = "configured", ttl = config.ttl, wait = config.wait)]
async fn configured(config: &Config) -> Result<(), LockError> {
    Ok(())
}

#[redis_locked(name = "configured", ttl = Duration::from_secs(secs), wait = Wait::TryOnce, heartbeat = "1s")]
fn configured_sync(secs: u64) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
