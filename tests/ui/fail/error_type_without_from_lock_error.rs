use lock_runtime::redis_locked;

#[redis_locked(name = "invoice:{id}", ttl = 30)]
async fn settle(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[redis_locked(name = "report", ttl = 30)]
fn report() -> Result<(), &'static str> {
    Ok(())
}

fn main() {}
