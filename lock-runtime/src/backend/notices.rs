//! Lock notices: each client has its own notice channel, `<prefix>notices:<id>`, and
//! one RESP3 pub/sub connection subscribed to it (made on the first wait), shared
//! by all its waiters. A waiter's place in a lock's queue names its client's
//! channel, so a release publishes to the one process concerned, never to every
//! process waiting on the lock.
//!
//! The channel is subscribed before a waiter's second attempt, so a release
//! between an attempt and the wait cannot be missed. A notice names one waiter,
//! and is one of:
//! - a wake-up, `<token>`: try now;
//! - a handoff, `<token>:<attempt>:<fence>`: the release gave the lock to this token
//!   after that attempt of it was queued;
//! - a heads-up to the waiter next in line, `<token>:<ttl ms>`: the lock was just
//!   handed to the waiter ahead for this long; check again by then, so a waiter
//!   that died as it was handed the lock holds the others up for its ttl only.
//!   Sent only when that lease would end before the next waiter's place lapses:
//!   otherwise its own re-check (made before then) learns when the lease ends.
//!
//! The formats are typed in `protocol.rs`. Without notices waiters poll; a lost handoff notice costs the waiter only time
//! (its next attempt finds the lock is its own).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::protocol::{Handoff, Notice, parse_notice};

/// Where a notice connection may be made, asked at each (re)connect.
pub(crate) type NoticeNodes = Box<dyn Fn() -> Vec<redis::Client> + Send + Sync>;

/// This client's waiters, by token.
type Registry = Arc<Mutex<HashMap<String, watch::Sender<Woken>>>>;

/// What a waiter has been told.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Woken {
    /// Wake-ups so far (a handoff is one too).
    wakes: u64,
    /// The latest handoff naming this waiter, if any.
    handoff: Option<Handoff>,
    /// From the latest heads-up: when the lease just handed to the waiter ahead
    /// ends, if that waiter never releases it.
    check_by: Option<Instant>,
}

/// Hands `notice` to the waiter behind `signal`.
fn deliver(signal: &watch::Sender<Woken>, notice: Notice) {
    signal.send_modify(|woken| match notice {
        Notice::Wake => woken.wakes = woken.wakes.wrapping_add(1),
        Notice::Handoff(handoff) => {
            woken.wakes = woken.wakes.wrapping_add(1);
            // Notices can arrive out of order (a local one is delivered when its
            // releasing task runs): keep the handoff of the latest attempt.
            if woken
                .handoff
                .is_none_or(|kept| kept.attempt <= handoff.attempt)
            {
                woken.handoff = Some(handoff);
            }
        }
        Notice::HeadsUp { ttl } => {
            // A millisecond late, so the check finds the lease gone.
            woken.check_by = Instant::now().checked_add(ttl + Duration::from_millis(1));
        }
    });
}

