//! A wait survives a dropped connection: a waiter treats an attempt that got no
//! answer (a killed connection, a server restarting) as it treats a busy lock,
//! until its own deadline, and only then reports the connection.

use std::time::Duration;

use lock_runtime::{LockError, Wait};
use tests::RedisServer;
use tokio::time::Instant;

use crate::{client, notice_channels, ttl, until, until_within};

/// How many waiters are queued for lock `name` (default prefix).
fn queued(server: &RedisServer, name: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(format!("lock:{{{name}}}:queue"))
        .query(&mut server.connection())
        .unwrap()
}

/// `CLIENT KILL TYPE <kind>`: drops every connection of that kind (but the one
/// sending it), as a proxy restart or a network blip would. Returns how many.
fn kill_connections(server: &RedisServer, kind: &str) -> u64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg(kind)
        .query(&mut server.connection())
        .unwrap()
}

/// The command connections of holder and waiter are killed while the waiter
/// waits; its next attempt meets the dead connection. It must keep waiting
/// (the connection comes back) and get the lock when the holder lets go, and
/// the holder's lease survives too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_survives_its_command_connection_being_killed() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let waiter = client(&server.url()).await;
    let guard = holder.acquire("ck", &ttl(6_000)).await.unwrap();
    let wait = tokio::spawn(async move {
        // Re-checks at least every ttl / 3 = 1 s, so it meets the dead connection.
        let options = ttl(3_000).wait(Wait::For(Duration::from_secs(25)));
        let guard = waiter.acquire("ck", &options).await?;
        let held = guard.is_held();
        guard.release().await?;
        Ok::<bool, LockError>(held)
    });
    until("the waiter is queued", || queued(&server, "ck") == 1).await;
    let queued_before = server.command_calls("zadd");
    assert!(
        kill_connections(&server, "normal") >= 2,
        "both command connections killed"
    );
    // An attempt of the waiter's reached Redis after the kill (its first one
    // after it met the broken pipe, on the connection made again).
    until_within(Duration::from_secs(10), "the waiter attempts again", || {
        wait.is_finished() || server.command_calls("zadd") > queued_before
    })
    .await;
    assert!(!wait.is_finished(), "the wait ended: {:?}", wait.await);
    assert!(guard.is_held(), "the holder's lease survives the blip");
    // The holder's own connection may still be dead: a failed release is sent
    // again in the background, which frees the lock as well.
    let _ = guard.release().await;
    let held = tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("the waiter gets the lock once it is free")
        .unwrap()
        .expect("the waiter rides out the dropped connection");
    assert!(held, "the waiter held the lock");
}

/// The waiter's notice connection is killed: it is made and subscribed again,
/// and the next release still wakes the waiter by notice, well before its next
/// poll (up to 5 s away with notices live).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_survives_its_notice_connection_being_killed() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let waiter = client(&server.url()).await;
    let guard = holder.acquire("nk", &ttl(30_000)).await.unwrap();
    let (acquired_sender, acquired) = tokio::sync::oneshot::channel();
    let wait = tokio::spawn(async move {
        let options = ttl(30_000).wait(Wait::For(Duration::from_secs(25)));
        let guard = waiter.acquire("nk", &options).await?;
        let _ = acquired_sender.send(Instant::now());
        guard.release().await
    });
    until("the waiter is queued", || queued(&server, "nk") == 1).await;
    until("the notice channel is subscribed", || {
        notice_channels(&server).len() == 1
    })
    .await;
    assert_eq!(
        kill_connections(&server, "pubsub"),
        1,
        "the notice connection killed"
    );
    until("the notice channel is subscribed again", || {
        notice_channels(&server).len() == 1
    })
    .await;
    // Resubscribed, the client wakes its waiters once (a notice may have been
    // missed); let that attempt pass, so that the next wake can only be the
    // release's notice.
    let attempts = server.command_calls("zadd");
    until("the waiter checks once after resubscribing", || {
        server.command_calls("zadd") > attempts
    })
    .await;
    let released = Instant::now();
    guard.release().await.unwrap();
    let acquired = tokio::time::timeout(Duration::from_secs(10), acquired)
        .await
        .expect("the waiter gets the lock")
        .expect("the waiter reports when it got it");
    assert!(
        acquired - released < Duration::from_millis(2_500),
        "woken by the notice, not by its next poll: {:?}",
        acquired - released
    );
    wait.await.unwrap().unwrap();
}

/// The server restarts (empty: no persistence) while a waiter waits: the
/// waiter keeps waiting through the outage and then takes the lock, which the
/// restart freed; the holder's lease is gone with the data, and it says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_survives_a_server_restart() {
    let mut server = RedisServer::start();
    let holder = client(&server.url()).await;
    let waiter = client(&server.url()).await;
    let guard = holder.acquire("restart", &ttl(3_000)).await.unwrap();
    let lost = guard.lost();
    let wait = tokio::spawn(async move {
        let options = ttl(3_000).wait(Wait::For(Duration::from_secs(25)));
        let guard = waiter.acquire("restart", &options).await?;
        let held = guard.is_held();
        guard.release().await?;
        Ok::<bool, LockError>(held)
    });
    until("the waiter is queued", || queued(&server, "restart") == 1).await;
    tokio::task::block_in_place(|| server.restart());
    let held = tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("the waiter gets the lock after the restart")
        .unwrap()
        .expect("the waiter rides out the restart");
    assert!(held);
    let lost = tokio::time::timeout(Duration::from_secs(5), lost)
        .await
        .expect("the holder learns its lease is gone");
    assert!(matches!(lost, LockError::Lost { .. }), "{lost}");
}

/// A wait that ends while Redis is still unreachable reports the connection,
/// and only when the wait is over, not at the first failed attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_ends_during_an_outage_reports_the_connection() {
    let mut server = RedisServer::start();
    let holder = client(&server.url()).await;
    let waiter = client(&server.url()).await;
    let guard = holder.acquire("outage", &ttl(30_000)).await.unwrap();
    let wait = tokio::spawn(async move {
        let started = Instant::now();
        let options = ttl(3_000).wait(Wait::For(Duration::from_millis(1_500)));
        let outcome = waiter.acquire("outage", &options).await.map(drop);
        (outcome, started.elapsed())
    });
    until("the waiter is queued", || queued(&server, "outage") == 1).await;
    server.kill();
    let (outcome, waited) = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the wait ends")
        .unwrap();
    let error = outcome.expect_err("no lock while the server is gone");
    assert!(matches!(error, LockError::Connection { .. }), "{error}");
    assert!(
        error.to_string().contains("lock `outage`"),
        "names the lock: {error}"
    );
    assert!(
        waited >= Duration::from_millis(1_500),
        "waited the whole wait: {waited:?}"
    );
    drop(guard);
}
