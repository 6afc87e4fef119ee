//! Takes a lock and holds it (heartbeat running) until killed.
//!
//! Usage: `hold_lock <redis-url> <lock-name> <ttl-ms> [fair]`. Prints `ACQUIRED` once
//! held (with `fair`, it waits its turn in the FIFO queue first).

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (url, name, ttl_ms, fair) = match args.as_slice() {
        [_, url, name, ttl_ms] => (url, name, ttl_ms, false),
        [_, url, name, ttl_ms, fair] if fair == "fair" => (url, name, ttl_ms, true),
        _ => return Err("usage: hold_lock <redis-url> <lock-name> <ttl-ms> [fair]".into()),
    };
    let client = lock_runtime::LockClient::connect(url).await?;
    let options = lock_runtime::LockOptions::new(Duration::from_millis(ttl_ms.parse()?)).fair(fair);
    let guard = client.acquire(name, &options).await?;
    println!("ACQUIRED");
    std::io::stdout().flush()?;
    let lost = guard.lost().await;
    Err(lost.into())
}
