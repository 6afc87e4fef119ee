//! The client handle, its builder, and the lock operations on it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::guard::{LockGuard, LockHandle};
use crate::heartbeat::keep_alive;
use crate::lease::{Lease, valid_until};
use crate::local::{Entry, Given, Handover, Lines, Terms, Turn};
use crate::notices::{Handoff, Notices, Subscription};
use crate::token::{jitter, new_token};
use crate::{LockError, LockOptions, LostReason, OnLost, Wait, scripts};

/// The longest lock name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// The key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "lock:";

/// First and largest pause between attempts of a waiter without live notices.
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_CEILING: Duration = Duration::from_secs(1);
/// With notices live, a waiter is handed the lock or woken by the notice,
/// or wakes when the holder's lease runs out (its PTTL), so polling is only a slow
/// safety net.
const POLL_CEILING_WITH_NOTICES: Duration = Duration::from_secs(5);
/// How long the attempt made at a wait's deadline may take to answer.
const LAST_ATTEMPT_GRACE: Duration = Duration::from_millis(250);
/// What `Wait::Forever` means in practice (as tokio's `Instant::far_future`).
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
/// A background release that fails (the connection lost, or Redis slow) is sent
/// again after this pause, doubling, up to [`RELEASE_ATTEMPTS`] in all (about
/// 6 s of pauses): enough to outlast a reconnect, so that a lost release does
/// not leave the lock held until its ttl.
const RELEASE_RETRY_FIRST: Duration = Duration::from_millis(100);
const RELEASE_ATTEMPTS: u32 = 7;
/// How long a fence counter outlives the last acquisition that used it. Its loss is
/// harmless (tokens have the server clock as a floor); the expiry stops one key per
/// name from living forever.
const FENCE_KEY_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

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
    config: LockClientBuilder,
    /// Made on the crate's background runtime (then it is its own blocking twin).
    on_background: bool,
    /// The same client connected on the background runtime, for blocking callers.
    blocking_twin: std::sync::Mutex<Option<LockClient>>,
    connection: ConnectionManager,
    server: String,
    prefix: String,
    notices: Arc<Notices>,
    contention: Contention,
    /// Where this client's tasks wait for a lock another of them is after.
    lines: Arc<Lines>,
    runtime: tokio::runtime::Handle,
}

/// Locks (by key) this client lately found busy or handed to a waiter: their first
/// attempt skips the plain `SET NX` and goes straight to the script, which queues.
#[derive(Debug, Default)]
struct Contention(std::sync::Mutex<std::collections::HashMap<String, Instant>>);

/// How long a lock counts as contended after it was last seen so.
const CONTENTION_MEMORY: Duration = Duration::from_secs(1);
/// Bound on the remembered locks (a few hundred KiB at most).
const CONTENTION_CAPACITY: usize = 4096;

impl Contention {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Instant>> {
        // Each mutation is one step: a poisoned map is still consistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn recent(&self, key: &str) -> bool {
        self.map()
            .get(key)
            .is_some_and(|seen| seen.elapsed() < CONTENTION_MEMORY)
    }

    fn mark(&self, key: &str) {
        let mut map = self.map();
        if map.len() >= CONTENTION_CAPACITY && !map.contains_key(key) {
            map.retain(|_, seen| seen.elapsed() < CONTENTION_MEMORY);
            if map.len() >= CONTENTION_CAPACITY {
                map.clear();
            }
        }
        map.insert(key.to_owned(), Instant::now());
    }

    fn forget(&self, key: &str) {
        self.map().remove(key);
    }
}

impl std::fmt::Debug for LockClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockClient")
            .field("server", &self.inner.server)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// Configures and connects a [`LockClient`].
///
/// ```no_run
/// # async fn demo() -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// let client = lock_runtime::LockClient::builder("redis://:secret@10.0.0.5:6379/0")
///     .prefix("billing:lock:")
///     .connect_timeout(Duration::from_secs(2))
///     .response_timeout(Duration::from_secs(1))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "call `.connect().await` to get a client"]
pub struct LockClientBuilder {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    tls_root_certificate: Option<Vec<u8>>,
}

