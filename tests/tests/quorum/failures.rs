//! Servers dying or stalling under a quorum: a minority is tolerated, a lost
//! majority is never a lease, and a holder that loses its majority is told
//! before its lease's validity ends.

use std::time::Duration;

use lock_runtime::{LockError, LostReason, Wait};
use tests::RedisQuorum;
use tokio::time::Instant;

use crate::{client, try_once, ttl};

/// The lease's local deadline as the guard tells it now (its last extend
/// counted from that extend's send, minus the drift allowance).
fn valid_until(guard: &lock_runtime::LockGuard) -> Instant {
    Instant::now() + guard.time_left().expect("held")
}

/// Asserts that a loss reported now came by `valid_until` (the deadline only
/// moves later with extends, which the tests stop), allowing this process a
/// quarter second to be scheduled: it must not wait for the key's ttl.
fn fired_by(valid_until: Instant) {
    let late = Instant::now().saturating_duration_since(valid_until);
    assert!(
        late < Duration::from_millis(250),
        "lost() fired {late:?} after the lease's local deadline"
    );
}

/// `guard.lost()`, failing the test if it does not fire within `limit`.
async fn lost_within(guard: &lock_runtime::LockGuard, limit: Duration) -> LockError {
    tokio::time::timeout(limit, guard.lost())
        .await
        .expect("the lease was never reported lost")
}

#[tokio::test]
async fn two_of_five_down_still_lock_three_down_never_do() {
    let mut quorum = RedisQuorum::start(5);
    let locks = client(&quorum).await;
    quorum.server(0).kill();
    quorum.server(1).kill();
    for _ in 0..5 {
        try_once(&locks, "survivor", &ttl(2_000)).await.unwrap();
    }

    quorum.server(2).kill();
    let error = try_once(&locks, "survivor", &ttl(2_000)).await.unwrap_err();
    assert!(matches!(error, LockError::Redis { .. }), "{error}");
    assert!(error.to_string().contains("majority"), "{error}");
    // Waiting, it rides the outage out until its wait ends, then says why.
    let started = Instant::now();
    let error = locks
        .acquire(
            "survivor",
            &ttl(2_000).wait(Wait::For(Duration::from_millis(600))),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, LockError::Connection { .. }), "{error}");
    assert!(error.to_string().contains("majority"), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(600));
    let key = locks.key_for("survivor");
    lock_runtime::flush_releases(Duration::from_secs(5)).await;
    assert_eq!(quorum.values(&key), vec![None; 5], "no lease left behind");

    // Back: locking works again (the first request to a restarted server may
    // only reconnect, so a waiter is given a moment).
    for i in 0..3 {
        quorum.server(i).restart();
    }
    let guard = locks
        .acquire(
            "survivor",
            &ttl(2_000).wait(Wait::For(Duration::from_secs(5))),
        )
        .await
        .unwrap();
    guard.release().await.unwrap();
}

/// A paused server (`SIGSTOP`: connected, never answering) costs each request
/// the per-node timeout (a tenth of the ttl here), not the response timeout;
/// the lease is held and kept alive all the same.
#[tokio::test]
async fn a_paused_server_slows_an_acquire_by_its_node_timeout_at_most() {
    let quorum = RedisQuorum::start(5);
    let locks = client(&quorum).await;
    try_once(&locks, "warm", &ttl(2_000)).await.unwrap();
    quorum.servers()[4].pause();
    let started = Instant::now();
    let guard = locks
        .acquire("stalled", &ttl(2_000).wait(Wait::TryOnce))
        .await
        .unwrap();
    let took = started.elapsed();
    // The node timeout is 200 ms; the response timeout, 1 s.
    assert!(took < Duration::from_millis(900), "acquire took {took:?}");
    assert!(guard.time_left().unwrap() > Duration::from_millis(1_000));
    tests::holds::extended_again(&guard, Duration::from_secs(2)).await;
    guard.release().await.unwrap();
    quorum.servers()[4].resume();
}

