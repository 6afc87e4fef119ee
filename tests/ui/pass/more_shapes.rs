//! Less common shapes: borrowed returns, `Self`, inner attributes, `unsafe fn`,
//! `#[must_use]` and docs kept, arguments named like the expansion's helpers.
#![allow(dead_code)]

use lock_runtime::{LockClient, LockError, redis_locked};

struct Store {
    locks: LockClient,
    name: String,
}

impl Store {
    /// Returns a borrow of `self` through the lock.
    #[must_use]
    #[redis_locked(name = "store", ttl = 5, client = self.locks)]
    async fn name(&self) -> Result<&str, LockError> {
        Ok(&self.name)
    }

    #[redis_locked(name = "store", ttl = 5, client = self.locks)]
    fn name_sync<'a>(&'a self, fallback: &'a str) -> Result<&'a str, LockError> {
        Ok(if self.name.is_empty() { fallback } else { &self.name })
    }

    #[redis_locked(name = "store", ttl = 5, client = self.locks)]
    fn renamed(&self) -> Result<Self, LockError> {
        Ok(Self {
            locks: self.locks.clone(),
            name: format!("{}-2", self.name),
        })
    }
}

#[redis_locked(name = "inner", ttl = 5)]
fn inner_attribute() -> Result<u8, LockError> {
    #![allow(unused_variables)]
    let unused = 1;
    Ok(2)
}

/// # Safety
/// `ptr` must be valid for reads.
#[redis_locked(name = "raw", ttl = 5)]
unsafe fn read_raw(ptr: *const u8) -> Result<u8, LockError> {
    // SAFETY: the caller promises `ptr` is valid.
    Ok(unsafe { *ptr })
}

#[redis_locked(name = "helpers:{__lock_name}", ttl = 5, client = __lock_client)]
async fn helper_names(__lock_name: u64, __lock_client: &LockClient, __lock_options: u8) -> Result<u64, LockError> {
    Ok(__lock_name + u64::from(__lock_options))
}

fn main() {}
