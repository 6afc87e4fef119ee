//! Failover on a cluster with a replica per primary, a lease held throughout
//! with `replicas(1, …)`: a `CLUSTER FAILOVER` and then a killed primary. The
//! holder keeps its lease (the promoted replica acknowledged it), nobody else
//! gets the lock meanwhile, and fencing tokens keep rising.

use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockGuard, LockOptions, Wait};
use tests::RedisCluster;
use tokio::time::Instant;

/// Waits until `guard`'s lease was extended after `since`: its validity then
/// reaches past `since` + ttl - a margin.
async fn extended_after(guard: &LockGuard, since: Instant, ttl: Duration) {
    let deadline = Instant::now() + ttl;
    loop {
        if guard
            .time_left()
            .is_some_and(|left| Instant::now() + left > since + ttl - Duration::from_millis(500))
        {
            return;
        }
        assert!(guard.is_held(), "the lease was lost: {:?}", guard.check());
        assert!(Instant::now() < deadline, "no extend after the failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// While the holder holds, another client trying once finds the lock busy.
async fn busy_for_others(other: &LockClient, name: &str) {
    let tried = other
        .acquire(
            name,
            &LockOptions::new(Duration::from_secs(5)).wait(Wait::TryOnce),
        )
        .await;
    assert!(
        matches!(tried, Err(LockError::Busy { .. })),
        "a second holder got in: {tried:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_survives_failovers_when_replicas_acknowledged_it() {
    let mut cluster = RedisCluster::start(3, 1);
    let holder = LockClient::connect(&cluster.url()).await.unwrap();
    let other = LockClient::connect(&cluster.url()).await.unwrap();
    let name = "failover";
    let slot = cluster.slot(&holder.key_for(name));
    let ttl = Duration::from_secs(10);
    let options = LockOptions::new(ttl)
        .fencing(true)
        .replicas(1, Duration::from_millis(1_000));

    // A graceful failover: the replica takes over after catching up.
    let guard = holder
        .acquire(name, &options)
        .await
        .expect("acquire, acknowledged");
    let first = guard.fencing_token();
    let primary = cluster.primary_of(slot).port();
    let replica = cluster.replica_of(primary).port();
    let failed_over = Instant::now();
    tokio::task::block_in_place(|| cluster.failover_to(replica, slot));
    extended_after(&guard, failed_over, ttl).await;
    busy_for_others(&other, name).await;
    guard.release().await.expect("release on the new primary");
    let second = other
        .acquire(name, &options)
        .await
        .expect("acquire on the new primary");
    assert!(
        second.fencing_token() > first,
        "fencing tokens rise across the failover"
    );
    let second_token = second.fencing_token();

    // The primary killed: its replica (the old primary) is promoted once the
    // cluster sees it gone (node timeout 2 s). The acknowledged lease is there.
    let killed = cluster.primary_of(slot).port();
    let heir = cluster.replica_of(killed).port();
    let killed_at = Instant::now();
    cluster.kill(killed);
    tokio::task::block_in_place(|| cluster.wait_for_primary(slot, heir));
    extended_after(&second, killed_at, ttl).await;
    busy_for_others(&holder, name).await;
    second
        .release()
        .await
        .expect("release on the promoted replica");
    let third = holder
        .acquire(
            name,
            &options.clone().replicas(1, Duration::from_millis(200)),
        )
        .await;
    // The promoted replica has no replica of its own now: asking for one fails
    // clearly, and gives the lease back.
    assert!(
        matches!(
            third,
            Err(LockError::Unreplicated {
                acknowledged: 0,
                wanted: 1,
                ..
            })
        ),
        "{third:?}"
    );
    let mut unreplicated = options.clone();
    unreplicated.replicas = None;
    let fourth = holder
        .acquire(name, &unreplicated)
        .await
        .expect("acquire without replicas");
    assert!(
        fourth.fencing_token() > second_token,
        "fencing tokens rise across the kill"
    );
    fourth.release().await.unwrap();
}
