//! Pattern arguments: extractor-style tuple structs, tuples, structs, `mut`.
#![allow(dead_code)]

use lock_runtime::{LockError, redis_locked};

struct Path<T>(T);

struct Json<T>(T);

struct Transfer {
    to: u64,
    amount: u64,
}

#[redis_locked(name = "account:{id}", ttl = 10, wait = "2s")]
async fn transfer(Path(id): Path<u64>, Json(Transfer { to, amount }): Json<Transfer>) -> Result<u64, LockError> {
    Ok(id + to + amount)
}

#[redis_locked(name = "pair:{a}:{b}", ttl = 10)]
fn pair((a, b): (u8, u8), mut total: u32) -> Result<u32, LockError> {
    total += u32::from(a) + u32::from(b);
    Ok(total)
}

fn main() {}
