use std::time::Duration;

use lock_runtime::{LockClient, LockError, Wait};
use tests::RedisServer;
use tokio::time::Instant;

use crate::{client, notice_channels, try_once, ttl, until};

#[tokio::test]
async fn try_once_on_a_busy_lock_is_busy_with_a_retry_hint() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let guard = holder.acquire("busy", &ttl(10_000)).await.unwrap();
    let started = Instant::now();
    let error = client(&server.url())
        .await
        .acquire("busy", &try_once(1_000))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500));
    let LockError::Busy {
        ref name,
        retry_after,
    } = error
    else {
        panic!("expected Busy, got {error}");
    };
    assert_eq!(name, "busy");
    let retry_after = retry_after.expect("the holder's remaining lease");
    assert!(retry_after > Duration::from_secs(5) && retry_after <= Duration::from_secs(10));
    assert!(error.to_string().contains("lock `busy` is busy"), "{error}");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_bounded_wait_times_out_after_about_that_long() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let guard = holder.acquire("slow", &ttl(10_000)).await.unwrap();
    let waiter = client(&server.url()).await;
    let started = Instant::now();
    let error = waiter
        .acquire(
            "slow",
            &ttl(1_000).wait(Wait::For(Duration::from_millis(700))),
        )
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, LockError::Timeout { .. }), "{error}");
    let retry_after = error.retry_after().expect("the holder's remaining lease");
    assert!(retry_after > Duration::from_secs(5) && retry_after <= Duration::from_secs(10));
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    assert!(waited < Duration::from_millis(1_500), "{waited:?}");
    assert!(
        error.to_string().contains("waiting for lock `slow`"),
        "{error}"
    );
    guard.release().await.unwrap();
}