impl std::fmt::Debug for LockClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockClientBuilder")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl LockClientBuilder {
    /// For `rediss://` URLs: trust this CA certificate (PEM) instead of the public
    /// web roots, e.g. for a server whose certificate your organisation signs.
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// Prefix of every key and channel this client uses (default `lock:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long connecting (TCP, TLS, AUTH, first PING) may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command may wait for its answer (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects, checks the server answers (and accepts the credentials), and returns
    /// the client. Fails with a clear [`LockError`] within the connect timeout.
    ///
    /// Must be called inside a tokio runtime; the client's connections live on it.
    pub async fn connect(self) -> Result<LockClient, LockError> {
        let recipe = self.clone();
        let redis = open_client(&self.url, self.tls_root_certificate.clone()).map_err(|error| {
            LockError::Config {
                subject: format!("Redis URL `{}`", redact_url(&self.url)),
                reason: url_error_hint(&error),
            }
        })?;
        let server = redis.get_connection_info().addr().to_string();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LockError::Config {
            subject: format!("client for {server}"),
            reason: "LockClient must be created inside a tokio runtime".to_owned(),
        })?;
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(LockError::Config {
                subject: format!("client for {server}"),
                reason: "connect and response timeouts must be > 0".to_owned(),
            });
        }
        let unreachable = |reason: String, source| LockError::Connection {
            server: server.clone(),
            reason,
            source,
        };
        let timed_out = || unreachable(no_answer(self.connect_timeout), None);
        let failed = |error: redis::RedisError| {
            let reason = if error.is_timeout() {
                no_answer(self.connect_timeout)
            } else {
                describe_connect_error(&error)
            };
            unreachable(reason, Some(error))
        };

        // A plain connection first: its error says exactly what is wrong (refused,
        // bad password, ...), where the reconnecting manager would only retry.
        let probe_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let probe = async {
            let mut connection = redis
                .get_multiplexed_async_connection_with_config(&probe_config)
                .await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(self.connect_timeout, probe).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(error)) => return Err(failed(error)),
            Ok(Ok(_)) => {}
        }

        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let connection = match tokio::time::timeout(
            self.connect_timeout,
            ConnectionManager::new_with_config(redis.clone(), config),
        )
        .await
        {
            Err(_) => return Err(timed_out()),
            Ok(Err(error)) => return Err(failed(error)),
            Ok(Ok(connection)) => connection,
        };
        tracing::debug!(%server, prefix = %self.prefix, "lock client connected");
        // Where this client's waiters are told of handoffs: unique per client.
        let channel = format!("{}notices:{}", self.prefix, new_token("notices")?);
        let notices = Arc::new(Notices::new(
            redis,
            channel,
            self.connect_timeout,
            runtime.clone(),
        ));
        Ok(LockClient {
            inner: Arc::new(Inner {
                config: recipe,
                on_background: crate::background::on_background_thread(),
                blocking_twin: std::sync::Mutex::new(None),
                connection,
                server,
                prefix: self.prefix,
                notices,
                contention: Contention::default(),
                lines: Arc::default(),
                runtime,
            }),
        })
    }
}

/// What a release did with a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    /// The token did not hold it (a waiter leaving, or a lease already lost).
    NotOurs,
    /// Freed it (or, before `min_hold` is over, left it to expire then).
    Ended,
    /// Handed it to the next queued waiter.
    HandedOn,
    /// Took it for the next task of this client in line (within the streak, or
    /// no other process's waiter was queued), with this fencing token when that
    /// task asked for one.
    HandedHere { fence: Option<u64> },
}

/// The outcome of one acquire attempt.
enum Attempt {
    Acquired { fence: Option<u64> },
    Busy { holder_ttl: Option<Duration> },
}

/// Exponential backoff with jitter for waiters between notices.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn step(&mut self, ceiling: Duration) -> Duration {
        let current = self.next.min(ceiling);
        self.next = (current * 2).min(ceiling);
        // Between half and all of the current step, so waiters spread out.
        let half = current / 2;
        half + Duration::from_micros(jitter(half.as_micros() as u64 + 1))
    }
}

impl LockClient {
    /// Connects with default settings (prefix `lock:`, 5 s timeouts).
    ///
    /// Accepts `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS, with
    /// this crate's `tls` feature) and `redis+unix:///path/to/socket`.
    pub async fn connect(url: &str) -> Result<LockClient, LockError> {
        LockClient::builder(url).connect().await
    }

