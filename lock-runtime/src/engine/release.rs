//! Ending a held lease: compare-and-delete (or, before `min_hold` is over, leave
//! the key to expire then), handing the lock to the next waiter, and passing the
//! line's turn on.

use std::time::Duration;

use tokio::time::Instant;

use super::heartbeat::extend;
use super::lease::Lease;
use super::line::Turn;
use super::pending::{UnsettledToken, release_in_background};
use crate::backend::{Backend, Released};
use crate::error::{LockError, LostReason};
use crate::observe;
use crate::validity::{after, millis};

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
    backend: &Backend,
    lease: &Lease,
    min_hold: Option<Duration>,
    mut turn: Option<Turn>,
    again: bool,
) -> Result<Released, LockError> {
    let min_hold_left = min_hold
        .map(|min| after(lease.held_since, min))
        .and_then(|until| until.checked_duration_since(Instant::now()))
        .filter(|left| millis(*left) > 0);
    let released = match min_hold_left {
        Some(left) => {
            tracing::debug!(lock = %lease.name, left_ms = millis(left), "released before min_hold; key left to expire");
            if extend(backend, lease, left).await? {
                Released::Ended
            } else {
                Released::NotOurs
            }
        }
        None => {
            let next = turn.as_mut().and_then(Turn::next_waiter).cloned();
            if let (Some(turn), Some(next)) = (turn.as_mut(), next.as_ref()) {
                // From now until the reply, the lock may be the next task's.
                turn.arm_next(UnsettledToken::holding(backend, &lease.key, &next.token));
            }
            let held = lease.held_since.elapsed();
            let keep = turn.as_ref().is_some_and(|turn| turn.may_keep(held));
            let sent_at = Instant::now();
            // On an error (or if this future is dropped), the turn goes to the
            // next task with its armed token.
            let released = match backend
                .release(&lease.key, &lease.token, next.as_ref().map(|n| (n, keep)))
                .await
            {
                Ok(released) => released,
                Err(source) => {
                    // It may not have reached Redis: send it again in the
                    // background (a compare-and-delete of our own token, so
                    // harmless if the first did its work).
                    release_in_background(backend, lease.key.clone(), lease.token.clone());
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
    if matches!(released, Released::HandedOn | Released::HandedHere { .. }) {
        observe::handed_on(&lease.name, backend.metrics_by_name());
    }
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
