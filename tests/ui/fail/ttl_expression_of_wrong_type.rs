use lock_runtime::{LockError, redis_locked};

// A run-time `ttl` must be a `Duration`: plain seconds are ambiguous.
#[redis_locked(name = "job", ttl = secs)]
async fn job(secs: u64) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
