//! Uses the process-wide default client (from `REDIS_URL`) from two runtimes in
//! turn, the second started after the first is gone, as sequential `#[tokio::test]`s
//! or a CLI tool's separate `block_on` calls would; then through `#[redis_locked]`
//! without `client`, async and sync. Prints `OK <n>` per step or the error.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use lock_runtime::{LockError, redis_locked};

#[redis_locked(name = "default-client", ttl = 1)]
async fn annotated(round: u32) -> Result<u32, LockError> {
    Ok(round)
}

#[redis_locked(name = "default-client", ttl = 1)]
fn annotated_sync(round: u32) -> Result<u32, LockError> {
    Ok(round)
}

fn main() {
    for round in 1..=2 {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                println!("ERROR {error}");
                return;
            }
        };
        let outcome = runtime.block_on(async {
            let client = lock_runtime::default_client().await?;
            let options = lock_runtime::LockOptions::new(Duration::from_secs(1));
            client
                .run("default-client", &options, async { round })
                .await
        });
        drop(runtime);
        match outcome {
            Ok(round) => println!("OK {round}"),
            Err(error) => {
                println!("ERROR {error}");
                return;
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("ERROR {error}");
            return;
        }
    };
    match runtime.block_on(annotated(3)) {
        Ok(round) => println!("OK {round}"),
        Err(error) => println!("ERROR {error}"),
    }
    match annotated_sync(4) {
        Ok(round) => println!("OK {round}"),
        Err(error) => println!("ERROR {error}"),
    }
}
