//! `permits = N` and `mode = "read" | "write"` on annotated functions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lock_runtime::{LockClient, LockError, redis_locked};
use tests::RedisServer;
use tokio::sync::Barrier;
use tokio::time::timeout;

#[redis_locked(name = "partner-api", ttl = 5, client = locks, permits = 2)]
async fn call_partner(
    locks: &LockClient,
    inside: &AtomicUsize,
    most: &AtomicUsize,
) -> Result<(), LockError> {
    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    inside.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

#[redis_locked(name = "catalog", ttl = 5, client = locks, mode = "read")]
async fn read_catalog(locks: &LockClient, together: &Barrier) -> Result<(), LockError> {
    // Returns only once both readers are inside at once.
    together.wait().await;
    Ok(())
}

#[redis_locked(name = "catalog", ttl = 5, client = locks, mode = "write", wait = 0)]
async fn write_catalog(locks: &LockClient) -> Result<(), LockError> {
    Ok(())
}

#[tokio::test]
async fn a_semaphore_function_lets_in_at_most_its_permits() {
    let server = RedisServer::start();
    let locks = LockClient::connect(&server.url()).await.unwrap();
    let (inside, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let calls = (0..8).map(|_| call_partner(&locks, &inside, &most));
    for result in futures_util::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 2, "not exactly 2 at once");
}

#[tokio::test]
async fn reader_functions_share_and_a_writer_waits_for_them() {
    let server = RedisServer::start();
    let locks = LockClient::connect(&server.url()).await.unwrap();
    let together = Arc::new(Barrier::new(3));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (locks, together) = (locks.clone(), together.clone());
            tokio::spawn(async move { read_catalog(&locks, &together).await })
        })
        .collect();
    // Both readers are in (the barrier's third party is this test) ...
    timeout(Duration::from_secs(5), async {
        loop {
            let holders: usize = redis::cmd("ZCARD")
                .arg(locks.key_for("catalog"))
                .query(&mut server.connection())
                .unwrap();
            if holders == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the two readers were not in together");
    // ... so a writer trying once is busy.
    let busy = write_catalog(&locks).await;
    assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
    together.wait().await;
    for reader in readers {
        reader.await.unwrap().unwrap();
    }
    write_catalog(&locks).await.unwrap();
}
