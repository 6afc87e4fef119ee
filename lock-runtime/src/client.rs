//! The handle users hold: [`LockClient`], cheap to clone, and the calls on it.
//! Each call hands the work to the engine (`crate::engine`) over this client's
//! backend (`crate::backend`).

use std::future::Future;
use std::sync::Arc;

use crate::backend::{Backend, Shape};
use crate::builder::LockClientBuilder;
use crate::engine::acquire::acquire;
use crate::engine::line::Lines;
use crate::error::LockError;
use crate::guard::{LockGuard, LockHandle, run_held};
use crate::held;
use crate::options::LockOptions;
use crate::rt;

/// A handle on one Redis server for taking locks. Cheap to clone: clones share one
/// multiplexed, reconnecting command connection, and one pub/sub connection
/// (opened on a first wait) on which releases hand locks to this client's waiters.
///
/// ```no_run
/// # async fn demo() -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// use lock_runtime::{LockClient, LockOptions};
///
/// let client = LockClient::connect("redis://127.0.0.1:6379").await?;
/// let total = client
///     .run("invoice:42", &LockOptions::new(Duration::from_secs(10)), async {
///         // at most one process runs this at a time
///         42
///     })
///     .await?;
/// assert_eq!(total, 42);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// How this client was made, to make its twin for blocking use.
    recipe: LockClientBuilder,
    /// Made on the crate's background runtime (then it is its own blocking twin).
    on_background: bool,
    /// The same client connected on the background runtime, for blocking callers.
    blocking_twin: std::sync::Mutex<Option<LockClient>>,
    backend: Backend,
    /// Where this client's tasks wait for a lock another of them is after.
    lines: Arc<Lines>,
}

impl std::fmt::Debug for LockClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockClient")
            .field("server", &self.server())
            .field("prefix", &self.prefix())
            .finish_non_exhaustive()
    }
}

impl LockClientBuilder {
    /// Connects, checks the server answers (and accepts the credentials), and returns
    /// the client. Fails with a clear [`LockError`] within the connect timeout.
    ///
    /// Must be called inside a tokio runtime; the client's connections live on it.
    pub async fn connect(self) -> Result<LockClient, LockError> {
        let backend = Backend::connect(&self.settings).await?;
        Ok(LockClient {
            inner: Arc::new(Inner {
                recipe: self,
                on_background: rt::on_background_thread(),
                blocking_twin: std::sync::Mutex::new(None),
                backend,
                lines: Arc::default(),
            }),
        })
    }
}

impl LockClient {
    /// Connects with default settings (prefix `lock:`, 5 s timeouts).
    ///
    /// Accepts `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS, with
    /// this crate's `tls` feature) and `redis+unix:///path/to/socket`; a Cluster
    /// seed list `redis://h1:p1,h2:p2`; `redis-sentinel://s1,s2,s3#master`; and a
    /// quorum of independent servers `redlock://h1:p1,h2:p2,h3:p3` (see
    /// [`quorum`](Self::quorum)).
    pub async fn connect(url: &str) -> Result<LockClient, LockError> {
        LockClient::builder(url).connect().await
    }

    /// A builder for a client with a custom prefix or timeouts.
    pub fn builder(url: impl Into<String>) -> LockClientBuilder {
        LockClientBuilder::new(url.into())
    }

