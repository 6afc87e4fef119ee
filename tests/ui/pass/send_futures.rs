//! The futures the attribute makes are `Send` when the body's are (axum and
//! `tokio::spawn` need it).
#![allow(dead_code)]

use std::sync::Arc;

use lock_runtime::{LockClient, LockError, redis_locked};

fn assert_send<T: Send>(_: &T) {}

struct Service {
    locks: LockClient,
}

impl Service {
    #[redis_locked(name = "svc:{id}", ttl = 5, client = self.locks, guard = lock)]
    async fn handle(self: Arc<Self>, id: u64) -> Result<u64, LockError> {
        tokio::task::yield_now().await;
        Ok(id + lock.fencing_token().unwrap_or(0))
    }
}

#[redis_locked(name = "free:{id}", ttl = 5)]
async fn free(id: u64) -> Result<u64, LockError> {
    tokio::task::yield_now().await;
    Ok(id)
}

#[redis_locked(name = "job", ttl = 5, wait = 0)]
async fn job() {
    tokio::task::yield_now().await;
}

fn check(service: Arc<Service>) {
    assert_send(&free(1));
    assert_send(&job());
    assert_send(&service.handle(1));
}

fn main() {}
