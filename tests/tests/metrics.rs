//! The `metrics` feature: a scripted sequence of lock operations shows up as
//! the counts and histograms the docs name (its own test binary: it installs
//! the process's global recorder).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions, Wait};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tests::RedisServer;

/// Every recorded metric: (kind, name, labels sorted as `k=v`, value).
fn read(snapshotter: &Snapshotter) -> Vec<(MetricKind, String, Vec<String>, DebugValue)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            (kind, key.name().to_owned(), labels, value)
        })
        .collect()
}

/// The counter `name` with exactly `labels`, 0 if never recorded.
fn counter(
    metrics: &[(MetricKind, String, Vec<String>, DebugValue)],
    name: &str,
    labels: &[&str],
) -> u64 {
    metrics
        .iter()
        .find_map(|(kind, n, l, value)| match value {
            DebugValue::Counter(count)
                if *kind == MetricKind::Counter && n == name && l == labels =>
            {
                Some(*count)
            }
            _ => None,
        })
        .unwrap_or(0)
}

/// How many values the histogram `name` with exactly `labels` recorded.
fn samples(
    metrics: &[(MetricKind, String, Vec<String>, DebugValue)],
    name: &str,
    labels: &[&str],
) -> usize {
    metrics
        .iter()
        .find_map(|(_, n, l, value)| match value {
            DebugValue::Histogram(values) if n == name && l == labels => Some(values.len()),
            _ => None,
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn counts_match_a_scripted_sequence() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let server = RedisServer::start();
    let locks = LockClient::connect(&server.url()).await.unwrap();
    let rival = LockClient::connect(&server.url()).await.unwrap();
    let options = LockOptions::new(Duration::from_millis(900));

    // Acquisition 1, released.
    locks
        .acquire("m", &options)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    // Acquisition 2, held: the rival is busy once, times out once.
    let held = locks.acquire("m", &options).await.unwrap();
    let busy = rival
        .acquire("m", &options.clone().wait(Wait::TryOnce))
        .await;
    assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
    let timeout = rival
        .acquire(
            "m",
            &options.clone().wait(Wait::For(Duration::from_millis(100))),
        )
        .await;
    assert!(
        matches!(timeout, Err(LockError::Timeout { .. })),
        "{timeout:?}"
    );
    // Then its key is deleted: the heartbeat finds the lease lost.
    let () = redis::cmd("DEL")
        .arg(locks.key_for("m"))
        .query(&mut server.connection())
        .unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), held.lost())
        .await
        .expect("the heartbeat notices");
    assert!(matches!(lost, LockError::Lost { .. }), "{lost:?}");
    assert!(held.release().await.is_err());
    // Acquisition 3, released.
    locks
        .acquire("m", &options)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();

    let metrics = read(&snapshotter);
    assert_eq!(
        counter(&metrics, "lock_acquire_total", &["outcome=acquired"]),
        3,
        "{metrics:?}"
    );
    assert_eq!(
        counter(&metrics, "lock_acquire_total", &["outcome=busy"]),
        1
    );
    assert_eq!(
        counter(&metrics, "lock_acquire_total", &["outcome=timeout"]),
        1
    );
    assert_eq!(counter(&metrics, "lock_lost_total", &["reason=refused"]), 1);
    assert_eq!(
        samples(
            &metrics,
            "lock_acquire_duration_seconds",
            &["outcome=acquired"]
        ),
        3
    );
    assert_eq!(
        samples(&metrics, "lock_wait_duration_seconds", &["outcome=timeout"]),
        1
    );
    assert_eq!(
        samples(
            &metrics,
            "lock_wait_duration_seconds",
            &["outcome=acquired"]
        ),
        0
    );
    assert_eq!(
        samples(&metrics, "lock_hold_duration_seconds", &["end=released"]),
        2
    );
    assert_eq!(
        samples(&metrics, "lock_hold_duration_seconds", &["end=lost"]),
        1
    );
    assert_eq!(counter(&metrics, "lock_handoffs_total", &[]), 0);
    assert!(
        metrics
            .iter()
            .all(|(_, _, labels, _)| labels.iter().all(|l| !l.starts_with("lock="))),
        "no lock names unless asked: {metrics:?}"
    );

    // A handoff to a waiting client is counted; asked, the name is a label.
    let named = LockClient::builder(server.url())
        .metrics_by_lock_name(true)
        .connect()
        .await
        .unwrap();
    let guard = named.acquire("m-named", &options).await.unwrap();
    let waiter = tokio::spawn({
        let rival = rival.clone();
        let options = options.clone().wait(Wait::For(Duration::from_secs(10)));
        async move { rival.acquire("m-named", &options).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while named.inspect("m-named").await.unwrap().waiters.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the waiter never queued"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    guard.release().await.unwrap();
    waiter.await.unwrap().unwrap().release().await.unwrap();
    let metrics = read(&snapshotter);
    assert_eq!(
        counter(&metrics, "lock_handoffs_total", &["lock=m-named"]),
        1,
        "{metrics:?}"
    );
    assert_eq!(
        counter(
            &metrics,
            "lock_acquire_total",
            &["lock=m-named", "outcome=acquired"]
        ),
        1
    );
}