    /// A builder for a client with a custom prefix or timeouts.
    pub fn builder(url: impl Into<String>) -> LockClientBuilder {
        LockClientBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            tls_root_certificate: None,
        }
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
        let config = self.inner.config.clone();
        let made = crate::blocking::block_on_background(config.connect())??;
        *twin = Some(made.clone());
        Ok(made)
    }

    /// The server this client talks to (`host:port` or socket path, no credentials).
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Redis key that holds the lease of lock `name`: `{prefix}{name}` with the
    /// name as a hash tag, so the lock's keys share one cluster slot.
    pub fn key_for(&self, name: &str) -> String {
        // `concat`, not `format!`: key names are built on every acquire and release,
        // and the formatting machinery was a tenth of the client's work per lock.
        [self.inner.prefix.as_str(), "{", name, "}"].concat()
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
        validate_name(name)?;
        options.validate(name)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LockError::Config {
            subject: format!("lock `{name}`"),
            reason: "acquire must run inside a tokio runtime".to_owned(),
        })?;
        let key = self.key_for(name);
        let mut token = UnsettledToken::new(self, &key, name)?;
        let started = Instant::now();
        // `None`: try once. A wait too long to represent is the same as forever.
        let deadline = match options.wait {
            Wait::TryOnce => None,
            Wait::For(wait) if wait.is_zero() => None,
            Wait::For(wait) => Some(started.checked_add(wait).unwrap_or(started + FOREVER)),
            Wait::Forever => Some(started + FOREVER),
        };
        // Of this client's tasks after this lock, one at a time asks Redis (see
        // `local`). Trying once never waits in line; FIFO mode queues every
        // waiter in Redis, in arrival order across processes.
        let mut turn: Option<Turn> = None;
        if let Some(deadline) = deadline.filter(|_| !options.fair) {
            match self.inner.lines.enter(
                &key,
                &token.token,
                millis(options.ttl),
                fence_lifetime(options),
            ) {
                Entry::Turn(mine) => turn = Some(mine),
                Entry::InLine(mut ticket) => {
                    let given = tokio::time::timeout_at(deadline, ticket.given())
                        .await
                        .map_err(|_| self.timeout_error(name, started, None))?;
                    match given {
                        Some(Given::Turn(mine, handed)) => {
                            // A release that may have taken the lock for us got no
                            // answer: our first attempt finds out.
                            if let Some(handed) = handed {
                                token = handed;
                            }
                            turn = Some(mine);
                        }
                        Some(Given::Lock(Handover {
                            token: handed,
                            fence,
                            valid_from,
                            turn: mine,
                        })) => {
                            token = handed;
                            if fresh(valid_from, options.ttl) {
                                return Ok(self.start_guard(
                                    name,
                                    token.settle(),
                                    fence,
                                    options,
                                    (valid_from, started),
                                    "lock handed over in process",
                                    &runtime,
                                    Some(mine),
                                ));
                            }
                            // Too old to count on: the first attempt confirms it.
                            turn = Some(mine);
                        }
                        None => {}
                    }
                }
            }
        }
        // A waiter must be registered for notices before the attempt that queues it
        // is sent, or a handoff answering that attempt could arrive unseen. For a
        // lock this client saw contended a moment ago, register now if the channel
        // is subscribed; otherwise the first busy attempt is followed by
        // registering, subscribing, and a second attempt.
        let mut subscription: Option<Subscription> =
            if deadline.is_some() && self.inner.contention.recent(&key) {
                self.inner.notices.register_if_subscribed(&token.token)
            } else {
                None
            };
        let mut backoff = Backoff { next: POLL_FIRST };
        // The holder's remaining lease as last reported, and when.
        let mut last_holder_ttl: Option<(Duration, Instant)> = None;
        // Attempts are numbered, so a handoff notice can say which one it answers.
        let mut attempt_number: u64 = 0;
        // The latest attempt that queued our token, and when it was sent.
        let mut queued_by: Option<(u64, Instant)>;
        loop {
            if let Some(subscription) = subscription.as_mut() {
                subscription.mark_seen();
            }
            attempt_number += 1;
            let sent_at = Instant::now();
            token.armed = true;
            let attempt = self.attempt(
                name,
                &key,
                &token.token,
                options,
                deadline.is_some(),
                attempt_number,
            );
            // An attempt may run a little past the wait's deadline, so the last
            // retry (made at the deadline) gets its answer.
            let outcome = match deadline {
                Some(deadline) => {
                    let limit = deadline.max(sent_at + LAST_ATTEMPT_GRACE);
                    match tokio::time::timeout_at(limit, attempt).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(self.timeout_error(name, started, last_holder_ttl)),
                    }
                }
                None => attempt.await,
            };
            // On an error (or if this future is dropped while the request is in
            // flight), `token` spawns a compare-and-delete: the request may have set
            // the key before its answer was lost.
            let holder_ttl = match outcome? {
                Attempt::Acquired { fence } => {
                    if Instant::now() < valid_until(sent_at, options.ttl) {
                        return Ok(self.start_guard(
                            name,
                            token.settle(),
                            fence,
                            options,
                            (sent_at, started),
                            "lock acquired",
                            &runtime,
                            turn.take(),
                        ));
                    }
                    // The answer came back after the lease's local deadline: it may
                    // already be someone else's. Give it back (the old token, still
                    // armed, is released as it is replaced: a plain compare-and-
                    // delete, no `min_hold`) and try again with a fresh token (the
                    // release in flight must not hit the new one).
                    tracing::warn!(
                        lock = name,
                        "acquire answered after the lease's validity; retrying"
                    );
                    token = UnsettledToken::new(self, &key, name)?;
                    // Waiters are woken by their token: register the new one.
                    subscription = None;
                    queued_by = None;
                    None
                }
                Attempt::Busy { holder_ttl } => {
                    self.inner.contention.mark(&key);
                    let queued = deadline.is_some();
                    queued_by = queued.then_some((attempt_number, sent_at));
                    token.busy(queued);
                    last_holder_ttl = holder_ttl.map(|ttl| (ttl, Instant::now()));
                    holder_ttl
                }
            };
            let Some(deadline) = deadline else {
                return Err(LockError::Busy {
                    name: name.to_owned(),
                    retry_after: holder_ttl,
                });
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timeout_error(name, started, last_holder_ttl));
            }
            let Some(subscription) = subscription.as_mut() else {
                // Subscribe, then retry at once: a release that happened before the
                // subscription took effect is then seen by the retry.
                tracing::debug!(lock = name, "lock busy; waiting for its release");
                let mut fresh = self.inner.notices.register(&token.token);
                let _ = tokio::time::timeout_at(deadline, fresh.activate()).await;
                subscription = Some(fresh);
                continue;
            };
            let live = subscription.is_live();
            let ceiling = if live {
                POLL_CEILING_WITH_NOTICES
            } else {
                POLL_CEILING
            }
            // Refresh our place in the queue well within its lifetime (one ttl).
            .min(options.ttl / 3);
            if live {
                // A release hands over or wakes us: polling is only the safety net
                // (and keeps our place), so it starts slow.
                backoff.next = backoff.next.max(ceiling);
            }
            let mut pause = backoff.step(ceiling);
            if let Some(holder_ttl) = holder_ttl {
                pause = pause.min(holder_ttl + Duration::from_millis(1));
            }
            // The handoff may have come while the attempt was in flight.
            let mut handed = handed_over(subscription.handoff(), queued_by, options);
            if handed == Handed::No {
                subscription.wait((now + pause).min(deadline)).await;
                handed = handed_over(subscription.handoff(), queued_by, options);
            }
            match handed {
                Handed::No => {}
                // Confirm (and restart the lease) with the next attempt, at once.
                Handed::Stale => {}
                // Fresh (half a ttl left at least), so held; a scoped `run` checks
                // again before its body starts.
                Handed::Yes { fence, valid_from } => {
                    return Ok(self.start_guard(
                        name,
                        token.settle(),
                        options.fencing.then_some(fence),
                        options,
                        (valid_from, started),
                        "lock handed over",
                        &runtime,
                        turn.take(),
                    ));
                }
            }
        }
    }

    fn timeout_error(
        &self,
        name: &str,
        started: Instant,
        holder_ttl: Option<(Duration, Instant)>,
    ) -> LockError {
        LockError::Timeout {
            name: name.to_owned(),
            waited: started.elapsed(),
            retry_after: holder_ttl.map(|(ttl, seen)| ttl.saturating_sub(seen.elapsed())),
        }
    }

    /// Runs `body` while holding the lock `name`, and releases the lock when it ends.
    ///
    /// If the lease is lost while `body` runs, the result is [`LockError::Lost`]:
    /// with [`OnLost::Cancel`] (the default) `body` is dropped at its next await,
    /// with [`OnLost::Notify`] it runs to its end first. A body that completes after
    /// its lease's validity ran out is `Lost` too. Dropping the returned future
    /// releases the lock.
    pub async fn run<F: Future>(
        &self,
        name: &str,
        options: &LockOptions,
        body: F,
    ) -> Result<F::Output, LockError> {
        self.run_with(name, options, |_| body).await
    }

    /// Like [`run`](Self::run), giving the body a [`LockHandle`] (fencing token,
    /// `is_held`, `lost()`).
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
        guard.check()?;
        let handle = guard.handle();
        let output = match options.on_lost {
            OnLost::Cancel => {
                let lost = handle.lost();
                tokio::select! {
                    biased;
                    lost = lost => return Err(lost),
                    output = body(handle) => output,
                }
            }
            OnLost::Notify => body(handle).await,
        };
        finish(guard, output).await
    }

    /// Starts the guard and heartbeat of a lease won by the request sent at
    /// `valid_from` (its validity counts from then; `min_hold` and `max_hold` from
    /// now) by an acquire that began at `started`, and logs `how` it came.
    #[expect(
        clippy::too_many_arguments,
        reason = "private; each argument is one fact about the lease"
    )]
    fn start_guard(
        &self,
        name: &str,
        (key, token): (String, String),
        fence: Option<u64>,
        options: &LockOptions,
        (valid_from, started): (Instant, Instant),
        how: &'static str,
        runtime: &tokio::runtime::Handle,
        turn: Option<Turn>,
    ) -> LockGuard {
        tracing::debug!(
            lock = name,
            fence,
            waited_ms = started.elapsed().as_millis() as u64,
            "{how}"
        );
        let lease = Arc::new(Lease::new(
            name.to_owned(),
            key,
            token,
            fence,
            options.ttl,
            (valid_from, Instant::now()),
            turn,
        ));
        let heartbeat = AbortOnDropHandle::new(runtime.spawn(keep_alive(
            self.clone(),
            Arc::clone(&lease),
            options.heartbeat_interval(),
            options.max_hold,
        )));
        LockGuard::new(
            lease,
            self.clone(),
            options.min_hold,
            runtime.clone(),
            heartbeat,
        )
    }

    async fn attempt(
        &self,
        name: &str,
        key: &str,
        token: &str,
        options: &LockOptions,
        queue: bool,
        number: u64,
    ) -> Result<Attempt, LockError> {
        let mut connection = self.inner.connection.clone();
        let redis_error = |source| LockError::Redis {
            name: name.to_owned(),
            action: "acquire",
            source,
        };
        // A lock this client has not seen contended lately is most likely free:
        // try a plain SET NX first, which is what the script would do then, at a
        // fraction of the server's cost. Busy, fall through to the script (which
        // queues us and reports the holder's ttl). Fencing and FIFO always need
        // the script.
        if number == 1 && !options.fair && !options.fencing && !self.inner.contention.recent(key) {
            let set: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis(options.ttl))
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            if set.is_some() {
                return Ok(Attempt::Acquired { fence: None });
            }
            self.inner.contention.mark(key);
        }
        let fence_lifetime = fence_lifetime(options);
        // A waiter's place in the queue is kept for one ttl without a refresh: a
        // dead waiter is handed the lock at most once, and holds up the others by
        // at most its own ttl. Zero: do not queue (try once).
        let place = if queue { millis(options.ttl) } else { 0 };
        let mut cmd = scripts::evalsha(&scripts::ACQUIRE, 4);
        lock_keys(&mut cmd, key)
            .arg(token)
            .arg(millis(options.ttl))
            .arg(fence_lifetime)
            .arg(place)
            .arg(number)
            .arg(if options.fair { "1" } else { "0" })
            .arg(self.inner.notices.channel());
        let (acquired, value): (i64, i64) = scripts::run(&scripts::ACQUIRE, &cmd, &mut connection)
            .await
            .map_err(redis_error)?;
        Ok(if acquired == 1 {
            Attempt::Acquired {
                fence: options.fencing.then_some(value as u64),
            }
        } else {
            Attempt::Busy {
                holder_ttl: u64::try_from(value).ok().map(Duration::from_millis),
            }
        })
    }

    /// Compare-and-`PEXPIRE`: `Ok(true)` if the lease was still ours and now lasts
    /// `ttl` more.
    pub(crate) async fn extend_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<bool, LockError> {
        let mut connection = self.inner.connection.clone();
        let mut cmd = scripts::evalsha(&scripts::EXTEND, 1);
        cmd.arg(&lease.key).arg(&lease.token).arg(millis(ttl));
        let extended: i64 = scripts::run(&scripts::EXTEND, &cmd, &mut connection)
            .await
            .map_err(|source| LockError::Redis {
                name: lease.name.clone(),
                action: "extend",
                source,
            })?;
        Ok(extended == 1)
    }

    /// Ends a lease: compare-and-delete plus notice, or, before `min_hold` is over,
    /// compare-and-`PEXPIRE` to the end of `min_hold`. `Ok` says whether the lock
    /// was handed on; a lease that was no longer ours is [`LockError::Lost`].
    ///
    /// With the `turn` of this client's line for the lock, the release offers the
    /// lock to the next task in line (taken for it unless another process's
    /// waiter is queued and the streak of such handoffs is long), and the turn
    /// passes on, with the lock or alone.
    ///
    /// `again`: a release of this lease was sent while it was still valid, and
    /// abandoned (its future dropped), so "not ours" is that release's own doing
    /// (or an expiry after the work under the lease was done): it is not taken
    /// for a lost lease. A lease no longer valid when the first release was sent
    /// is reported lost as usual.
    pub(crate) async fn release_lease(
        &self,
        lease: &Lease,
        min_hold: Option<Duration>,
        mut turn: Option<Turn>,
        again: bool,
    ) -> Result<Released, LockError> {
        let min_hold_left = min_hold
            .map(|min| {
                lease
                    .held_since
                    .checked_add(min)
                    .unwrap_or(lease.held_since + FOREVER)
            })
            .and_then(|until| until.checked_duration_since(Instant::now()))
            .filter(|left| millis(*left) > 0);
        let released = match min_hold_left {
            Some(left) => {
                tracing::debug!(lock = %lease.name, left_ms = millis(left), "released before min_hold; key left to expire");
                if self.extend_lease(lease, left).await? {
                    Released::Ended
                } else {
                    Released::NotOurs
                }
            }
            None => {
                let next = turn.as_mut().and_then(Turn::next_waiter).cloned();
                if let (Some(turn), Some(next)) = (turn.as_mut(), next.as_ref()) {
                    // From now until the reply, the lock may be the next task's.
                    turn.arm_next(UnsettledToken::holding(self, &lease.key, &next.token));
                }
                let held = lease.held_since.elapsed();
                let keep = turn.as_ref().is_some_and(|turn| turn.may_keep(held));
                let sent_at = Instant::now();
                // On an error (or if this future is dropped), the turn goes to the
                // next task with its armed token.
                let released = match self
                    .release_token(&lease.key, &lease.token, next.as_ref().map(|n| (n, keep)))
                    .await
                {
                    Ok(released) => released,
                    Err(source) => {
                        // It may not have reached Redis: send it again in the
                        // background (a compare-and-delete of our own token, so
                        // harmless if the first did its work).
                        self.spawn_release(lease.key.clone(), lease.token.clone());
                        return Err(LockError::Redis {
                            name: lease.name.clone(),
                            action: "release",
                            source,
                        });
                    }
                };
                if let Some(mut turn) = turn {
                    match released {
                        Released::HandedHere { fence } => turn.hand_lock(fence, sent_at),
                        _ => turn.not_taken(),
                    }
                }
                released
            }
        };
        if released != Released::NotOurs {
            tracing::debug!(lock = %lease.name, "lock released");
            Ok(released)
        } else if again {
            tracing::debug!(lock = %lease.name, "not held at a second release (the abandoned first may have released it)");
            Ok(released)
        } else {
            lease.mark_lost(LostReason::NotOwnerAtRelease);
            Err(lease.lost_error())
        }
    }

    /// Compare-and-delete `token`, handing the lock to the next queued waiter (or,
    /// when none is queued, taking it for `next`, the next task of this client in
    /// line; with `keep`, taking it for that task ahead of the queue), or take a
    /// waiting token out of the queue.
    async fn release_token(
        &self,
        key: &str,
        token: &str,
        next: Option<(&Terms, bool)>,
    ) -> redis::RedisResult<Released> {
        let mut connection = self.inner.connection.clone();
        // Notices for this client's own waiters come back in the reply: if it is
        // lost (an error, or this future dropped mid-request), wake them all, to
        // find out with a request each whether the lock is now theirs.
        let mut reply = ReplyPending {
            notices: &self.inner.notices,
            answered: false,
        };
        let mut cmd = scripts::evalsha(&scripts::RELEASE, 4);
        lock_keys(&mut cmd, key)
            .arg(token)
            .arg(self.inner.notices.channel());
        if let Some((next, keep)) = next {
            cmd.arg(&next.token)
                .arg(next.ttl_ms)
                .arg(next.fence_lifetime_ms)
                .arg(if keep { "1" } else { "0" });
        }
        let scripts::Coded(released, own_notices) =
            scripts::run(&scripts::RELEASE, &cmd, &mut connection).await?;
        reply.answered = true;
        let released = match released {
            // The reply then carries the fencing token taken for the next task.
            3 => Released::HandedHere {
                fence: own_notices
                    .first()
                    .and_then(|fence| fence.parse().ok())
                    .filter(|_| next.is_some_and(|(next, _)| next.fence_lifetime_ms > 0)),
            },
            2 => Released::HandedOn,
            1 => Released::Ended,
            _ => Released::NotOurs,
        };
        if !matches!(released, Released::HandedHere { .. }) {
            // Notices for this client's own waiters, handed back instead of
            // published.
            for notice in &own_notices {
                self.inner.notices.deliver_here(notice);
            }
        }
        match released {
            Released::HandedOn | Released::HandedHere { .. } => self.inner.contention.mark(key),
            Released::Ended => self.inner.contention.forget(key),
            Released::NotOurs => {}
        }
        Ok(released)
    }

    /// Best-effort release of a token whose acquire outcome is unknown, that may
    /// be queued or have been handed the lock, or whose release failed: sent again
    /// on errors, [`RELEASE_ATTEMPTS`] times at most, with doubling pauses. Each
    /// is a compare-and-delete of this token (or leaves the queue), so a repeat
    /// after one that did its work changes nothing.
    fn spawn_release(&self, key: String, token: String) {
        let client = self.clone();
        self.inner.runtime.spawn(async move {
            let mut pause = RELEASE_RETRY_FIRST;
            for attempt in 1..=RELEASE_ATTEMPTS {
                match client.release_token(&key, &token, None).await {
                    Ok(_) => return,
                    Err(error) if attempt < RELEASE_ATTEMPTS => {
                        tracing::debug!(%key, %error, attempt, "background release failed; trying again");
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                    Err(error) => {
                        tracing::warn!(%key, %error, "background release failed; the lock's ttl will free it");
                    }
                }
            }
        });
    }
}

