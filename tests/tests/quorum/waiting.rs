//! Waiting on a quorum: waiters are woken by the release's notices, also with
//! a server down, and contenders that split the servers between them back off
//! and one of them wins.

use std::time::Duration;

use lock_runtime::Wait;
use tests::RedisQuorum;
use tokio::time::Instant;

use crate::{client, ttl};

/// A waiter on a lock held with a long ttl gets it soon after the release (a
/// notice), not at its next poll (seconds away) or the holder's ttl; the same
/// with the server its notices came from killed first.
#[tokio::test]
async fn a_release_wakes_a_waiter_also_with_a_server_down() {
    let mut quorum = RedisQuorum::start(5);
    let holder = client(&quorum).await;
    let waiter = client(&quorum).await;
    for round in 0..2 {
        if round == 1 {
            // The waiter's notice connection is on the first server: it moves.
            quorum.server(0).kill();
        }
        let guard = holder.acquire("woken", &ttl(30_000)).await.unwrap();
        let waiting = {
            let waiter = waiter.clone();
            tokio::spawn(async move {
                let guard = waiter
                    .acquire(
                        "woken",
                        &ttl(30_000).wait(Wait::For(Duration::from_secs(20))),
                    )
                    .await?;
                let got = Instant::now();
                guard.release().await?;
                Ok::<_, lock_runtime::LockError>(got)
            })
        };
        waiting_for(&quorum, &holder.key_for("woken")).await;
        let released = Instant::now();
        guard.release().await.unwrap();
        let got = waiting.await.unwrap().unwrap();
        let after = got.duration_since(released);
        assert!(
            after < Duration::from_secs(2),
            "round {round}: the waiter got the lock {after:?} after the release"
        );
    }
}

/// Waits until the waiter found lock `key` busy (it is registered to be woken)
/// and some running server has a client's notice channel subscribed.
async fn waiting_for(quorum: &RedisQuorum, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let running = || quorum.servers().iter().filter(|server| server.is_running());
    loop {
        let registered = running().any(|server| {
            redis::cmd("HLEN")
                .arg(format!("{key}:wakers"))
                .query::<u64>(&mut server.connection())
                .is_ok_and(|waiters| waiters > 0)
        });
        let subscribed = running().any(|server| {
            redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .arg("lock:notices:*")
                .query::<Vec<String>>(&mut server.connection())
                .is_ok_and(|channels| !channels.is_empty())
        });
        if registered && subscribed {
            return;
        }
        assert!(Instant::now() < deadline, "the waiter never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Eight clients race for one lock over and over: attempts that split the
/// servers give back what they won and back off, so every round has a winner
/// well within its wait, and no two hold it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contenders_that_split_the_servers_back_off_and_one_wins() {
    let quorum = RedisQuorum::start(5);
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(client(&quorum).await);
    }
    let holding = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for locks in clients {
        let holding = std::sync::Arc::clone(&holding);
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let guard = locks
                    .acquire(
                        "contended",
                        &ttl(2_000).wait(Wait::For(Duration::from_secs(20))),
                    )
                    .await
                    .unwrap();
                let before = holding.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(before, 0, "two holders at once");
                tokio::time::sleep(Duration::from_millis(2)).await;
                holding.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                guard.release().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Six waiters on one lock: a release wakes the two that waited longest on each
/// server (publishes counted by the servers), not all six, and one of those two
/// is the next holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_the_two_longest_waiting_not_every_waiter() {
    let quorum = RedisQuorum::start(3);
    let holder = client(&quorum).await;
    let key = holder.key_for("herd");
    let guard = holder.acquire("herd", &ttl(30_000)).await.unwrap();
    let mut waiters = Vec::new();
    for index in 0..6 {
        let waiter = client(&quorum).await;
        waiters.push(tokio::spawn(async move {
            let guard = waiter
                .acquire(
                    "herd",
                    &ttl(30_000).wait(Wait::For(Duration::from_secs(20))),
                )
                .await?;
            let got = Instant::now();
            // Hold a moment, so the order of holders is the order of wake-ups.
            tokio::time::sleep(Duration::from_millis(20)).await;
            guard.release().await?;
            Ok::<_, lock_runtime::LockError>((index, got))
        }));
        // Each waiter registered (arrived) before the next starts.
        registered(&quorum, &key, index + 1).await;
    }
    let published: Vec<u64> = quorum
        .servers()
        .iter()
        .map(|server| server.command_calls("publish"))
        .collect();
    guard.release().await.unwrap();
    let mut order = Vec::new();
    for waiter in waiters {
        order.push(waiter.await.unwrap().unwrap());
    }
    order.sort_by_key(|(_, got)| *got);
    // Each holder was one of the two woken: the two longest waiting then.
    let mut still_waiting: Vec<usize> = (0..6).collect();
    for (index, _) in &order {
        let place = still_waiting.iter().position(|waiting| waiting == index);
        assert!(
            place.is_some_and(|place| place < 2),
            "waiter {index} held it while {still_waiting:?} waited longer: {order:?}"
        );
        still_waiting.retain(|waiting| waiting != index);
    }
    // The first release woke two per server; every later one at most two more.
    for (server, before) in quorum.servers().iter().zip(published) {
        let publishes = server.command_calls("publish") - before;
        assert!(publishes <= 2 * 6, "{publishes} publishes for 6 releases");
    }
}

/// Waits until `count` waiters are registered at `key` on every server.
async fn registered(quorum: &RedisQuorum, key: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = quorum.servers().iter().all(|server| {
            redis::cmd("ZCARD")
                .arg(format!("{key}:wake"))
                .query::<usize>(&mut server.connection())
                .is_ok_and(|waiting| waiting >= count)
        });
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "waiter {count} never registered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
