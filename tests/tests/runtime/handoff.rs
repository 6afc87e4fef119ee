//! Direct handoff, in both modes: a release gives the lock to the first queued
//! waiter, which takes it from the release notice without another request, with
//! its lease counted from before the handoff and a larger fencing token.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lock_runtime::{LockClient, LockGuard, LockOptions, Wait};
use tests::RedisServer;
use tokio::time::Instant;

use crate::{client, until};

/// A waiter's acquire, started in a task: when it asked, when it got the lock, and
/// the guard.
type Waiting = tokio::task::JoinHandle<(Instant, Instant, LockGuard)>;

/// Starts `locks.acquire(name, options)` in a task, and returns once the waiter
/// only waits for a notice: it has queued (first attempt), subscribed its client's
/// notice channel, and queued again (second attempt, made once subscribed), as a
/// waiter does on a lock its client has not seen contended.
async fn queued_waiter(
    server: &RedisServer,
    locks: LockClient,
    name: &'static str,
    options: &LockOptions,
) -> Waiting {
    let before = server.script_calls();
    let options = options.clone();
    let waiting = tokio::spawn(async move {
        let asked = Instant::now();
        let guard = locks.acquire(name, &options).await.unwrap();
        (asked, Instant::now(), guard)
    });
    until("the waiter queued twice", || {
        server.script_calls() == before + 2
    })
    .await;
    waiting
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_hands_the_lock_to_the_waiter_with_no_further_request() {
    let server = RedisServer::start();
    crate::load_scripts(&client(&server.url()).await).await;
    for (fair, name) in [(false, "handoff-default"), (true, "handoff-fair")] {
        let options = LockOptions::new(Duration::from_secs(30))
            .fair(fair)
            .fencing(true);
        let holder = client(&server.url()).await;
        let guard = holder.acquire(name, &options).await.unwrap();
        let first_fence = guard.fencing_token().unwrap();

        let waiting = queued_waiter(&server, client(&server.url()).await, name, &options).await;

        let (before_release, publishes_before) =
            (server.script_calls(), server.command_calls("publish"));
        let released = Instant::now();
        guard.release().await.unwrap();
        let (asked, acquired, handed) = waiting.await.unwrap();
        assert_eq!(
            server.script_calls() - before_release,
            1,
            "{name}: the release was the only request; the waiter took the lock from the notice"
        );
        assert_eq!(server.command_calls("publish") - publishes_before, 1);
        assert!(acquired >= released);
        let second_fence = handed.fencing_token().unwrap();
        assert!(
            second_fence > first_fence,
            "{second_fence} after {first_fence}"
        );
        // The handed lease counts from before the handoff (the waiter's last
        // attempt), never from the notice.
        let left = handed.time_left().unwrap();
        assert!(left <= Duration::from_secs(30) - (acquired - asked).min(Duration::from_secs(30)));
        assert!(left > Duration::from_secs(15), "{left:?}");
        assert!(handed.is_held());
        // The key really holds the lease: the waiter's own release succeeds, and
        // the next acquisition's fencing token is larger still.
        handed.release().await.unwrap();
        let third = holder.acquire(name, &options).await.unwrap();
        assert!(third.fencing_token().unwrap() > second_fence);
        third.release().await.unwrap();
    }
}

/// Handed over, the new holder's lease is really in Redis (not just believed):
/// while it holds, nobody else gets in, and its heartbeat extends the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_lease_is_held_and_kept_alive() {
    let server = RedisServer::start();
    for (fair, name) in [(false, "kept-default"), (true, "kept-fair")] {
        let options = LockOptions::new(Duration::from_millis(900)).fair(fair);
        let holder = client(&server.url()).await;
        let guard = holder.acquire(name, &options).await.unwrap();
        let waiting = queued_waiter(&server, client(&server.url()).await, name, &options).await;
        guard.release().await.unwrap();
        let (_, _, handed) = waiting.await.unwrap();
        // Three ttls later, kept by heartbeats: still ours, still exclusive.
        tokio::time::sleep(Duration::from_millis(2_700)).await;
        assert!(handed.is_held(), "{name}: the handed lease was kept alive");
        let other = client(&server.url()).await;
        let busy = other.acquire(name, &crate::try_once(900).fair(fair)).await;
        assert!(busy.is_err(), "{name}: a second holder got in");
        handed.release().await.unwrap();
    }
}

