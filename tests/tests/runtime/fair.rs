//! FIFO mode (`fair`): arrival order; and in both modes (both hand the lock from
//! a release straight to a queued waiter), waiters or holders that die or give up
//! must not stall the others beyond their own ttl.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockGuard, LockOptions, Wait};
use tests::RedisServer;
use tokio::time::Instant;

use crate::client;

fn fair(ttl_ms: u64) -> LockOptions {
    LockOptions::new(Duration::from_millis(ttl_ms)).fair(true)
}

/// The fault tests run in both modes, each on its own lock.
fn mode(fair: bool, ttl_ms: u64) -> LockOptions {
    LockOptions::new(Duration::from_millis(ttl_ms)).fair(fair)
}

fn queued(server: &RedisServer, locks: &LockClient, name: &str) -> i64 {
    redis::cmd("ZCARD")
        .arg(format!("{}:queue", locks.key_for(name)))
        .query(&mut server.connection())
        .unwrap()
}

/// Waits until exactly `count` waiters are queued on `name` (they queue on their
/// first busy attempt, and leave when they give up).
async fn until_queued(server: &RedisServer, locks: &LockClient, name: &str, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while queued(server, locks, name) != count {
        assert!(
            Instant::now() < deadline,
            "the queue never held {count} waiters"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn spawn_holder(server: &RedisServer, name: &str, ttl_ms: u64, fair: bool) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hold_lock"));
    command.args([server.url().as_str(), name, &ttl_ms.to_string()]);
    if fair {
        command.arg("fair");
    }
    command.stdout(Stdio::piped()).spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fair_mode_keeps_mutual_exclusion() {
    let server = RedisServer::start();
    let total =
        crate::mutual_exclusion::locked_increments(&server, "fair-counter", &fair(5_000), 16, 30)
            .await;
    assert_eq!(total, 480);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let guard = holder.acquire("fifo", &fair(10_000)).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for index in 0..6 {
        // Each waiter on its own client, arriving after the previous one queued.
        let locks = client(&server.url()).await;
        let order = Arc::clone(&order);
        waiters.push(tokio::spawn(async move {
            let guard = locks.acquire("fifo", &fair(10_000)).await.unwrap();
            order.lock().unwrap().push(index);
            guard.release().await.unwrap();
        }));
        until_queued(&server, &holder, "fifo", index + 1).await;
    }
    guard.release().await.unwrap();
    for waiter in waiters {
        waiter.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
}

/// A waiter that gives up leaves the queue: the next one gets the lock at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_times_out_does_not_hold_up_the_queue() {
    let server = RedisServer::start();
    for (fair, name) in [(false, "impatient-default"), (true, "impatient-fair")] {
        waiter_times_out(&server, name, fair).await;
    }
}

async fn waiter_times_out(server: &RedisServer, name: &'static str, fair: bool) {
    let holder = client(&server.url()).await;
    let guard = holder.acquire(name, &mode(fair, 10_000)).await.unwrap();
    let impatient = client(&server.url()).await;
    let patient = client(&server.url()).await;
    let give_up = tokio::spawn(async move {
        impatient
            .acquire(
                name,
                &mode(fair, 10_000).wait(Wait::For(Duration::from_millis(500))),
            )
            .await
    });
    until_queued(server, &holder, name, 1).await;
    let wait = tokio::spawn(async move {
        let guard = patient.acquire(name, &mode(fair, 10_000)).await.unwrap();
        let acquired = Instant::now();
        guard.release().await.unwrap();
        acquired
    });
    until_queued(server, &holder, name, 2).await;
    assert!(matches!(
        give_up.await.unwrap(),
        Err(LockError::Timeout { .. })
    ));
    // The impatient waiter leaves the queue.
    until_queued(server, &holder, name, 1).await;
    let released = Instant::now();
    guard.release().await.unwrap();
    let latency = wait.await.unwrap() - released;
    assert!(
        latency < Duration::from_millis(300),
        "handed over after {latency:?}"
    );
}

/// A queued waiter that dies is handed the lock (nobody knows it died), so the
/// next waiter gets it after the dead one's ttl, not later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_waiter_stalls_the_queue_for_at_most_its_ttl() {
    let server = RedisServer::start();
    for (fair, name) in [(false, "dead-waiter-default"), (true, "dead-waiter-fair")] {
        // A lease (1.5 s) that ends before the next waiter's place (10 s) lapses:
        // that waiter is told when the lease ends, not left to its next re-check
        // (up to ttl / 3 = 3.3 s away).
        killed_waiter(&server, name, fair, 1_500, 10_000, true).await;
    }
}

/// When the lease handed to a dead waiter outlasts the next waiter's place in
/// the queue, no heads-up is sent: the next waiter re-checks within that time
/// anyway, learns when the lease ends, and checks again then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_waiter_with_a_long_lease_stalls_the_queue_for_its_ttl_unannounced() {
    let server = RedisServer::start();
    for (fair, name) in [(false, "dead-long-default"), (true, "dead-long-fair")] {
        killed_waiter(&server, name, fair, 3_000, 1_500, false).await;
    }
}

async fn killed_waiter(
    server: &RedisServer,
    name: &'static str,
    fair: bool,
    dead_ttl_ms: u64,
    survivor_ttl_ms: u64,
    heads_up: bool,
) {
    let holder = client(&server.url()).await;
    let guard = holder.acquire(name, &mode(fair, 10_000)).await.unwrap();
    let mut doomed = spawn_holder(server, name, dead_ttl_ms, fair);
    until_queued(server, &holder, name, 1).await;
    let survivor = client(&server.url()).await;
    let wait = tokio::spawn(async move {
        let guard = survivor
            .acquire(name, &mode(fair, survivor_ttl_ms))
            .await
            .unwrap();
        let acquired = Instant::now();
        guard.release().await.unwrap();
        acquired
    });
    until_queued(server, &holder, name, 2).await;
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let published = server.command_calls("publish");
    let released = Instant::now();
    guard.release().await.unwrap();
    let stalled = wait.await.unwrap() - released;
    let dead_ttl = Duration::from_millis(dead_ttl_ms);
    assert!(
        stalled >= dead_ttl - Duration::from_millis(100),
        "{name}: the survivor had the lock {stalled:?} after the release, within the \
         dead waiter's lease ({dead_ttl:?}): the release did not hand it to the dead \
         waiter (its place lapsed first: a stalled machine?)"
    );
    assert!(
        stalled <= dead_ttl + Duration::from_millis(600),
        "{name}: stalled {stalled:?} (dead waiter's ttl: {dead_ttl:?})"
    );
    // The handoff to the dead waiter, and the heads-up to the survivor if due.
    assert_eq!(
        server.command_calls("publish") - published,
        if heads_up { 2 } else { 1 },
        "{name}: notices published"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_frees_the_queue_after_its_ttl() {
    let server = RedisServer::start();
    for (fair, name) in [(false, "dead-holder-default"), (true, "dead-holder-fair")] {
        killed_holder(&server, name, fair).await;
    }
}

async fn killed_holder(server: &RedisServer, name: &'static str, fair: bool) {
    let mut holder = spawn_holder(server, name, 1_000, fair);
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ACQUIRED");
    let waiter = client(&server.url()).await;
    let wait = tokio::spawn(async move {
        let guard = waiter.acquire(name, &mode(fair, 5_000)).await.unwrap();
        let acquired = Instant::now();
        guard.release().await.unwrap();
        acquired
    });
    let observer = client(&server.url()).await;
    until_queued(server, &observer, name, 1).await;
    holder.kill().unwrap();
    holder.wait().unwrap();
    let killed = Instant::now();
    let freed_after = wait.await.unwrap() - killed;
    assert!(
        freed_after <= Duration::from_millis(2_500),
        "{freed_after:?}"
    );
}

#[tokio::test]
async fn fair_try_once_does_not_queue() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let guard = holder.acquire("fair-busy", &fair(10_000)).await.unwrap();
    let other = client(&server.url()).await;
    let busy = other
        .acquire("fair-busy", &fair(10_000).wait(Wait::TryOnce))
        .await;
    assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
    assert_eq!(queued(&server, &holder, "fair-busy"), 0);
    guard.release().await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(holder.key_for("fair-busy"))
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(exists, 0, "released with nobody waiting: deleted");
}

/// A waiter's acquire, started in a task: when it got the lock, and the guard.
type Waiting = tokio::task::JoinHandle<Result<(Instant, LockGuard), LockError>>;

/// Starts `locks.acquire(name, &options)` in a task.
fn start_waiting(locks: LockClient, name: &'static str, options: LockOptions) -> Waiting {
    tokio::spawn(async move {
        locks
            .acquire(name, &options)
            .await
            .map(|guard| (Instant::now(), guard))
    })
}

/// Releases `guard` and returns the lock `wait` then gets, which must come within
/// 500 ms of the release (a handoff, not a poll).
async fn hand_over(name: &str, guard: LockGuard, wait: Waiting) -> LockGuard {
    let released = Instant::now();
    guard.release().await.unwrap();
    let (acquired, handed) = wait.await.unwrap().unwrap();
    assert!(
        acquired - released < Duration::from_millis(500),
        "{name}: handed over after {:?}",
        acquired - released
    );
    handed
}

/// A waiter with a short ttl does not shorten the queue's life for the others: a
/// long-ttl waiter keeps its place after the short one came and went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_waiter_does_not_expire_the_queue_for_the_others() {
    let server = RedisServer::start();
    for (fair, name) in [(false, "mixed-default"), (true, "mixed-fair")] {
        let holder = client(&server.url()).await;
        let guard = holder.acquire(name, &mode(fair, 10_000)).await.unwrap();
        let patient = client(&server.url()).await;
        let wait = start_waiting(patient, name, mode(fair, 10_000));
        until_queued(&server, &holder, name, 1).await;
        let brief = client(&server.url()).await;
        let gave_up = brief
            .acquire(
                name,
                &mode(fair, 100).wait(Wait::For(Duration::from_millis(50))),
            )
            .await;
        assert!(
            matches!(gave_up, Err(LockError::Timeout { .. })),
            "{gave_up:?}"
        );
        // Past twice the brief waiter's place (2 × 100 ms): the queue must remain.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            queued(&server, &holder, name),
            1,
            "{name}: the queue expired"
        );
        hand_over(name, guard, wait).await.release().await.unwrap();
    }
}