/// Waiters that have backed off for seconds (their polling pause is then seconds
/// long) are woken by the release notice within milliseconds. Three locks at once,
/// so a lucky poll cannot pass the test for a broken notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_promptly() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let waiter = client(&server.url()).await;
    let names = ["wake:a", "wake:b", "wake:c"];
    let mut guards = Vec::new();
    for name in names {
        guards.push(holder.acquire(name, &ttl(60_000)).await.unwrap());
    }
    let mut waits = Vec::new();
    for name in names {
        let waiter = waiter.clone();
        waits.push(tokio::spawn(async move {
            let guard = waiter.acquire(name, &ttl(5_000)).await.unwrap();
            let acquired = Instant::now();
            guard.release().await.unwrap();
            acquired
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let released = Instant::now();
    for guard in guards {
        guard.release().await.unwrap();
    }
    for wait in waits {
        let latency = wait.await.unwrap() - released;
        assert!(
            latency < Duration::from_millis(300),
            "woken after {latency:?}"
        );
    }
}

/// Release notices are a hint: a lock whose holder vanished (no notice) is taken by
/// a waiter once the holder's lease runs out, without waiting out a long backoff.
#[tokio::test]
async fn a_waiter_takes_an_expired_lock_without_a_notice() {
    let server = RedisServer::start();
    let waiter = client(&server.url()).await;
    let _: () = redis::cmd("SET")
        .arg(waiter.key_for("ghost"))
        .arg("someone-else")
        .arg("PX")
        .arg(1_200)
        .query(&mut server.connection())
        .unwrap();
    let started = Instant::now();
    let guard = waiter
        .acquire(
            "ghost",
            &ttl(1_000).wait(Wait::For(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1_000), "{waited:?}");
    assert!(waited < Duration::from_millis(2_500), "{waited:?}");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn the_client_recovers_after_a_server_restart() {
    let mut server = RedisServer::start();
    let locks = client(&server.url()).await;
    locks.run("restart", &ttl(1_000), async {}).await.unwrap();
    server.restart();
    // The first call after the restart may see the dropped connection; the client
    // reconnects and the scripts are reloaded after NOSCRIPT.
    let mut outcome = locks.run("restart", &ttl(1_000), async { 1 }).await;
    for _ in 0..20 {
        if outcome.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcome = locks.run("restart", &ttl(1_000), async { 1 }).await;
    }
    assert_eq!(outcome.unwrap(), 1);
}

/// Every script is loaded again after `SCRIPT FLUSH` (as after a restart, but with
/// the connection kept): the acquire, extend and release each meet `NOSCRIPT` once.
#[tokio::test]
async fn scripts_flushed_from_the_server_are_loaded_again() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let flush = || {
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query(&mut server.connection())
            .unwrap();
    };
    let scripts_loaded = || server.command_calls("script|load");
    let loaded = scripts_loaded();
    // Fencing takes the script path (no plain SET NX).
    let guard = locks
        .acquire("flushed", &ttl(600).fencing(true))
        .await
        .unwrap();
    assert_eq!(scripts_loaded() - loaded, 1, "the acquire script loaded");
    flush();
    // The heartbeat's next extend (every 200 ms) meets NOSCRIPT, loads, extends.
    crate::until("the extend script loaded", || {
        scripts_loaded() - loaded == 2
    })
    .await;
    let extends = server.command_calls("pexpire");
    crate::until("the lease extended after the flush", || {
        server.command_calls("pexpire") > extends
    })
    .await;
    assert!(guard.is_held(), "the lease survived the flush");
    assert!(crate::pttl(&server, &locks.key_for("flushed")) > 0);
    flush();
    guard.release().await.unwrap();
    assert_eq!(scripts_loaded() - loaded, 3, "the release script loaded");
    assert_eq!(
        crate::pttl(&server, &locks.key_for("flushed")),
        -2,
        "released"
    );
}

/// An acquire dropped while its request is in flight (here: queued on a paused
/// server) must not leave the lock held until its ttl once the request lands.
#[tokio::test]
async fn an_acquire_cancelled_mid_request_does_not_leave_the_lock_held() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let key = locks.key_for("cancelled");
    server.pause();
    let attempt = tokio::time::timeout(
        Duration::from_millis(200),
        locks.acquire("cancelled", &ttl(30_000)),
    )
    .await;
    assert!(
        attempt.is_err(),
        "the acquire cannot finish while the server is paused"
    );
    server.resume();
    // The SET lands when the server resumes; the compare-and-delete queued behind it
    // on the same connection removes it again.
    let deadline = Instant::now() + Duration::from_secs(3);
    while crate::get(&server, &key).is_some() {
        assert!(
            Instant::now() < deadline,
            "the orphaned acquire still holds the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let taken = locks.acquire("cancelled", &try_once(1_000)).await.unwrap();
    taken.release().await.unwrap();
}

/// Waiters that time out leave nothing behind in Redis (their places in the
/// queues are gone), and however many locks its waiters wait on, a client has one
/// notice channel.
#[tokio::test]
async fn waiters_that_give_up_leave_nothing_behind() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let waiter = client(&server.url()).await;
    let names = ["crowded:a", "crowded:b"];
    let mut guards = Vec::new();
    for name in names {
        guards.push(holder.acquire(name, &ttl(10_000)).await.unwrap());
    }
    let mut waits = Vec::new();
    for index in 0..6 {
        let waiter = waiter.clone();
        waits.push(tokio::spawn(async move {
            waiter
                .acquire(
                    names[index % 2],
                    &ttl(1_000).wait(Wait::For(Duration::from_millis(500))),
                )
                .await
        }));
    }
    let total_queued = || -> i64 {
        names
            .iter()
            .map(|name| queued(&server, &waiter, name))
            .sum()
    };
    // One of each lock's three waiters asks Redis; the others wait in line.
    let total_in_line = || -> usize { names.iter().map(|name| waiter.tasks_in_line(name)).sum() };
    until("six waiters queued", || {
        total_queued() == 2 && total_in_line() == 4
    })
    .await;
    // A waiter is queued by its first attempt, before its client's channel is
    // subscribed (which then stays subscribed).
    until("the notice channel subscribed", || {
        !notice_channels(&server).is_empty()
    })
    .await;
    assert_eq!(notice_channels(&server).len(), 1, "one channel per client");
    for wait in waits {
        assert!(matches!(
            wait.await.unwrap(),
            Err(LockError::Timeout { .. })
        ));
    }
    until("the waiters left the queues", || total_queued() == 0).await;
    assert_eq!(total_in_line(), 0, "and the lines");
    for guard in guards {
        guard.release().await.unwrap();
    }
}

/// How many waiters are queued on `name`.
fn queued(server: &RedisServer, locks: &LockClient, name: &str) -> i64 {
    redis::cmd("ZCARD")
        .arg(format!("{}:queue", locks.key_for(name)))
        .query(&mut server.connection())
        .unwrap()
}

/// The ids of the server's pub/sub clients (`CLIENT LIST TYPE pubsub`).
fn pubsub_clients(server: &RedisServer) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut server.connection())
        .unwrap();
    list.lines()
        .filter_map(|line| line.split(' ').next()?.strip_prefix("id="))
        .map(str::to_owned)
        .collect()
}

/// After the pub/sub connection is killed, the client resubscribes and release
/// notices wake waiters promptly again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_survive_a_dropped_pubsub_connection() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let waiter = client(&server.url()).await;
    let guard = holder.acquire("resubscribe", &ttl(60_000)).await.unwrap();
    let wait = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let guard = waiter.acquire("resubscribe", &ttl(5_000)).await.unwrap();
            let acquired = Instant::now();
            guard.release().await.unwrap();
            acquired
        })
    };
    // The waiter has queued and subscribed its client's channel.
    until("the waiter subscribed", || {
        pubsub_clients(&server).len() == 1
    })
    .await;
    let before = pubsub_clients(&server);
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(killed, 1, "the waiter's client has one pub/sub connection");
    // The client makes a new connection and subscribes the channel on it.
    until("the channel subscribed on a new connection", || {
        let now = pubsub_clients(&server);
        now.len() == 1 && now != before && notice_channels(&server).len() == 1
    })
    .await;
    let released = Instant::now();
    guard.release().await.unwrap();
    let latency = wait.await.unwrap() - released;
    assert!(
        latency < Duration::from_millis(300),
        "woken after {latency:?}"
    );
}

