//! The state of one held lease, shared by its guard, its handles and its heartbeat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::line::Turn;
use crate::error::{LockError, LostReason};
use crate::observe::{self, End};
use crate::validity::valid_until;

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
    /// The `lock.hold` span, for as long as the lease lives.
    pub(crate) span: tracing::Span,
    /// Metrics carry the lock's name.
    by_name: bool,
    /// The hold's end was recorded (once: by the release or the loss that
    /// came first).
    end_observed: AtomicBool,
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
            span: tracing::Span::none(),
            by_name: false,
            end_observed: AtomicBool::new(false),
        }
    }

    /// Traced in a `lock.hold` span under `parent` (the acquire's caller's
    /// span), its metrics labelled with the lock's name if `by_name` (see
    /// `observe.rs`).
    pub(crate) fn observed(mut self, parent: &tracing::Span, by_name: bool) -> Self {
        self.span = observe::hold_span(parent, &self.name, self.fence);
        self.by_name = by_name;
        self
    }

    /// The turn of the client's line for this lock, if this lease has it still.
    pub(crate) fn take_turn(&self) -> Option<Turn> {
        self.turn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Whether this lease has the turn of the client's line for its lock.
    pub(crate) fn has_turn(&self) -> bool {
        self.turn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    pub(crate) fn valid_until(&self) -> Instant {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a confirmed extend that was sent at `sent_at`, unless the lease
    /// has ended meanwhile (an extend answered while the release was being sent
    /// must not make it valid again).
    pub(crate) fn extended(&self, sent_at: Instant) {
        let until = valid_until(sent_at, self.ttl);
        let mut valid_until = self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if until > *valid_until && !self.is_released() {
            *valid_until = until;
        }
    }

    /// Ends local validity without calling it lost: the holder let go (its release
    /// is about to be sent).
    pub(crate) fn ended(&self) {
        let mut valid_until = self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Under the lock `extended` takes: no extend moves the deadline after this.
        let first = !self.released.swap(true, Ordering::AcqRel);
        *valid_until = self.acquired_at;
        drop(valid_until);
        if first && !self.is_lost() {
            self.observe_end(End::Released);
        }
    }

    /// The holder let go of this lease (released it or dropped its guard).
    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// Completes when the lease is lost: marked lost by the heartbeat or a release,
    /// or past its local deadline even if the heartbeat task has not run (a busy
    /// runtime must not let a body outlive its lease). For a lease that was
    /// released, only if its release found it was no longer ours.
    pub(crate) async fn wait_lost(&self) -> LockError {
        loop {
            if self.is_released() {
                // Only a release that finds the lease was no longer ours marks it
                // lost now.
                self.lost.cancelled().await;
                return self.lost_error();
            }
            let deadline = self.valid_until();
            tokio::select! {
                biased;
                () = self.lost.cancelled() => return self.lost_error(),
                () = tokio::time::sleep_until(deadline) => {
                    // Extended (or released) meanwhile? Then look again.
                    if Instant::now() >= self.valid_until() && !self.is_released() {
                        self.mark_lost(LostReason::Expired);
                        return self.lost_error();
                    }
                }
            }
        }
    }

    pub(crate) fn mark_lost(&self, reason: LostReason) {
        if self.lost_reason.set(reason).is_ok() {
            observe::lost(&self.span, &self.name, self.by_name, reason);
            if !self.is_released() {
                self.observe_end(End::Lost);
            }
        }
        self.lost.cancel();
        // Dropped outside the lease's lock: the next task in line tries in Redis.
        drop(self.take_turn());
    }

    fn observe_end(&self, end: End) {
        if self.end_observed.swap(true, Ordering::AcqRel) {
            return;
        }
        let held = self.held_since.elapsed();
        observe::ended(&self.span, &self.name, self.by_name, held, end);
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    pub(crate) fn is_held(&self) -> bool {
        !self.is_lost() && !self.is_released() && Instant::now() < self.valid_until()
    }

    pub(crate) fn time_left(&self) -> Option<Duration> {
        if self.is_lost() || self.is_released() {
            return None;
        }
        self.valid_until().checked_duration_since(Instant::now())
    }

    /// What `Debug` shows of a lease, under the type name `kind`: its name,
    /// fencing token, how long it has been held, how long it is certainly
    /// valid, and whether it was lost or released. Never the lease token (it
    /// authorises a release) or raw `Instant`s.
    pub(crate) fn describe(&self, kind: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if let Some(reason) = self.lost_reason.get() {
            format!("lost ({reason})")
        } else if self.is_lost() {
            "lost".to_owned()
        } else if self.is_released() {
            "released".to_owned()
        } else if self.is_held() {
            "held".to_owned()
        } else {
            "expired".to_owned()
        };
        f.debug_struct(kind)
            .field("name", &self.name)
            .field("fence", &self.fence)
            .field("state", &state)
            .field("held_for", &self.held_since.elapsed())
            .field("time_left", &self.time_left())
            .finish()
    }

    /// `Ok(())` while held, else the [`LockError::Lost`] saying why.
    pub(crate) fn check_held(&self) -> Result<(), LockError> {
        if self.is_held() {
            Ok(())
        } else {
            Err(self.lost_error())
        }
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Waker};

    use super::*;

    fn lease() -> Lease {
        let now = Instant::now();
        Lease::new(
            "l".to_owned(),
            "lock:{l}".to_owned(),
            "t".to_owned(),
            None,
            Duration::from_secs(30),
            (now, now),
            None,
        )
    }

    /// A heartbeat step already running when the holder lets go can have its
    /// extend answered after: that must not make the lease valid again.
    #[tokio::test]
    async fn an_extend_answered_after_the_holder_let_go_does_not_revive_the_lease() {
        let lease = lease();
        assert!(lease.is_held());
        lease.ended();
        lease.extended(Instant::now());
        assert!(!lease.is_held());
        assert_eq!(lease.time_left(), None);
    }

    /// After the holder lets go, `lost()` waits, and completes only if the
    /// release finds the lease was no longer its own.
    #[tokio::test]
    async fn lost_after_letting_go_completes_only_when_the_release_finds_it_not_ours() {
        let lease = lease();
        // First polled after the holder let go, before the release's answer.
        lease.ended();
        let mut lost = Box::pin(lease.wait_lost());
        let mut context = Context::from_waker(Waker::noop());
        assert!(lost.as_mut().poll(&mut context).is_pending());
        lease.mark_lost(LostReason::NotOwnerAtRelease);
        let completed = tokio::time::timeout(Duration::from_secs(5), lost).await;
        assert!(
            matches!(
                completed,
                Ok(LockError::Lost {
                    reason: LostReason::NotOwnerAtRelease,
                    ..
                })
            ),
            "lost() completes once the release marks the lease lost: {completed:?}"
        );
    }
}
