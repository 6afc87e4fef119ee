//! The crate's own small tokio runtime, on a background thread, and blocking on
//! it; and the count of releases running in the background, which
//! [`flush_releases`] waits for.
//!
//! It hosts what must outlive any one caller's runtime: the lazily made default
//! client's connections (a `#[tokio::test]` runtime ends with its test), and the
//! clients that synchronous callers use.

use std::cell::Cell;
use std::future::Future;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::time::Duration;

use crate::error::LockError;

static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

thread_local! {
    static ON_BACKGROUND: Cell<bool> = const { Cell::new(false) };
}

/// True on the background runtime's own threads (where blocking on it would deadlock).
pub(crate) fn on_background_thread() -> bool {
    ON_BACKGROUND.with(Cell::get)
}

/// A handle on the background runtime, started on first use.
pub(crate) fn handle() -> Result<tokio::runtime::Handle, LockError> {
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lock-runtime")
            .on_thread_start(|| ON_BACKGROUND.with(|flag| flag.set(true)))
            .enable_all()
            .build()
            .map_err(|error| error.to_string())
    });
    match runtime {
        Ok(runtime) => Ok(runtime.handle().clone()),
        Err(error) => Err(LockError::Config {
            subject: "the lock runtime".to_owned(),
            reason: format!("cannot start its background thread: {error}"),
        }),
    }
}

/// Runs `future` on the background runtime and waits for its output. Blocks only
/// the calling thread, so it works with no runtime at all, and inside a runtime it
/// cannot deadlock on that runtime.
pub(crate) fn block_on_background<F>(future: F) -> Result<F::Output, LockError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if on_background_thread() {
        return Err(LockError::Config {
            subject: "a blocking lock call".to_owned(),
            reason: "it ran on the lock runtime's own thread, where it would deadlock".to_owned(),
        });
    }
    let (sender, receiver) = mpsc::sync_channel(1);
    handle()?.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver.recv().map_err(|_| LockError::Config {
        subject: "a blocking lock call".to_owned(),
        reason: "the lock runtime's task ended without an answer (it panicked)".to_owned(),
    })
}

/// Releases in flight in the background, process-wide: counted so that
/// [`flush_releases`] can wait for them (a service shutting down, a `main`
/// about to return), from async code or from a plain thread.
struct InFlight {
    count: Mutex<usize>,
    /// For threads that block until the count is zero.
    zero: Condvar,
    /// For tasks that await it.
    changed: tokio::sync::Notify,
}

static IN_FLIGHT: InFlight = InFlight {
    count: Mutex::new(0),
    zero: Condvar::new(),
    changed: tokio::sync::Notify::const_new(),
};

impl InFlight {
    fn count(&self) -> MutexGuard<'_, usize> {
        self.count.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts one background release from creation until it ends or is dropped
/// (its runtime shut down): a release that can no longer run is not waited for.
struct Tracked;

impl Tracked {
    fn new() -> Tracked {
        *IN_FLIGHT.count() += 1;
        Tracked
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut count = IN_FLIGHT.count();
        *count = count.saturating_sub(1);
        if *count == 0 {
            IN_FLIGHT.zero.notify_all();
        }
        drop(count);
        IN_FLIGHT.changed.notify_waiters();
    }
}

/// Spawns the background release `future` on `runtime`, counted until it ends.
/// The receiver gets `()` when it has (or is dropped with the task).
pub(crate) fn spawn_release<F>(runtime: &tokio::runtime::Handle, future: F) -> mpsc::Receiver<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let tracked = Tracked::new();
    let (done, receiver) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        future.await;
        let _ = done.send(());
        drop(tracked);
    });
    receiver
}

/// How many background releases are in flight in this process now.
pub(crate) fn releases_in_flight() -> usize {
    *IN_FLIGHT.count()
}

/// Waits until no background release is in flight in this process, for
/// `timeout` at most; returns how many are still in flight (0: all done).
///
/// A guard dropped inside an async runtime, an acquire cancelled mid-request
/// and a release whose answer was lost each leave a release running in the
/// background. If the process exits (or the runtime it runs on shuts down)
/// first, the lock stays held until its ttl ends. Call this before exit:
///
/// ```no_run
/// # async fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// let guard = client.acquire("nightly", &lock_runtime::LockOptions::default()).await?;
/// drop(guard); // released in the background
/// let left = lock_runtime::flush_releases(Duration::from_secs(5)).await;
/// assert_eq!(left, 0, "every release reached Redis");
/// # Ok(()) }
/// ```
pub async fn flush_releases(timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let changed = IN_FLIGHT.changed.notified();
        let left = releases_in_flight();
        if left == 0 {
            return 0;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return releases_in_flight();
        }
    }
}

/// [`flush_releases`] for synchronous code (and for the end of `main` outside
/// any runtime): blocks the calling thread. Returns how many releases are still
/// in flight after `timeout` (0: all done).
///
/// ```no_run
/// # fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// let guard = client.acquire_blocking("nightly", &lock_runtime::LockOptions::default())?;
/// guard.release_blocking()?; // or drop it; then, before exit:
/// lock_runtime::flush_releases_blocking(Duration::from_secs(5));
/// # Ok(()) }
/// ```
pub fn flush_releases_blocking(timeout: Duration) -> usize {
    let deadline = std::time::Instant::now() + timeout;
    let mut count = IN_FLIGHT.count();
    while *count > 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        count = IN_FLIGHT
            .zero
            .wait_timeout(count, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    *count
}
