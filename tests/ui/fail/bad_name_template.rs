use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "invoice:{}", ttl = 30)]
async fn positional(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[redis_locked(name = "invoice:{self.id}", ttl = 30)]
async fn field(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[redis_locked(name = "invoice:{id", ttl = 30)]
async fn unclosed(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[redis_locked(name = "", ttl = 30)]
async fn empty(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
