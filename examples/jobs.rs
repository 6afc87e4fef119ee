//! A job scheduled on every node of a fleet that must run once per tick.
//!
//! Run it in several terminals (or machines sharing the Redis), or simulate a fleet
//! with skewed clocks in one process:
//!
//! ```text
//! cargo run -p examples --example jobs -- --nodes 3 --ticks 10
//! ```
//!
//! Each tick, one node logs `runs cleanup for tick N` and the others log that they
//! skipped it; at the end the run log shows one run per tick.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use examples::DemoRedis;
use examples::jobs::{Node, run_schedule, runs_key};
use lock_runtime::LockClient;
use redis::AsyncCommands;

/// One job, one run per tick across every node.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Nodes to run in this process, each with its own client and a clock lagging
    /// 150 ms more than the previous one.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// How many ticks (one per second) to run.
    #[arg(long, default_value_t = 10)]
    ticks: u64,
    /// The job's name.
    #[arg(long, default_value = "cleanup")]
    job: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    examples::init_logging();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            tracing::error!("{problem}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let redis = DemoRedis::find_or_start().await?;
    let client = redis::Client::open(redis.url.as_str()).map_err(|e| e.to_string())?;
    let mut storage = client
        .get_connection_manager()
        .await
        .map_err(|e| e.to_string())?;
    let _: () = storage
        .del(runs_key(&args.job))
        .await
        .map_err(|e| e.to_string())?;
    let mut nodes = Vec::new();
    for index in 0..args.nodes {
        let node = Node {
            name: format!("node-{index}"),
            locks: LockClient::connect(&redis.url)
                .await
                .map_err(|e| e.to_string())?,
            redis: storage.clone(),
            lag: Duration::from_millis(150 * u64::from(index)),
        };
        let job = args.job.clone();
        let ticks = args.ticks;
        nodes.push(tokio::spawn(async move {
            run_schedule(&node, &job, Duration::from_secs(1), ticks).await;
        }));
    }
    for node in nodes {
        node.await.map_err(|e| e.to_string())?;
    }
    let runs: Vec<String> = storage
        .lrange(runs_key(&args.job), 0, -1)
        .await
        .map_err(|e| e.to_string())?;
    println!("\n{} runs of `{}`:", runs.len(), args.job);
    for run in &runs {
        println!("  tick {run}");
    }
    Ok(())
}
