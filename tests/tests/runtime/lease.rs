use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockGuard, LockHandle, LockOptions, LostReason, Wait};
use tests::RedisServer;
use tokio::time::{Instant, timeout};

use crate::{client, get, pttl, try_once, ttl};

fn assert_send_sync<T: Send + Sync>(_: &T) {}
fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn guards_handles_clients_and_futures_are_send() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    assert_send_sync(&locks);
    let options = ttl(1_000);
    assert_send(&locks.acquire("send", &options));
    assert_send(&locks.run("send", &options, async {}));
    let guard: LockGuard = locks.acquire("send", &options).await.unwrap();
    assert_send_sync(&guard);
    let handle: LockHandle = guard.handle();
    assert_send_sync(&handle);
    assert_send(&guard.lost());
    guard.release().await.unwrap();
}

/// A holder whose lease expired (here: Redis dropped the key) must not delete or
/// extend the key of the holder who took the lock after it.
#[tokio::test]
async fn an_expired_holder_cannot_release_or_extend_the_new_holders_lock() {
    let server = RedisServer::start();
    let first = client(&server.url()).await;
    let second = client(&server.url()).await;
    let options = ttl(1_000).heartbeat(Duration::from_millis(100));
    let stale = first.acquire("account:1", &options).await.unwrap();
    let key = first.key_for("account:1");

    // Expire the first lease server-side, then let the second client take the lock.
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(1)
        .query(&mut server.connection())
        .unwrap();
    let fresh = second
        .acquire(
            "account:1",
            &ttl(30_000).wait(Wait::For(Duration::from_secs(2))),
        )
        .await
        .unwrap();
    let fresh_token = get(&server, &key).expect("the new holder's key");

    // The stale heartbeat's next extend is refused: lost, and the key is untouched.
    let lost = timeout(Duration::from_secs(3), stale.lost())
        .await
        .expect("the stale holder notices within a few heartbeats");
    assert!(
        matches!(
            lost,
            LockError::Lost {
                reason: LostReason::Refused,
                ..
            }
        ),
        "{lost}"
    );
    assert!(!stale.is_held());
    assert!(
        pttl(&server, &key) > 25_000,
        "the stale holder must not shorten the new lease"
    );

    // Its release must not delete the new holder's key either.
    let released = stale.release().await;
    assert!(
        matches!(released, Err(LockError::Lost { .. })),
        "{released:?}"
    );
    assert_eq!(get(&server, &key).as_deref(), Some(fresh_token.as_str()));
    assert!(fresh.is_held());
    fresh.release().await.unwrap();
    assert_eq!(get(&server, &key), None);
}

#[tokio::test]
async fn the_heartbeat_keeps_a_one_second_lease_for_four_seconds() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let rival = client(&server.url()).await;
    let guard = holder.acquire("long-job", &ttl(1_000)).await.unwrap();
    let started = Instant::now();
    let mut refusals = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let attempt = rival.acquire("long-job", &try_once(1_000)).await;
        assert!(
            matches!(attempt, Err(LockError::Busy { .. })),
            "{attempt:?}"
        );
        refusals += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refusals >= 20);
    assert!(guard.is_held());
    assert!(pttl(&server, &holder.key_for("long-job")) > 0);
    guard.release().await.unwrap();
}

/// With its holder's runtime gone (no heartbeat, no release), a lock frees itself
/// after about its ttl, not before the last extend's ttl has run.
#[tokio::test]
async fn without_a_live_holder_the_lock_frees_within_about_the_ttl() {
    let server = RedisServer::start();
    let url = server.url();
    // The holder lives on its own runtime, on its own thread; shutting that runtime
    // down kills the heartbeat and any release, as a crash would.
    std::thread::spawn(move || {
        let holder_runtime = tokio::runtime::Runtime::new().unwrap();
        let guard = holder_runtime.block_on(async move {
            let holder = client(&url).await;
            holder.acquire("orphan", &ttl(1_000)).await.unwrap()
        });
        std::mem::forget(guard);
        holder_runtime.shutdown_background();
    })
    .join()
    .unwrap();
    let orphaned = Instant::now();

    let rival = client(&server.url()).await;
    let busy = rival.acquire("orphan", &try_once(1_000)).await;
    assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
    let taken = rival
        .acquire(
            "orphan",
            &ttl(1_000).wait(Wait::For(Duration::from_secs(5))),
        )
        .await
        .expect("the orphaned lock frees itself");
    let freed_after = orphaned.elapsed();
    // Its last extend was at most a heartbeat (ttl/3) before the runtime died.
    assert!(freed_after >= Duration::from_millis(500), "{freed_after:?}");
    assert!(
        freed_after < Duration::from_millis(2_500),
        "{freed_after:?}"
    );
    taken.release().await.unwrap();
}

