use lock_runtime::redis_locked;

// A function that never returns cannot report that it did not get the lock.
#[redis_locked(name = "forever", ttl = 30)]
fn serve_forever() -> ! {
    loop {}
}

fn main() {}
