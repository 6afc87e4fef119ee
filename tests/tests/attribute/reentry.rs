//! The refactoring accident: an annotated function calling another one
//! locked on the same name. By default an error at once; with `reentrant = true`
//! the inner call runs under the outer hold.

use std::time::Duration;

use lock_runtime::{LockClient, LockError, redis_locked};
use tests::RedisServer;
use tokio::time::timeout;

#[redis_locked(name = "account:{id}", ttl = 5, client = locks)]
async fn close(locks: &LockClient, id: u64) -> Result<Result<(), LockError>, LockError> {
    Ok(settle(locks, id).await)
}

#[redis_locked(name = "account:{id}", ttl = 5, client = locks)]
async fn settle(locks: &LockClient, id: u64) -> Result<(), LockError> {
    Ok(())
}

#[redis_locked(name = "account:{id}", ttl = 5, client = locks, reentrant = true)]
async fn close_reentrant(locks: &LockClient, id: u64) -> Result<bool, LockError> {
    settle_reentrant(locks, id).await?;
    // Still held after the inner call ended.
    Ok(exists(locks, id).await)
}

#[redis_locked(name = "account:{id}", ttl = 5, client = locks, reentrant = true, guard = lock)]
async fn settle_reentrant(locks: &LockClient, id: u64) -> Result<(), LockError> {
    lock.check()
}

#[redis_locked(name = "account:{id}", ttl = 5, client = locks, reentrant = true)]
fn close_sync(locks: &LockClient, id: u64) -> Result<(), LockError> {
    settle_sync(locks, id)
}

#[redis_locked(name = "account:{id}", ttl = 5, client = locks)]
fn settle_sync(locks: &LockClient, id: u64) -> Result<(), LockError> {
    Ok(())
}

async fn exists(locks: &LockClient, id: u64) -> bool {
    let url = locks.server().to_owned();
    let mut connection = redis::Client::open(format!("redis://{url}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("EXISTS")
        .arg(locks.key_for(&format!("account:{id}")))
        .query_async(&mut connection)
        .await
        .unwrap()
}

#[tokio::test]
async fn nested_annotated_functions_fail_at_once_by_default() {
    let server = RedisServer::start();
    let locks = LockClient::connect(&server.url()).await.unwrap();
    // The default wait is forever: a self-wait would never end.
    let inner = timeout(Duration::from_secs(5), close(&locks, 1))
        .await
        .expect("the inner call waited on itself")
        .unwrap();
    assert!(
        matches!(inner, Err(LockError::Reentrant { ref name }) if name == "account:1"),
        "{inner:?}"
    );
    assert!(!exists(&locks, 1).await, "the outer call did not release");
}

#[tokio::test]
async fn reentrant_annotated_functions_nest_and_the_outer_releases() {
    let server = RedisServer::start();
    let locks = LockClient::connect(&server.url()).await.unwrap();
    assert!(
        close_reentrant(&locks, 2).await.unwrap(),
        "the inner end released"
    );
    assert!(!exists(&locks, 2).await, "the outer call did not release");
}

/// Only the inner function's own setting counts: the outer allowing re-entry
/// does not let an inner one that does not.
#[tokio::test(flavor = "multi_thread")]
async fn sync_annotated_functions_check_on_their_thread() {
    let server = RedisServer::start();
    let locks = LockClient::connect(&server.url()).await.unwrap();
    let result = tokio::task::spawn_blocking(move || close_sync(&locks, 3))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(LockError::Reentrant { .. })),
        "{result:?}"
    );
}
