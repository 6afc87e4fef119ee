//! Several locks at once (`acquire_all`, `run_all`): all or nothing, no
//! deadlock between callers naming the same locks in opposite orders, and the
//! set lost as soon as any one lease is.

use std::process::{Command, Stdio};
use std::time::Duration;

use lock_runtime::{LockError, Wait};
use tests::RedisServer;
use tokio::time::timeout;

use crate::{client, get, try_once, ttl};

/// 4 processes × 32 tasks make random transfers among 8 accounts, each
/// holding both accounts' locks over a non-atomic read-modify-write of both
/// balances. Pairs come in both orders, so a deadlock is likely if the set
/// were taken in the order given; the total must be conserved.
#[test]
fn random_transfers_across_processes_conserve_money_without_deadlock() {
    let locks = RedisServer::start();
    let data = RedisServer::start();
    let (processes, tasks, rounds, accounts) = (4, 32, 12, 8);
    for account in 0..accounts {
        let () = redis::cmd("SET")
            .arg(format!("balance:{account}"))
            .arg(1_000)
            .query(&mut data.connection())
            .unwrap();
    }
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_transfers"))
                .args([
                    locks.url(),
                    data.url(),
                    tasks.to_string(),
                    rounds.to_string(),
                    accounts.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start transfers")
        })
        .collect();
    // A deadlock would leave the children waiting forever: bound the run.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut children = children;
    while children
        .iter_mut()
        .any(|child| child.try_wait().unwrap().is_none())
    {
        if std::time::Instant::now() > deadline {
            for child in &mut children {
                let _ = child.kill();
            }
            panic!("transfers did not finish within 120 s: deadlock?");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("DONE"),
            "transfers failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let total: i64 = (0..accounts)
        .map(|account| {
            redis::cmd("GET")
                .arg(format!("balance:{account}"))
                .query::<i64>(&mut data.connection())
                .unwrap()
        })
        .sum();
    assert_eq!(total, 1_000 * accounts, "money was created or destroyed");
}

/// Two callers looping over the same pair in opposite orders, waiting forever:
/// both finish.
#[tokio::test]
async fn opposite_orders_do_not_deadlock() {
    let server = RedisServer::start();
    let one = client(&server.url()).await;
    let two = client(&server.url()).await;
    let options = ttl(5_000);
    let run = |locks: lock_runtime::LockClient, names: [&'static str; 2]| {
        let options = options.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                locks
                    .run_all(names, &options, tokio::task::yield_now())
                    .await
                    .unwrap();
            }
        })
    };
    let (a, b) = (run(one, ["left", "right"]), run(two, ["right", "left"]));
    timeout(Duration::from_secs(60), async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .await
    .expect("deadlock between opposite orders");
}

/// One name busy: trying once fails as busy, waiting fails as a timeout of the
/// set, and neither leaves the other name held.
#[tokio::test]
async fn a_busy_name_fails_the_set_and_leaves_nothing_held() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let locks = client(&server.url()).await;
    let busy = holder.acquire("b", &ttl(30_000)).await.unwrap();
    for options in [
        try_once(30_000),
        ttl(30_000).wait(Wait::For(Duration::from_millis(300))),
    ] {
        let result = locks.acquire_all(["a", "b", "c"], &options).await;
        match (&options.wait, result) {
            (Wait::TryOnce, Err(LockError::Busy { name, .. })) => assert_eq!(name, "b"),
            (Wait::For(_), Err(LockError::Timeout { name, waited, .. })) => {
                assert_eq!(name, "b");
                assert!(waited >= Duration::from_millis(300), "{waited:?}");
            }
            (wait, other) => panic!("{wait:?}: {other:?}"),
        }
        for name in ["a", "c"] {
            assert_eq!(
                get(&server, &locks.key_for(name)),
                None,
                "`{name}` stayed held"
            );
        }
    }
    busy.release().await.unwrap();
    // Free now: the whole set is taken.
    let all = locks
        .acquire_all(["a", "b", "c"], &try_once(30_000))
        .await
        .unwrap();
    assert_eq!(all.names(), ["a", "b", "c"]);
    all.release().await.unwrap();
    for name in ["a", "b", "c"] {
        assert_eq!(
            get(&server, &locks.key_for(name)),
            None,
            "`{name}` not released"
        );
    }
}

