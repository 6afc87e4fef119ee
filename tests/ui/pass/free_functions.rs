//! Free `async fn`s and plain `fn`s, each return kind the attribute dispatches on.
#![allow(dead_code)]

use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "invoice:{id}", ttl = 30)]
async fn settle(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[redis_locked(name = "report", ttl = "500ms", wait = 0)]
async fn nightly_report() {}

#[redis_locked(name = "file:{path}", ttl = 5)]
fn write_file(path: &str) -> std::io::Result<usize> {
    Ok(path.len())
}

#[redis_locked(name = "tick", ttl = 5, wait = 0)]
fn sync_tick() {}

type AppResult<T> = Result<T, AppError>;

#[derive(Debug)]
struct AppError;

impl From<LockError> for AppError {
    fn from(_: LockError) -> Self {
        AppError
    }
}

#[redis_locked(name = "alias", ttl = 5)]
async fn through_an_alias() -> AppResult<()> {
    Ok(())
}

#[redis_locked(name = "anyhow", ttl = 5)]
async fn through_anyhow() -> anyhow::Result<u8> {
    Ok(1)
}

#[redis_locked(name = "boxed", ttl = 5)]
fn through_a_boxed_error() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Ok(())
}

fn main() {}
