//! Takes a lock and holds it (heartbeat running) until killed.
//!
//! Usage: `hold_lock <redis-url> <lock-name> <ttl-ms> [fair | permits=<n> | read | write]`.
//! Prints `ACQUIRED` once held (with `fair`, it waits its turn in the FIFO queue
//! first; with `permits=<n>`, it holds one permit of a semaphore; with `read`
//! or `write`, a share of a read/write lock). `HOLD_LABEL` in the environment
//! is the client's holder label. Fails (exit code 1) once the lease is lost.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: hold_lock <redis-url> <lock-name> <ttl-ms> [fair | permits=<n> | read | write]";
    let (url, name, ttl_ms, how) = match args.as_slice() {
        [_, url, name, ttl_ms] => (url, name, ttl_ms, ""),
        [_, url, name, ttl_ms, how] => (url, name, ttl_ms, how.as_str()),
        _ => return Err(usage.into()),
    };
    let mut builder = lock_runtime::LockClient::builder(url.as_str());
    if let Ok(label) = std::env::var("HOLD_LABEL") {
        builder = builder.holder_label(label);
    }
    let client = builder.connect().await?;
    let options = lock_runtime::LockOptions::new(Duration::from_millis(ttl_ms.parse()?));
    let options = match how {
        "" => options,
        "fair" => options.fair(true),
        "read" => options.mode(lock_runtime::Mode::Read),
        "write" => options.mode(lock_runtime::Mode::Write),
        permits => match permits.strip_prefix("permits=") {
            Some(count) => options.permits(count.parse()?),
            None => return Err(usage.into()),
        },
    };
    let guard = client.acquire(name, &options).await?;
    println!("ACQUIRED");
    std::io::stdout().flush()?;
    let lost = guard.lost().await;
    Err(lost.into())
}
