//! Connecting a quorum client: what it takes, what it refuses, and that every
//! public way in works on it.

use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions, Wait};
use tests::{RedisQuorum, RedisServer};

use crate::{client, ttl};

#[tokio::test]
async fn a_quorum_of_fewer_than_three_or_repeated_servers_is_a_config_error() {
    let quorum = RedisQuorum::start(3);
    let ports: Vec<u16> = quorum.servers().iter().map(RedisServer::port).collect();
    for url in [
        format!("redlock://127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]),
        format!(
            "redlock://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
            ports[0], ports[1], ports[0]
        ),
    ] {
        let error = LockClient::connect(&url).await.unwrap_err();
        assert!(matches!(error, LockError::Config { .. }), "{url}: {error}");
        let message = error.to_string();
        assert!(
            message.contains("at least 3") || message.contains("given twice"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn fair_replicas_and_shared_shapes_are_config_errors_on_a_quorum() {
    let quorum = RedisQuorum::start(3);
    let locks = client(&quorum).await;
    for options in [
        ttl(1_000).fair(true),
        ttl(1_000).replicas(1, Duration::from_millis(100)),
        ttl(1_000).permits(3),
        ttl(1_000).mode(lock_runtime::Mode::Read),
    ] {
        let error = locks.acquire("shape", &options).await.unwrap_err();
        assert!(matches!(error, LockError::Config { .. }), "{error}");
        assert!(error.to_string().contains("quorum"), "{error}");
    }
    assert_eq!(quorum.values(&locks.key_for("shape")), vec![None; 3]);
}

#[tokio::test]
async fn a_majority_down_at_connect_is_a_connection_error_naming_the_servers() {
    let mut quorum = RedisQuorum::start(5);
    let down: Vec<u16> = (0..3).map(|i| quorum.server(i).port()).collect();
    for i in 0..3 {
        quorum.server(i).kill();
    }
    let error = LockClient::builder(quorum.url())
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(error, LockError::Connection { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("2 of 5"), "{message}");
    for port in down {
        assert!(message.contains(&port.to_string()), "{message}");
    }
}

#[tokio::test]
async fn a_minority_down_at_connect_is_connected_when_it_comes_back() {
    let mut quorum = RedisQuorum::start(5);
    quorum.server(0).kill();
    quorum.server(1).kill();
    let locks = client(&quorum).await;
    crate::try_once(&locks, "late", &ttl(2_000)).await.unwrap();
    quorum.server(0).restart();
    quorum.server(1).restart();
    let guard = locks
        .acquire("late", &ttl(10_000).wait(Wait::TryOnce))
        .await
        .unwrap();
    // The first request to a server back up may only reconnect; an extend
    // after that finds the key gone there and takes it again.
    let key = locks.key_for("late");
    let mut held = 0;
    for _ in 0..3 {
        tests::holds::extended_again(&guard, Duration::from_secs(10)).await;
        held = quorum
            .values(&key)
            .iter()
            .filter(|value| value.is_some())
            .count();
        if held == 5 {
            break;
        }
    }
    assert_eq!(held, 5, "the lease is on every server once all are up");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_on_one_server_fails_at_connect() {
    let servers = [
        RedisServer::start_with(&["--requirepass", "pw"]),
        RedisServer::start_with(&["--requirepass", "pw"]),
        RedisServer::start_with(&["--requirepass", "other"]),
    ];
    let urls: Vec<String> = servers
        .iter()
        .map(|server| server.url_with_password("pw"))
        .collect();
    let error = LockClient::quorum(urls.clone())
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert!(
        !error.to_string().contains("pw@"),
        "password leaked: {error}"
    );
    assert!(
        error.to_string().contains(&servers[2].port().to_string()),
        "names the server: {error}"
    );
    // With each server's own password, the same servers make a quorum.
    let mut urls = urls;
    urls[2] = servers[2].url_with_password("other");
    let locks = LockClient::quorum(urls).connect().await.unwrap();
    crate::try_once(&locks, "per-node-passwords", &ttl(1_000))
        .await
        .unwrap();
}

#[tokio::test]
async fn guards_run_blocking_and_the_attribute_work_on_a_quorum() {
    let quorum = RedisQuorum::start(3);
    let locks = client(&quorum).await;
    let key = locks.key_for("everyway");

    let guard = locks.acquire("everyway", &ttl(5_000)).await.unwrap();
    assert!(guard.is_held());
    assert!(quorum.values(&key).iter().all(Option::is_some));
    guard.release().await.unwrap();
    // Release answers at a majority; the rest may still be on their way.
    lock_runtime::flush_releases(Duration::from_secs(5)).await;
    assert_eq!(quorum.values(&key), vec![None; 3]);

    let ran = locks
        .run("everyway", &ttl(5_000), async { 7 })
        .await
        .unwrap();
    assert_eq!(ran, 7);

    let blocking = locks.clone();
    let from_thread = tokio::task::spawn_blocking(move || {
        blocking.run_blocking(
            "everyway",
            &LockOptions::new(Duration::from_secs(5)),
            |lock| lock.is_held(),
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert!(from_thread);

    #[lock_runtime::redis_locked(name = "everyway", ttl = 5, client = locks)]
    async fn annotated(locks: &LockClient) -> Result<u32, LockError> {
        Ok(3)
    }
    assert_eq!(annotated(&locks).await.unwrap(), 3);
    lock_runtime::flush_releases(Duration::from_secs(5)).await;
    assert_eq!(quorum.values(&key), vec![None; 3]);
}

/// `inspect` and `list` on a quorum: a holder counts where a majority of the
/// servers hold its lease, also with two of five down; one server's stray
/// key is no holder.
#[tokio::test]
async fn inspect_and_list_read_the_majority() {
    let mut quorum = RedisQuorum::start(5);
    let locks = LockClient::builder(quorum.url())
        .holder_label("quorum-ops")
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    let guard = locks
        .acquire("q-ops", &ttl(30_000).fencing(true))
        .await
        .unwrap();
    // A key on one server only, as a failed attempt might leave it.
    let _: () = redis::cmd("SET")
        .arg(locks.key_for("q-stray"))
        .arg("0123456789abcdef0123456789abcdef|x1|1|h|")
        .arg("PX")
        .arg(30_000)
        .query(&mut quorum.servers()[0].connection())
        .unwrap();
    quorum.server(3).kill();
    quorum.server(4).kill();
    let state = locks.inspect("q-ops").await.unwrap();
    assert_eq!(state.holders.len(), 1);
    let holder = &state.holders[0];
    assert_eq!(holder.fence, guard.fencing_token());
    assert_eq!(
        holder
            .identity
            .as_ref()
            .and_then(|who| who.label.as_deref()),
        Some("quorum-ops")
    );
    assert!(!locks.inspect("q-stray").await.unwrap().is_held());
    let names: Vec<String> = locks
        .list("q-*")
        .await
        .unwrap()
        .into_iter()
        .map(|lock| lock.name)
        .collect();
    assert_eq!(names, ["q-ops"]);
    guard.release().await.unwrap();
    assert!(!locks.inspect("q-ops").await.unwrap().is_held());
}

/// An operator's forced release on a quorum sticks: the stuck holder's
/// heartbeat, still beating, finds its lease gone and loses it, and does not
/// bring the key back once the release's usual receipt would have expired.
#[tokio::test]
async fn a_forced_release_is_not_undone_by_the_holders_heartbeat() {
    let quorum = RedisQuorum::start(5);
    let holder = client(&quorum).await;
    let operator = client(&quorum).await;
    // Beats every 3 s, after the usual receipt (2 s: twice the 1 s response
    // timeout) has expired.
    let guard = holder.acquire("q-stuck", &ttl(9_000)).await.unwrap();
    let token = operator.inspect("q-stuck").await.unwrap().holders[0]
        .token
        .clone();
    assert!(operator.force_release("q-stuck", &token).await.unwrap());
    let lost = tokio::time::timeout(Duration::from_secs(8), guard.lost())
        .await
        .expect("the holder's next beat finds its lease gone");
    assert!(matches!(lost, LockError::Lost { .. }), "{lost:?}");
    // That beat did not bring the key back anywhere.
    let key = holder.key_for("q-stuck");
    assert!(
        quorum.values(&key).iter().all(Option::is_none),
        "{:?}",
        quorum.values(&key)
    );
    drop(guard);
}
