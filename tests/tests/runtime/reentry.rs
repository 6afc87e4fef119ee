//! Taking a lock the running code already holds: an error at once by default,
//! or (opted in) a call under the outer hold that releases nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions, Wait};
use tests::RedisServer;
use tokio::time::{Instant, timeout};

use crate::{client, get, ttl};

/// Requests that could take a lock: the plain `SET NX` and the scripts.
fn lock_requests(server: &RedisServer) -> u64 {
    server.command_calls("set") + server.script_calls()
}

/// A default (wait forever) nested call would wait on itself for good; it must
/// fail at once, before any request, naming the lock.
#[tokio::test]
async fn taking_a_held_lock_again_fails_at_once_without_a_request() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = LockOptions::default();
    let outer = locks.clone();
    let (inner, requests, took) = timeout(
        Duration::from_secs(5),
        outer.run("reentry", &options, async {
            let before = lock_requests(&server);
            let started = Instant::now();
            let inner = locks.run("reentry", &options, async {}).await;
            (inner, lock_requests(&server) - before, started.elapsed())
        }),
    )
    .await
    .expect("the nested call waited on itself")
    .unwrap();
    match inner {
        Err(LockError::Reentrant { name }) => assert_eq!(name, "reentry"),
        other => panic!("expected Reentrant, got {other:?}"),
    }
    assert_eq!(requests, 0, "the nested call sent a request");
    eprintln!("nested call failed after {took:?}");
    // The outer hold was released normally.
    assert_eq!(get(&server, &locks.key_for("reentry")), None);
}

/// The same through guards: `acquire` inside a guard's `scope`, and through a
/// second client of the same server (one lock, whichever handle takes it).
#[tokio::test]
async fn a_guards_scope_and_a_second_client_of_the_server_count_as_holding() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let other = client(&server.url()).await;
    let options = ttl(30_000);
    let guard = locks.acquire("scoped", &options).await.unwrap();
    let again = guard
        .scope(async { other.acquire("scoped", &options).await })
        .await;
    assert!(
        matches!(again, Err(LockError::Reentrant { .. })),
        "{again:?}"
    );
    // Outside the scope this task is not the holder: it is an ordinary busy lock.
    let outside = other
        .acquire("scoped", &options.clone().wait(Wait::TryOnce))
        .await;
    assert!(
        matches!(outside, Err(LockError::Busy { .. })),
        "{outside:?}"
    );
    guard.release().await.unwrap();
}

/// `reentrant(true)`: the inner call runs under the outer lease (same fencing
/// token), its end keeps the lock held, and only the outer end frees it.
#[tokio::test]
async fn reentrant_calls_nest_and_only_the_outermost_end_releases() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = &ttl(30_000).fencing(true).reentrant(true);
    let key = &locks.key_for("nested");
    let (locks, server) = (&locks, &server);
    let outer_token = locks
        .run_with("nested", options, |outer| async move {
            let outer_token = outer.fencing_token();
            let lease = get(server, key);
            assert!(lease.is_some());
            let before = lock_requests(server);
            let inner_token = locks
                .run_with("nested", options, |inner| async move {
                    tokio::task::yield_now().await;
                    // Two levels deep, across awaits.
                    locks
                        .run("nested", options, async { tokio::task::yield_now().await })
                        .await
                        .unwrap();
                    inner.fencing_token()
                })
                .await
                .unwrap();
            assert_eq!(inner_token, outer_token, "the inner call has its own lease");
            assert_eq!(
                lock_requests(server),
                before,
                "a nested call sent a request"
            );
            assert!(outer.is_held(), "the inner end released the outer hold");
            assert_eq!(get(server, key), lease, "the inner end touched the key");
            outer_token
        })
        .await
        .unwrap();
    assert!(outer_token.is_some());
    assert_eq!(get(server, key), None, "the outer end did not release");
}

/// A nested guard taken by hand releases nothing, whether released or dropped.
#[tokio::test]
async fn a_reentrant_guard_releases_nothing() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = ttl(30_000).reentrant(true);
    let key = locks.key_for("guarded");
    let guard = locks.acquire("guarded", &options).await.unwrap();
    guard
        .scope(async {
            let released = locks.acquire("guarded", &options).await.unwrap();
            released.release().await.unwrap();
            drop(locks.acquire("guarded", &options).await.unwrap());
        })
        .await;
    // A dropped guard releases in the background: give it the chance.
    tokio::task::yield_now().await;
    assert!(guard.is_held());
    assert!(
        get(&server, &key).is_some(),
        "a nested guard released the lock"
    );
    guard.release().await.unwrap();
    assert_eq!(get(&server, &key), None);
}

/// A task spawned from the body is another holder: it waits like anyone else,
/// re-entry allowed or not, and gets the lock once the body is done.
#[tokio::test]
async fn a_task_spawned_from_the_body_is_a_different_holder() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = ttl(30_000).reentrant(true);
    let spawned = locks
        .run("spawn", &options, async {
            let busy = {
                let locks = locks.clone();
                let options = options.clone().wait(Wait::TryOnce);
                tokio::spawn(async move { locks.run("spawn", &options, async {}).await })
            };
            let busy = busy.await.unwrap();
            assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
            // One that waits gets the lock after this body.
            let locks = locks.clone();
            let options = options.clone();
            vec![tokio::spawn(async move {
                locks.run("spawn", &options, async { 7 }).await
            })]
        })
        .await
        .unwrap();
    for waiter in spawned {
        assert_eq!(waiter.await.unwrap().unwrap(), 7);
    }
}