pub(crate) struct Notices {
    /// The servers the notice connection may be made to, asked at each
    /// (re)connect: the one server, every node of a cluster (each gets every
    /// notice), or a Sentinel group's current primary.
    nodes: NoticeNodes,
    /// The node to try first when (re)connecting: the last one that worked, or
    /// the one after the last that failed.
    next_node: AtomicUsize,
    /// This client's notice channel.
    channel: String,
    connect_timeout: Duration,
    runtime: tokio::runtime::Handle,
    registry: Registry,
    /// False from a dropped pub/sub connection until the channel is confirmed
    /// subscribed again; waiters then poll at the shorter ceiling.
    healthy: Arc<AtomicBool>,
    /// True once the channel's SUBSCRIBE was confirmed (it stays subscribed).
    subscribed: AtomicBool,
    /// The pub/sub connection, made and subscribed on first need (and made again
    /// after it drops); `true` once the SUBSCRIBE was confirmed. A plain
    /// multiplexed connection, not a `ConnectionManager`: the manager forwards
    /// every push through a task of its own, one more hop on each handoff.
    connection: tokio::sync::Mutex<Option<(MultiplexedConnection, bool)>>,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// One waiter's registration; dropping it unregisters the waiter.
pub(crate) struct Subscription {
    notices: Arc<Notices>,
    token: String,
    signal: watch::Receiver<Woken>,
    /// Wake-ups counted at the last `mark_seen`.
    seen: u64,
    /// True once the channel's SUBSCRIBE was confirmed; until then the waiter only
    /// polls.
    live: bool,
}

fn lock_registry(
    registry: &Registry,
) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Woken>>> {
    // A panic elsewhere while holding this lock leaves the map consistent (each
    // mutation is a single step), so a poisoned lock is safe to keep using.
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Notices {
    /// Notices for a client whose channel is `channel`, from any of `nodes`.
    pub(crate) fn new(
        nodes: NoticeNodes,
        channel: String,
        connect_timeout: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Notices {
            nodes,
            next_node: AtomicUsize::new(0),
            channel,
            connect_timeout,
            runtime,
            registry: Arc::default(),
            healthy: Arc::new(AtomicBool::new(true)),
            subscribed: AtomicBool::new(false),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// This client's notice channel (a waiter's place in a queue names it).
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// Delivers a notice for one of this client's waiters that a release made by
    /// this client handed back instead of publishing it.
    pub(crate) fn deliver_here(&self, payload: &str) {
        deliver_payload(&self.registry, payload);
    }

    /// Wakes every waiter of this client: a release whose reply was lost (an
    /// error, or its caller stopped waiting) may have carried notices for them.
    pub(crate) fn wake_all_here(&self) {
        wake_all(&lock_registry(&self.registry));
    }

    /// Registers a waiter; [`Subscription::activate`] then makes sure the channel is
    /// subscribed. Registered first, so a waiter dropped while subscribing still
    /// unregisters. The waiter gets the notices naming its `token`, and a wake-up
    /// when the connection drops.
    pub(crate) fn register(self: &Arc<Self>, token: &str) -> Subscription {
        let (sender, signal) = watch::channel(Woken::default());
        lock_registry(&self.registry).insert(token.to_owned(), sender);
        Subscription {
            notices: Arc::clone(self),
            token: token.to_owned(),
            signal,
            seen: 0,
            live: false,
        }
    }

    /// A live registration for `token` if the channel is already subscribed (so
    /// every notice naming the token from now on reaches it), else `None`.
    pub(crate) fn register_if_subscribed(self: &Arc<Self>, token: &str) -> Option<Subscription> {
        if !self.subscribed.load(Ordering::Acquire) {
            return None;
        }
        let mut subscription = self.register(token);
        subscription.live = true;
        Some(subscription)
    }

    async fn ensure_subscribed(self: &Arc<Self>) -> bool {
        let mut connection = self.connection.lock().await;
        self.subscribe_on(&mut connection).await
    }

    /// Makes the pub/sub connection if there is none, and subscribes the channel
    /// on it if that is not yet confirmed.
    async fn subscribe_on(
        self: &Arc<Self>,
        connection: &mut Option<(MultiplexedConnection, bool)>,
    ) -> bool {
        if connection.is_none() {
            match self.connect().await {
                Ok(made) => *connection = Some((made, false)),
                Err(error) => {
                    tracing::warn!(%error, "lock notices unavailable; waiters will poll");
                    return false;
                }
            }
        }
        let Some((made, subscribed)) = connection.as_mut() else {
            return false;
        };
        if *subscribed {
            return true;
        }
        let channel = self.channel.as_str();
        match tokio::time::timeout(self.connect_timeout, made.subscribe(channel)).await {
            Ok(Ok(())) => {
                *subscribed = true;
                self.subscribed.store(true, Ordering::Release);
                true
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, channel, "SUBSCRIBE failed; waiters will poll");
                false
            }
            Err(_) => {
                tracing::warn!(channel, "SUBSCRIBE timed out; waiters will poll");
                false
            }
        }
    }

    /// Makes the notice connection to the first node that accepts it, starting
    /// with the one that worked last.
    async fn connect(self: &Arc<Self>) -> redis::RedisResult<MultiplexedConnection> {
        let first = self.next_node.load(Ordering::Relaxed);
        let mut failure = redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "no server to receive notices from",
        ));
        let nodes = (self.nodes)();
        for step in 0..nodes.len() {
            let index = (first + step) % nodes.len();
            match self.connect_to(&nodes[index]).await {
                Ok(connection) => {
                    self.next_node.store(index, Ordering::Relaxed);
                    return Ok(connection);
                }
                Err(error) => {
                    tracing::debug!(%error, node = index, "notice connection failed; trying the next node");
                    failure = error;
                }
            }
        }
        self.next_node
            .store(first.wrapping_add(1), Ordering::Relaxed);
        Err(failure)
    }

    async fn connect_to(
        self: &Arc<Self>,
        node: &redis::Client,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let info = node.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let registry = Arc::clone(&self.registry);
        let notices = Arc::downgrade(self);
        let runtime = self.runtime.clone();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.connect_timeout))
            .set_push_sender(move |push: PushInfo| {
                if push.kind == PushKind::Disconnection
                    && let Some(notices) = notices.upgrade()
                {
                    notices.healthy.store(false, Ordering::Release);
                    spawn_resubscribe(&runtime, Arc::downgrade(&notices));
                }
                dispatch(&registry, push);
                Ok::<(), redis::aio::SendError>(())
            });
        // Made on the client's own runtime, so the connection outlives the waiter's.
        let connect = self.runtime.spawn(async move {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
        });
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "pub/sub connection task failed",
                join_error.to_string(),
            ))),
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "pub/sub connection timed out",
            ))),
        }
    }
}

