//! Generic functions, `where` clauses, lifetimes, `impl Trait` arguments.
#![allow(dead_code)]

use std::fmt::Display;

use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "item:{key}", ttl = 5)]
async fn generic<K, V>(key: K, value: V) -> Result<String, LockError>
where
    K: Display + Send,
    V: Clone + Into<String> + Send,
{
    Ok(format!("{key}={}", value.into()))
}

#[redis_locked(name = "first:{items:?}", ttl = 5)]
fn first<'a, T: std::fmt::Debug>(items: &'a [T]) -> Result<Option<&'a T>, LockError> {
    Ok(items.first())
}

#[redis_locked(name = "shown:{value}", ttl = 5)]
async fn shown(value: impl Display + Send) -> Result<String, LockError> {
    Ok(value.to_string())
}

fn main() {}