/// A token whose acquire attempt may have set the key: unless settled (handed to a
/// guard, or known not to be set), dropping it spawns a compare-and-delete, so an
/// acquire cancelled or failed mid-request does not leave the lock held until its ttl.
///
/// A busy attempt of a waiter queues the token, so it stays armed until the lock
/// is ours, and dropping it (timeout, cancellation) leaves the queue, handing the
/// lock on if a release had just handed it to us.
pub(crate) struct UnsettledToken {
    client: LockClient,
    key: String,
    token: String,
    armed: bool,
}

impl UnsettledToken {
    fn new(client: &LockClient, key: &str, name: &str) -> Result<Self, LockError> {
        Ok(UnsettledToken {
            client: client.clone(),
            key: key.to_owned(),
            token: new_token(name)?,
            armed: false,
        })
    }

    /// `token`, which a release has just made the holder of `key`.
    fn holding(client: &LockClient, key: &str, token: &str) -> Self {
        UnsettledToken {
            client: client.clone(),
            key: key.to_owned(),
            token: token.to_owned(),
            armed: true,
        }
    }

    /// Known not to hold or wait for the lock: nothing to release.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }

    /// The key and token, for the guard that now owns the lease.
    fn settle(&mut self) -> (String, String) {
        self.armed = false;
        (self.key.clone(), std::mem::take(&mut self.token))
    }

