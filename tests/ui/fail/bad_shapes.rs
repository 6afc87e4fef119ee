use lock_runtime::{LockError, redis_locked};

// A semaphore nobody can enter.
#[redis_locked(name = "pool", ttl = 30, permits = 0)]
async fn no_permits() -> Result<(), LockError> {
    Ok(())
}

// Not a mode.
#[redis_locked(name = "doc", ttl = 30, mode = "rw")]
async fn both_ways() -> Result<(), LockError> {
    Ok(())
}

// Re-entry has no meaning for a semaphore; a lock is a semaphore or read/write.
#[redis_locked(name = "pool", ttl = 30, permits = 4, reentrant = true, mode = "read")]
async fn nested_permits() -> Result<(), LockError> {
    Ok(())
}

// Fencing tokens and arrival order are for exclusive locks and semaphores.
#[redis_locked(name = "doc", ttl = 30, mode = "write", fencing = true, fair = true)]
async fn fenced_writer() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
