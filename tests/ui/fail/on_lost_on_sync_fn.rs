use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "sync", ttl = 30, on_lost = "cancel")]
fn sync_job() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
