//! Faults at random points: tasks of several clients take one lock with random
//! waits, give up on their acquires and releases part way (the future is
//! dropped), drop guards instead of releasing them, and try once. Whatever the
//! mix, no two tasks ever hold the lock at once, fencing tokens rise from holder
//! to holder, no task waits forever, and afterwards nothing is left behind: no
//! task is still in line, the lock and its queue are gone from Redis, and a
//! newcomer takes the lock at its first try. Meanwhile the server stalls now and
//! then (`SIGSTOP` for up to 25 ms), so requests are in flight when futures are
//! dropped.
//!
//! The choices come from a seeded generator (`CHAOS_SEED` overrides the seed; a
//! failure names it), the timings from the machine, so each run explores other
//! interleavings of the same choices.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions, Wait};
use tests::RedisServer;

use crate::{client, try_once, ttl, until_within};

const CLIENTS: usize = 4;
const TASKS_PER_CLIENT: usize = 6;
const ROUNDS: usize = 100;

/// A small xorshift generator: reproducible choices without a dependency.
struct Choices(u64);

impl Choices {
    fn new(seed: u64) -> Self {
        // Never zero, and seeds 1, 2, 3… far apart.
        Choices(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }

    fn micros(&mut self, below: u64) -> Duration {
        Duration::from_micros(self.below(below))
    }
}

/// What the tasks see together.
#[derive(Default)]
struct Watch {
    /// Tasks holding the lock right now: never more than one.
    holders: AtomicUsize,
    /// The fencing token of the latest holder.
    last_fence: AtomicU64,
    /// Acquisitions that got the lock.
    held: AtomicUsize,
}

/// One round of one task: acquire (maybe giving up part way), hold briefly,
/// then release, release part way, or drop the guard.
async fn round(
    locks: &LockClient,
    name: &str,
    base: &LockOptions,
    pick: &mut Choices,
    watch: &Watch,
) {
    let wait = match pick.below(4) {
        0 => Wait::TryOnce,
        1 => Wait::For(pick.micros(3_000)),
        _ => Wait::For(Duration::from_millis(5 + pick.below(40))),
    };
    let options = base.clone().wait(wait);
    let acquired = if pick.below(4) == 0 {
        // Dropped at a random point: before the first request, with a request in
        // flight, in line, queued in Redis, or as the lock is handed over.
        match tokio::time::timeout(pick.micros(3_000), locks.acquire(name, &options)).await {
            Ok(acquired) => acquired,
            Err(_) => return,
        }
    } else {
        locks.acquire(name, &options).await
    };
    let guard = match acquired {
        Ok(guard) => guard,
        Err(LockError::Busy { .. } | LockError::Timeout { .. }) => return,
        Err(error) => panic!("acquire failed: {error}"),
    };
    assert_eq!(
        watch.holders.fetch_add(1, Ordering::SeqCst),
        0,
        "two holders of {name} at once"
    );
    let fence = guard.fencing_token().expect("fencing is on");
    let before = watch.last_fence.swap(fence, Ordering::SeqCst);
    assert!(fence > before, "fencing token {fence} after {before}");
    watch.held.fetch_add(1, Ordering::Relaxed);
    if pick.below(2) == 0 {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(pick.micros(500)).await;
    }
    // No longer counted as a holder before the release is sent: from then on the
    // lock may be someone else's.
    watch.holders.fetch_sub(1, Ordering::SeqCst);
    match pick.below(4) {
        // The guard releases in the background.
        0 => drop(guard),
        // The release is dropped part way (maybe after it reached Redis).
        1 => {
            let _ = tokio::time::timeout(pick.micros(300), guard.release()).await;
        }
        _ => guard.release().await.expect("release"),
    }
}

/// A thread that freezes the server (`SIGSTOP`) for 1–25 ms every 20–60 ms.
struct Stalls {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Stalls {
    fn start(server: Arc<RedisServer>, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut pick = Choices::new(seed ^ 0x5EED);
            let mut stalls = 0;
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20 + pick.below(40)));
                server.pause();
                std::thread::sleep(Duration::from_millis(1 + pick.below(25)));
                server.resume();
                stalls += 1;
            }
            stalls
        });
        Stalls {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops stalling (the server is running again on return); the stall count.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |thread| thread.join().expect("stall thread"))
    }
}

impl Drop for Stalls {
    /// Also when a failing test unwinds: the server is left running, not frozen.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn chaos(fair: bool) {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(20_261_127);
    let server = Arc::new(RedisServer::start());
    let name = if fair { "chaos-fair" } else { "chaos" };
    let base = ttl(5_000).fencing(true).fair(fair);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client(&server.url()).await);
    }
    let watch = Arc::new(Watch::default());
    let stalls = Stalls::start(Arc::clone(&server), seed);
    let mut tasks = Vec::new();
    for index in 0..CLIENTS * TASKS_PER_CLIENT {
        let (locks, base, watch) = (
            clients[index % CLIENTS].clone(),
            base.clone(),
            Arc::clone(&watch),
        );
        let mut pick = Choices::new(seed + index as u64);
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                round(&locks, name, &base, &mut pick, &watch).await;
            }
        }));
    }
    // Every wait is bounded, so the rounds end: a task stuck for good (a turn
    // never passed on, a handoff never noticed) shows as a timeout here.
    let all = async {
        for task in tasks {
            task.await
                .unwrap_or_else(|error| panic!("{error} (seed {seed}, fair: {fair})"));
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .unwrap_or_else(|_| panic!("tasks still running after 60 s (seed {seed}, fair: {fair})"));
    let stalled = stalls.stop();
    assert!(stalled > 0, "the server never stalled");
    // About a fifth of the rounds get the lock; a lock left held by a task that
    // gave up would stall the others until its ttl ran out.
    let held = watch.held.load(Ordering::Relaxed);
    let rounds = CLIENTS * TASKS_PER_CLIENT * ROUNDS;
    assert!(
        held >= rounds / 40,
        "only {held} of {rounds} rounds got the lock (seed {seed}, fair: {fair})"
    );

    // Nothing left behind. Releases from dropped guards and given-up acquires run
    // in the background, so they get a moment, well under the ttl: a lock or
    // queue entry leaked until it expires fails here.
    for locks in &clients {
        until_within(Duration::from_secs(2), "no task in line", || {
            locks.tasks_in_line(name) == 0
        })
        .await;
    }
    let key = clients[0].key_for(name);
    for suffix in ["", ":queue", ":waiters"] {
        let left = format!("{key}{suffix}");
        let what = format!("{left} gone (seed {seed}, fair: {fair})");
        until_within(Duration::from_secs(2), &what, || {
            redis::cmd("EXISTS")
                .arg(&left)
                .query::<i64>(&mut server.connection())
                .unwrap()
                == 0
        })
        .await;
    }
    let newcomer = client(&server.url()).await;
    let guard = newcomer
        .acquire(name, &try_once(5_000).fencing(true).fair(fair))
        .await
        .unwrap_or_else(|error| panic!("newcomer: {error} (seed {seed}, fair: {fair})"));
    assert!(guard.fencing_token() > Some(watch.last_fence.load(Ordering::SeqCst)));
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_faults_never_make_two_holders_or_leave_anything_behind() {
    chaos(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_faults_in_fifo_mode_never_make_two_holders_or_leave_anything_behind() {
    chaos(true).await;
}
