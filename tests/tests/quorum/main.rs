//! lock-runtime on a quorum of independent `redis-server`s (Redlock): each test
//! starts its own five servers (it kills, pauses and restarts them), stopped
//! when the test ends, also when it fails.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions, Wait};
use tests::RedisQuorum;
use tokio::time::Instant;

mod exclusion;
mod failures;
mod fencing;
mod setup;
mod waiting;

/// Options with a ttl in milliseconds.
fn ttl(ms: u64) -> LockOptions {
    LockOptions::new(Duration::from_millis(ms))
}

/// A quorum client of every server of `quorum`, with short timeouts so that
/// tests about dead servers stay quick.
async fn client(quorum: &RedisQuorum) -> LockClient {
    LockClient::builder(quorum.url())
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect("quorum client")
}

/// Tries once to take `name`: held, or why not.
async fn try_once(client: &LockClient, name: &str, options: &LockOptions) -> Result<(), LockError> {
    let guard = client
        .acquire(name, &options.clone().wait(Wait::TryOnce))
        .await?;
    guard.release().await
}

/// Waits until `count` waiters are registered at `key` on each of `servers` by
/// their second attempt: a waiter's first busy attempt registers it, then it
/// subscribes to notices and asks once more (a release in between would
/// otherwise go unseen); only after that second attempt is it quiet until a
/// notice or its poll, seconds away.
async fn registered(servers: &[tests::RedisServer], key: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = servers.iter().all(|server| {
            redis::cmd("HGETALL")
                .arg(format!("{key}:wakers"))
                .query::<Vec<(String, String)>>(&mut server.connection())
                .is_ok_and(|entries| {
                    // "<deadline> <ttl> <attempt> <channel>" per waiter.
                    let asked_twice = entries
                        .iter()
                        .filter(|(field, _)| field != "handed")
                        .filter(|(_, entry)| {
                            entry
                                .split(' ')
                                .nth(2)
                                .and_then(|attempt| attempt.parse::<u64>().ok())
                                .is_some_and(|attempt| attempt >= 2)
                        })
                        .count();
                    asked_twice >= count
                })
        });
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "waiter {count} never registered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Spawns a waiter that takes `name` with `ttl_ms`, waiting up to 20 s, and
/// releases it at once: when it got the lock.
fn spawn_waiter(
    waiter: LockClient,
    name: &'static str,
    ttl_ms: u64,
) -> tokio::task::JoinHandle<Result<Instant, LockError>> {
    tokio::spawn(async move {
        let guard = waiter
            .acquire(name, &ttl(ttl_ms).wait(Wait::For(Duration::from_secs(20))))
            .await?;
        let got = Instant::now();
        guard.release().await?;
        Ok(got)
    })
}
