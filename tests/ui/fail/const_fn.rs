use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "constant", ttl = 30)]
const fn constant() -> Result<u64, LockError> {
    Ok(1)
}

fn main() {}
