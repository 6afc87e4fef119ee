//! Deliberately non-atomic increments under locks, for mutual-exclusion tests
//! across processes.
//!
//! Usage: `locked_increments <lock-url> <counter-url> <tasks> <rounds> <name>…`.
//! Connects one client to `<lock-url>` (a server or a cluster), then runs
//! `<tasks>` tasks; each does `<rounds>` rounds, each round taking the lock of
//! the next name in turn and, while holding it, reading the name's counter on
//! `<counter-url>`, yielding, and writing it back plus one. Counters are exact
//! only if no two holders of one lock ever overlapped. Prints `DONE` at the end.
//! With `PRINT_HOLDS` set, also prints `HOLD <name> <start µs> <end µs>` for
//! each hold, timed inside the body by the system clock (not by the lock), so
//! a test can check across processes that no two holds overlapped.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use redis::AsyncCommands;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, lock_url, counter_url, tasks, rounds, names @ ..] = args.as_slice() else {
        return Err(
            "usage: locked_increments <lock-url> <counter-url> <tasks> <rounds> <name>…".into(),
        );
    };
    if names.is_empty() {
        return Err("give at least one lock name".into());
    }
    let (tasks, rounds): (usize, usize) = (tasks.parse()?, rounds.parse()?);
    let locks = lock_runtime::LockClient::connect(lock_url).await?;
    let counters = redis::Client::open(counter_url.as_str())?;
    let options = lock_runtime::LockOptions::new(Duration::from_secs(10));
    let print_holds = std::env::var_os("PRINT_HOLDS").is_some();
    let mut running = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let (locks, options, names) = (locks.clone(), options.clone(), names.to_vec());
        let mut data = counters.get_multiplexed_async_connection().await?;
        running.spawn(async move {
            for round in 0..rounds {
                let name = &names[(task + round) % names.len()];
                locks
                    .run(name, &options, async {
                        let start = now_us();
                        let counter = format!("counter:{name}");
                        let value: Option<i64> = data.get(&counter).await?;
                        tokio::task::yield_now().await;
                        data.set::<_, _, ()>(&counter, value.unwrap_or(0) + 1)
                            .await?;
                        if print_holds {
                            println!("HOLD {name} {start} {}", now_us());
                        }
                        Ok::<(), redis::RedisError>(())
                    })
                    .await??;
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        });
    }
    while let Some(done) = running.join_next().await {
        done?.map_err(|error| error.to_string())?;
    }
    println!("DONE");
    Ok(())
}

/// Microseconds since the Unix epoch.
fn now_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros())
}
