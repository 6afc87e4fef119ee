use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "job", ttl = -5)]
async fn job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
