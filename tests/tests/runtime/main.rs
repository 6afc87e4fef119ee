//! Behaviour of lock-runtime against real redis-server processes.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod acl;
mod bad_input;
mod chaos;
mod default_client;
mod fair;
mod fencing;
mod handoff;
mod lease;
mod line;
mod mutual_exclusion;
mod ops;
mod reconnect;
mod reentry;
mod sets;
mod shapes;
mod shutdown;
mod waiting;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lock_runtime::{LockClient, LockOptions, LockState, Wait};
use tokio::time::Instant;

/// Connects a fresh client to `url`.
async fn client(url: &str) -> LockClient {
    LockClient::connect(url)
        .await
        .expect("connect to test server")
}

fn ttl(ms: u64) -> LockOptions {
    LockOptions::new(Duration::from_millis(ms))
}

fn try_once(ms: u64) -> LockOptions {
    ttl(ms).wait(Wait::TryOnce)
}

fn get(server: &tests::RedisServer, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut server.connection())
        .unwrap()
}

fn pttl(server: &tests::RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query(&mut server.connection())
        .unwrap()
}

/// Takes and releases a throwaway lock with fencing (which always runs the
/// acquire script), so the server has both lock scripts cached: the first use of
/// each costs a `NOSCRIPT` round trip, which would skew counts and timings.
async fn load_scripts(locks: &LockClient) {
    let guard = locks
        .acquire("warm-up", &ttl(1_000).fencing(true))
        .await
        .expect("warm-up acquire");
    guard.release().await.expect("warm-up release");
}

/// Polls `condition` every 5 ms for up to 5 s.
async fn until(what: &str, condition: impl FnMut() -> bool) {
    until_within(Duration::from_secs(5), what, condition).await;
}

/// Polls `condition` every 5 ms for up to `limit`.
async fn until_within(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The clients' notice channels subscribed on the server (default prefix).
fn notice_channels(server: &tests::RedisServer) -> Vec<String> {
    redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg("lock:notices:*")
        .query(&mut server.connection())
        .unwrap()
}

/// Starts `hold_lock` holding `how` of `name` (`""` for an exclusive lock,
/// or e.g. `permits=1`, `read`), with holder label `label` if given, and
/// returns once it holds it.
fn hold_in_child(
    server: &tests::RedisServer,
    name: &str,
    ttl_ms: u64,
    how: &str,
    label: Option<&str>,
) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hold_lock"));
    command.args([server.url().as_str(), name, &ttl_ms.to_string()]);
    if !how.is_empty() {
        command.arg(how);
    }
    if let Some(label) = label {
        command.env("HOLD_LABEL", label);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ACQUIRED");
    child
}

/// Inspects `name` until someone waits for it (for up to 5 s), and returns
/// that state.
async fn until_queued(locks: &LockClient, name: &str) -> LockState {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = locks.inspect(name).await.unwrap();
        if !state.waiters.is_empty() {
            return state;
        }
        assert!(Instant::now() < deadline, "no one ever queued for {name}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
