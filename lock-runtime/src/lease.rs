//! The state of one held lease, shared by its guard, its handles and its heartbeat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::local::Turn;
use crate::{LockError, LostReason};

/// How much of a lease the holder gives up to clock drift between it and Redis
/// (as Redlock does: 1% of the ttl plus 2 ms).
pub(crate) fn drift_allowance(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// Until when a lease of `ttl` won (or extended) by a request sent at `sent` is
/// certainly still valid: the key's ttl started after `sent`, and the holder gives
/// up the drift allowance.
pub(crate) fn valid_until(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl.saturating_sub(drift_allowance(ttl))
}

#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) token: String,
    pub(crate) fence: Option<u64>,
    pub(crate) ttl: Duration,
    /// When the request that won this lease was sent (the key's ttl started
    /// later): validity and heartbeats count from here.
    pub(crate) acquired_at: Instant,
    /// When this process knew the lease was its own (the answer or handoff notice
    /// came): `min_hold` and `max_hold` count from here.
    pub(crate) held_since: Instant,
    /// Local validity deadline: counted from when the last successful acquire or
    /// extend was *sent*, minus the drift allowance. Past it the lease is presumed
    /// lost whatever Redis says.
    valid_until: Mutex<Instant>,
    /// Set by a release: the lease ended without being lost.
    released: AtomicBool,
    lost: CancellationToken,
    lost_reason: OnceLock<LostReason>,
    /// The turn of the client's line for this lock (see `local`): taken by the
    /// release, to offer the lock to the next task; passed on at once if the
    /// lease is lost, so a lost lease holds up no other task of the process.
    turn: Mutex<Option<Turn>>,
}

impl Lease {
    pub(crate) fn new(
        name: String,
        key: String,
        token: String,
        fence: Option<u64>,
        ttl: Duration,
        (acquired_at, held_since): (Instant, Instant),
        turn: Option<Turn>,
    ) -> Self {
        Lease {
            name,
            key,
            token,
            fence,
            ttl,
            acquired_at,
            held_since,
            valid_until: Mutex::new(valid_until(acquired_at, ttl)),
            released: AtomicBool::new(false),
            lost: CancellationToken::new(),
            lost_reason: OnceLock::new(),
            turn: Mutex::new(turn),
        }
    }

    /// The turn of the client's line for this lock, if this lease has it still.
    pub(crate) fn take_turn(&self) -> Option<Turn> {
        self.turn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(crate) fn valid_until(&self) -> Instant {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a confirmed extend that was sent at `sent_at`.
    pub(crate) fn extended(&self, sent_at: Instant) {
        let until = valid_until(sent_at, self.ttl);
        let mut valid_until = self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if until > *valid_until {
            *valid_until = until;
        }
    }

    /// Ends local validity without calling it lost: the holder let go (its release
    /// is about to be sent).
    pub(crate) fn ended(&self) {
        self.released.store(true, Ordering::Release);
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.acquired_at;
    }

    /// Completes when the lease is lost: marked lost by the heartbeat or a release,
    /// or past its local deadline even if the heartbeat task has not run (a busy
    /// runtime must not let a body outlive its lease). Never completes for a lease
    /// that was released.
    pub(crate) async fn wait_lost(&self) -> LockError {
        loop {
            if self.released.load(Ordering::Acquire) && !self.is_lost() {
                std::future::pending::<()>().await;
            }
            let deadline = self.valid_until();
            tokio::select! {
                biased;
                () = self.lost.cancelled() => return self.lost_error(),
                () = tokio::time::sleep_until(deadline) => {
                    // Extended meanwhile? Then wait for the new deadline.
                    if Instant::now() >= self.valid_until()
                        && !self.released.load(Ordering::Acquire)
                    {
                        self.mark_lost(LostReason::Expired);
                        return self.lost_error();
                    }
                }
            }
        }
    }

    pub(crate) fn mark_lost(&self, reason: LostReason) {
        if self.lost_reason.set(reason).is_ok() {
            tracing::warn!(lock = %self.name, %reason, "lease lost");
        }
        self.lost.cancel();
        // Dropped outside the lease's lock: the next task in line tries in Redis.
        drop(self.take_turn());
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    pub(crate) fn is_held(&self) -> bool {
        !self.is_lost() && Instant::now() < self.valid_until()
    }

    pub(crate) fn time_left(&self) -> Option<Duration> {
        if self.is_lost() {
            return None;
        }
        self.valid_until().checked_duration_since(Instant::now())
    }

    pub(crate) fn lost_error(&self) -> LockError {
        LockError::Lost {
            name: self.name.clone(),
            reason: self
                .lost_reason
                .get()
                .copied()
                .unwrap_or(LostReason::Expired),
        }
    }
}
