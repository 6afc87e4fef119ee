//! The seed's experiment written with the attribute: several workers run one
//! annotated function whose body is a deliberately non-atomic increment.

use std::sync::Arc;
use std::time::Duration;

use lock_runtime::{LockClient, LockError, redis_locked};
use tests::RedisServer;

#[redis_locked(name = "resource", ttl = 5, client = locks)]
fn increment_sync(locks: &LockClient, data: &mut redis::Connection) -> Result<(), LockError> {
    let value: i64 = redis::cmd("GET").arg("counter").query(data).unwrap_or(0);
    std::thread::sleep(Duration::from_micros(300));
    let () = redis::cmd("SET")
        .arg("counter")
        .arg(value + 1)
        .query(data)
        .unwrap();
    Ok(())
}

#[redis_locked(name = "resource", ttl = 5, client = locks)]
async fn increment(
    locks: &LockClient,
    data: &mut redis::aio::MultiplexedConnection,
) -> Result<(), LockError> {
    let value: i64 = redis::cmd("GET")
        .arg("counter")
        .query_async(data)
        .await
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_micros(300)).await;
    let () = redis::cmd("SET")
        .arg("counter")
        .arg(value + 1)
        .query_async(data)
        .await
        .unwrap();
    Ok(())
}

fn counter(server: &RedisServer) -> i64 {
    redis::cmd("GET")
        .arg("counter")
        .query(&mut server.connection())
        .unwrap()
}

/// 8 OS threads, each with its own client, 40 increments each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_running_a_locked_sync_fn_lose_no_update() {
    let server = Arc::new(RedisServer::start());
    let mut workers = Vec::new();
    for _ in 0..8 {
        let locks = LockClient::connect(&server.url()).await.unwrap();
        let server = Arc::clone(&server);
        workers.push(std::thread::spawn(move || {
            let mut data = server.connection();
            for _ in 0..40 {
                increment_sync(&locks, &mut data).unwrap();
            }
        }));
    }
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(counter(&server), 320);
}

/// 16 tasks, each with its own client, 25 increments each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_running_a_locked_async_fn_lose_no_update() {
    let server = RedisServer::start();
    let mut workers = Vec::new();
    for _ in 0..16 {
        let url = server.url();
        workers.push(tokio::spawn(async move {
            let locks = LockClient::connect(&url).await.unwrap();
            let mut data = redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            for _ in 0..25 {
                increment(&locks, &mut data).await.unwrap();
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(counter(&server), 400);
}
