use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "invoice:{id}", ttl = 2000000000)]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