#[tokio::test]
async fn lost_fires_when_the_key_is_deleted_behind_the_holders_back() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let guard = holder.acquire("deleted", &ttl(1_000)).await.unwrap();
    let handle = guard.handle();
    assert!(handle.is_held());
    let _: i64 = redis::cmd("DEL")
        .arg(holder.key_for("deleted"))
        .query(&mut server.connection())
        .unwrap();
    let lost = timeout(Duration::from_secs(2), handle.lost())
        .await
        .expect("lost within a heartbeat or two");
    assert!(matches!(
        lost,
        LockError::Lost {
            reason: LostReason::Refused,
            ..
        }
    ));
    assert!(!guard.is_held());
    assert!(handle.check().is_err());
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
}

/// A paused server answers nothing; the holder must give the lease up on its own
/// local deadline (about the ttl), before the server comes back.
#[tokio::test]
async fn lost_fires_on_the_local_deadline_while_the_server_is_paused() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let guard = holder.acquire("paused", &ttl(1_000)).await.unwrap();
    server.pause();
    let paused = Instant::now();
    let outcome = timeout(Duration::from_millis(2_500), guard.lost()).await;
    let lost_after = paused.elapsed();
    server.resume();
    let lost = outcome.expect("lost must fire while the server is still paused");
    assert!(
        matches!(
            lost,
            LockError::Lost {
                reason: LostReason::Expired,
                ..
            }
        ),
        "{lost}"
    );
    assert!(lost_after <= Duration::from_millis(1_200), "{lost_after:?}");
    assert!(!guard.is_held());
    drop(guard);
}

/// A release can take effect in Redis (the lock freed, or handed to a waiter)
/// long before its answer comes back: from the moment the holder lets go, its
/// handles must say the lock is not held, or work guarded by `check()` could
/// overlap with the next holder's. The server is paused so the answer cannot
/// come while we look.
#[tokio::test]
async fn handles_report_the_lock_not_held_as_soon_as_the_holder_lets_go() {
    use std::future::Future;
    use std::task::{Context, Waker};

    let server = RedisServer::start();
    let holder = client(&server.url()).await;

    // By release(): once it has started (its request on its way), before any
    // answer.
    let guard = holder.acquire("let-go", &ttl(30_000)).await.unwrap();
    let handle = guard.handle();
    assert!(handle.is_held());
    server.pause();
    let mut release = Box::pin(guard.release());
    let mut context = Context::from_waker(Waker::noop());
    let first_poll = release.as_mut().poll(&mut context);
    let held_while_releasing = handle.is_held();
    let checked_while_releasing = handle.check();
    server.resume();
    assert!(
        first_poll.is_pending(),
        "the release cannot be answered by a paused server"
    );
    assert!(!held_while_releasing);
    assert!(matches!(
        checked_while_releasing,
        Err(LockError::Lost { .. })
    ));
    release.await.unwrap();
    assert!(!handle.is_held());

    // By dropping the guard: at once, though the release runs in the background.
    let guard = holder.acquire("let-go", &ttl(30_000)).await.unwrap();
    let handle = guard.handle();
    server.pause();
    drop(guard);
    let held_after_drop = handle.is_held();
    server.resume();
    assert!(!held_after_drop);
    // And the background release does free the lock.
    let again = holder
        .acquire(
            "let-go",
            &ttl(30_000).wait(Wait::For(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    again.release().await.unwrap();
}

/// A release that fails because the connection was lost never reached Redis:
/// it is sent again in the background once the client has reconnected, so the
/// lock is free long before its ttl. (The test runtime has one thread: nothing
/// of the client runs between the kill and the pause, so the release cannot
/// find a new connection and reach the server before it is paused.)
#[tokio::test]
async fn a_release_lost_with_its_connection_is_sent_again_after_reconnecting() {
    let server = RedisServer::start();
    let holder = LockClient::builder(server.url())
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let guard = holder.acquire("blip", &ttl(30_000)).await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut server.connection())
        .unwrap();
    server.pause();
    let released = guard.release().await;
    server.resume();
    assert!(killed >= 1, "the holder's connections were killed");
    assert!(
        matches!(released, Err(LockError::Redis { .. })),
        "the release could not reach the paused server: {released:?}"
    );
    let freed = Instant::now();
    let rival = client(&server.url()).await;
    let taken = rival
        .acquire(
            "blip",
            &ttl(30_000).wait(Wait::For(Duration::from_secs(15))),
        )
        .await
        .expect("the lock is freed by the repeated release, not its 30 s ttl");
    assert!(freed.elapsed() < Duration::from_secs(15));
    taken.release().await.unwrap();
}

#[tokio::test]
async fn dropping_a_guard_frees_the_lock_well_before_its_ttl() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let rival = client(&server.url()).await;
    let guard = holder.acquire("dropped", &ttl(30_000)).await.unwrap();
    let dropped = Instant::now();
    drop(guard);
    let taken = rival
        .acquire(
            "dropped",
            &ttl(30_000).wait(Wait::For(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "{:?}",
        dropped.elapsed()
    );
    taken.release().await.unwrap();
}

#[tokio::test]
async fn a_killed_holder_process_frees_the_lock_after_about_the_ttl() {
    let server = RedisServer::start();
    let mut holder = Command::new(env!("CARGO_BIN_EXE_hold_lock"))
        .args([server.url().as_str(), "killed", "1500"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ACQUIRED");

    let rival = client(&server.url()).await;
    assert!(matches!(
        rival.acquire("killed", &try_once(1_000)).await,
        Err(LockError::Busy { .. })
    ));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let killed = Instant::now();
    let taken = rival
        .acquire(
            "killed",
            &ttl(1_000).wait(Wait::For(Duration::from_secs(10))),
        )
        .await
        .expect("the lock frees after the dead holder's ttl");
    let freed_after = killed.elapsed();
    // Not released (the process died), so free only once the last extend's ttl ran
    // out: after at least ttl - heartbeat (1 s), at most about the ttl (1.5 s).
    assert!(freed_after >= Duration::from_millis(800), "{freed_after:?}");
    assert!(
        freed_after <= Duration::from_millis(3_000),
        "{freed_after:?}"
    );
    taken.release().await.unwrap();
}

#[tokio::test]
async fn max_hold_ends_a_hold_as_lost_and_min_hold_keeps_the_key() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let capped = LockOptions::new(Duration::from_millis(600)).max_hold(Duration::from_millis(300));
    let result = locks
        .run(
            "capped",
            &capped,
            tokio::time::sleep(Duration::from_secs(5)),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(LockError::Lost {
                reason: LostReason::MaxHold,
                ..
            })
        ),
        "{result:?}"
    );

    let job = ttl(5_000).min_hold(Duration::from_millis(1_500));
    let started = Instant::now();
    locks.run("job", &job, async {}).await.unwrap();
    let left = crate::pttl(&server, &locks.key_for("job"));
    assert!(
        left > 500 && left <= 1_500,
        "key should live to start + min_hold, pttl {left}"
    );
    let rival = client(&server.url()).await;
    let taken = rival
        .acquire("job", &ttl(1_000).wait(Wait::For(Duration::from_secs(5))))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1_400));
    taken.release().await.unwrap();
}

#[tokio::test]
async fn a_lost_lease_cancels_the_scoped_body() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let key = locks.key_for("scoped");
    let url = server.url();
    let result = locks
        .run_with("scoped", &ttl(1_000), |lock| async move {
            assert!(lock.is_held());
            let mut connection = redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            "finished"
        })
        .await;
    assert!(matches!(result, Err(LockError::Lost { .. })), "{result:?}");
}