/// Duplicates count once; each name has its own fencing token; a set's names
/// exclude single-name holders and the other way round.
#[tokio::test]
async fn duplicates_collapse_and_each_name_is_an_ordinary_lock() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let other = client(&server.url()).await;
    let options = try_once(30_000).fencing(true);
    let set = locks
        .acquire_all(["y", "x", "y", "x"], &options)
        .await
        .unwrap();
    assert_eq!(set.names(), ["x", "y"]);
    assert!(set.fencing_token_of("x").is_some() && set.fencing_token_of("y").is_some());
    assert_eq!(set.fencing_token_of("z"), None);
    let alone = other.acquire("y", &options).await;
    assert!(matches!(alone, Err(LockError::Busy { .. })), "{alone:?}");
    set.release().await.unwrap();
    let alone = other.acquire("y", &options).await.unwrap();
    let set = locks.acquire_all(["x", "y"], &options).await;
    assert!(
        matches!(set, Err(LockError::Busy { ref name, .. }) if name == "y"),
        "{set:?}"
    );
    assert_eq!(get(&server, &locks.key_for("x")), None, "`x` stayed held");
    alone.release().await.unwrap();
    let none: [&str; 0] = [];
    let empty = locks.acquire_all(none, &options).await;
    assert!(matches!(empty, Err(LockError::Config { .. })), "{empty:?}");
}

/// Losing one lease loses the set: `check` and `lost` say so, and a `run_all`
/// body is cancelled; the other lock is released with the set.
#[tokio::test]
async fn losing_one_lease_loses_the_set() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = ttl(1_000).heartbeat(Duration::from_millis(100));
    let key = locks.key_for("second");
    let server = &server;
    let outcome = locks
        .run_all_with(["first", "second"], &options, |lock| async move {
            // Someone else takes "second" behind our back (as after an expiry).
            let () = redis::cmd("SET")
                .arg(&key)
                .arg("someone-else")
                .query(&mut server.connection())
                .unwrap();
            let lost = timeout(Duration::from_secs(5), lock.lost()).await;
            assert!(lost.is_ok(), "the set was not reported lost");
            assert!(!lock.is_held());
            std::future::pending::<()>().await
        })
        .await;
    match outcome {
        Err(LockError::Lost { name, .. }) => assert_eq!(name, "second"),
        other => panic!("expected Lost, got {other:?}"),
    }
    // The set's guard was dropped with the body: its release runs in the
    // background.
    let first = locks.key_for("first");
    let freed = timeout(Duration::from_secs(5), async {
        while get(server, &first).is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(freed.is_ok(), "`first` stayed held");
}

/// A sync set, and re-entry: inside a set's body, each of its names counts as
/// held.
#[tokio::test(flavor = "multi_thread")]
async fn sets_work_from_sync_code_and_count_as_held_for_re_entry() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let async_reentry = locks
        .run_all(["p", "q"], &ttl(30_000), async {
            locks.run("q", &ttl(30_000), async {}).await
        })
        .await
        .unwrap();
    assert!(
        matches!(async_reentry, Err(LockError::Reentrant { .. })),
        "{async_reentry:?}"
    );
    let sync = tokio::task::spawn_blocking(move || {
        locks
            .run_all_blocking(["q", "p"], &ttl(30_000), |lock| {
                let names: Vec<String> = lock.names().iter().map(|name| name.to_string()).collect();
                let again = locks.run_blocking("p", &ttl(30_000), |_| ());
                (names, again)
            })
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(sync.0, ["p", "q"]);
    assert!(
        matches!(sync.1, Err(LockError::Reentrant { .. })),
        "{:?}",
        sync.1
    );
    assert_eq!(get(&server, "lock:p"), None);
}

/// Takes and releases a throwaway set, so the server has the set scripts
/// cached: a script's first use costs a `NOSCRIPT` round trip.
async fn warm_up_set_scripts(locks: &lock_runtime::LockClient) {
    let set = locks
        .acquire_all(["w1", "w2"], &try_once(30_000))
        .await
        .unwrap();
    set.release().await.unwrap();
}

/// Free names on one server are taken in one request (one script, which sets
/// every key), not one request per name.
#[tokio::test]
async fn free_names_on_one_server_are_taken_in_one_request() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = try_once(30_000);
    warm_up_set_scripts(&locks).await;
    let (scripts, sets) = (server.script_calls(), server.command_calls("set"));
    let set = locks.acquire_all(["a", "b", "c"], &options).await.unwrap();
    assert_eq!(server.script_calls() - scripts, 1, "not one request");
    assert_eq!(server.command_calls("set") - sets, 3, "not every key set");
    for name in ["a", "b", "c"] {
        assert!(
            get(&server, &locks.key_for(name)).is_some(),
            "`{name}` not held"
        );
    }
    set.release().await.unwrap();
}

/// A set taken together keeps one heartbeat: one request per beat extends
/// every lock of it, and they outlive their ttl.
#[tokio::test]
async fn a_set_taken_together_is_kept_by_one_request_per_beat() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = try_once(600).heartbeat(Duration::from_millis(100));
    warm_up_set_scripts(&locks).await;
    let set = locks
        .acquire_all(["h1", "h2", "h3"], &options)
        .await
        .unwrap();
    let (scripts, extends) = (server.script_calls(), server.command_calls("pexpire"));
    // Held for more than twice its ttl: every lock extended, beat after beat.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (scripts, extends) = (
        server.script_calls() - scripts,
        server.command_calls("pexpire") - extends,
    );
    assert!(set.is_held());
    for name in ["h1", "h2", "h3"] {
        assert!(
            get(&server, &locks.key_for(name)).is_some(),
            "`{name}` expired"
        );
    }
    assert!(scripts >= 5, "{scripts} beats in 1.5 s at 100 ms");
    assert_eq!(
        extends,
        3 * scripts,
        "not one request per beat for all three"
    );
    set.release().await.unwrap();
}

