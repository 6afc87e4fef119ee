//! Takes a lock, drops its guard, and exits at once: the lock must be free
//! when the process is gone (not held until its ttl).
//!
//! Usage: `drop_and_exit <url> <name> sync|async-flush`:
//! - `sync`: no async runtime; the guard, taken with `acquire_blocking`, is
//!   dropped and `main` returns (the drop itself waits for the release);
//! - `async-flush`: in a tokio runtime; the guard is dropped, then
//!   `flush_releases` waits for its background release before `main` returns.
//!
//! Prints `DROPPED` just before it returns.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use lock_runtime::{LockClient, LockOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, name, mode] = args.as_slice() else {
        return Err("usage: drop_and_exit <url> <name> sync|async-flush".into());
    };
    let options = LockOptions::new(Duration::from_secs(30));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match mode.as_str() {
        "sync" => {
            let client = runtime.block_on(LockClient::connect(url))?;
            let guard = client.acquire_blocking(name, &options)?;
            drop(guard);
        }
        "async-flush" => runtime.block_on(async {
            let client = LockClient::connect(url).await?;
            let guard = client.acquire(name, &options).await?;
            drop(guard);
            let left = lock_runtime::flush_releases(Duration::from_secs(5)).await;
            if left > 0 {
                return Err(format!("{left} releases still in flight").into());
            }
            Ok::<_, Box<dyn std::error::Error>>(())
        })?,
        other => return Err(format!("unknown mode `{other}`").into()),
    }
    println!("DROPPED");
    Ok(())
}
