use lock_runtime::{LockError, redis_locked};

// A list that names no lock.
#[redis_locked(name = [], ttl = 30)]
async fn nothing() -> Result<(), LockError> {
    Ok(())
}

// Each entry must be a string literal.
#[redis_locked(name = ["account:{from}", 7], ttl = 30)]
async fn transfer(from: u64, to: u64) -> Result<(), LockError> {
    let _ = (from, to);
    Ok(())
}

fn main() {}
