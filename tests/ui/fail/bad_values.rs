use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = 42, ttl = 30, fencing = "yes", on_lost = "panic", guard = self.lock, wait = 5)]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
