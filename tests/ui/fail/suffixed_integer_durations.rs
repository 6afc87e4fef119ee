use lock_runtime::{LockError, redis_locked};

// `500ms` would silently be 500 seconds if the suffix were dropped.
#[redis_locked(name = "job", ttl = 500ms, max_hold = 10m, wait = 5s)]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