#[tokio::test]
async fn huge_durations_are_forever_not_a_panic() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = ttl(1_000)
        .wait(Wait::For(Duration::MAX))
        .max_hold(Duration::MAX)
        .min_hold(Duration::from_secs(1));
    let guard = locks.acquire("huge", &options).await.unwrap();
    assert!(guard.is_held());
    drop(guard);
    let huge_min_hold = ttl(1_000).min_hold(Duration::MAX).max_hold(Duration::MAX);
    let guard = locks.acquire("huge2", &huge_min_hold).await.unwrap();
    guard.release().await.unwrap();
    assert!(
        crate::pttl(&server, &locks.key_for("huge2")) > 0,
        "min_hold keeps the key"
    );
}

/// Many waiters in one process: a release wakes only the first of them, so serving
/// all of them costs about two requests each in FIFO mode (acquire, release), not
/// one retry per waiter per release; in default mode they wait in line in the
/// process, one of them queued in Redis, and cost one request each (the release
/// before each takes the lock for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_one_local_waiter_not_all() {
    let server = RedisServer::start();
    for (fair, name, most) in [(false, "crowd", 1.1), (true, "crowd-fair", 4.0)] {
        let options = ttl(30_000).fair(fair);
        let holder = client(&server.url()).await;
        let waiters = client(&server.url()).await;
        let guard = holder.acquire(name, &options).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (waiters, options) = (waiters.clone(), options.clone());
            tasks.push(tokio::spawn(async move {
                let guard = waiters.acquire(name, &options).await.unwrap();
                guard.release().await.unwrap();
            }));
        }
        let in_redis = if fair { 50 } else { 1 };
        until("fifty waiters queued", || {
            queued(&server, &waiters, name) == in_redis
                && waiters.tasks_in_line(name) == 50 - in_redis as usize
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await; // second attempts land
        let before = server.script_calls();
        guard.release().await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        let per_waiter = (server.script_calls() - before) as f64 / 50.0;
        assert!(
            per_waiter < most,
            "fair: {fair}: {per_waiter:.2} requests per waiter"
        );
    }
}

/// An uncontended lock costs the server one plain `SET NX` and one release script;
/// a lock this client just found contended goes straight to the script (which
/// queues), not through a `SET NX` that would fail.
#[tokio::test]
async fn an_uncontended_lock_costs_a_set_and_a_script() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let scripts_before = server.script_calls();
    for _ in 0..10 {
        let guard = locks.acquire("quiet", &ttl(10_000)).await.unwrap();
        guard.release().await.unwrap();
    }
    // Ten releases (plus the first one's NOSCRIPT fallback at most): no acquire
    // went through the script.
    assert!(server.script_calls() - scripts_before <= 11);

    let holder = client(&server.url()).await;
    let guard = holder.acquire("busy", &ttl(10_000)).await.unwrap();
    let sets_before = server.command_calls("set");
    let busy = locks.acquire("busy", &try_once(10_000)).await;
    assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
    // A plain SET NX, then the script's own SET NX.
    assert_eq!(server.command_calls("set") - sets_before, 2);
    let (sets_before, scripts_before) = (server.command_calls("set"), server.script_calls());
    let busy = locks.acquire("busy", &try_once(10_000)).await;
    assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
    assert_eq!(
        (
            server.command_calls("set") - sets_before,
            server.script_calls() - scripts_before
        ),
        (1, 1),
        "a lock found busy a moment ago is tried by the script alone"
    );
    guard.release().await.unwrap();
}
