//! `impl Trait` and boxed closures inside the result.
#![allow(dead_code)]

use std::fmt::Display;

use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "display", ttl = 5)]
async fn displayable() -> Result<impl Display, LockError> {
    Ok(42)
}

#[redis_locked(name = "iter", ttl = 5)]
fn numbers() -> Result<impl Iterator<Item = u32>, LockError> {
    Ok(0..3)
}

#[redis_locked(name = "callback", ttl = 5)]
async fn callback() -> Result<Box<dyn Fn() -> u32 + Send>, LockError> {
    Ok(Box::new(|| 7))
}

fn main() {}
