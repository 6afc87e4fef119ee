//! A scheduled job that runs once per tick across a fleet: every node fires on the
//! same wall-clock schedule, the first to take the lock runs the job, the others
//! skip that tick (a `tracing` event, not an error).
//!
//! `min_hold` keeps the lock for most of the period even when the job is quick, so
//! a node whose clock (or timer) lags by less than `min_hold` finds the tick taken
//! instead of running it a second time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lock_runtime::{LockClient, redis_locked};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

/// One member of the fleet.
#[derive(Clone)]
pub struct Node {
    /// How the node shows up in logs and in the run log.
    pub name: String,
    /// Where the job's lock lives.
    pub locks: LockClient,
    /// Where runs are recorded.
    pub redis: ConnectionManager,
    /// How late this node's clock fires (to show skewed fleets).
    pub lag: Duration,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("lag", &self.lag)
            .finish_non_exhaustive()
    }
}

/// The Redis list where runs of `job` are recorded as `"<tick> <node>"`.
pub fn runs_key(job: &str) -> String {
    format!("jobs:runs:{job}")
}

/// The job: records that this node ran this tick. Annotated with `wait = 0` (a busy
/// tick is skipped) and `min_hold` (shorter than the 1 s period, longer than any
/// clock lag we tolerate).
#[redis_locked(name = "jobs:{job}", ttl = 5, wait = 0, min_hold = "800ms", client = node.locks)]
pub async fn run_job(node: &Node, job: &str, tick: u64) {
    tracing::info!("[{}] - runs {job} for tick {tick}", node.name);
    let mut redis = node.redis.clone();
    let recorded: Result<i64, _> = redis
        .rpush(runs_key(job), format!("{tick} {}", node.name))
        .await;
    if let Err(error) = recorded {
        tracing::error!("[{}] - could not record the run: {error}", node.name);
    }
}

/// Runs `job` on every `period` boundary of the wall clock (plus this node's lag),
/// `ticks` times. Tick numbers are the boundary's Unix time divided by the period,
/// so every node names a tick the same way.
pub async fn run_schedule(node: &Node, job: &str, period: Duration, ticks: u64) {
    let period_ms = period.as_millis().max(1) as u64;
    for _ in 0..ticks {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let tick = now_ms / period_ms + 1;
        let fire_in = Duration::from_millis(tick * period_ms - now_ms) + node.lag;
        tokio::time::sleep(fire_in).await;
        run_job(node, job, tick).await;
    }
}
