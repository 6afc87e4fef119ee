use lock_runtime::{LockError, redis_locked};

// A near miss of a required argument: one error, with the fix, and no second
// "needs a lease length" error for the `ttl` that was meant.
#[redis_locked(name = "invoice:{id}", tll = 30)]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[redis_locked(nme = "report", ttl = 30, hearbeat = "5s")]
async fn report() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
