use lock_runtime::{LockError, redis_locked};

// Every argument problem is reported in one go, and `settle` still exists for the
// IDE: the call in `main` type-checks against the original signature.
#[redis_locked(name = "invoice:{}", ttl = 0, retries = 3, fencing = "yes")]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {
    let _future = settle(1);
}