    /// The attempt found the lock busy: the key is not ours (but `queued`: the
    /// token now waits in the lock's queue, and must leave it if we give up).
    fn busy(&mut self, queued: bool) {
        self.armed = queued;
    }
}

impl Drop for UnsettledToken {
    fn drop(&mut self) {
        if self.armed {
            self.client.spawn_release(
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
        }
    }
}

/// Armed while a release's reply is outstanding; dropped unanswered, wakes the
/// client's waiters (see `release_token`).
struct ReplyPending<'a> {
    notices: &'a Notices,
    answered: bool,
}

impl Drop for ReplyPending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.notices.wake_all_here();
        }
    }
}

/// What a waiter may do with the handoff notices it got.
#[derive(Debug, PartialEq, Eq)]
enum Handed {
    /// No handoff answers our latest queued attempt: a wake-up at most.
    No,
    /// Handed to us, but our latest queued attempt is too old to count the lease
    /// from: confirm it with another attempt.
    Stale,
    /// Handed to us after the attempt sent at `valid_from` was queued, so the
    /// key's ttl started after `valid_from`: the lease is ours from then.
    Yes { fence: u64, valid_from: Instant },
}

/// Whether `handoff` gives us the lock without another round trip.
///
/// Only a handoff that names our latest queued attempt counts: the release read
/// that attempt's number from our place in the queue, so the handoff happened
/// after that attempt reached Redis, hence after it was sent, and the handed
/// lease ends no sooner than `sent + ttl`. A handoff naming an older attempt is
/// stale (e.g. a notice delayed past a lease that expired before we re-queued):
/// only a wake-up. Half a ttl must be left, or we confirm instead.
fn handed_over(
    handoff: Option<Handoff>,
    queued_by: Option<(u64, Instant)>,
    options: &LockOptions,
) -> Handed {
    let (Some(handoff), Some((attempt, sent_at))) = (handoff, queued_by) else {
        return Handed::No;
    };
    if handoff.attempt != attempt {
        return Handed::No;
    }
    if fresh(sent_at, options.ttl) {
        Handed::Yes {
            fence: handoff.fence,
            valid_from: sent_at,
        }
    } else {
        Handed::Stale
    }
}

