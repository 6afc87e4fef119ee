use std::time::Duration;

use lock_runtime::{LockError, LockOptions, LostReason, Wait};
use tests::RedisServer;
use tokio::time::timeout;

use crate::client;

fn fenced() -> LockOptions {
    LockOptions::new(Duration::from_secs(30))
        .fencing(true)
        .wait(Wait::For(Duration::from_secs(5)))
}

#[tokio::test]
async fn tokens_strictly_increase_across_releases_expiry_and_lost_counters() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let mut last = 0;
    let mut next_token = |token: Option<u64>| {
        let token = token.expect("fencing is on");
        assert!(token > last, "token {token} after {last}");
        last = token;
    };
    for _ in 0..5 {
        let guard = locks.acquire("fenced", &fenced()).await.unwrap();
        next_token(guard.fencing_token());
        guard.release().await.unwrap();
    }

    // After an expiry: the key vanishes server-side while held, and another
    // process takes the lock (a task of this one would wait for the holder's
    // guard: it asks Redis only once the holder is done, or knows it lost).
    let guard = locks.acquire("fenced", &fenced()).await.unwrap();
    next_token(guard.fencing_token());
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(locks.key_for("fenced"))
        .arg(1)
        .query(&mut server.connection())
        .unwrap();
    let other = client(&server.url()).await;
    let after_expiry = other.acquire("fenced", &fenced()).await.unwrap();
    next_token(after_expiry.fencing_token());
    drop(guard);
    after_expiry.release().await.unwrap();

    // After the counter itself is lost (evicted, flushed): tokens still go up.
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{}:fence", locks.key_for("fenced")))
        .query(&mut server.connection())
        .unwrap();
    let guard = locks.acquire("fenced", &fenced()).await.unwrap();
    next_token(guard.fencing_token());
    guard.release().await.unwrap();
}

#[tokio::test]
async fn without_fencing_there_is_no_token() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let guard = locks
        .acquire("plain", &LockOptions::new(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(guard.fencing_token(), None);
    guard.release().await.unwrap();
}

/// A real eviction under memory pressure (volatile-ttl evicts the key closest to
/// expiry: the lock). The holder notices, and the next token is still larger.
#[tokio::test]
async fn tokens_increase_after_the_server_evicts_the_lock_key() {
    let server =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "volatile-ttl"]);
    let locks = client(&server.url()).await;
    let guard = locks.acquire("evicted", &fenced()).await.unwrap();
    let before = guard.fencing_token().unwrap();
    let key = locks.key_for("evicted");
    let mut connection = server.connection();
    let filler = "x".repeat(16 * 1024);
    let mut evicted = false;
    for i in 0..2_000 {
        let _: () = redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(&filler)
            .arg("EX")
            .arg(3_600)
            .query(&mut connection)
            .unwrap();
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query(&mut connection)
            .unwrap();
        if exists == 0 {
            evicted = true;
            break;
        }
    }
    assert!(evicted, "the lock key should have been evicted");
    let lost = timeout(Duration::from_secs(20), guard.lost())
        .await
        .unwrap();
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
    // Free some memory so the next acquire can write.
    let _: () = redis::cmd("FLUSHDB").query(&mut connection).unwrap();
    let next = locks.acquire("evicted", &fenced()).await.unwrap();
    assert!(next.fencing_token().unwrap() > before);
    next.release().await.unwrap();
}
