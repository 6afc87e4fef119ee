//! Behaviour of lock-runtime against real redis-server processes.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod bad_input;
mod default_client;
mod fair;
mod fencing;
mod lease;
mod mutual_exclusion;
mod waiting;

use std::time::Duration;

use lock_runtime::{LockClient, LockOptions, Wait};

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