/// Whether a lease of `ttl` counted from `valid_from` has half its ttl left at
/// least: enough to hand a task without confirming it first.
fn fresh(valid_from: Instant, ttl: Duration) -> bool {
    valid_until(valid_from, ttl)
        .checked_duration_since(Instant::now())
        .is_some_and(|left| left >= ttl / 2)
}

/// After the body of `run`: the result counts only if the lease was still valid when
/// the body ended; then release.
pub(crate) async fn finish<T>(guard: LockGuard, output: T) -> Result<T, LockError> {
    if !guard.is_held() {
        return Err(guard.lease().lost_error());
    }
    after_release(guard.release().await, output)
}

/// The outcome of a body that ended while its lease was valid, given how the
/// release went.
pub(crate) fn after_release<T>(released: Result<(), LockError>, output: T) -> Result<T, LockError> {
    match released {
        Ok(()) => Ok(output),
        Err(lost @ LockError::Lost { .. }) => Err(lost),
        Err(error) => {
            // The body finished while the lease was valid; only the release failed,
            // and the ttl will free the lock.
            tracing::warn!(%error, "release failed after the protected work completed");
            Ok(output)
        }
    }
}

/// Appends the four keys of lock `key` that the acquire and release scripts take,
/// all in its hash slot: the lock, its fencing counter (`:fence`), its FIFO wait
/// queue (`:queue`) and its waiters' entries (`:waiters`). The derived names are
/// built in one buffer, as this runs on every contended acquire and release.
fn lock_keys<'a>(cmd: &'a mut redis::Cmd, key: &str) -> &'a mut redis::Cmd {
    cmd.arg(key);
    let mut derived = String::with_capacity(key.len() + ":waiters".len());
    for suffix in [":fence", ":queue", ":waiters"] {
        derived.clear();
        derived.push_str(key);
        derived.push_str(suffix);
        cmd.arg(derived.as_str());
    }
    cmd
}

