use std::time::Duration;

use redis::AsyncCommands;
use tests::RedisServer;

use lock_runtime::LockOptions;

use crate::{client, ttl};

/// `workers` tasks on their own clients each do `rounds` deliberately non-atomic
/// increments (GET, yield, SET+1) under the lock `name`; returns the counter, which
/// is `workers * rounds` only if no two holders ever overlapped.
pub(crate) async fn locked_increments(
    server: &RedisServer,
    name: &str,
    options: &LockOptions,
    workers: usize,
    rounds: usize,
) -> i64 {
    shared_locked_increments(server, name, options, (workers, 1), rounds).await
}

/// As [`locked_increments`], with `clients` clients of `tasks` tasks each.
async fn shared_locked_increments(
    server: &RedisServer,
    name: &str,
    options: &LockOptions,
    (clients, tasks_per_client): (usize, usize),
    rounds: usize,
) -> i64 {
    let mut clients_made = Vec::new();
    for _ in 0..clients {
        clients_made.push(client(&server.url()).await);
    }
    let mut tasks = Vec::new();
    for index in 0..clients * tasks_per_client {
        let locks = clients_made[index % clients].clone();
        let (url, name, options) = (server.url(), name.to_owned(), options.clone());
        tasks.push(tokio::spawn(async move {
            let mut data = redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            for _ in 0..rounds {
                locks
                    .run(&name, &options, async {
                        let value: i64 = data.get("counter").await.unwrap_or(0);
                        tokio::task::yield_now().await;
                        tokio::time::sleep(Duration::from_micros(200)).await;
                        let () = data.set("counter", value + 1).await.unwrap();
                    })
                    .await
                    .expect("locked increment");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    redis::cmd("GET")
        .arg("counter")
        .query(&mut server.connection())
        .unwrap()
}

/// 16 tasks on 16 clients each do 50 deliberately non-atomic increments under the
/// lock: any overlap of two holders loses an update.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_lose_no_update() {
    let server = RedisServer::start();
    assert_eq!(
        locked_increments(&server, "counter", &ttl(5_000), 16, 50).await,
        800
    );
}

/// Four clients of eight tasks each: the tasks of a client wait in line in the
/// process, and each release may take the lock for the next of them, or hand it
/// to another client's waiter; either way no two holders overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_sharing_clients_lose_no_update() {
    let server = RedisServer::start();
    for (fair, name) in [(false, "shared-counter"), (true, "shared-fair-counter")] {
        let options = ttl(5_000).fair(fair).fencing(true);
        let before: i64 = redis::cmd("GET")
            .arg("counter")
            .query::<Option<i64>>(&mut server.connection())
            .unwrap()
            .unwrap_or(0);
        assert_eq!(
            shared_locked_increments(&server, name, &options, (4, 8), 25).await - before,
            800,
            "fair: {fair}"
        );
    }
}

/// The control for the test above: the same increments without the lock do lose
/// updates, so the counter there is a real detector of overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_increments_without_the_lock_lose_updates() {
    let server = RedisServer::start();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let url = server.url();
        tasks.push(tokio::spawn(async move {
            let mut data = redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            for _ in 0..50 {
                let value: i64 = data.get("counter").await.unwrap_or(0);
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_micros(200)).await;
                let () = data.set("counter", value + 1).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total: i64 = redis::cmd("GET")
        .arg("counter")
        .query(&mut server.connection())
        .unwrap();
    assert!(
        total < 800,
        "expected lost updates without the lock, got {total}"
    );
}
