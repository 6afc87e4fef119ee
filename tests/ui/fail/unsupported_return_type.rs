use lock_runtime::redis_locked;

#[redis_locked(name = "count", ttl = 30)]
async fn count() -> u64 {
    1
}

#[redis_locked(name = "maybe", ttl = 30)]
fn maybe() -> Option<u64> {
    Some(1)
}

fn main() {}
