//! Waiting on a quorum: a release hands the lock to the longest-waiting
//! waiter and tells it so, also with a server down, and contenders that split
//! the servers between them back off and one of them wins.

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
        let waiting = crate::spawn_waiter(waiter.clone(), "woken", 30_000);
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
            redis::cmd("ZCARD")
                .arg(format!("{key}:wake"))
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

/// Six waiters on one lock, each its own client: a release hands the lock to
/// the one that waited longest, on every server alike, and tells it so: the
/// holders follow arrival order, none of them sends an attempt once handed the
/// lock (scripts counted by the servers), and the releaser trying again at
/// once finds it taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_hands_the_lock_to_the_longest_waiting_in_arrival_order() {
    let quorum = RedisQuorum::start(3);
    let holder = client(&quorum).await;
    let key = holder.key_for("line");
    let guard = holder.acquire("line", &ttl(30_000)).await.unwrap();
    let mut waiters = Vec::new();
    for index in 0..6 {
        let waiter = client(&quorum).await;
        waiters.push(tokio::spawn(async move {
            let guard = waiter
                .acquire(
                    "line",
                    &ttl(30_000).wait(Wait::For(Duration::from_secs(20))),
                )
                .await?;
            let got = Instant::now();
            // Hold a moment, so the order of holders is plain.
            tokio::time::sleep(Duration::from_millis(20)).await;
            guard.release().await?;
            Ok::<_, lock_runtime::LockError>((index, got))
        }));
        // Each waiter registered (arrived) before the next starts.
        crate::registered(quorum.servers(), &key, index + 1).await;
    }
    let scripts: Vec<u64> = quorum
        .servers()
        .iter()
        .map(|server| server.command_calls("evalsha"))
        .collect();
    guard.release().await.unwrap();
    let again = holder
        .acquire("line", &ttl(30_000).wait(Wait::TryOnce))
        .await;
    assert!(
        matches!(again, Err(lock_runtime::LockError::Busy { .. })),
        "the releaser took the lock back from the waiters: {again:?}"
    );
    let mut order = Vec::new();
    for waiter in waiters {
        order.push(waiter.await.unwrap().unwrap());
    }
    order.sort_by_key(|(_, got)| *got);
    let order: Vec<usize> = order.into_iter().map(|(index, _)| index).collect();
    assert_eq!(order, [0, 1, 2, 3, 4, 5], "holders out of arrival order");
    // Seven releases and the releaser's one attempt: no waiter asked again.
    for (server, before) in quorum.servers().iter().zip(scripts) {
        let calls = server.command_calls("evalsha") - before;
        assert!(calls <= 8, "{calls} scripts for 7 releases and 1 attempt");
    }
}
