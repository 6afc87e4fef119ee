use lock_runtime::{LockError, redis_locked};

struct Job;

impl Job {
    #[redis_locked(name = "job", ttl = 30, guard = self)]
    async fn run(&self) -> Result<(), LockError> {
        Ok(())
    }
}

fn main() {}