/// A release passes over waiters whose place has lapsed (their process died
/// without leaving the queue), whether the lapsed one is first in line or right
/// behind the waiter the lock goes to; the live waiter behind a lapsed one still
/// gets its heads-up when the handed lease is short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_passes_over_lapsed_waiters() {
    let server = RedisServer::start();
    for fair in [false, true] {
        for lapsed_first in [true, false] {
            let name = match (fair, lapsed_first) {
                (false, true) => "lapsed-head-default",
                (false, false) => "lapsed-heir-default",
                (true, true) => "lapsed-head-fair",
                (true, false) => "lapsed-heir-fair",
            };
            passes_over_lapsed(&server, name, fair, lapsed_first).await;
        }
    }
}

async fn passes_over_lapsed(
    server: &RedisServer,
    name: &'static str,
    fair: bool,
    lapsed_first: bool,
) {
    let holder = client(&server.url()).await;
    let key = holder.key_for(name);
    let (queue, waiters) = (format!("{key}:queue"), format!("{key}:waiters"));
    // An entry as the scripts write it, whose deadline (1 ms after the epoch) passed.
    let lapse = |token: &str, score: i64| {
        let mut redis = server.connection();
        let () = redis::pipe()
            .cmd("ZADD")
            .arg(&queue)
            .arg(score)
            .arg(token)
            .ignore()
            .cmd("HSET")
            .arg(&waiters)
            .arg(token)
            .arg("1:30000:1:0:nobody")
            .ignore()
            .query(&mut redis)
            .unwrap();
    };
    let guard = holder.acquire(name, &mode(fair, 10_000)).await.unwrap();
    if lapsed_first {
        lapse("lapsed-first", 1);
    }
    // The first live waiter: its lease, once handed, is short (a heads-up is due).
    let first = client(&server.url()).await;
    let first_wait = tokio::spawn(async move {
        let guard = first.acquire(name, &mode(fair, 1_500)).await.unwrap();
        (Instant::now(), guard)
    });
    until_queued(server, &holder, name, if lapsed_first { 2 } else { 1 }).await;
    if !lapsed_first {
        let mut redis = server.connection();
        let ahead: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(&queue)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query(&mut redis)
            .unwrap();
        lapse("lapsed-behind", ahead[0].1 + 1);
    }
    let second = client(&server.url()).await;
    let second_wait = start_waiting(second, name, mode(fair, 10_000));
    until_queued(server, &holder, name, 3).await;
    let published = server.command_calls("publish");
    let released = Instant::now();
    guard.release().await.unwrap();
    let (acquired, handed) = tokio::time::timeout(Duration::from_secs(5), first_wait)
        .await
        .unwrap_or_else(|_| panic!("{name}: the first live waiter was not handed the lock"))
        .unwrap();
    // Handed to the first live waiter (were it handed to the lapsed entry, that
    // lease would stall the queue for 30 s); the lapsed entry is gone, the second
    // waits.
    assert!(
        acquired - released < Duration::from_secs(2),
        "{name}: the first live waiter had the lock {:?} after the release",
        acquired - released
    );
    assert_eq!(
        queued(server, &holder, name),
        1,
        "{name}: queue after release"
    );
    let entries: i64 = redis::cmd("HLEN")
        .arg(&waiters)
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(entries, 1, "{name}: waiters' entries after release");
    // The handoff, and the heads-up to the second (1.5 s lease < its 10 s place).
    assert_eq!(
        server.command_calls("publish") - published,
        2,
        "{name}: notices published"
    );
    hand_over(name, handed, second_wait)
        .await
        .release()
        .await
        .unwrap();
    assert_eq!(queued(server, &holder, name), 0, "{name}: queue at the end");
}