    /// A builder for a quorum client (Redlock) over independent servers, each
    /// given as a full URL (`redis://` or `rediss://`, its own user and
    /// password): a lease is held only while a majority of them hold it. At
    /// least 3 servers; 5 is usual. `LockClient::connect("redlock://h1:p1,h2:p2,h3:p3")`
    /// does the same for servers that share credentials. See the README's
    /// "Deployments" for what it guarantees and costs.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::quorum([
    ///     "rediss://app:pw1@redis-a.internal:6380",
    ///     "rediss://app:pw2@redis-b.internal:6380",
    ///     "rediss://app:pw3@redis-c.internal:6380",
    /// ])
    /// .connect()
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn quorum<I, S>(urls: I) -> LockClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        let shown = urls
            .iter()
            .map(|url| crate::redact_url(url))
            .collect::<Vec<_>>()
            .join(" ");
        let mut builder = LockClientBuilder::new(format!("quorum: {shown}"));
        builder.settings.quorum = Some(urls);
        builder
    }

    /// This client, or the same configuration connected on the crate's background
    /// runtime, for blocking callers (whose own runtime, if any, may be blocked).
    pub(crate) fn blocking_twin(&self) -> Result<LockClient, LockError> {
        if self.inner.on_background {
            return Ok(self.clone());
        }
        let mut twin = self
            .inner
            .blocking_twin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(twin) = twin.as_ref() {
            return Ok(twin.clone());
        }
        let recipe = self.inner.recipe.clone();
        let made = rt::block_on_background(recipe.connect())??;
        *twin = Some(made.clone());
        Ok(made)
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// The server this client talks to (`host:port` or socket path, no credentials).
    pub fn server(&self) -> &str {
        self.inner.backend.server()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.backend.prefix()
    }

    /// The Redis key that holds the lease of lock `name`: `{prefix}{name}` with the
    /// name as a hash tag, so the lock's keys share one cluster slot. (On a
    /// cluster, a name whose tag would be empty, one starting with `}`, is
    /// `{prefix}{#}{name}#` instead.)
    pub fn key_for(&self, name: &str) -> String {
        self.inner.backend.lease_key(name)
    }

    /// How many tasks of this client wait in line for lock `name`, behind the one
    /// whose turn it is (which holds the lock, or waits for it in Redis).
    ///
    /// Waiting tasks of one client (default mode) line up in process: only the
    /// first asks Redis, and each release takes the lock for the next in the
    /// same request. Another process's waiter queued in Redis gets it after at
    /// most 8 such handoffs in a row, or after any hold of 5 ms or more, and the
    /// next task then queues in Redis behind it. FIFO (`fair`) waiters all queue
    /// in Redis instead, in arrival order across processes, and are not counted
    /// here.
    ///
    /// ```no_run
    /// # async fn demo(client: lock_runtime::LockClient) {
    /// // e.g. as a gauge in your metrics
    /// let behind: usize = client.tasks_in_line("invoice:42");
    /// # let _ = behind;
    /// # }
    /// ```
    pub fn tasks_in_line(&self, name: &str) -> usize {
        self.inner.lines.waiting(&self.key_for(name))
    }

    /// Takes the lock `name` on the terms of `options`, waiting as they say.
    ///
    /// On success the returned guard keeps the lease alive in the background until it
    /// is released or dropped. While another task of this client wants the same
    /// lock, this one waits in line behind it in process (default mode; see
    /// [`tasks_in_line`](Self::tasks_in_line)). Errors: [`LockError::Busy`] (try once),
    /// [`LockError::Timeout`] (bounded wait), [`LockError::InvalidName`],
    /// [`LockError::Config`], [`LockError::Redis`].
    pub async fn acquire(&self, name: &str, options: &LockOptions) -> Result<LockGuard, LockError> {
        if let Some(reentered) = self.reentered(name, options) {
            return reentered;
        }
        let backend = &self.inner.backend;
        let acquired = acquire(backend, &self.inner.lines, name, options).await?;
        Ok(LockGuard::new(acquired, backend.clone(), options.min_hold))
    }

    /// Whether the running code holds lock `name` (see [`LockOptions::reentrant`]).
    pub(crate) fn holds_here(&self, name: &str) -> bool {
        if !held::holds_any() {
            return false;
        }
        let backend = &self.inner.backend;
        held::holding(backend.server(), &backend.lease_key(name)).is_some()
    }

    /// When the running code holds lock `name` already (see
    /// [`LockOptions::reentrant`]): a guard on that hold if the options allow
    /// re-entry, else [`LockError::Reentrant`]. `None` otherwise.
    pub(crate) fn reentered(
        &self,
        name: &str,
        options: &LockOptions,
    ) -> Option<Result<LockGuard, LockError>> {
        // Most acquires hold nothing: no key to build, nothing to look up.
        if !held::holds_any() {
            return None;
        }
        let backend = &self.inner.backend;
        let outer = held::holding(backend.server(), &backend.lease_key(name))?;
        let (held_as, wanted) = (Shape::of_token(&outer.token), Shape::of(options));
        let nested = || {
            options.validate(name)?;
            // Lost under the running code: nothing to run under, and taking
            // the lock afresh would wait on this very hold.
            outer.check_held()?;
            if held_as != wanted && !(held_as == Shape::Write && wanted == Shape::Read) {
                return Err(LockError::Config {
                    subject: format!("lock `{name}`"),
                    reason: format!(
                        "it is held here as {}, and this call wants it as {}: {}",
                        held_as.describe(),
                        wanted.describe(),
                        if held_as == Shape::Read && wanted == Shape::Write {
                            "a read hold cannot be upgraded (two readers upgrading would wait on each other); take the write lock in the outer call"
                        } else {
                            "every use of a name must agree on its kind"
                        }
                    ),
                });
            }
            // A semaphore too: a second permit taken inside the first's body
            // could wait on itself (all permits held by this very code).
            if !options.reentrant {
                return Err(LockError::Reentrant {
                    name: name.to_owned(),
                });
            }
            if options.fencing && outer.fence.is_none() {
                return Err(LockError::Config {
                    subject: format!("lock `{name}`"),
                    reason: "this re-entrant call asks for a fencing token, but the outer hold it runs under was taken without one: turn fencing on for the outer call".to_owned(),
                });
            }
            tracing::debug!(
                lock = name,
                "lock already held here; running under that hold"
            );
            Ok(LockGuard::nested(Arc::clone(&outer), backend.clone()))
        };
        Some(nested())
    }

    /// Runs `body` while holding the lock `name`, and releases the lock when it ends.
    ///
    /// If the lease is lost while `body` runs, the result is [`LockError::Lost`]:
    /// with [`OnLost::Cancel`] (the default) `body` is dropped at its next await,
    /// with [`OnLost::Notify`] it runs to its end first. A body that completes after
    /// its lease's validity ran out is `Lost` too. Dropping the returned future
    /// releases the lock.
    ///
    /// `run` is for a body that needs nothing from the lease; [`run_with`](Self::run_with)
    /// hands the body a [`LockHandle`] (fencing token, `check()`).
    ///
    /// ```no_run
    /// # use lock_runtime::{LockClient, LockError, LockOptions, Wait};
    /// # async fn send_invoices() -> usize { 0 }
    /// # async fn demo(client: LockClient) -> Result<(), LockError> {
    /// use std::time::Duration;
    /// let options = LockOptions::new(Duration::from_secs(30)).wait(Wait::TryOnce);
    /// match client.run("invoices:monthly", &options, send_invoices()).await {
    ///     Ok(sent) => println!("sent {sent} invoices"),
    ///     Err(error) if error.is_contended() => println!("another worker is on it"),
    ///     Err(error) => return Err(error),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn run<F: Future>(
        &self,
        name: &str,
        options: &LockOptions,
        body: F,
    ) -> Result<F::Output, LockError> {
        self.run_with(name, options, |_| body).await
    }

    /// Like [`run`](Self::run), giving the body a [`LockHandle`] (fencing token,
    /// `is_held`, `check()`, `lost()`).
    ///
    /// ```no_run
    /// # use lock_runtime::{LockClient, LockError, LockOptions};
    /// # async fn save(_: &str, _: Option<u64>) -> Result<(), LockError> { Ok(()) }
    /// # async fn demo(client: LockClient) -> Result<(), LockError> {
    /// let options = LockOptions::default().fencing(true);
    /// client
    ///     .run_with("profile:42", &options, |lock| async move {
    ///         // The storage rejects writes with a token older than one it has seen.
    ///         save("profile:42", lock.fencing_token()).await
    ///     })
    ///     .await??;
    /// # Ok(()) }
    /// ```
    pub async fn run_with<F, Fut>(
        &self,
        name: &str,
        options: &LockOptions,
        body: F,
    ) -> Result<Fut::Output, LockError>
    where
        F: FnOnce(LockHandle) -> Fut,
        Fut: Future,
    {
        let guard = self.acquire(name, options).await?;
        run_held(guard, options.on_lost, body).await
    }
}
