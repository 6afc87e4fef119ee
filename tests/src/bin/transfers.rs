//! Random transfers between accounts under two locks at once, for the
//! deadlock and lost-update tests of `acquire_all` across processes.
//!
//! Usage: `transfers <lock-url> <data-url> <tasks> <rounds> <accounts>`.
//! Connects one client to `<lock-url>`, then runs `<tasks>` tasks; each does
//! `<rounds>` transfers of a random amount from one random account to another
//! (so pairs come in both orders), holding the locks of both accounts
//! (`run_all`) while it reads both balances on `<data-url>`, yields, and writes
//! both back: deliberately non-atomic, so the total is conserved only if no two
//! transfers touching one account ever overlapped. Prints `DONE` at the end.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use redis::AsyncCommands;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, lock_url, data_url, tasks, rounds, accounts] = args.as_slice() else {
        return Err("usage: transfers <lock-url> <data-url> <tasks> <rounds> <accounts>".into());
    };
    let (tasks, rounds, accounts): (u64, usize, u64) =
        (tasks.parse()?, rounds.parse()?, accounts.parse()?);
    if accounts < 2 {
        return Err("give at least two accounts".into());
    }
    let locks = lock_runtime::LockClient::connect(lock_url).await?;
    let data = redis::Client::open(data_url.as_str())?;
    let options = lock_runtime::LockOptions::new(Duration::from_secs(10));
    let mut running = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let (locks, options) = (locks.clone(), options.clone());
        let mut data = data.get_multiplexed_async_connection().await?;
        let mut random = Random::new(u64::from(std::process::id()) << 16 | task);
        running.spawn(async move {
            for _ in 0..rounds {
                let from = random.below(accounts);
                let to = (from + 1 + random.below(accounts - 1)) % accounts;
                let amount = random.below(10) as i64 + 1;
                let names = [format!("account:{from}"), format!("account:{to}")];
                locks
                    .run_all(&names, &options, async {
                        let (from, to) = (format!("balance:{from}"), format!("balance:{to}"));
                        let a: i64 = data.get(&from).await?;
                        let b: i64 = data.get(&to).await?;
                        tokio::task::yield_now().await;
                        data.set::<_, _, ()>(&from, a - amount).await?;
                        data.set::<_, _, ()>(&to, b + amount).await?;
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

/// xorshift64: enough randomness to pick accounts.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Self {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}
