//! lock-runtime through Redis Sentinel: a primary, a replica and three
//! sentinels from the `redis-server` binary (stopped when each test ends).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions, Wait};
use tests::RedisSentinels;
use tests::holds::{busy_for_others, extended_again, fence_rises_after};
use tokio::time::Instant;

/// Through the sentinels to the primary; across a `SENTINEL FAILOVER` and a
/// killed primary the holder keeps its lease (acknowledged by the replica),
/// nobody else gets the lock meanwhile, a waiter is served once it is free,
/// and fencing tokens keep rising.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_follows_the_primary_through_failovers() {
    let mut group = RedisSentinels::start();
    let holder = LockClient::connect(&group.url())
        .await
        .expect("connect through Sentinel");
    let other = LockClient::connect(&group.url()).await.unwrap();
    let name = "sentinel";
    let ttl = Duration::from_secs(10);
    let options = LockOptions::new(ttl)
        .fencing(true)
        .replicas(1, Duration::from_millis(1_000));

    let guard = holder
        .acquire(name, &options)
        .await
        .expect("acquire, acknowledged");
    let first = guard.fencing_token();
    let primary = group.primary_port();
    let held: Option<String> = redis::cmd("GET")
        .arg(holder.key_for(name))
        .query(&mut group.server(primary).connection())
        .unwrap();
    assert!(held.is_some(), "the lease is on the primary");
    let waiting = {
        let (other, options) = (other.clone(), options.clone());
        tokio::spawn(async move {
            let guard = other
                .acquire(name, &options.wait(Wait::For(Duration::from_secs(40))))
                .await?;
            let fence = guard.fencing_token();
            Ok::<_, LockError>((guard, fence))
        })
    };

    tokio::task::block_in_place(|| group.failover());
    extended_again(&guard, ttl).await;
    busy_for_others(&holder, name).await;
    assert!(
        !waiting.is_finished(),
        "the waiter got in while the lock was held"
    );
    guard.release().await.expect("release on the new primary");
    let (second, second_fence) = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the waiter is served after the failover")
        .unwrap()
        .expect("the waiter gets the lock");
    assert!(
        second_fence > first,
        "fencing tokens rise across the failover"
    );

    let heir = group.kill_primary();
    tokio::task::block_in_place(|| group.wait_for_primary(heir));
    // The promoted replica has the acknowledged lease: the holder still holds
    // it, and nobody else can take it. (Its extends now fail: no replica is
    // left to acknowledge them, so it would lose the lease at its local
    // deadline; it releases first.)
    assert!(
        second.is_held(),
        "the holder keeps its lease: {:?}",
        second.check()
    );
    busy_for_others(&holder, name).await;
    // Its client may meet its dead connection first: a failed release is
    // sent again in the background; never a lost lease.
    let released = second.release().await;
    assert!(
        !matches!(released, Err(LockError::Lost { .. })),
        "{released:?}"
    );
    fence_rises_after(&holder, name, &options, second_fence).await;
}

/// A wrong master name, a URL without one, and sentinels that are not there:
/// each a clear error within the connect timeout.
#[tokio::test]
async fn bad_sentinel_urls_are_clear_errors() {
    let group = RedisSentinels::start();
    let started = Instant::now();
    let error = LockClient::connect(&group.url_for_master("nosuchmaster"))
        .await
        .expect_err("unknown master");
    assert!(matches!(error, LockError::Config { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("knows no master named `nosuchmaster`"),
        "{error}"
    );

    let no_name = group.url().split('#').next().unwrap_or_default().to_owned();
    let error = LockClient::connect(&no_name)
        .await
        .expect_err("no master name");
    assert!(matches!(error, LockError::Config { .. }), "{error}");
    assert!(error.to_string().contains("after `#`"), "{error}");

    let port = tests::free_port();
    let error = LockClient::builder(format!("redis-sentinel://127.0.0.1:{port}#mymaster"))
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .expect_err("no sentinel there");
    assert!(matches!(error, LockError::Connection { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A Sentinel-watched primary and its replica admit a user allowed only the
/// README's "Least privilege" rule and `+role`: through the sentinels, that
/// user's client takes a lock, waits for another's, is handed it, keeps it
/// past its ttl by heartbeat with the replica acknowledging, and releases it.
/// Without `+role` it is told at connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_privilege_rule_is_enough_through_sentinel() {
    let group = RedisSentinels::start();
    let admit = |user: &str, rule: &str| {
        // On both data nodes (the default user stays: the sentinels and the
        // replication use it).
        for port in [group.primary_port(), group.replica_port()] {
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg(user)
                .arg("on")
                .arg(">s3cret")
                .arg(rule.split(' ').collect::<Vec<_>>())
                .query::<()>(&mut group.server(port).connection())
                .expect("ACL SETUSER");
        }
    };
    let rule = lock_runtime::acl_rule("lock:");
    admit("locker", &format!("{rule} +role"));
    admit("narrow", &rule);
    let as_user = |user: &str| {
        group
            .url()
            .replacen("://", &format!("://{user}:s3cret@"), 1)
    };

    let started = Instant::now();
    let refused = LockClient::builder(as_user("narrow"))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect_err("ROLE denied");
    // The server's words name the command; ours say what to grant.
    let said = refused.to_string();
    assert!(said.contains("'role'"), "{said}");
    assert!(
        said.contains("may not run") && !said.contains("password"),
        "{said}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let holder = LockClient::connect(&as_user("locker")).await.unwrap();
    let waiter = LockClient::connect(&as_user("locker")).await.unwrap();
    let options = LockOptions::new(Duration::from_millis(1_500))
        .fencing(true)
        .replicas(1, Duration::from_millis(300));
    let guard = holder.acquire("acl", &options).await.unwrap();
    let waiting = tokio::spawn({
        let options = options.clone().wait(Wait::For(Duration::from_secs(20)));
        async move { waiter.acquire("acl", &options).await }
    });
    // Held past its ttl: the heartbeat extended it (and the replica
    // acknowledged each extend, or the lease would be lost).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(guard.is_held(), "{:?}", guard.check());
    let first = guard.fencing_token();
    guard.release().await.unwrap();
    let second = waiting.await.unwrap().expect("handed the lock");
    assert!(second.fencing_token() > first);
    second.release().await.unwrap();
}
