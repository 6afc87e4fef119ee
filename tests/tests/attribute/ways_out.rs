use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use lock_runtime::{LockClient, LockError, LostReason, redis_locked};
use tests::RedisServer;

use crate::{assert_heartbeat_stopped, freed_within};

#[derive(Debug)]
#[allow(dead_code)] // the fields are read through `Debug` in failure messages
enum AppError {
    Lock(LockError),
    Io(std::io::Error),
}

impl From<LockError> for AppError {
    fn from(error: LockError) -> Self {
        AppError::Lock(error)
    }
}

impl From<std::io::Error> for AppError {
    fn from(error: std::io::Error) -> Self {
        AppError::Io(error)
    }
}

/// Holds long enough for the 100 ms heartbeat to beat a few times.
const BODY: Duration = Duration::from_millis(250);

#[redis_locked(name = "ways:{id}", ttl = 30, heartbeat = "100ms", client = locks)]
async fn returns(locks: &LockClient, id: u32) -> Result<u32, AppError> {
    tokio::time::sleep(BODY).await;
    Ok(id * 2)
}

#[redis_locked(name = "ways:{id}", ttl = 30, heartbeat = "100ms", client = locks)]
async fn fails_with_question_mark(locks: &LockClient, id: u32) -> Result<u32, AppError> {
    tokio::time::sleep(BODY).await;
    let missing = std::fs::read("/definitely/not/here");
    missing?;
    Ok(id)
}

#[redis_locked(name = "ways:{id}", ttl = 30, heartbeat = "100ms", client = locks)]
async fn panics(locks: LockClient, id: u32) -> Result<u32, AppError> {
    tokio::time::sleep(BODY).await;
    panic!("the body of {id} panicked");
}

#[redis_locked(name = "ways:{id}", ttl = 30, heartbeat = "100ms", client = locks)]
async fn runs_forever(locks: &LockClient, id: u32) -> Result<u32, AppError> {
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    Ok(id)
}

#[redis_locked(name = "ways:{id}", ttl = 30, heartbeat = "100ms", client = locks)]
fn returns_sync(locks: &LockClient, id: u32) -> Result<u32, AppError> {
    std::thread::sleep(BODY);
    Ok(id * 2)
}

#[redis_locked(name = "ways:{id}", ttl = 30, heartbeat = "100ms", client = locks)]
fn fails_sync(locks: &LockClient, id: u32) -> Result<u32, AppError> {
    std::thread::sleep(BODY);
    std::fs::read("/definitely/not/here")?;
    Ok(id)
}

#[redis_locked(name = "ways:{id}", ttl = 30, heartbeat = "100ms", client = locks)]
fn panics_sync(locks: LockClient, id: u32) -> Result<u32, AppError> {
    std::thread::sleep(BODY);
    panic!("the body of {id} panicked");
}

async fn setup() -> (RedisServer, LockClient) {
    let server = RedisServer::start();
    let locks = LockClient::connect(&server.url()).await.unwrap();
    (server, locks)
}

/// Free promptly (well under the 30 s ttl), and no heartbeat left behind.
async fn assert_freed(server: &RedisServer, locks: &LockClient, id: u32) {
    let key = locks.key_for(&format!("ways:{id}"));
    let took = freed_within(server, &key, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(2));
    assert_heartbeat_stopped(server).await;
}

#[tokio::test]
async fn a_normal_return_gives_the_value_and_frees_the_lock() {
    let (server, locks) = setup().await;
    let before = server.script_calls();
    assert_eq!(returns(&locks, 21).await.unwrap(), 42);
    assert!(
        server.script_calls() >= before + 3,
        "acquire, extends, release"
    );
    assert_freed(&server, &locks, 21).await;
}

#[tokio::test]
async fn an_error_through_question_mark_is_returned_and_frees_the_lock() {
    let (server, locks) = setup().await;
    let error = fails_with_question_mark(&locks, 1).await.unwrap_err();
    assert!(matches!(error, AppError::Io(_)), "{error:?}");
    assert_freed(&server, &locks, 1).await;
}

#[tokio::test]
async fn a_panic_in_the_body_propagates_and_frees_the_lock() {
    let (server, locks) = setup().await;
    let outcome = tokio::spawn(panics(locks.clone(), 2)).await;
    assert!(outcome.unwrap_err().is_panic());
    assert_freed(&server, &locks, 2).await;
}

#[tokio::test]
async fn a_dropped_future_frees_the_lock() {
    let (server, locks) = setup().await;
    let outcome = tokio::time::timeout(Duration::from_millis(300), runs_forever(&locks, 3)).await;
    assert!(outcome.is_err(), "the call cannot finish in 300 ms");
    assert_freed(&server, &locks, 3).await;
}

#[tokio::test]
async fn sync_functions_return_fail_and_panic_cleanly() {
    let (server, locks) = setup().await;
    let (value, error, panicked) = {
        let locks = locks.clone();
        tokio::task::spawn_blocking(move || {
            let value = returns_sync(&locks, 4).unwrap();
            let error = fails_sync(&locks, 5).unwrap_err();
            let panicked = std::thread::spawn(move || panics_sync(locks, 6))
                .join()
                .is_err();
            (value, error, panicked)
        })
        .await
        .unwrap()
    };
    assert_eq!(value, 8);
    assert!(matches!(error, AppError::Io(_)), "{error:?}");
    assert!(panicked);
    for id in [4, 5, 6] {
        assert_freed(&server, &locks, id).await;
    }
}

