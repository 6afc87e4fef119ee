//! Taking a lock: the in-process line, attempts, waiting for notices, and the
//! handoffs that end a wait without another request.
//!
//! An acquire is a [`Waiter`] stepping through: wait in this client's line for
//! the turn (or be handed the lock there); then attempt, and while the lock is
//! busy, wait for a notice or the next poll, until it is held, handed over, or
//! the wait is over. Every piece of its state is a field, named for what it is.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::handoff::{Handed, handed_over};
use super::heartbeat::keep_alive;
use super::lease::Lease;
use super::line::{Entry, Given, Handover, Lines, Turn};
use super::pending::UnsettledToken;
use crate::backend::{Attempt, AttemptRequest, Backend, Shape, Subscription};
use crate::backoff::Backoff;
use crate::error::LockError;
use crate::keys::validate_name;
use crate::observe;
use crate::options::{LockOptions, Wait};
use crate::validity::{FOREVER, after, fresh, millis, valid_until};

/// First and largest pause between attempts of a waiter without live notices.
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_CEILING: Duration = Duration::from_secs(1);
/// With notices live, a waiter is handed the lock or woken by the notice,
/// or wakes when the holder's lease runs out (its PTTL), so polling is only a slow
/// safety net.
const POLL_CEILING_WITH_NOTICES: Duration = Duration::from_secs(5);
/// How long the attempt made at a wait's deadline may take to answer.
const LAST_ATTEMPT_GRACE: Duration = Duration::from_millis(250);
/// First and largest pause before trying again after an attempt got no answer
/// (the connection dropped, or Redis restarts): long enough not to hammer a
/// server coming back, short enough to notice it is back within a second.
const RECONNECT_FIRST: Duration = Duration::from_millis(20);
const RECONNECT_CEILING: Duration = Duration::from_secs(1);

/// A lease just won, with its heartbeat running on the caller's runtime
/// (`None`: the heartbeat of the set it was taken with keeps it, owned by
/// the set's first lease).
pub(crate) struct Acquired {
    pub(crate) lease: Arc<Lease>,
    pub(crate) heartbeat: Option<AbortOnDropHandle<()>>,
}

/// Takes the lock `name` on the terms of `options`, waiting as they say: in
/// `lines` behind this client's other tasks after the same lock (default mode),
/// then in the lock's queue in Redis.
pub(crate) async fn acquire(
    backend: &Backend,
    lines: &Arc<Lines>,
    name: &str,
    options: &LockOptions,
) -> Result<Acquired, LockError> {
    validate_name(name)?;
    options.validate(name)?;
    backend.check_options(name, options)?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| LockError::Config {
        subject: format!("lock `{name}`"),
        reason: "acquire must run inside a tokio runtime".to_owned(),
    })?;
    let key = backend.lease_key(name);
    let shape = Shape::of(options);
    let token = UnsettledToken::new(backend, &key, name, shape, options.fencing)?;
    let started = Instant::now();
    // `None`: try once. A wait too long to represent is the same as forever.
    let deadline = match options.wait {
        Wait::TryOnce => None,
        Wait::For(wait) if wait.is_zero() => None,
        Wait::For(wait) => Some(after(started, wait)),
        Wait::Forever => Some(started + FOREVER),
    };
    let mut waiter = Waiter {
        backend,
        name,
        options,
        runtime,
        key,
        shape,
        token,
        started,
        arrived_us: 0,
        deadline,
        turn: None,
        subscription: None,
        backoff: Backoff::new(POLL_FIRST),
        reconnect: Backoff::new(RECONNECT_FIRST),
        unanswered: None,
        last_holder_ttl: None,
        attempts: 0,
        waited: false,
        caller: tracing::Span::current(),
        queued_by: None,
    };
    let span = observe::acquire_span(name, &options.wait);
    let result = async {
        // Of this client's tasks after this lock, one at a time asks Redis
        // (see `line`). Trying once never waits in line; FIFO mode queues
        // every waiter in Redis, in arrival order across processes; nor do
        // the waiters of a lock with many holders (they may hold together).
        if !options.fair
            && !shape.is_shared()
            && let Some(acquired) = waiter.wait_in_line(lines).await?
        {
            return Ok(acquired);
        }
        waiter.attempt_until_held().await
    }
    .instrument(span.clone())
    .await;
    observe::acquired(
        &span,
        name,
        backend.metrics_by_name(),
        &result,
        waiter.attempts,
        waiter.waited,
        started.elapsed(),
    );
    result
}

