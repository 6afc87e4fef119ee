//! A module that shadows `Result`, `Ok`, `Some`, `Option`, `String` and `format`:
//! the expansion must only use absolute paths.
#![allow(dead_code, non_camel_case_types, unused_macros)]

mod app {
    use lock_runtime::{LockError, redis_locked};

    pub type Result<T> = std::result::Result<T, LockError>;
    pub struct Ok;
    pub struct Some;
    pub struct Option;
    pub struct String;
    macro_rules! format {
        ($($t:tt)*) => {
            compile_error!("the user's format! must not be used")
        };
    }

    #[redis_locked(name = "shadow:{id}", ttl = 5)]
    pub async fn shadowed(id: u64) -> Result<u64> {
        std::result::Result::Ok(id)
    }

    #[redis_locked(name = "shadow:{id}", ttl = 5)]
    pub fn shadowed_sync(id: u64) -> Result<u64> {
        std::result::Result::Ok(id)
    }
}

fn main() {}
