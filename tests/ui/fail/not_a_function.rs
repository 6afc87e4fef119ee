use lock_runtime::redis_locked;

#[redis_locked(name = "thing", ttl = 30)]
struct Thing {
    id: u64,
}

fn main() {}