/// What one attempt came to.
enum Tried {
    Held(Acquired),
    /// Busy, with the holder's remaining lease if it has one (or won too late to
    /// count on, with a fresh token for the next attempt).
    Busy(Option<Duration>),
    /// No answer, for a reason the connection may recover from (in
    /// [`Waiter::unanswered`]).
    Unanswered,
}

/// Whether an attempt that failed with `error` may succeed if sent again once
/// the connection is back: a dropped or refused connection, a timeout, a server
/// loading its data or failing over. Not: a script error, a denied command, a
/// wrong password.
fn may_recover(error: &redis::RedisError) -> bool {
    error.kind() != redis::ErrorKind::AuthenticationFailed
        && !matches!(error.retry_method(), redis::RetryMethod::NoRetry)
}

/// One acquire in progress.
struct Waiter<'a> {
    backend: &'a Backend,
    name: &'a str,
    options: &'a LockOptions,
    runtime: tokio::runtime::Handle,
    key: String,
    /// One holder, or many (then the token says so, for every later request).
    shape: Shape,
    /// The token the next attempt sends; armed while it may hold or wait for
    /// the lock.
    token: UnsettledToken,
    started: Instant,
    /// When the first attempt was sent, µs since the epoch by this client's
    /// clock: its place among a quorum's waiters (`0` before).
    arrived_us: u64,
    /// `None`: try once.
    deadline: Option<Instant>,
    /// This task's turn in the client's line for the lock, once it has it.
    turn: Option<Turn>,
    /// Registered for notices naming the token (made after a first busy attempt,
    /// or at once for a lock lately contended while the channel is subscribed).
    subscription: Option<Subscription>,
    backoff: Backoff,
    /// Pauses between attempts while they get no answer.
    reconnect: Backoff,
    /// Why the latest attempt got no answer (a dropped connection, a restart, a
    /// timeout), until an attempt is answered again. A waiter rides such errors
    /// out until its deadline, as it waits for a busy lock.
    unanswered: Option<redis::RedisError>,
    /// The holder's remaining lease as last reported, and when.
    last_holder_ttl: Option<(Duration, Instant)>,
    /// Attempts so far: they are numbered, so a handoff notice can say which one
    /// it answers.
    attempts: u64,
    /// Found the lock taken (busy, or another task of this client ahead).
    waited: bool,
    /// The span the acquire was called in: its lease's span goes under it.
    caller: tracing::Span,
    /// The latest attempt that queued our token, and when it was sent.
    queued_by: Option<(u64, Instant)>,
}

