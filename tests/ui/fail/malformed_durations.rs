use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "invoice:{id}", ttl = "30 seconds", wait = "soon", max_hold = 1.5)]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