/// Starts [`resubscribe`]; a plain function, so that the connection's push handler
/// (made by `connect`, which `resubscribe` calls) does not name its future type.
fn spawn_resubscribe(runtime: &tokio::runtime::Handle, notices: Weak<Notices>) {
    runtime.spawn(resubscribe(notices));
}

/// After the pub/sub connection dropped: make a new one and subscribe the channel
/// on it (retrying with backoff), then mark notices healthy and wake all waiters
/// to retry once, since a notice may have been missed while the connection was
/// down.
async fn resubscribe(notices: Weak<Notices>) {
    let mut pause = Duration::from_millis(50);
    let mut dropped = true;
    loop {
        let Some(strong) = notices.upgrade() else {
            return;
        };
        let done = {
            let mut connection = strong.connection.lock().await;
            if std::mem::take(&mut dropped) {
                // The dropped connection's own; its replacement is made below.
                // Unhealthy until then, even if an earlier resubscription (of a
                // connection since dropped too) marked it healthy.
                *connection = None;
                strong.healthy.store(false, Ordering::Release);
            }
            let done = strong.subscribe_on(&mut connection).await;
            // Marked under the lock, so a later drop's task, which takes it next,
            // has the last word.
            if done {
                strong.healthy.store(true, Ordering::Release);
            }
            done
        };
        if done {
            wake_all(&lock_registry(&strong.registry));
            return;
        }
        drop(strong);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Wakes every waiter (the connection dropped: notices may have been missed).
fn wake_all(registry: &HashMap<String, watch::Sender<Woken>>) {
    for signal in registry.values() {
        deliver(signal, Notice::Wake);
    }
}

/// Hands a notice to the waiter it names, if that waiter is still registered.
fn deliver_payload(registry: &Registry, payload: &str) {
    let Some((token, notice)) = parse_notice(payload) else {
        return;
    };
    if let Some(signal) = lock_registry(registry).get(token) {
        deliver(signal, notice);
    }
}

/// Runs on the pub/sub connection's reader: hands a notice to the waiter it names,
/// or wakes every waiter when the connection dropped.
fn dispatch(registry: &Registry, push: PushInfo) {
    match push.kind {
        PushKind::Message => {
            // Only this client's channel is subscribed: [channel, payload].
            let Some(Value::BulkString(payload)) = push.data.get(1) else {
                return;
            };
            deliver_payload(registry, &String::from_utf8_lossy(payload));
        }
        PushKind::Disconnection => wake_all(&lock_registry(registry)),
        _ => {}
    }
}

impl Subscription {
    /// Subscribes the client's channel (if it is not yet).
    pub(crate) async fn activate(&mut self) {
        self.live = self.notices.ensure_subscribed().await;
    }

    /// True while notices for this waiter can be trusted to arrive: subscribed, and
    /// the connection has not dropped since (or has been resubscribed).
    pub(crate) fn is_live(&self) -> bool {
        self.live && self.notices.healthy.load(Ordering::Acquire)
    }

    /// The latest handoff notice naming this waiter, if one came.
    pub(crate) fn handoff(&self) -> Option<Handoff> {
        self.signal.borrow().handoff
    }

    /// Marks every wake-up so far as seen; call right before an attempt.
    pub(crate) fn mark_seen(&mut self) {
        self.seen = self.signal.borrow_and_update().wakes;
    }

    /// Waits for a wake-up newer than the last `mark_seen`, or until `until`, or
    /// until a heads-up says the lease ahead of us ends.
    pub(crate) async fn wait(&mut self, mut until: Instant) {
        loop {
            let (wakes, check_by) = {
                let woken = self.signal.borrow_and_update();
                (woken.wakes, woken.check_by)
            };
            if wakes != self.seen {
                return;
            }
            // A heads-up already passed was acted on (or overtaken by an attempt).
            if let Some(check_by) = check_by.filter(|at| *at > Instant::now()) {
                until = until.min(check_by);
            }
            tokio::select! {
                changed = self.signal.changed() => {
                    if changed.is_err() {
                        // Cannot happen while this subscription is registered; never spin.
                        tokio::time::sleep_until(until).await;
                        return;
                    }
                }
                () = tokio::time::sleep_until(until) => return,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock_registry(&self.notices.registry).remove(&self.token);
    }
}
