//! Early `return` and `?` with `From` conversions inside the body.
#![allow(dead_code)]

use lock_runtime::{LockError, redis_locked};

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Parse(std::num::ParseIntError),
}

impl From<LockError> for AppError {
    fn from(error: LockError) -> Self {
        AppError::Lock(error)
    }
}

impl From<std::num::ParseIntError> for AppError {
    fn from(error: std::num::ParseIntError) -> Self {
        AppError::Parse(error)
    }
}

#[redis_locked(name = "parse", ttl = 5)]
async fn parse(text: String) -> Result<u64, AppError> {
    if text.is_empty() {
        return Ok(0);
    }
    let value: u64 = text.parse()?;
    Ok(value)
}

#[redis_locked(name = "parse", ttl = 5)]
fn parse_sync(text: &str) -> Result<u64, AppError> {
    if text.is_empty() {
        return Ok(0);
    }
    Ok(text.parse::<u64>()?)
}

#[redis_locked(name = "job", ttl = 5)]
async fn unit_with_early_return(skip: bool) {
    if skip {
        return;
    }
}

fn main() {}