#[tokio::test]
async fn the_lock_works_over_a_unix_socket() {
    let server = RedisServer::start_unix();
    let locks = client(&server.url()).await;
    let value = locks.run("unix", &ttl(1_000), async { 7 }).await.unwrap();
    assert_eq!(value, 7);
}

/// An acquire answered after its lease's local deadline (the server was paused
/// with the request in flight) gives that token back at once, `min_hold` or not,
/// and takes the lock with a fresh one: the stale token's key is not kept alive
/// for `min_hold` with nobody holding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_answered_too_late_is_given_back_despite_min_hold() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = ttl(300).min_hold(Duration::from_secs(20));
    server.pause();
    let acquiring = tokio::spawn(async move {
        let asked = Instant::now();
        let guard = locks.acquire("late", &options).await;
        (guard, asked.elapsed())
    });
    // Longer than the ttl: the answer will come too late to count.
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.resume();
    let (guard, took) = acquiring.await.unwrap();
    let guard = guard.unwrap();
    assert!(guard.is_held());
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: the late token's key was kept for min_hold"
    );
}

/// `Debug` of a guard or handle shows what an operator needs (name, fence,
/// state, times) and never the lease token, which authorises a release.
#[tokio::test]
async fn debug_output_never_shows_the_lease_token() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let guard = locks
        .acquire("debug-me", &ttl(10_000).fencing(true))
        .await
        .unwrap();
    let token = get(&server, &locks.key_for("debug-me")).expect("held");
    let fence = guard.fencing_token().unwrap();
    for shown in [format!("{guard:?}"), format!("{:?}", guard.handle())] {
        assert!(!shown.contains(&token), "the token leaked: {shown}");
        assert!(!shown.contains("tv_sec"), "raw instants: {shown}");
        assert!(shown.contains("debug-me"), "{shown}");
        assert!(shown.contains(&fence.to_string()), "{shown}");
        assert!(shown.contains("\"held\""), "{shown}");
    }
    let handle = guard.handle();
    guard.release().await.unwrap();
    assert!(format!("{handle:?}").contains("\"released\""), "{handle:?}");
}