/// How long the fence key lives after an acquisition on `options`, in ms (`0`: no
/// fencing token).
fn fence_lifetime(options: &LockOptions) -> u64 {
    if options.fencing {
        millis(FENCE_KEY_LIFETIME.max(options.ttl.saturating_mul(2)))
    } else {
        0
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Checks a lock name: non-empty, at most [`MAX_NAME_LEN`] bytes.
pub(crate) fn validate_name(name: &str) -> Result<(), LockError> {
    let reason = if name.is_empty() {
        "the name is empty; give each lock a non-empty name such as `invoice:42`".to_owned()
    } else if name.len() > MAX_NAME_LEN {
        format!(
            "the name is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        )
    } else {
        return Ok(());
    };
    let mut shown: String = name.chars().take(64).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    Err(LockError::InvalidName {
        name: shown,
        reason,
    })
}

fn open_client(
    url: &str,
    tls_root_certificate: Option<Vec<u8>>,
) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    // Every lock operation is one small request waiting for its answer: never let
    // Nagle's algorithm hold a request back.
    let info = url.into_connection_info()?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let info = info.set_tcp_settings(tcp);
    match tls_root_certificate {
        #[cfg(feature = "tls")]
        Some(root_cert) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            },
        ),
        _ => redis::Client::open(info),
    }
}

