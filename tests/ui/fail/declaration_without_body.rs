use lock_runtime::{LockError, redis_locked};

trait Job {
    #[redis_locked(name = "job", ttl = 30)]
    async fn run(&self) -> Result<(), LockError>;
}

fn main() {}