impl Waiter<'_> {
    /// Waits in this client's line for the lock until it is this task's turn.
    /// `Some` when the task ahead handed it the lock, fresh enough to hold.
    async fn wait_in_line(&mut self, lines: &Arc<Lines>) -> Result<Option<Acquired>, LockError> {
        let Some(deadline) = self.deadline else {
            return Ok(None);
        };
        let entry = lines.enter(
            &self.key,
            self.token.token(),
            millis(self.options.ttl),
            self.options.fence_lifetime_ms(),
        );
        let mut ticket = match entry {
            Entry::Turn(mine) => {
                self.turn = Some(mine);
                return Ok(None);
            }
            Entry::InLine(ticket) => ticket,
        };
        self.waited = true;
        let Ok(given) = tokio::time::timeout_at(deadline, ticket.given()).await else {
            // Timed out behind another task of this client: say when the lock
            // may be free (the holder's remaining lease, one `PTTL`, briefly).
            let remaining = self.backend.remaining_lease(&self.key);
            if let Ok(Ok(Some(left))) = tokio::time::timeout(LAST_ATTEMPT_GRACE, remaining).await {
                self.last_holder_ttl = Some((left, Instant::now()));
            }
            return Err(self.timeout_error());
        };
        match given {
            Some(Given::Turn(mine, handed)) => {
                // A release that may have taken the lock for us got no answer:
                // our first attempt finds out.
                if let Some(handed) = handed {
                    self.token = handed;
                }
                self.turn = Some(mine);
            }
            Some(Given::Lock(Handover {
                token,
                fence,
                valid_from,
                turn,
            })) => {
                self.token = token;
                self.turn = Some(turn);
                // With replicas asked for, the first attempt confirms it (a
                // write of this task's own, which `WAIT` then covers).
                if fresh(valid_from, self.options.ttl) && self.options.replicas.is_none() {
                    return Ok(Some(self.hold(
                        fence,
                        valid_from,
                        "lock handed over in process",
                    )));
                }
                // Too old to count on: the first attempt confirms it.
            }
            None => {}
        }
        Ok(None)
    }

    /// Attempts, and waits between attempts, until the lock is held or the wait
    /// is over.
    async fn attempt_until_held(&mut self) -> Result<Acquired, LockError> {
        // A waiter must be registered for notices before the attempt that queues
        // it is sent, or a handoff answering that attempt could arrive unseen.
        // For a lock this client saw contended a moment ago, register now if the
        // channel is subscribed; otherwise the first busy attempt is followed by
        // registering, subscribing, and a second attempt.
        if self.deadline.is_some() && self.backend.recently_contended(&self.key) {
            self.subscription = self
                .backend
                .notices()
                .register_if_subscribed(self.token.token());
        }
        loop {
            let holder_ttl = match self.attempt().await? {
                Tried::Held(held) => return Ok(held),
                Tried::Busy(holder_ttl) => {
                    self.waited = true;
                    holder_ttl
                }
                Tried::Unanswered => None,
            };
            // Only a waiter rides out an unanswered attempt: trying once, it is
            // an error of its own.
            let Some(deadline) = self.deadline else {
                return Err(LockError::Busy {
                    name: self.name.to_owned(),
                    retry_after: holder_ttl,
                });
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(self.wait_over());
            }
            let pause = if self.unanswered.is_some() {
                // Redis did not answer: try again once the connection may be
                // back (a handoff notice may still come meanwhile).
                self.reconnect.step(RECONNECT_CEILING)
            } else if self.subscription.is_none() {
                // Subscribe, then retry at once: a release that happened before
                // the subscription took effect is then seen by the retry.
                tracing::debug!(lock = self.name, "lock busy; waiting for its release");
                let mut fresh = self.backend.notices().register(self.token.token());
                let _ = tokio::time::timeout_at(deadline, fresh.activate()).await;
                self.subscription = Some(fresh);
                continue;
            } else {
                self.poll_pause(holder_ttl)
            };
            if let Some(held) = self.wait_for_release((now + pause).min(deadline)).await {
                return Ok(held);
            }
        }
    }

    /// Sends one attempt. Errors end the acquire, but for a waiter one that the
    /// connection may recover from, which is [`Tried::Unanswered`].
    async fn attempt(&mut self) -> Result<Tried, LockError> {
        if let Some(subscription) = self.subscription.as_mut() {
            subscription.mark_seen();
        }
        self.attempts += 1;
        // A handoff counts only if it answers the latest attempt, once that
        // attempt was answered busy: a quorum attempt that goes unanswered
        // may have given back on its way out what a release had handed to an
        // earlier one.
        self.queued_by = None;
        let sent_at = Instant::now();
        if self.arrived_us == 0 {
            self.arrived_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |since| since.as_micros() as u64);
        }
        self.token.arm();
        let request = AttemptRequest {
            key: &self.key,
            token: self.token.token(),
            ttl: self.options.ttl,
            fence_lifetime_ms: self.options.fence_lifetime_ms(),
            queue: self.deadline.is_some(),
            number: self.attempts,
            fair: self.options.fair,
            arrived_us: self.arrived_us,
        };
        let attempt = self.backend.try_acquire(&request);
        // An attempt may run a little past the wait's deadline, so the last
        // retry (made at the deadline) gets its answer.
        let outcome = match self.deadline {
            Some(deadline) => {
                let limit = deadline.max(sent_at + LAST_ATTEMPT_GRACE);
                match tokio::time::timeout_at(limit, attempt).await {
                    Ok(outcome) => outcome,
                    Err(_) => return Err(self.wait_over()),
                }
            }
            None => attempt.await,
        };
        // The token stays armed: the request may have set the key (or queued
        // the token) before its answer was lost. The next attempt, with the
        // same token, finds out (the script reports a key that already holds
        // the token as taken); if none comes (an error that ends the acquire,
        // or this future dropped while the request is in flight), the token
        // spawns a compare-and-delete.
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) if matches!(error.code(), Some("LOCKSHAPE" | "WRONGTYPE")) => {
                // Refused before any write: after a first attempt the token is
                // nowhere (no release to send, which on a key of the other type
                // would fail too); after later ones it may be queued.
                if self.attempts == 1 {
                    self.token.busy(false);
                }
                return Err(self.shape_error(&error));
            }
            Err(error) if self.deadline.is_some() && may_recover(&error) => {
                if self.unanswered.is_none() {
                    tracing::warn!(
                        lock = self.name,
                        %error,
                        "no answer from Redis while waiting; trying again until the wait is over"
                    );
                }
                self.unanswered = Some(error);
                return Ok(Tried::Unanswered);
            }
            Err(error) => return Err(self.redis_error(error)),
        };
        if self.unanswered.take().is_some() {
            tracing::info!(lock = self.name, "Redis answers again");
            self.reconnect = Backoff::new(RECONNECT_FIRST);
        }
        match outcome {
            Attempt::Acquired { fence } => {
                self.replicated(sent_at).await?;
                if Instant::now() < valid_until(sent_at, self.options.ttl) {
                    return Ok(Tried::Held(self.hold(fence, sent_at, "lock acquired")));
                }
                // The answer came back after the lease's local deadline: it may
                // already be someone else's. Give it back (the old token, still
                // armed, is released as it is replaced: a plain compare-and-
                // delete, no `min_hold`) and try again with a fresh token (the
                // release in flight must not hit the new one).
                tracing::warn!(
                    lock = self.name,
                    "acquire answered after the lease's validity; retrying"
                );
                self.token = UnsettledToken::new(
                    self.backend,
                    &self.key,
                    self.name,
                    self.shape,
                    self.options.fencing,
                )?;
                // Waiters are woken by their token: register the new one.
                self.subscription = None;
                self.queued_by = None;
                Ok(Tried::Busy(None))
            }
            Attempt::Busy { holder_ttl } => {
                self.backend.mark_contended(&self.key);
                let queued = self.deadline.is_some();
                self.queued_by = queued.then_some((self.attempts, sent_at));
                self.token.busy(queued);
                self.last_holder_ttl = holder_ttl.map(|ttl| (ttl, Instant::now()));
                Ok(Tried::Busy(holder_ttl))
            }
        }
    }

    /// With [`LockOptions::replicas`]: waits until enough replicas have the lease
    /// won by the attempt sent at `sent_at` (the token, armed, gives it back if
    /// not). A waiter asks again (a replica may be syncing, say just after a
    /// failover) until its wait is over or half the lease is gone.
    async fn replicated(&mut self, sent_at: Instant) -> Result<(), LockError> {
        let Some(replicas) = self.options.replicas else {
            return Ok(());
        };
        let half_gone = sent_at + self.options.ttl / 2;
        let until = self
            .deadline
            .map_or(sent_at, |deadline| deadline.min(half_gone));
        loop {
            let acknowledged = self
                .backend
                .replicas_acknowledging(&self.key, replicas.count, replicas.timeout)
                .await
                .map_err(|source| self.redis_error(source))?;
            if acknowledged >= replicas.count {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(LockError::Unreplicated {
                    name: self.name.to_owned(),
                    acknowledged,
                    wanted: replicas.count,
                });
            }
            tracing::debug!(
                lock = self.name,
                acknowledged,
                wanted = replicas.count,
                "too few replicas acknowledged the lease yet; asking again"
            );
        }
    }

    /// The pause before the next attempt at a busy lock: the next poll, or when
    /// the holder's lease runs out if that is sooner.
    fn poll_pause(&mut self, holder_ttl: Option<Duration>) -> Duration {
        let live = self
            .subscription
            .as_ref()
            .is_some_and(Subscription::is_live);
        let ceiling = if live {
            POLL_CEILING_WITH_NOTICES
        } else {
            POLL_CEILING
        }
        // Refresh our place in the queue well within its lifetime (one ttl).
        .min(self.options.ttl / 3);
        if live {
            // A release hands over or wakes us: polling is only the safety net
            // (and keeps our place), so it starts slow.
            self.backoff.at_least(ceiling);
        }
        let pause = self.backoff.step(ceiling);
        match holder_ttl {
            Some(holder_ttl) => pause.min(holder_ttl + Duration::from_millis(1)),
            None => pause,
        }
    }

    /// Between attempts: waits for a notice or until `until`. `Some` when a
    /// handoff made the lock ours meanwhile.
    async fn wait_for_release(&mut self, until: Instant) -> Option<Acquired> {
        let Some(subscription) = self.subscription.as_mut() else {
            tokio::time::sleep_until(until).await;
            return None;
        };
        let ttl = self.options.ttl;
        // The handoff may have come while the attempt was in flight.
        let mut handed = handed_over(subscription.handoff(), self.queued_by, ttl);
        if handed == Handed::No {
            subscription.wait(until).await;
            handed = handed_over(subscription.handoff(), self.queued_by, ttl);
        }
        if self.options.replicas.is_some() && handed != Handed::No {
            // The releaser wrote the handoff, so our `WAIT` would not cover it:
            // confirm it with a request of our own (the next attempt, at once).
            handed = Handed::Stale;
        }
        match handed {
            // Not handed over, or too old to count on: the next attempt (at once
            // for a stale handoff) confirms it and restarts the lease.
            Handed::No | Handed::Stale => None,
            // Fresh (half a ttl left at least), so held; a scoped `run` checks
            // again before its body starts.
            Handed::Yes { fence, valid_from } => Some(self.hold(
                self.options.fencing.then_some(fence),
                valid_from,
                "lock handed over",
            )),
        }
    }

    /// The error that ends a wait that is over: Redis unreachable if the latest
    /// attempt got no answer, else a timeout.
    fn wait_over(&mut self) -> LockError {
        match self.unanswered.take() {
            Some(error) => LockError::Connection {
                server: self.backend.server().to_owned(),
                reason: format!(
                    "no answer for lock `{}` until its wait ended after {} ms (last error: {error})",
                    self.name,
                    self.started.elapsed().as_millis()
                ),
                source: Some(error),
            },
            None => self.timeout_error(),
        }
    }

    fn redis_error(&self, source: redis::RedisError) -> LockError {
        LockError::Redis {
            name: self.name.to_owned(),
            action: "acquire",
            source,
        }
    }

    /// The lock is held as another shape than this acquire asks for (a
    /// script's `LOCKSHAPE held as …`, or Redis's `WRONGTYPE` where an
    /// exclusive lock's key is a set of holders or the other way round).
    fn shape_error(&self, error: &redis::RedisError) -> LockError {
        let held = match (error.code(), error.detail()) {
            (Some("LOCKSHAPE"), Some(detail)) => {
                detail.strip_prefix("held as ").unwrap_or(detail).to_owned()
            }
            _ if self.shape.is_shared() => "an exclusive lock".to_owned(),
            _ => "a semaphore or a read/write lock".to_owned(),
        };
        LockError::Config {
            subject: format!("lock `{}`", self.name),
            reason: format!(
                "it is held as {held}, and this acquire asks for {}: every user of one name must ask for the same shape (the same `permits`, or `mode` read/write, or neither)",
                self.shape.describe()
            ),
        }
    }

    fn timeout_error(&self) -> LockError {
        LockError::Timeout {
            name: self.name.to_owned(),
            waited: self.started.elapsed(),
            retry_after: self
                .last_holder_ttl
                .map(|(ttl, seen)| ttl.saturating_sub(seen.elapsed())),
        }
    }

    /// Starts the lease won by the request sent at `valid_from` (its validity
    /// counts from then; `min_hold` and `max_hold` from now) and its heartbeat,
    /// and logs `how` it came.
    fn hold(&mut self, fence: Option<u64>, valid_from: Instant, how: &'static str) -> Acquired {
        tracing::debug!(
            lock = self.name,
            fence,
            waited_ms = self.started.elapsed().as_millis() as u64,
            "{how}"
        );
        let (key, token) = self.token.settle();
        let lease = Lease::new(
            self.name.to_owned(),
            key,
            token,
            fence,
            self.options.ttl,
            (valid_from, Instant::now()),
            self.turn.take(),
        )
        .observed(&self.caller, self.backend.metrics_by_name());
        start(self.backend, &self.runtime, lease, self.options)
    }
}

