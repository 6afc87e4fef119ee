//! Release notices: one RESP3 pub/sub connection per client, shared by all waiters.
//!
//! A waiter subscribes to its lock's notice channel before its second attempt, so a
//! release between an attempt and the wait cannot be missed. Notices are only a hint
//! to retry now; safety never depends on them, and without them waiters poll.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::watch;

/// The waiters' side: channel name -> (number of waiters, wake-up signal).
type Registry = Arc<Mutex<HashMap<String, Channel>>>;

#[derive(Debug)]
struct Channel {
    /// This process's waiters on the channel, by token. A release notice names the
    /// waiter to wake (the first in the lock's queue in Redis); an empty notice
    /// (nobody queued) wakes all of them.
    waiters: HashMap<String, watch::Sender<u64>>,
}

fn bump(signal: &watch::Sender<u64>) {
    signal.send_modify(|n| *n = n.wrapping_add(1));
}

pub(crate) struct Notices {
    redis: redis::Client,
    connect_timeout: Duration,
    runtime: tokio::runtime::Handle,
    registry: Registry,
    /// False from a dropped pub/sub connection until its channels are confirmed
    /// subscribed again; waiters then poll at the shorter ceiling.
    healthy: Arc<AtomicBool>,
    /// The pub/sub connection (made on first need) and the channels it is subscribed
    /// to. Held across SUBSCRIBE/UNSUBSCRIBE so those commands apply in order.
    connection: tokio::sync::Mutex<Option<(ConnectionManager, HashSet<String>)>>,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices").finish_non_exhaustive()
    }
}

/// One waiter's interest in one channel; dropping it unsubscribes when it was the last.
pub(crate) struct Subscription {
    notices: Arc<Notices>,
    channel: String,
    token: String,
    signal: watch::Receiver<u64>,
    /// True once SUBSCRIBE was confirmed; until then the waiter only polls.
    live: bool,
}

