use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "job", ttl = 30, min_hold = "5m", max_hold = "1m")]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
