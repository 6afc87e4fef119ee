//! `name = [..]`: an annotated function that holds several locks at once.

use lock_runtime::{LockClient, LockError, redis_locked};
use tests::RedisServer;

fn held(server: &RedisServer, locks: &LockClient, name: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(locks.key_for(name))
        .query(&mut server.connection())
        .unwrap()
}

#[redis_locked(name = ["account:{from}", "account:{to}"], ttl = 5, client = locks, guard = lock)]
async fn transfer(
    locks: &LockClient,
    server: &RedisServer,
    from: u64,
    to: u64,
) -> Result<Vec<String>, LockError> {
    assert!(held(server, locks, &format!("account:{from}")));
    assert!(held(server, locks, &format!("account:{to}")));
    Ok(lock.names().iter().map(|name| name.to_string()).collect())
}

#[redis_locked(name = ["account:{from}", "account:{to}"], ttl = 5, client = locks, wait = 0)]
fn transfer_sync(
    locks: &LockClient,
    server: &RedisServer,
    from: u64,
    to: u64,
) -> Result<(), LockError> {
    assert!(held(server, locks, &format!("account:{from}")));
    assert!(held(server, locks, &format!("account:{to}")));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_with_a_list_of_names_holds_all_of_them() {
    let server = RedisServer::start();
    let locks = LockClient::connect(&server.url()).await.unwrap();
    let names = transfer(&locks, &server, 9, 2).await.unwrap();
    assert_eq!(names, ["account:2", "account:9"], "lock order is by key");
    for name in ["account:2", "account:9"] {
        assert!(!held(&server, &locks, name), "`{name}` stayed held");
    }
    // One of them busy: the sync call, trying once, does not run.
    let busy = locks
        .acquire("account:2", &lock_runtime::LockOptions::default())
        .await
        .unwrap();
    let (locks, server) = tokio::task::spawn_blocking(move || {
        let result = transfer_sync(&locks, &server, 2, 9);
        assert!(matches!(result, Err(LockError::Busy { .. })), "{result:?}");
        assert!(
            !held(&server, &locks, "account:9"),
            "a partial set stayed held"
        );
        (locks, server)
    })
    .await
    .unwrap();
    busy.release().await.unwrap();
    tokio::task::spawn_blocking(move || transfer_sync(&locks, &server, 2, 9))
        .await
        .unwrap()
        .unwrap();
}
