//! How to take and keep one lease.

use std::time::Duration;

use crate::error::LockError;
use crate::validity::{drift_allowance, millis};

/// How long a fence counter outlives the last acquisition that used it. Its loss is
/// harmless (tokens have the server clock as a floor); the expiry stops one key per
/// name from living forever.
const FENCE_KEY_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest ttl accepted. The scripts compute with ttls (twice a ttl, server
/// time plus a ttl) in Lua numbers, which pass to Redis as exact integers only
/// below 10^14.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(1_000_000_000);

/// How long [`LockClient::acquire`](crate::LockClient::acquire) waits for a busy lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Wait {
    /// Try once; a busy lock is [`LockError::Busy`].
    TryOnce,
    /// Wait up to this long; still busy then is [`LockError::Timeout`].
    /// `Wait::For(Duration::ZERO)` is the same as `TryOnce`.
    For(Duration),
    /// Wait until the lock is ours (mutex semantics).
    #[default]
    Forever,
}

/// What [`LockClient::run`](crate::LockClient::run) does with a body whose lease is
/// lost while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnLost {
    /// Drop the body at its next await point; the call returns [`LockError::Lost`].
    #[default]
    Cancel,
    /// Let the body run on (it can watch `LockHandle::lost()` itself); the call
    /// still returns [`LockError::Lost`] instead of the body's output, so a broken
    /// lease is never mistaken for success.
    Notify,
}

/// Who may hold a lock together (see [`LockOptions::mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Mode {
    /// One holder at a time (a mutex): the default.
    #[default]
    Exclusive,
    /// Shared: any number of readers together, never with a writer.
    Read,
    /// Exclusive against readers and other writers. A writer waiting blocks
    /// new readers, so a stream of readers cannot starve it.
    Write,
}

/// How many replicas must acknowledge a lease before it counts as held (see
/// [`LockOptions::replicas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Replicas {
    /// Replicas of the lock's primary that must have the lease.
    pub count: u32,
    /// How long to wait for them (Redis's `WAIT` timeout).
    pub timeout: Duration,
}

impl From<Duration> for Wait {
    /// Wait up to this long (zero: try once).
    fn from(wait: Duration) -> Self {
        Wait::For(wait)
    }
}

/// The lease's terms: length, waiting, heartbeat, fencing and hold bounds.
///
/// Built with chained setters from [`LockOptions::new`] or `Default` (ttl 30 s, wait
/// forever, heartbeat every ttl/3, no fencing, no hold bounds):
///
/// ```
/// use std::time::Duration;
/// use lock_runtime::{LockOptions, Wait};
///
/// let options = LockOptions::new(Duration::from_secs(9))
///     .wait(Wait::For(Duration::from_secs(2)))
///     .fencing(true);
/// assert_eq!(options.heartbeat_interval(), Duration::from_secs(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LockOptions {
    /// Lease length: without a heartbeat the lock frees itself this long after the
    /// last acquire or extend. From 1 ms to 10^9 s (about 31 years).
    pub ttl: Duration,
    /// How long to wait for a busy lock.
    pub wait: Wait,
    /// How often the holder extends the lease; `None` means ttl / 3. Must be < ttl.
    pub heartbeat: Option<Duration>,
    /// Hand out a strictly increasing fencing token with each acquisition.
    pub fencing: bool,
    /// Upper bound on one hold: past it the lease is no longer extended and is
    /// reported lost.
    pub max_hold: Option<Duration>,
    /// Lower bound on one hold: releasing sooner leaves the key to expire at
    /// acquisition + `min_hold` instead of deleting it (for scheduled jobs).
    pub min_hold: Option<Duration>,
    /// What a scoped `run` does when the lease is lost mid-body.
    pub on_lost: OnLost,
    /// Serve waiters strictly in arrival order, across processes. In both modes a
    /// release hands the lock directly to a waiter. By default the tasks of one
    /// client wait in line in the process, and a release takes the lock for the
    /// next of them ahead of other processes' waiters queued in Redis after a
    /// hold under 5 ms, up to 8 times in a row (see
    /// [`LockClient::tasks_in_line`](crate::LockClient::tasks_in_line)); a
    /// newcomer may also take a lock it finds free (after a holder's lease ran
    /// out, say) ahead of the queue. FIFO mode queues every waiter in Redis and
    /// hands the lock to the longest-waiting live one, and keeps a free lock for
    /// the first waiter; it costs a request more per handoff between tasks of one
    /// process. FIFO acquires always run the script (no plain `SET NX` first).
    /// Every user of a lock must agree on this setting.
    pub fair: bool,
    /// Count an acquisition (and each extend) only once this many replicas of
    /// the lock's primary acknowledged it (`WAIT`); see [`replicas`](Self::replicas).
    pub replicas: Option<Replicas>,
    /// Let code that already holds this lock take it again: the inner call runs
    /// under the outer hold (its lease, heartbeat and fencing token; this call's
    /// ttl and wait do not apply) and its end releases nothing, only the
    /// outermost does. Off by default: taking a held lock again is then
    /// [`LockError::Reentrant`], at once. See [`reentrant`](Self::reentrant).
    pub reentrant: bool,
    /// Read/write locking: [`Mode::Read`] holders share the lock, a
    /// [`Mode::Write`] holder has it alone. See [`mode`](Self::mode).
    pub mode: Mode,
    /// A semaphore: up to this many holders at once, each with its own lease.
    /// See [`permits`](Self::permits).
    pub permits: Option<u32>,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions::new(Duration::from_secs(30))
    }
}

