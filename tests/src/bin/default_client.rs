//! Uses the process-wide default client (from `REDIS_URL`) from two runtimes in
//! turn, the second started after the first is gone, as sequential `#[tokio::test]`s
//! or a CLI tool's separate `block_on` calls would. Prints `OK <n>` or the error.

#![allow(clippy::print_stdout)]

use std::time::Duration;

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
}