/// A sync locked function called straight from async code (here on a
/// current-thread runtime, whose only thread it blocks) must not deadlock.
#[tokio::test(flavor = "current_thread")]
async fn a_sync_locked_fn_called_inside_a_runtime_does_not_deadlock() {
    let (server, locks) = setup().await;
    assert_eq!(returns_sync(&locks, 7).unwrap(), 14);
    assert_freed(&server, &locks, 7).await;
}

/// Deletes the lock's key from outside, as an expiry or a failover would.
async fn steal(url: &str, key: &str) {
    let mut connection = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap();
}

#[redis_locked(name = "lost:cancel", ttl = 30, heartbeat = "100ms", client = locks)]
async fn loses_its_lease(
    locks: &LockClient,
    url: &str,
    finished: &AtomicBool,
) -> Result<(), LockError> {
    steal(url, &locks.key_for("lost:cancel")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    finished.store(true, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn on_lost_cancel_drops_the_body_and_returns_lost() {
    let (server, locks) = setup().await;
    let finished = AtomicBool::new(false);
    let started = tokio::time::Instant::now();
    let error = loses_its_lease(&locks, &server.url(), &finished)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            error,
            LockError::Lost {
                reason: LostReason::Refused,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        !finished.load(Ordering::SeqCst),
        "the body must have been dropped"
    );
    assert_heartbeat_stopped(&server).await;
}

#[redis_locked(name = "lost:notify", ttl = 30, heartbeat = "100ms", client = locks, guard = lock, on_lost = "notify")]
async fn watches_its_lease(
    locks: &LockClient,
    url: &str,
    noticed: &AtomicBool,
) -> Result<(), LockError> {
    steal(url, &locks.key_for("lost:notify")).await;
    let lost = lock.lost().await;
    assert!(matches!(lost, LockError::Lost { .. }));
    assert!(!lock.is_held());
    noticed.store(true, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn on_lost_notify_lets_the_body_react_and_still_returns_lost() {
    let (server, locks) = setup().await;
    let noticed = AtomicBool::new(false);
    let error = watches_its_lease(&locks, &server.url(), &noticed)
        .await
        .unwrap_err();
    assert!(
        noticed.load(Ordering::SeqCst),
        "the body saw the loss and finished"
    );
    assert!(matches!(error, LockError::Lost { .. }), "{error}");
    assert_heartbeat_stopped(&server).await;
}

#[redis_locked(name = "lost:sync", ttl = 30, heartbeat = "100ms", client = locks)]
fn loses_its_lease_sync(
    locks: &LockClient,
    server: &RedisServer,
) -> Result<&'static str, LockError> {
    let _: i64 = redis::cmd("DEL")
        .arg(locks.key_for("lost:sync"))
        .query(&mut server.connection())
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    Ok("finished as if nothing happened")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_body_that_lost_its_lease_reports_lost_not_success() {
    let (server, locks) = setup().await;
    let server = Arc::new(server);
    let outcome = {
        let (locks, server) = (locks.clone(), Arc::clone(&server));
        tokio::task::spawn_blocking(move || loses_its_lease_sync(&locks, &server))
            .await
            .unwrap()
    };
    assert!(
        matches!(outcome, Err(LockError::Lost { .. })),
        "{outcome:?}"
    );
    assert_heartbeat_stopped(&server).await;
}

#[redis_locked(name = "job:{tick}", ttl = 30, wait = 0, client = locks)]
async fn job(locks: &LockClient, tick: u32, runs: &AtomicU32) {
    runs.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test]
async fn a_unit_fn_skips_a_busy_lock_without_running() {
    let (_server, locks) = setup().await;
    let runs = AtomicU32::new(0);
    let held = locks
        .acquire("job:1", &lock_runtime::LockOptions::default())
        .await
        .unwrap();
    job(&locks, 1, &runs).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "skipped while busy");
    held.release().await.unwrap();
    job(&locks, 1, &runs).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "runs once free");
}

#[redis_locked(name = "job:min", ttl = 30, heartbeat = "100ms", min_hold = "2s", client = locks)]
async fn short_job(locks: &LockClient) -> Result<(), LockError> {
    Ok(())
}

#[tokio::test]
async fn min_hold_keeps_the_lock_after_a_short_job_without_extending_it() {
    let (server, locks) = setup().await;
    short_job(&locks).await.unwrap();
    let key = locks.key_for("job:min");
    let first: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query(&mut server.connection())
        .unwrap();
    assert!(first > 1_000 && first <= 2_000, "pttl {first}");
    assert_heartbeat_stopped(&server).await;
    let later: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query(&mut server.connection())
        .unwrap();
    assert!(
        later < first,
        "the key is left to expire, not extended ({first} -> {later})"
    );
    let busy = locks
        .acquire(
            "job:min",
            &lock_runtime::LockOptions::default().wait(lock_runtime::Wait::TryOnce),
        )
        .await;
    assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
}