/// Two clients taking turns on one lock (each holds until the other is queued):
/// each acquisition costs one release and one queued attempt, as the waiter
/// registers for its notice before that attempt (no second attempt to cover a
/// notice that might have been missed), and no plain `SET NX` is tried on a lock
/// known to be contended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contended_loop_costs_two_requests_per_acquisition() {
    let server = std::sync::Arc::new(RedisServer::start());
    let options = LockOptions::new(Duration::from_secs(10));
    let rounds = 30;
    let finished = std::sync::Arc::new(AtomicU32::new(0));
    let scripts_before = server.script_calls();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let locks = client(&server.url()).await;
        let options = options.clone();
        let finished = std::sync::Arc::clone(&finished);
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let queue = format!("{}:queue", locks.key_for("pingpong"));
            for round in 0..rounds {
                let guard = locks.acquire("pingpong", &options).await.unwrap();
                // Hold until the other client waits (unless it is done).
                until("the other client queued", || {
                    let queued: i64 = redis::cmd("ZCARD")
                        .arg(&queue)
                        .query(&mut server.connection())
                        .unwrap();
                    queued == 1 || finished.load(Ordering::SeqCst) == 1
                })
                .await;
                if round + 1 == rounds {
                    finished.fetch_add(1, Ordering::SeqCst);
                }
                guard.release().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let per_acquisition = (server.script_calls() - scripts_before) as f64 / f64::from(2 * rounds);
    // Without the early registration: three (release, attempt, attempt again).
    assert!(
        per_acquisition <= 2.2,
        "{per_acquisition:.2} lock scripts per acquisition"
    );
}

/// `max_hold` counts from when the lease was handed over, not from the waiter's
/// last queued attempt (which can be seconds earlier): a handed lease with a short
/// `max_hold` is not lost on arrival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_hold_counts_from_the_handoff() {
    let server = RedisServer::start();
    let options = LockOptions::new(Duration::from_secs(30)).max_hold(Duration::from_millis(800));
    let holder = client(&server.url()).await;
    let guard = holder
        .acquire("brief", &LockOptions::new(Duration::from_secs(30)))
        .await
        .unwrap();
    let waiting = queued_waiter(&server, client(&server.url()).await, "brief", &options).await;
    // Queued for longer than max_hold (its next poll is 2.5 s or more away).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    guard.release().await.unwrap();
    let (_, _, handed) = waiting.await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(400), handed.lost()).await;
    assert!(early.is_err(), "lost on arrival: {early:?}");
    let lost = tokio::time::timeout(Duration::from_secs(3), handed.lost())
        .await
        .expect("max_hold still ends the hold");
    assert!(
        matches!(
            lost,
            lock_runtime::LockError::Lost {
                reason: lock_runtime::LostReason::MaxHold,
                ..
            }
        ),
        "{lost}"
    );
}