/// Futures joined in one task are not inside each other: each waits its turn
/// instead of failing as re-entry (or, worse, sharing the lease).
#[tokio::test]
async fn joined_futures_in_one_task_still_exclude_each_other() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = ttl(30_000).reentrant(true);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let one = |id: usize| {
        let (locks, options, inside, most) =
            (locks.clone(), options.clone(), inside.clone(), most.clone());
        async move {
            locks
                .run("joined", &options, async {
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    id
                })
                .await
        }
    };
    let results = futures_util::future::join_all((0..8).map(one)).await;
    for (id, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), id);
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two joined bodies held at once"
    );
}

/// A re-entrant call that wants a fencing token under a hold that has none is
/// a configuration error, not a token-less success.
#[tokio::test]
async fn a_reentrant_call_cannot_ask_for_a_fence_the_outer_hold_lacks() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let outer = ttl(30_000);
    let inner = ttl(30_000).reentrant(true).fencing(true);
    let result = locks
        .run("fence", &outer, async {
            locks.run("fence", &inner, async {}).await
        })
        .await
        .unwrap();
    match result {
        Err(LockError::Config { reason, .. }) => assert!(reason.contains("fencing"), "{reason}"),
        other => panic!("expected Config, got {other:?}"),
    }
}

/// Sync code: the holder is the thread running a `run_blocking` body.
#[tokio::test(flavor = "multi_thread")]
async fn blocking_bodies_hold_their_lock_for_their_thread() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    tokio::task::spawn_blocking(move || blocking_reentry(&server, &locks))
        .await
        .unwrap();
}

fn blocking_reentry(server: &RedisServer, locks: &LockClient) {
    let options = ttl(30_000);
    let key = locks.key_for("sync");
    let refused = locks
        .run_blocking("sync", &options, |_| {
            locks.run_blocking("sync", &options, |_| ())
        })
        .unwrap();
    assert!(
        matches!(refused, Err(LockError::Reentrant { .. })),
        "{refused:?}"
    );

    let reentrant = options.clone().reentrant(true);
    locks
        .run_blocking("sync", &reentrant, |_| {
            locks.run_blocking("sync", &reentrant, |_| ()).unwrap();
            assert!(get(server, &key).is_some(), "the inner end released");
            // Another thread is another holder.
            std::thread::scope(|scope| {
                let busy = scope
                    .spawn(|| {
                        locks.run_blocking("sync", &reentrant.clone().wait(Wait::TryOnce), |_| ())
                    })
                    .join()
                    .unwrap();
                assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
            });
        })
        .unwrap();
    assert_eq!(get(server, &key), None);
}

/// A re-entrant call under a hold that was lost meanwhile is `Lost`, never a
/// guard on nothing; a scope that outlived its guard holds nothing.
#[tokio::test]
async fn a_lost_or_released_outer_hold_is_not_run_under() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = &ttl(1_000)
        .heartbeat(Duration::from_millis(50))
        .reentrant(true)
        .on_lost(lock_runtime::OnLost::Notify);
    let key = locks.key_for("lost-outer");
    let (locks_ref, server_ref) = (&locks, &server);
    let inner = locks
        .run_with("lost-outer", options, |outer| async move {
            let () = redis::cmd("SET")
                .arg(&key)
                .arg("someone-else")
                .query(&mut server_ref.connection())
                .unwrap();
            timeout(Duration::from_secs(5), outer.lost()).await.unwrap();
            locks_ref.acquire("lost-outer", options).await.map(drop)
        })
        .await;
    // The outer call reports the loss; the inner acquire did too.
    assert!(matches!(inner, Err(LockError::Lost { .. })), "{inner:?}");

    let guard = locks.acquire("outlived", &ttl(30_000)).await.unwrap();
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let later = {
        let locks = locks.clone();
        tokio::spawn(guard.scope(async move {
            wait.await.unwrap();
            // The guard is gone: this is an ordinary acquire of a free lock.
            locks
                .acquire("outlived", &ttl(30_000).wait(Wait::TryOnce))
                .await
        }))
    };
    guard.release().await.unwrap();
    go.send(()).unwrap();
    later.await.unwrap().unwrap().release().await.unwrap();
}

/// A semaphore taken again inside its own body is re-entry: it could wait on
/// itself (with one permit it would, for good).
#[tokio::test]
async fn a_semaphore_taken_again_inside_its_body_fails_at_once() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = ttl(30_000).permits(1);
    let inner = timeout(
        Duration::from_secs(5),
        locks.run("one-permit", &options, async {
            locks.run("one-permit", &options, async {}).await
        }),
    )
    .await
    .expect("waited on itself")
    .unwrap();
    assert!(
        matches!(inner, Err(LockError::Reentrant { .. })),
        "{inner:?}"
    );
}
