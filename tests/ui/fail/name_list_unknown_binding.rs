use lock_runtime::{LockError, redis_locked};

// Each entry's placeholders must name a binding.
#[redis_locked(name = ["account:{from}", "account:{too}"], ttl = 30)]
async fn transfer_typo(from: u64, to: u64) -> Result<(), LockError> {
    let _ = to;
    Ok(())
}

fn main() {}