/// A set nobody waits for is released in one request too; a lock of it
/// someone waits for is handed on by a release of its own.
#[tokio::test]
async fn a_set_is_released_in_one_request_and_waiters_are_still_handed_theirs() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let other = client(&server.url()).await;
    let options = ttl(30_000);
    warm_up_set_scripts(&locks).await;
    let set = locks.acquire_all(["a", "b"], &options).await.unwrap();
    let scripts = server.script_calls();
    set.release().await.unwrap();
    assert_eq!(server.script_calls() - scripts, 1, "not one request");
    for name in ["a", "b"] {
        assert_eq!(
            get(&server, &locks.key_for(name)),
            None,
            "`{name}` stayed held"
        );
    }

    let set = locks.acquire_all(["a", "b"], &options).await.unwrap();
    let waiter = {
        let other = other.clone();
        let options = options.clone().wait(Wait::For(Duration::from_secs(10)));
        tokio::spawn(async move { other.acquire("b", &options).await })
    };
    timeout(Duration::from_secs(5), async {
        loop {
            let queued: usize = redis::cmd("ZCARD")
                .arg(format!("{}:queue", locks.key_for("b")))
                .query(&mut server.connection())
                .unwrap();
            if queued > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the waiter never queued");
    set.release().await.unwrap();
    let handed = timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(get(&server, &locks.key_for("a")), None);
    handed.release().await.unwrap();
}

/// A set of read locks whose one lease was lost reports it at release (its
/// release is one script per lock, not the exclusive locks' joint one).
#[tokio::test]
async fn a_shared_set_with_a_lost_lease_reports_it_at_release() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let read = ttl(30_000).mode(lock_runtime::Mode::Read);
    let set = locks.acquire_all(["r1", "r2"], &read).await.unwrap();
    // The lease on r2 is gone behind our back (evicted, say).
    let () = redis::cmd("DEL")
        .arg(locks.key_for("r2"))
        .query(&mut server.connection())
        .unwrap();
    let released = set.release().await;
    assert!(
        matches!(released, Err(LockError::Lost { ref name, .. }) if name == "r2"),
        "{released:?}"
    );
    let holders: usize = redis::cmd("ZCARD")
        .arg(locks.key_for("r1"))
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(holders, 0, "r1 stayed held");
}

/// A set whose first lock is held here already (re-entry) still releases the
/// rest before `release` returns.
#[tokio::test]
async fn a_set_led_by_a_reentrant_lock_releases_the_rest_before_returning() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = ttl(30_000).reentrant(true);
    locks
        .run("a", &options, async {
            let set = locks.acquire_all(["a", "b"], &options).await.unwrap();
            set.release().await.unwrap();
            assert_eq!(
                get(&server, &locks.key_for("b")),
                None,
                "`b` still held after release"
            );
            assert!(
                get(&server, &locks.key_for("a")).is_some(),
                "the outer `a` was released"
            );
        })
        .await
        .unwrap();
}
