use lock_runtime::{LockError, redis_locked};

// Every problem is reported in one go, and `settle` still exists for the IDE: the
// call in `main` type-checks against the original signature.
#[redis_locked(name = "invoice:{order}", ttl = 0, retries = 3)]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {
    let _future = settle(1);
}
