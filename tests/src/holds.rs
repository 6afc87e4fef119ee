//! Checks on a held lease for failover tests: that it is extended again, and
//! that nobody else can take the lock meanwhile.

use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockGuard, LockOptions, Wait};
use tokio::time::Instant;

/// Waits until `guard`'s lease (of `ttl`) is extended again: its local
/// deadline moves past where it was when this was called, by a second at least
/// (an extend moves it by a heartbeat, ttl / 3). Panics if the lease is lost
/// or no extend comes within a ttl.
pub async fn extended_again(guard: &LockGuard, ttl: Duration) {
    let valid_until = |guard: &LockGuard| guard.time_left().map(|left| Instant::now() + left);
    let before = valid_until(guard).expect("held");
    let deadline = Instant::now() + ttl;
    loop {
        if valid_until(guard).is_some_and(|until| until > before + Duration::from_secs(1)) {
            return;
        }
        assert!(guard.is_held(), "the lease was lost: {:?}", guard.check());
        assert!(Instant::now() < deadline, "no extend after the failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `other`, trying once, finds lock `name` busy. Trying once, a client may meet
/// its own dead connection first (the next request goes to the new primary):
/// it tries again for up to 10 s, and must never get in.
pub async fn busy_for_others(other: &LockClient, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tried = other
            .acquire(
                name,
                &LockOptions::new(Duration::from_secs(5)).wait(Wait::TryOnce),
            )
            .await;
        match tried {
            Err(LockError::Busy { .. }) => return,
            Err(LockError::Redis { .. } | LockError::Connection { .. })
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("a second holder got in, or no answer: {other:?}"),
        }
    }
}

/// `client` takes lock `name` again (without asking for replicas: a promoted
/// replica may have none left) and gets a fencing token above `previous`,
/// then releases it.
pub async fn fence_rises_after(
    client: &LockClient,
    name: &str,
    options: &LockOptions,
    previous: Option<u64>,
) {
    let previous = previous.expect("fenced locks in failover tests");
    let mut alone = options.clone();
    alone.replicas = None;
    let again = client
        .acquire(name, &alone)
        .await
        .expect("acquire after the failover");
    let fence = again.fencing_token().expect("a fenced lock");
    assert!(
        fence > previous,
        "fencing tokens rise across the failover: {fence} after {previous}"
    );
    again.release().await.expect("release after the failover");
}