/// With a server paused, a release that hands the lock to a waiter returns
/// without waiting on that server (the notice to it is sent all the same),
/// and the waiter holds the lock soon after, not at its next poll.
#[tokio::test]
async fn a_paused_server_holds_up_neither_a_handoff_nor_its_releaser() {
    let quorum = RedisQuorum::start(5);
    let holder = client(&quorum).await;
    let waiter = client(&quorum).await;
    try_once(&holder, "warm", &ttl(2_000)).await.unwrap();
    try_once(&waiter, "warm", &ttl(2_000)).await.unwrap();
    quorum.servers()[4].pause();
    let guard = holder
        .acquire("paused-handoff", &ttl(2_000).wait(Wait::TryOnce))
        .await
        .unwrap();
    let waiting = crate::spawn_waiter(waiter, "paused-handoff", 2_000);
    // Registered on the four running servers by its second attempt (each
    // attempt waits out the paused server's node timeout).
    crate::registered(&quorum.servers()[..4], &holder.key_for("paused-handoff"), 1).await;
    let released = Instant::now();
    guard.release().await.unwrap();
    let took = released.elapsed();
    // The response timeout is 1 s: waiting on the paused server would show.
    assert!(took < Duration::from_millis(500), "release took {took:?}");
    let got = waiting.await.unwrap().unwrap();
    let after = got.saturating_duration_since(released);
    // Its poll is seconds away; a handoff notice (or a wake-up) is not.
    assert!(
        after < Duration::from_millis(1_500),
        "the waiter got the lock {after:?} after the release"
    );
    quorum.servers()[4].resume();
}

/// The holder's servers die under it: `lost()` fires, by the lease's local
/// deadline at the latest, and a body under `run` is cancelled.
#[tokio::test]
async fn a_holder_that_loses_its_majority_is_told_before_its_validity_ends() {
    let mut quorum = RedisQuorum::start(5);
    let locks = client(&quorum).await;
    let options = ttl(1_500);
    let guard = locks.acquire("fragile", &options).await.unwrap();
    let valid_until = valid_until(&guard);
    for i in 0..3 {
        quorum.server(i).kill();
    }
    let lost = lost_within(&guard, Duration::from_secs(5)).await;
    fired_by(valid_until);
    assert!(matches!(lost, LockError::Lost { .. }), "{lost}");
    assert!(!guard.is_held());
    drop(guard);

    for i in 0..3 {
        quorum.server(i).restart();
    }
    let locks = client(&quorum).await;
    let started = Instant::now();
    let ran = locks.run("fragile-body", &options, async {
        // Kill the majority from inside the body, then work on for ever.
        std::future::pending::<()>().await
    });
    let killer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..3 {
            quorum.server(i).kill();
        }
    };
    let ran = tokio::time::timeout(Duration::from_secs(5), ran);
    let (ran, ()) = tokio::join!(ran, killer);
    let ran = ran.expect("the body was cancelled");
    assert!(matches!(ran, Err(LockError::Lost { .. })), "{ran:?}");
    assert!(started.elapsed() < Duration::from_millis(1_500) + Duration::from_millis(500));
}

/// Extends that reach only a minority are not success: with two servers down,
/// killing a third between beats leaves two extending, and the lease is
/// reported lost; servers that hold another token refuse at once.
#[tokio::test]
async fn a_minority_extension_is_lost_not_held() {
    let mut quorum = RedisQuorum::start(5);
    let locks = client(&quorum).await;
    quorum.server(0).kill();
    quorum.server(1).kill();
    let options = ttl(1_500);
    let guard = locks.acquire("minority", &options).await.unwrap();
    let valid_until = valid_until(&guard);
    quorum.server(2).kill();
    let lost = lost_within(&guard, Duration::from_secs(5)).await;
    fired_by(valid_until);
    assert!(!guard.is_held(), "{lost}");
    drop(guard);

    // Another token on three of five: the next extend is refused outright.
    let quorum = RedisQuorum::start(5);
    let locks = client(&quorum).await;
    let guard = locks.acquire("taken-over", &ttl(3_000)).await.unwrap();
    let key = locks.key_for("taken-over");
    for server in &quorum.servers()[..3] {
        let () = redis::cmd("SET")
            .arg(&key)
            .arg("usurper")
            .arg("PX")
            .arg(10_000)
            .query(&mut server.connection())
            .unwrap();
    }
    let lost = lost_within(&guard, Duration::from_secs(5)).await;
    match lost {
        LockError::Lost { reason, .. } => assert_eq!(reason, LostReason::Refused),
        other => panic!("{other}"),
    }
}

/// A node that lost the key does not vouch for the lease when an extend takes
/// it back: with the lease gone from three of five (restarted empty, and
/// someone else may have held them meanwhile), the extend that puts it back
/// there still reports the lease lost.
#[tokio::test]
async fn keys_taken_back_by_an_extend_do_not_count_towards_its_majority() {
    let quorum = RedisQuorum::start(5);
    let locks = client(&quorum).await;
    let guard = locks.acquire("vanished", &ttl(1_500)).await.unwrap();
    let key = locks.key_for("vanished");
    for server in &quorum.servers()[..3] {
        let () = redis::cmd("DEL")
            .arg(&key)
            .query(&mut server.connection())
            .unwrap();
    }
    match lost_within(&guard, Duration::from_secs(5)).await {
        LockError::Lost { reason, .. } => assert_eq!(reason, LostReason::Refused),
        other => panic!("{other}"),
    }
}