/// Between two tasks of one client nothing travels through Redis but the
/// releases. In default mode the waiters wait in line in the process (no request
/// while they wait), and each release takes the lock for the next; FIFO waiters
/// queue in Redis, and the release hands their notices back to the releasing
/// client, which delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_within_one_client_publishes_nothing() {
    let server = RedisServer::start();
    for (fair, name) in [(false, "local-default"), (true, "local-fair")] {
        let options = LockOptions::new(Duration::from_secs(30)).fair(fair);
        let locks = client(&server.url()).await;
        let guard = locks.acquire(name, &options).await.unwrap();
        let before_waiters = server.script_calls();
        let mut waiting = Vec::new();
        for _ in 0..2 {
            let task_locks = locks.clone();
            let options = options.clone();
            waiting.push(tokio::spawn(async move {
                let guard = task_locks.acquire(name, &options).await.unwrap();
                guard.release().await.unwrap();
            }));
            if fair {
                // One at a time, so the second queues behind the first. The
                // first queues, subscribes the client's channel and queues
                // again; the second, on a lock the client now knows is
                // contended, queues once.
                let expected = before_waiters + [2, 3][waiting.len() - 1];
                until("the waiter queued", || server.script_calls() == expected).await;
            } else {
                until("the waiter is in line", || {
                    locks.tasks_in_line(name) == waiting.len()
                })
                .await;
            }
        }
        if !fair {
            assert_eq!(
                server.script_calls(),
                before_waiters,
                "waiting in line is free"
            );
        }
        let (scripts_before, publishes_before) =
            (server.script_calls(), server.command_calls("publish"));
        guard.release().await.unwrap();
        for task in waiting {
            task.await.unwrap();
        }
        // Three releases (ours, then each waiter's), each handing over or freeing
        // the lock; no other request, and no message through Redis.
        assert_eq!(server.script_calls() - scripts_before, 3, "{name}");
        assert_eq!(
            server.command_calls("publish") - publishes_before,
            0,
            "{name}: handoffs and heads-ups stayed in the process"
        );
    }
}

/// A release whose caller stops waiting for the reply (here: a timeout while the
/// server is paused; the server runs it afterwards) still hands the lock on, and
/// the waiter in the same client is not left to its next poll: a FIFO waiter,
/// whose notice was in that reply, is woken to find the lock is its own; a task in
/// line gets the turn, and its first request finds the lock taken for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_cut_short_still_wakes_the_local_waiter() {
    let server = RedisServer::start();
    let options = LockOptions::new(Duration::from_secs(30));
    let locks = client(&server.url()).await;
    crate::load_scripts(&locks).await;
    for fair in [false, true] {
        let options = options.clone().fair(fair);
        let guard = locks.acquire("cut-short", &options).await.unwrap();
        let waiting = if fair {
            queued_waiter(&server, locks.clone(), "cut-short", &options).await
        } else {
            // In line in the process: the release takes the lock for it.
            let (task_locks, options) = (locks.clone(), options.clone());
            let waiting = tokio::spawn(async move {
                let asked = Instant::now();
                let guard = task_locks.acquire("cut-short", &options).await.unwrap();
                (asked, Instant::now(), guard)
            });
            until("the waiter is in line", || {
                locks.tasks_in_line("cut-short") == 1
            })
            .await;
            waiting
        };
        let handle = guard.handle();
        let scripts_before = server.script_calls();
        server.pause();
        let cut = tokio::time::timeout(Duration::from_millis(200), guard.release()).await;
        assert!(cut.is_err(), "the release cannot finish on a paused server");
        server.resume();
        let resumed = Instant::now();
        let (_, acquired, handed) = waiting.await.unwrap();
        assert!(
            acquired - resumed < Duration::from_millis(1_000),
            "fair: {fair}: the waiter got the lock {:?} after the server resumed",
            acquired - resumed
        );
        assert!(handed.is_held());
        assert!(!handle.is_held(), "let go when the release started");
        // The dropped guard released again in the background, after the first
        // release had run: "not ours" then is no lost lease. Three scripts in
        // all: the cut release, the waiter's attempt that confirms the lock is
        // its own, and the background release; a request on the same client
        // after them lets the client read the background release's answer.
        until("the background release ran", || {
            server.script_calls() >= scripts_before + 3
        })
        .await;
        let probe = locks
            .acquire("cut-short:probe", &options.clone().wait(Wait::TryOnce))
            .await
            .unwrap();
        probe.release().await.unwrap();
        let after = handle.check();
        assert!(
            !matches!(
                after,
                Err(lock_runtime::LockError::Lost {
                    reason: lock_runtime::LostReason::NotOwnerAtRelease,
                    ..
                })
            ),
            "fair: {fair}: {after:?}"
        );
        handed.release().await.unwrap();
    }
}
