//! The bank service over HTTP: transfers out of an account are serialised by a
//! `#[redis_locked]` handler (see `examples/src/bank.rs`).
//!
//! ```text
//! cargo run -p examples --example web -- --listen 127.0.0.1:3000
//! curl -X POST localhost:3000/accounts/1/transfer -H 'content-type: application/json' \
//!      -d '{"to": 2, "amount": 5}'
//! curl localhost:3000/accounts/1
//! curl localhost:3000/metrics     # the lock metrics, for Prometheus to scrape
//! ```

use std::process::ExitCode;

use clap::Parser;
use examples::DemoRedis;
use examples::bank::{AppState, balance_key, router, with_metrics};
use lock_runtime::LockClient;
use redis::AsyncCommands;

/// A bank-style HTTP service whose transfers are guarded by Redis locks.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Give accounts 1..=10 this opening balance (only where none exists yet).
    #[arg(long, default_value_t = 1_000)]
    opening_balance: i64,
}

#[tokio::main]
async fn main() -> ExitCode {
    examples::init_logging();
    let args = Args::parse();
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            tracing::error!("{problem}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let metrics = examples::bank::prometheus()?;
    let redis = DemoRedis::find_or_start().await?;
    let locks = LockClient::connect(&redis.url)
        .await
        .map_err(|e| e.to_string())?;
    let client = redis::Client::open(redis.url.as_str()).map_err(|e| e.to_string())?;
    let mut storage = client
        .get_connection_manager()
        .await
        .map_err(|e| e.to_string())?;
    for id in 1..=10 {
        let _: bool = storage
            .set_nx(balance_key(id), args.opening_balance)
            .await
            .map_err(|e| e.to_string())?;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(
        "bank listening on http://{} (redis {})",
        args.listen,
        redis.url
    );
    let app = with_metrics(
        router(AppState {
            locks,
            redis: storage,
        }),
        metrics,
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}
