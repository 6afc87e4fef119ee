//! Behaviour of `#[redis_locked]` against real redis-server processes: every way
//! out of an annotated function frees the lock and stops its heartbeat.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod mutual_exclusion;
mod reentry;
mod sets;
mod shapes;
mod ways_out;

use std::time::Duration;

use tests::RedisServer;
use tokio::time::Instant;

/// Asserts no lock script runs for a while: nothing is extending a lease any more.
async fn assert_heartbeat_stopped(server: &RedisServer) {
    assert!(
        scripts_go_quiet(server).await,
        "a heartbeat is still extending"
    );
}

/// True if lock scripts stop running: a release spawned when a guard was dropped
/// may still be landing, so wait (up to 2 s) for the count to settle, then require
/// it to stay put for four heartbeat intervals (100 ms) of the functions under test.
async fn scripts_go_quiet(server: &RedisServer) -> bool {
    let started = Instant::now();
    loop {
        let before = server.script_calls();
        tokio::time::sleep(Duration::from_millis(150)).await;
        if server.script_calls() == before {
            break;
        }
        if started.elapsed() > Duration::from_secs(2) {
            return false;
        }
    }
    let before = server.script_calls();
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.script_calls() == before
}

/// The control for `assert_heartbeat_stopped`: with a lease alive it does see the
/// heartbeat.
#[tokio::test]
async fn the_heartbeat_detector_sees_a_live_heartbeat() {
    let server = RedisServer::start();
    let locks = lock_runtime::LockClient::connect(&server.url())
        .await
        .unwrap();
    let options = lock_runtime::LockOptions::new(Duration::from_secs(30))
        .heartbeat(Duration::from_millis(100));
    let guard = locks.acquire("alive", &options).await.unwrap();
    assert!(!scripts_go_quiet(&server).await);
    guard.release().await.unwrap();
    assert!(scripts_go_quiet(&server).await);
}

/// Waits (up to `within`) for the key to disappear; returns how long it took.
async fn freed_within(server: &RedisServer, key: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let exists: i64 = redis::cmd("EXISTS")
            .arg(key)
            .query(&mut server.connection())
            .unwrap();
        if exists == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "`{key}` still held after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