/// A lease just won, held from here: its heartbeat starts on `runtime`.
fn start(
    backend: &Backend,
    runtime: &tokio::runtime::Handle,
    lease: Lease,
    options: &LockOptions,
) -> Acquired {
    let lease = Arc::new(lease);
    let heartbeat = Some(beat(backend, runtime, vec![Arc::clone(&lease)], options));
    Acquired { lease, heartbeat }
}

/// Starts one heartbeat for `leases` on `runtime`.
fn beat(
    backend: &Backend,
    runtime: &tokio::runtime::Handle,
    leases: Vec<Arc<Lease>>,
    options: &LockOptions,
) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(runtime.spawn(keep_alive(
        backend.clone(),
        leases,
        options.heartbeat_interval(),
        options.max_hold,
        options.replicas,
    )))
}

/// Whether locks on these options may be taken together by one plain
/// request ([`acquire_together`]): not FIFO (a free lock may be kept for its
/// first waiter), fencing or replicas (more than a `SET` each), or many holders.
pub(crate) fn takes_together(options: &LockOptions) -> bool {
    !options.fair
        && !options.fencing
        && options.replicas.is_none()
        && !Shape::of(options).is_shared()
}

/// Takes every lock of `names` (checked, in lock order) in one request, if
/// all are free: `Ok(None)` when one is busy (nothing was taken), or when
/// these options or this topology cannot take them together (see
/// [`takes_together`]; a quorum, or keys in several cluster slots), so the
/// caller takes them one by one instead.
pub(crate) async fn acquire_together(
    backend: &Backend,
    names: &[String],
    options: &LockOptions,
) -> Result<Option<Vec<Acquired>>, LockError> {
    let keys: Vec<String> = names.iter().map(|name| backend.lease_key(name)).collect();
    if !takes_together(options) || !backend.can_take_together(&keys) {
        return Ok(None);
    }
    for name in names {
        options.validate(name)?;
        backend.check_options(name, options)?;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Ok(None);
    };
    let mut tokens = Vec::with_capacity(names.len());
    for (key, name) in keys.iter().zip(names) {
        tokens.push(UnsettledToken::new(
            backend,
            key,
            name,
            Shape::Exclusive,
            options.fencing,
        )?);
    }
    for token in &mut tokens {
        token.arm();
    }
    let sent_at = Instant::now();
    let sent: Vec<&str> = tokens.iter().map(UnsettledToken::token).collect();
    // An error leaves the tokens armed: each is compared-and-deleted in the
    // background (the request may have set every key).
    let taken = backend
        .take_together(&keys, &sent, options.ttl)
        .await
        .map_err(|source| LockError::Redis {
            name: names.join(", "),
            action: "acquire",
            source,
        })?;
    if !taken {
        for (token, key) in tokens.into_iter().zip(&keys) {
            token.disarm();
            backend.mark_contended(key);
        }
        return Ok(None);
    }
    if Instant::now() >= valid_until(sent_at, options.ttl) {
        // Answered too late to count on: the armed tokens give the keys back.
        return Ok(None);
    }
    let held_since = Instant::now();
    let leases: Vec<Arc<Lease>> = tokens
        .into_iter()
        .zip(names)
        .map(|(mut token, name)| {
            let (key, token) = token.settle();
            let lease = Lease::new(
                name.clone(),
                key,
                token,
                None,
                options.ttl,
                (sent_at, held_since),
                None,
            )
            .observed(&tracing::Span::current(), backend.metrics_by_name());
            Arc::new(lease)
        })
        .collect();
    // One heartbeat for the set, one request per beat, owned by its first
    // lease's guard.
    let mut heartbeat = Some(beat(backend, &runtime, leases.clone(), options));
    let acquired = leases
        .into_iter()
        .map(|lease| Acquired {
            lease,
            heartbeat: heartbeat.take(),
        })
        .collect();
    tracing::debug!(locks = %names.join(", "), "locks acquired together");
    Ok(Some(acquired))
}
