//! Methods with every kind of receiver, async and sync, and `client = self.…`.
#![allow(dead_code)]

use std::sync::Arc;

use lock_runtime::{LockClient, LockError, redis_locked};

struct Accounts {
    locks: LockClient,
    balance: u64,
}

impl Accounts {
    #[redis_locked(name = "account:{id}", ttl = 10, client = self.locks)]
    async fn read(&self, id: u64) -> Result<u64, LockError> {
        Ok(self.balance + id)
    }

    #[redis_locked(name = "account:{id}", ttl = 10, client = self.locks)]
    async fn deposit(&mut self, id: u64, amount: u64) -> Result<u64, LockError> {
        self.balance += amount;
        Ok(self.balance + id)
    }

    #[redis_locked(name = "account:close", ttl = 10, client = self.locks)]
    async fn close(self) -> Result<u64, LockError> {
        Ok(self.balance)
    }

    #[redis_locked(name = "account:shared", ttl = 10, client = self.locks)]
    async fn shared(self: Arc<Self>) -> Result<u64, LockError> {
        Ok(self.balance)
    }

    #[redis_locked(name = "account:{id}", ttl = 10, client = self.locks)]
    fn read_sync(&self, id: u64) -> Result<u64, LockError> {
        Ok(self.balance + id)
    }

    #[redis_locked(name = "account:sync", ttl = 10, client = self.locks)]
    fn deposit_sync(&mut self, amount: u64) -> Result<(), LockError> {
        self.balance += amount;
        Ok(())
    }

    #[redis_locked(name = "account:sync", ttl = 10, client = self.locks)]
    fn close_sync(self) -> Result<u64, LockError> {
        Ok(self.balance)
    }
}

fn main() {}
