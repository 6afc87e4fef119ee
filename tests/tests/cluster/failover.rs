//! Failover on a cluster with a replica per primary, a lease held throughout
//! with `replicas(1, …)`: a `CLUSTER FAILOVER` and then a killed primary. The
//! holder keeps its lease (the promoted replica acknowledged it), nobody else
//! gets the lock meanwhile, and fencing tokens keep rising.

use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions};
use tests::RedisCluster;
use tests::holds::{busy_for_others, extended_again, fence_rises_after};

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
    tokio::task::block_in_place(|| cluster.failover_to(replica, slot));
    extended_again(&guard, ttl).await;
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
    cluster.kill(killed);
    tokio::task::block_in_place(|| cluster.wait_for_primary(slot, heir));
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
    fence_rises_after(&holder, name, &options, second_token).await;
}
