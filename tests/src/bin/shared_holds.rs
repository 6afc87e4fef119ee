//! Many short holds of a semaphore or a read/write lock, timed by the holders
//! themselves, for the tests that count how many held at once across processes.
//!
//! Usage: `shared_holds <lock-url> <tasks> <rounds> <permits=N | rw> <name>`.
//! Runs `<tasks>` tasks of `<rounds>` holds each: with `permits=N`, each hold is
//! one permit of a semaphore of N; with `rw`, every fourth task writes and the
//! others read. Each hold yields once and sleeps a little (so holds overlap), and
//! prints `HOLD <s|r|w> <start µs> <end µs>`, timed inside the body by the system
//! clock. Prints `DONE` at the end.

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::Duration;

use lock_runtime::{LockOptions, Mode};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, tasks, rounds, how, name] = args.as_slice() else {
        return Err(
            "usage: shared_holds <lock-url> <tasks> <rounds> <permits=N | rw> <name>".into(),
        );
    };
    let (tasks, rounds): (usize, usize) = (tasks.parse()?, rounds.parse()?);
    let locks = lock_runtime::LockClient::connect(url).await?;
    let base = LockOptions::new(Duration::from_secs(10));
    let permits: Option<u32> = match how.strip_prefix("permits=") {
        Some(count) => Some(count.parse()?),
        None if how == "rw" => None,
        None => return Err(format!("`{how}`: give permits=N or rw").into()),
    };
    let mut running = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let (kind, options) = match permits {
            Some(permits) => ('s', base.clone().permits(permits)),
            None if task % 4 == 0 => ('w', base.clone().mode(Mode::Write)),
            None => ('r', base.clone().mode(Mode::Read)),
        };
        let (locks, name) = (locks.clone(), name.clone());
        running.spawn(async move {
            let mut lines = String::new();
            for round in 0..rounds {
                let (start, end) = locks
                    .run(&name, &options, async {
                        let start = now_us();
                        tokio::task::yield_now().await;
                        if round % 8 == 0 {
                            tokio::time::sleep(Duration::from_micros(300)).await;
                        }
                        (start, now_us())
                    })
                    .await?;
                lines.push_str(&format!("HOLD {kind} {start} {end}\n"));
            }
            Ok::<String, lock_runtime::LockError>(lines)
        });
    }
    let mut out = std::io::stdout().lock();
    while let Some(done) = running.join_next().await {
        out.write_all(done??.as_bytes())?;
    }
    writeln!(out, "DONE")?;
    Ok(())
}

/// Microseconds since the Unix epoch.
fn now_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros())
}