/// The URL with any password replaced by `***`, for error messages.
fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((credentials, host)) = rest.rsplit_once('@')
    {
        let user = credentials.split(':').next().unwrap_or_default();
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

fn url_error_hint(error: &redis::RedisError) -> String {
    let mut reason = error.to_string();
    if reason.contains("TLS") || reason.contains("tls") {
        reason.push_str(" (rediss:// needs lock-runtime's `tls` feature)");
    } else {
        reason.push_str(
            " (expected redis://[user:password@]host[:port][/db], rediss://… or redis+unix:///path)",
        );
    }
    reason
}

fn no_answer(connect_timeout: Duration) -> String {
    format!("no answer within the connect timeout ({connect_timeout:?})")
}

fn describe_connect_error(error: &redis::RedisError) -> String {
    let code = error.code().unwrap_or_default();
    if error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
    {
        "authentication failed: check the user name and password in the URL".to_owned()
    } else if error.is_connection_refusal() {
        "connection refused: is redis-server running at that address?".to_owned()
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_overlong_names_are_rejected() {
        assert!(matches!(
            validate_name(""),
            Err(LockError::InvalidName { .. })
        ));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let error = validate_name(&long)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("limit is 1024"), "{error}");
        assert!(validate_name("invoice:42").is_ok());
        assert!(validate_name("ünïcode ✓").is_ok());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn only_a_handoff_answering_the_latest_queued_attempt_counts() {
        let options = LockOptions::new(Duration::from_secs(10));
        let now = Instant::now();
        let handoff = |attempt| Some(Handoff { attempt, fence: 9 });
        assert_eq!(handed_over(None, Some((3, now)), &options), Handed::No);
        assert_eq!(handed_over(handoff(3), None, &options), Handed::No);
        // A notice for an earlier attempt: that handoff came before our latest
        // attempt was queued (and its lease may be gone), so it is only a wake-up.
        assert_eq!(
            handed_over(handoff(2), Some((3, now)), &options),
            Handed::No
        );
        assert_eq!(
            handed_over(handoff(3), Some((3, now)), &options),
            Handed::Yes {
                fence: 9,
                valid_from: now
            }
        );
        // Queued too long ago to count on half a ttl: confirm with a request.
        let Some(long_ago) = now.checked_sub(Duration::from_secs(6)) else {
            panic!("the monotonic clock starts at boot, more than 6 s ago");
        };
        assert_eq!(
            handed_over(handoff(3), Some((3, long_ago)), &options),
            Handed::Stale
        );
    }

    #[test]
    fn contention_is_remembered_forgotten_and_bounded() {
        let contention = Contention::default();
        assert!(!contention.recent("lock:{a}"));
        contention.mark("lock:{a}");
        assert!(contention.recent("lock:{a}"));
        contention.forget("lock:{a}");
        assert!(!contention.recent("lock:{a}"));
        for index in 0..CONTENTION_CAPACITY + 10 {
            contention.mark(&format!("lock:{{{index}}}"));
        }
        assert!(contention.map().len() <= CONTENTION_CAPACITY);
        assert!(contention.recent(&format!("lock:{{{}}}", CONTENTION_CAPACITY + 9)));
    }

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let mut backoff = Backoff { next: POLL_FIRST };
        let pauses: Vec<Duration> = (0..12).map(|_| backoff.step(POLL_CEILING)).collect();
        assert!(pauses[0] <= POLL_FIRST);
        assert!(pauses.iter().all(|p| *p <= POLL_CEILING));
        assert!(pauses[11] >= POLL_CEILING / 2);
    }
}
