//! `crate = "…"` for a re-exporter, with the runtime's usual name taken by something else.
#![allow(dead_code)]

extern crate lock_runtime as locks_reexported;

mod lock_runtime {}

use locks_reexported::{LockError, redis_locked};

#[redis_locked(name = "renamed", ttl = 5, crate = "locks_reexported")]
async fn renamed() -> Result<(), LockError> {
    Ok(())
}

#[redis_locked(name = "renamed", ttl = 5, crate = "::locks_reexported")]
fn renamed_sync() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
