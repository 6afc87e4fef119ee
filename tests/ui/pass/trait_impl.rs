//! `async fn` in trait impls (and sync trait methods).
#![allow(dead_code)]

use lock_runtime::{LockClient, LockError, redis_locked};

trait Job {
    async fn run(&self, tick: u64) -> Result<u64, LockError>;
    fn run_sync(&self, tick: u64) -> Result<u64, LockError>;
}

struct Cleanup {
    locks: LockClient,
}

impl Job for Cleanup {
    #[redis_locked(name = "cleanup:{tick}", ttl = 30, wait = 0, client = self.locks)]
    async fn run(&self, tick: u64) -> Result<u64, LockError> {
        Ok(tick)
    }

    #[redis_locked(name = "cleanup:{tick}", ttl = 30, wait = 0, client = &self.locks)]
    fn run_sync(&self, tick: u64) -> Result<u64, LockError> {
        Ok(tick)
    }
}

fn main() {}
