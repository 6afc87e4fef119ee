//! Takes a lock and holds it (heartbeat running) until killed.
//!
//! Usage: `hold_lock <redis-url> <lock-name> <ttl-ms>`. Prints `ACQUIRED` once held.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, name, ttl_ms] = args.as_slice() else {
        return Err("usage: hold_lock <redis-url> <lock-name> <ttl-ms>".into());
    };
    let client = lock_runtime::LockClient::connect(url).await?;
    let options = lock_runtime::LockOptions::new(Duration::from_millis(ttl_ms.parse()?));
    let guard = client.acquire(name, &options).await?;
    println!("ACQUIRED");
    std::io::stdout().flush()?;
    let lost = guard.lost().await;
    Err(lost.into())
}
