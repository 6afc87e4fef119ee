//! Every argument at once, and the guard used in the body.
#![allow(dead_code)]

use lock_runtime::{LockClient, LockError, redis_locked};

#[redis_locked(
    name = "ledger:{account}",
    ttl = "30s",
    wait = "5s",
    heartbeat = "10s",
    client = locks,
    guard = lock,
    fencing = true,
    fair = true,
    reentrant = true,
    on_lost = "notify",
    max_hold = "10m",
    min_hold = "1s",
    crate = "::lock_runtime"
)]
async fn post(locks: &LockClient, account: u64) -> Result<Option<u64>, LockError> {
    lock.check()?;
    let _time_left = lock.time_left();
    Ok(lock.fencing_token().map(|token| token + account))
}

#[redis_locked(name = "ledger:{account}", ttl = 30, guard = lease, fencing = true, wait = "forever")]
fn post_sync(account: u64) -> Result<bool, LockError> {
    Ok(lease.is_held() && account > 0)
}

// Several locks at once, async and sync, with each one's fencing token.
#[redis_locked(name = ["account:{from}", "account:{to}"], ttl = 10, guard = lock, fencing = true)]
async fn transfer(from: u64, to: u64) -> Result<Option<u64>, LockError> {
    Ok(lock.fencing_token_of(&format!("account:{to}")))
}

#[redis_locked(name = ["account:{from}", "account:{to}"], ttl = 10, reentrant = true)]
fn transfer_sync(from: u64, to: u64) -> Result<usize, LockError> {
    Ok(from.max(to) as usize)
}

// A semaphore and a read/write lock.
#[redis_locked(name = "partner-api", ttl = 30, permits = 4, fair = true, wait = "10s")]
async fn call_partner(order: u64) -> Result<u64, LockError> {
    Ok(order)
}

#[redis_locked(name = "catalog", ttl = 10, mode = "read", reentrant = true)]
fn show_catalog() -> Result<(), LockError> {
    Ok(())
}

#[redis_locked(name = "catalog", ttl = 60, mode = "write")]
async fn rebuild_catalog() {}

fn main() {}
