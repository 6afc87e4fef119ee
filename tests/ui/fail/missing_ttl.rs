use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "invoice:{id}")]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