impl LockOptions {
    /// Options with the given lease length and every other field at its default.
    pub fn new(ttl: Duration) -> Self {
        LockOptions {
            ttl,
            wait: Wait::Forever,
            heartbeat: None,
            fencing: false,
            max_hold: None,
            min_hold: None,
            on_lost: OnLost::Cancel,
            fair: false,
            replicas: None,
            reentrant: false,
            mode: Mode::Exclusive,
            permits: None,
        }
    }

    /// Sets the lease length.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how long to wait for a busy lock.
    #[must_use]
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Sets the heartbeat interval (must be shorter than the ttl).
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }

    /// Turns fencing tokens on or off.
    #[must_use]
    pub fn fencing(mut self, on: bool) -> Self {
        self.fencing = on;
        self
    }

    /// Sets the longest one hold may last.
    #[must_use]
    pub fn max_hold(mut self, max_hold: Duration) -> Self {
        self.max_hold = Some(max_hold);
        self
    }

    /// Sets the shortest one hold lasts (the key outlives an early release).
    #[must_use]
    pub fn min_hold(mut self, min_hold: Duration) -> Self {
        self.min_hold = Some(min_hold);
        self
    }

    /// Serves waiters in arrival order (see [`LockOptions::fair`](Self#structfield.fair)).
    #[must_use]
    pub fn fair(mut self, fair: bool) -> Self {
        self.fair = fair;
        self
    }

    /// Allows re-entry: code that already holds this lock (it runs inside a
    /// `run` or `run_with` body, a `#[redis_locked]` function or a guard's
    /// [`scope`](crate::LockGuard::scope) for it, in the same task; or inside a
    /// `run_blocking` body on the same thread) takes it again without a request,
    /// runs under the outer hold, and releases nothing at its end. A task
    /// spawned from the body is a different holder and waits like anyone else,
    /// as does a future joined beside the body (`join!`). Without it, such a
    /// call fails at once with [`LockError::Reentrant`] instead of waiting on
    /// itself.
    ///
    /// ```
    /// # async fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
    /// use lock_runtime::LockOptions;
    /// let options = LockOptions::default().reentrant(true);
    /// client
    ///     .run("account:7", &options, async {
    ///         // e.g. a helper that locks the account itself
    ///         client.run("account:7", &options, async { /* still held */ }).await
    ///     })
    ///     .await??;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn reentrant(mut self, on: bool) -> Self {
        self.reentrant = on;
        self
    }

    /// Read/write locking. Any number of [`Mode::Read`] holders at once, or one
    /// [`Mode::Write`] holder; a waiting writer blocks new readers, so it is
    /// served once the readers already in are done. Each holder has its own
    /// lease and heartbeat, and a reader that dies frees its share after its
    /// ttl. A release wakes the waiters that may now go (the readers up to
    /// the first waiting writer, at most 100 per release, or that writer). Every user of a name must
    /// agree that it is a read/write lock. Not with `fencing`, `fair` or
    /// `permits`, nor on a quorum client.
    ///
    /// ```
    /// use lock_runtime::{LockOptions, Mode};
    /// let readers = LockOptions::default().mode(Mode::Read);
    /// let writer = LockOptions::default().mode(Mode::Write);
    /// # let _ = (readers, writer);
    /// ```
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// A semaphore: at most `permits` holders of the name at a time (a
    /// rate-limited API's concurrent callers, say). Each holder has its own
    /// leased slot kept by its heartbeat, freed by its release or, if it dies,
    /// after its ttl. With [`fair`](Self::fair), permits go to waiters in
    /// arrival order. Every user of a name must agree on the count. Not with
    /// `fencing`, `mode`, or `reentrant`, nor on a quorum client.
    ///
    /// ```
    /// use lock_runtime::LockOptions;
    /// let options = LockOptions::default().permits(4);
    /// assert_eq!(options.permits, Some(4));
    /// ```
    #[must_use]
    pub fn permits(mut self, permits: u32) -> Self {
        self.permits = Some(permits);
        self
    }

    /// Sets what a scoped `run` does when the lease is lost mid-body.
    #[must_use]
    pub fn on_lost(mut self, on_lost: OnLost) -> Self {
        self.on_lost = on_lost;
        self
    }

    /// The effective heartbeat interval: the configured one, or ttl / 3.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat.unwrap_or(self.ttl / 3)
    }

    /// For a primary with replicas (Redis Cluster, Sentinel): the lease counts as
    /// held only once `count` replicas acknowledged it, each acquire and each
    /// extend followed by Redis's `WAIT count timeout` on the same connection, to
    /// the lock's primary. Fewer acknowledgements within `timeout`: the acquire
    /// gives the lease back and fails with [`LockError::Unreplicated`]; an
    /// extend counts as failed (the heartbeat tries again until the lease's
    /// local deadline). A lease handed over by a release is confirmed with a
    /// request of the waiter's own, so that it too is acknowledged.
    ///
    /// What it guarantees: when the primary fails, a replica that acknowledged
    /// has the lease, so if that replica is the one promoted, the lease
    /// survives the failover and nobody else is granted the lock. With `count`
    /// equal to the number of replicas, whichever is promoted has it. What it
    /// does not: Redis replication stays asynchronous (a replica that
    /// acknowledged and then restarts without persistence loses it), and the
    /// failover itself may promote a replica that did not acknowledge when
    /// `count` is smaller. Fencing tokens remain the way to make a stale
    /// holder's writes harmless. Costs one round trip per acquire and per
    /// heartbeat.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lock_runtime::LockOptions;
    /// let options = LockOptions::new(Duration::from_secs(30)).replicas(1, Duration::from_millis(500));
    /// assert_eq!(options.replicas.map(|r| r.count), Some(1));
    /// ```
    pub fn replicas(mut self, count: u32, timeout: Duration) -> Self {
        self.replicas = Some(Replicas { count, timeout });
        self
    }

    /// Whether the shape (`mode`, `permits`) goes with the other settings.
    fn validate_shape(&self) -> Result<(), &'static str> {
        let shared = self.permits.is_some() || self.mode != Mode::Exclusive;
        if self.permits == Some(0) {
            return Err("permits must be at least 1");
        }
        if self.permits.is_some() && self.mode != Mode::Exclusive {
            return Err("a lock has either permits (a semaphore) or a read/write mode, not both");
        }
        if shared && self.fencing {
            return Err(
                "fencing tokens are for exclusive locks: a semaphore's or a read lock's holders are many at once, so no token could order their writes; use an exclusive (or write) lock without fencing, or an exclusive lock with fencing",
            );
        }
        if self.mode != Mode::Exclusive && self.fair {
            return Err(
                "`fair` is not available for read/write locks: they serve a waiting writer before new readers; leave it off",
            );
        }
        if self.permits.is_some() && self.reentrant {
            return Err(
                "a semaphore cannot be re-entrant: a nested call would need a permit of its own, or none; leave `reentrant` off",
            );
        }
        Ok(())
    }

    /// How long the fence key lives after an acquisition on these options, in ms
    /// (`0`: no fencing token).
    pub(crate) fn fence_lifetime_ms(&self) -> u64 {
        if self.fencing {
            millis(FENCE_KEY_LIFETIME.max(self.ttl.saturating_mul(2)))
        } else {
            0
        }
    }

    /// Checks that the options are consistent; `acquire` calls this first.
    pub fn validate(&self, name: &str) -> Result<(), LockError> {
        let config = |reason: String| LockError::Config {
            subject: format!("lock `{name}`"),
            reason,
        };
        if self.ttl < Duration::from_millis(1) {
            return Err(config(format!(
                "ttl must be at least 1 ms, got {:?}",
                self.ttl
            )));
        }
        if self.ttl > MAX_TTL {
            return Err(config(format!(
                "ttl {:?} is too long: at most {MAX_TTL:?} (about 31 years)",
                self.ttl
            )));
        }
        let heartbeat = self.heartbeat_interval();
        // The holder counts its lease as ttl minus a drift allowance; a beat must
        // land inside that, or every lease is lost before its first extend.
        let usable = self.ttl.saturating_sub(drift_allowance(self.ttl));
        if heartbeat.is_zero() || heartbeat >= usable {
            return Err(config(format!(
                "heartbeat must be > 0 and shorter than the ttl ({:?}) minus the clock-drift allowance ({:?}), got {:?}; the default is ttl / 3",
                self.ttl,
                drift_allowance(self.ttl),
                heartbeat
            )));
        }
        if let (Some(min), Some(max)) = (self.min_hold, self.max_hold)
            && min > max
        {
            return Err(config(format!(
                "min_hold ({min:?}) must not exceed max_hold ({max:?})"
            )));
        }
        if self.max_hold.is_some_and(|max| max.is_zero()) {
            return Err(config("max_hold must be > 0".to_owned()));
        }
        self.validate_shape()
            .map_err(|reason| config(reason.to_owned()))?;
        if let Some(Replicas { count, timeout }) = self.replicas
            && (count == 0 || timeout.is_zero() || timeout >= heartbeat)
        {
            return Err(config(format!(
                "replicas needs a count > 0 and a timeout > 0 shorter than the heartbeat ({heartbeat:?}), got {count} within {timeout:?}, e.g. `.replicas(1, Duration::from_millis(500))`"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_need_a_count_and_a_timeout_shorter_than_the_heartbeat() {
        let options = LockOptions::new(Duration::from_secs(30));
        assert!(
            options
                .clone()
                .replicas(1, Duration::from_millis(500))
                .validate("l")
                .is_ok()
        );
        for (count, timeout) in [(0, 500), (1, 0), (1, 10_000)] {
            let error = options
                .clone()
                .replicas(count, Duration::from_millis(timeout))
                .validate("l")
                .err()
                .map(|error| error.to_string())
                .unwrap_or_default();
            assert!(
                error.contains("replicas needs a count > 0"),
                "{count}, {timeout}: {error}"
            );
        }
    }
}