fn lock_registry(registry: &Registry) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
    // A panic elsewhere while holding this lock leaves the map consistent (each
    // mutation is a single step), so a poisoned lock is safe to keep using.
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Notices {
    pub(crate) fn new(
        redis: redis::Client,
        connect_timeout: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Notices {
            redis,
            connect_timeout,
            runtime,
            registry: Arc::default(),
            healthy: Arc::new(AtomicBool::new(true)),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Registers a waiter on `channel`; [`Subscription::activate`] then makes sure
    /// the connection is subscribed. Registered first, so a waiter dropped while
    /// subscribing still unregisters.
    ///
    /// The waiter is woken by a notice naming its `token` (or an empty notice, or a
    /// dropped connection), not by every release.
    pub(crate) fn register(self: &Arc<Self>, channel: &str, token: &str) -> Subscription {
        let (sender, signal) = watch::channel(0);
        lock_registry(&self.registry)
            .entry(channel.to_owned())
            .or_insert_with(|| Channel {
                waiters: HashMap::new(),
            })
            .waiters
            .insert(token.to_owned(), sender);
        Subscription {
            notices: Arc::clone(self),
            channel: channel.to_owned(),
            token: token.to_owned(),
            signal,
            live: false,
        }
    }

    async fn ensure_subscribed(self: &Arc<Self>, channel: &str) -> bool {
        let mut connection = self.connection.lock().await;
        if connection.is_none() {
            match self.connect().await {
                Ok(manager) => *connection = Some((manager, HashSet::new())),
                Err(error) => {
                    tracing::warn!(%error, "release notices unavailable; waiters will poll");
                    return false;
                }
            }
        }
        let Some((manager, subscribed)) = connection.as_mut() else {
            return false;
        };
        if subscribed.contains(channel) {
            return true;
        }
        match tokio::time::timeout(self.connect_timeout, manager.subscribe(channel)).await {
            Ok(Ok(())) => {
                subscribed.insert(channel.to_owned());
                true
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, channel, "SUBSCRIBE failed; this waiter will poll");
                false
            }
            Err(_) => {
                tracing::warn!(channel, "SUBSCRIBE timed out; this waiter will poll");
                false
            }
        }
    }

    async fn connect(self: &Arc<Self>) -> redis::RedisResult<ConnectionManager> {
        let info = self.redis.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let registry = Arc::clone(&self.registry);
        let notices = Arc::downgrade(self);
        let runtime = self.runtime.clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_push_sender(move |push: PushInfo| {
                if push.kind == PushKind::Disconnection
                    && let Some(notices) = notices.upgrade()
                {
                    notices.healthy.store(false, Ordering::Release);
                    runtime.spawn(resubscribe(Arc::downgrade(&notices)));
                }
                dispatch(&registry, push);
                Ok::<(), redis::aio::SendError>(())
            })
            .set_automatic_resubscription();
        // Made on the client's own runtime, so the connection outlives the waiter's.
        let connect = self
            .runtime
            .spawn(async move { ConnectionManager::new_with_config(client, config).await });
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

    async fn unsubscribe_if_unused(&self, channel: String) {
        let mut connection = self.connection.lock().await;
        let still_wanted = lock_registry(&self.registry).contains_key(&channel);
        if still_wanted {
            return;
        }
        if let Some((manager, subscribed)) = connection.as_mut()
            && subscribed.remove(&channel)
        {
            let _ = tokio::time::timeout(self.connect_timeout, manager.unsubscribe(&channel)).await;
        }
    }
}

/// After the pub/sub connection dropped: subscribe every wanted channel again
/// (idempotent beside the manager's own resubscription, but confirmed), then mark
/// notices healthy and wake all waiters to retry once, since a release may have
/// been missed while the connection was down.
async fn resubscribe(notices: Weak<Notices>) {
    let mut pause = Duration::from_millis(50);
    loop {
        let Some(strong) = notices.upgrade() else {
            return;
        };
        let channels: Vec<String> = lock_registry(&strong.registry).keys().cloned().collect();
        let done = {
            let mut connection = strong.connection.lock().await;
            match connection.as_mut() {
                None => true,
                Some((manager, subscribed)) => {
                    subscribed.retain(|channel| channels.contains(channel));
                    channels.is_empty()
                        || matches!(
                            tokio::time::timeout(
                                strong.connect_timeout,
                                manager.subscribe(&channels)
                            )
                            .await,
                            Ok(Ok(()))
                        )
                }
            }
        };
        if done {
            strong.healthy.store(true, Ordering::Release);
            wake_all(&lock_registry(&strong.registry));
            return;
        }
        drop(strong);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Runs on the pub/sub connection's reader: wakes the waiters of a released lock, or
/// every waiter when the connection dropped (notices may have been missed).
fn wake_all(registry: &HashMap<String, Channel>) {
    for entry in registry.values() {
        entry.waiters.values().for_each(bump);
    }
}

fn dispatch(registry: &Registry, push: PushInfo) {
    let registry = lock_registry(registry);
    match push.kind {
        PushKind::Message => {
            let channel = match push.data.first() {
                Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes),
                _ => return,
            };
            let Some(entry) = registry.get(channel.as_ref()) else {
                return;
            };
            match push.data.get(1) {
                Some(Value::BulkString(payload)) if !payload.is_empty() => {
                    if let Some(signal) =
                        entry.waiters.get(String::from_utf8_lossy(payload).as_ref())
                    {
                        bump(signal);
                    }
                }
                _ => entry.waiters.values().for_each(bump),
            }
        }
        PushKind::Disconnection => wake_all(&registry),
        _ => {}
    }
}

impl Subscription {
    /// Subscribes the shared connection to this waiter's channel (if it is not yet).
    pub(crate) async fn activate(&mut self) {
        self.live = self.notices.ensure_subscribed(&self.channel).await;
    }

    /// True while notices for this waiter can be trusted to arrive: subscribed, and
    /// the connection has not dropped since (or has been resubscribed).
    pub(crate) fn is_live(&self) -> bool {
        self.live && self.notices.healthy.load(Ordering::Acquire)
    }

    /// Marks every notice so far as seen; call right before an attempt.
    pub(crate) fn mark_seen(&mut self) {
        self.signal.borrow_and_update();
    }

    /// Waits for a notice newer than the last `mark_seen`, or until `until`.
    pub(crate) async fn wait(&mut self, until: tokio::time::Instant) {
        tokio::select! {
            changed = self.signal.changed() => {
                if changed.is_err() {
                    // Cannot happen while this subscription is registered; never spin.
                    tokio::time::sleep_until(until).await;
                }
            }
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let last = {
            let mut registry = lock_registry(&self.notices.registry);
            match registry.get_mut(&self.channel) {
                Some(entry) => {
                    entry.waiters.remove(&self.token);
                    if entry.waiters.is_empty() {
                        registry.remove(&self.channel);
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if last {
            let notices = Arc::clone(&self.notices);
            let channel = std::mem::take(&mut self.channel);
            let runtime = notices.runtime.clone();
            runtime.spawn(async move { notices.unsubscribe_if_unused(channel).await });
        }
    }
}
