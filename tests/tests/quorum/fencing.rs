//! Fencing tokens on a quorum rise across acquisitions even when servers of a
//! minority are restarted empty (their fence keys gone) in between.

use std::time::Duration;

use lock_runtime::Wait;
use tests::RedisQuorum;

use crate::{client, ttl};

/// 500 acquisitions alternating between two clients, while one server (a
/// different one each time) is restarted empty every 25: every token is larger
/// than the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rise_while_minority_servers_restart_empty() {
    let mut quorum = RedisQuorum::start(5);
    let clients = [client(&quorum).await, client(&quorum).await];
    let options = ttl(5_000)
        .fencing(true)
        .wait(Wait::For(Duration::from_secs(10)));
    let mut previous = 0;
    let mut restarts = 0;
    for round in 0..500 {
        if round % 25 == 12 {
            quorum.server(restarts % 5).restart();
            restarts += 1;
        }
        let guard = clients[round % 2]
            .acquire("fenced", &options)
            .await
            .unwrap_or_else(|error| panic!("acquisition {round}: {error}"));
        let fence = guard.fencing_token().expect("fencing was asked for");
        assert!(
            fence > previous,
            "acquisition {round}: token {fence} after {previous}"
        );
        previous = fence;
        guard.release().await.unwrap();
    }
    assert_eq!(restarts, 20);
}

/// A token is written back to the servers that granted the lease before it
/// counts: a majority then holds it in the lock's fence key.
#[tokio::test]
async fn a_token_is_stored_on_a_majority_before_the_lease_counts() {
    let quorum = RedisQuorum::start(5);
    let locks = client(&quorum).await;
    let guard = locks
        .acquire("stored", &ttl(5_000).fencing(true))
        .await
        .unwrap();
    let fence = guard.fencing_token().unwrap().to_string();
    let stored = quorum
        .values(&format!("{}:fence", locks.key_for("stored")))
        .into_iter()
        .filter(|value| value.as_deref() == Some(fence.as_str()))
        .count();
    assert!(stored >= 3, "the token is on {stored} of 5 servers");
    guard.release().await.unwrap();
}

/// Clocks alone do not make the tokens rise: a token far above every clock,
/// found on one server, is carried on by the leases after it (each writes its
/// token back to a majority), so restarting that server empty loses nothing.
#[tokio::test]
async fn a_token_above_every_clock_survives_the_restart_of_the_server_that_had_it() {
    let mut quorum = RedisQuorum::start(5);
    let locks = client(&quorum).await;
    let fence_key = format!("{}:fence", locks.key_for("carried"));
    // Far above any clock in µs (about the year 2600).
    let far_ahead: u64 = 20_000_000_000_000_000;
    let () = redis::cmd("SET")
        .arg(&fence_key)
        .arg(far_ahead)
        .query(&mut quorum.servers()[0].connection())
        .unwrap();
    let options = ttl(5_000).fencing(true);
    let first = locks.acquire("carried", &options).await.unwrap();
    let token = first.fencing_token().unwrap();
    assert!(token > far_ahead, "{token}");
    first.release().await.unwrap();
    quorum.server(0).restart();
    let second = locks.acquire("carried", &options).await.unwrap();
    let next = second.fencing_token().unwrap();
    assert!(next > token, "token {next} after {token}");
    second.release().await.unwrap();
}

/// The last token may survive on a server that is busy for this attempt (held
/// by a contender a moment ago, say): its fence counts as much as a granting
/// server's, so the new token is above it.
#[tokio::test]
async fn a_busy_servers_fence_counts_too() {
    let quorum = RedisQuorum::start(5);
    let locks = client(&quorum).await;
    let key = locks.key_for("busy-fence");
    let far_ahead: u64 = 20_000_000_000_000_000;
    let mut first = quorum.servers()[0].connection();
    let () = redis::cmd("SET")
        .arg(format!("{key}:fence"))
        .arg(far_ahead)
        .query(&mut first)
        .unwrap();
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("a-contender")
        .arg("PX")
        .arg(10_000)
        .query(&mut first)
        .unwrap();
    let guard = locks
        .acquire("busy-fence", &ttl(5_000).fencing(true).wait(Wait::TryOnce))
        .await
        .unwrap();
    let token = guard.fencing_token().unwrap();
    assert!(token > far_ahead, "{token} is not above {far_ahead}");
    guard.release().await.unwrap();
}
