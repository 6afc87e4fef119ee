//! Locks for synchronous code: plain `fn`s and `std::thread` workers.
//!
//! The async work runs on the crate's background runtime, with a client connected
//! there, and the calling thread waits on a channel. So a blocking call works with
//! no runtime at all, and inside a runtime it cannot deadlock on that runtime (it
//! only blocks the calling thread, as any blocking call does).

use crate::client::LockClient;
use crate::error::LockError;
use crate::guard::after_release;
use crate::guard::{LockGuard, LockHandle};
use crate::held;
use crate::options::LockOptions;
use crate::rt::block_on_background;

impl LockClient {
    /// [`acquire`](LockClient::acquire) for synchronous code: blocks the calling
    /// thread until the lock is held (or the wait is over). The heartbeat runs on
    /// the crate's background runtime.
    ///
    /// ```no_run
    /// # fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
    /// let guard = client.acquire_blocking("nightly-export", &lock_runtime::LockOptions::default())?;
    /// // ... work on this thread ...
    /// guard.release_blocking()?;
    /// # Ok(()) }
    /// ```
    pub fn acquire_blocking(
        &self,
        name: &str,
        options: &LockOptions,
    ) -> Result<LockGuard, LockError> {
        self.acquire_all_blocking([name], options)
    }

    /// [`acquire_all`](LockClient::acquire_all) for synchronous code.
    ///
    /// ```no_run
    /// # fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
    /// let both = client.acquire_all_blocking(["account:7", "account:3"], &lock_runtime::LockOptions::default())?;
    /// // ... move the money ...
    /// both.release_blocking()?;
    /// # Ok(()) }
    /// ```
    pub fn acquire_all_blocking<I, S>(
        &self,
        names: I,
        options: &LockOptions,
    ) -> Result<LockGuard, LockError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = self.lock_order(names)?;
        let client = self.blocking_twin()?;
        let options = options.clone();
        // What this thread holds counts there too (re-entry).
        let held = held::current();
        block_on_background(held::within(held, async move {
            client.acquire_all(&names, &options).await
        }))?
    }

    /// [`run_with`](LockClient::run_with) for synchronous code. A sync body cannot
    /// be interrupted: if the lease is lost while it runs, it runs to its end and
    /// the result is [`LockError::Lost`] instead of its output.
    ///
    /// ```no_run
    /// # use lock_runtime::{LockClient, LockError, LockOptions};
    /// # fn compact(_: &str) -> std::io::Result<()> { Ok(()) }
    /// # fn demo(client: LockClient) -> Result<(), Box<dyn std::error::Error>> {
    /// let options = LockOptions::default();
    /// std::thread::scope(|scope| {
    ///     for _ in 0..4 {
    ///         // At most one of these threads compacts at a time, across processes too.
    ///         scope.spawn(|| client.run_blocking("compaction", &options, |lock| compact(lock.name())));
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    pub fn run_blocking<T>(
        &self,
        name: &str,
        options: &LockOptions,
        body: impl FnOnce(LockHandle) -> T,
    ) -> Result<T, LockError> {
        run_held_blocking(self.acquire_blocking(name, options)?, body)
    }

    /// [`run_all_with`](LockClient::run_all_with) for synchronous code (see
    /// [`run_blocking`](Self::run_blocking)).
    pub fn run_all_blocking<I, S, T>(
        &self,
        names: I,
        options: &LockOptions,
        body: impl FnOnce(LockHandle) -> T,
    ) -> Result<T, LockError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        run_held_blocking(self.acquire_all_blocking(names, options)?, body)
    }
}

/// A sync body under `guard`, in its scope; then the release.
fn run_held_blocking<T>(
    guard: LockGuard,
    body: impl FnOnce(LockHandle) -> T,
) -> Result<T, LockError> {
    guard.check()?;
    let output = guard.scope_blocking(|| body(guard.handle()));
    guard.check()?;
    after_release(guard.release_blocking(), output)
}

impl LockGuard {
    /// [`release`](LockGuard::release) for synchronous code: blocks the calling
    /// thread until Redis answers (a response timeout at most).
    ///
    /// ```no_run
    /// # fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
    /// let guard = client.acquire_blocking("ledger", &lock_runtime::LockOptions::default())?;
    /// // ... work ...
    /// guard.release_blocking()?; // Err(Lost) if the lease ran out meanwhile
    /// # Ok(()) }
    /// ```
    pub fn release_blocking(self) -> Result<(), LockError> {
        block_on_background(self.release())?
    }
}

/// [`default_client`](crate::default_client) for synchronous code.
///
/// ```no_run
/// # fn demo() -> Result<(), lock_runtime::LockError> {
/// let client = lock_runtime::default_client_blocking()?; // REDIS_URL, or 127.0.0.1:6379
/// let guard = client.acquire_blocking("cleanup", &lock_runtime::LockOptions::default())?;
/// guard.release_blocking()
/// # }
/// ```
pub fn default_client_blocking() -> Result<LockClient, LockError> {
    block_on_background(crate::global::default_client())?
}
