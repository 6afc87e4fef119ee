//! The background task that keeps a held lease alive.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::lease::Lease;
use crate::backend::Backend;
use crate::error::{LockError, LostReason};
use crate::options::Replicas;

/// Compare-and-`PEXPIRE`: `Ok(true)` if the lease was still ours and now lasts
/// `ttl` more.
pub(crate) async fn extend(
    backend: &Backend,
    lease: &Lease,
    ttl: Duration,
) -> Result<bool, LockError> {
    backend
        .extend(&lease.key, &lease.token, ttl)
        .await
        .map_err(|source| LockError::Redis {
            name: lease.name.clone(),
            action: "extend",
            source,
        })
}

/// [`extend`] to the lease's ttl; with `replicas`, the extend counts only once
/// that many replicas acknowledged it (fewer is an error: tried again).
async fn extend_replicated(
    backend: &Backend,
    lease: &Lease,
    replicas: Option<Replicas>,
) -> Result<bool, LockError> {
    let extended = extend(backend, lease, lease.ttl).await?;
    let Some(replicas) = replicas.filter(|_| extended) else {
        return Ok(extended);
    };
    let acknowledged = backend
        .replicas_acknowledging(&lease.key, replicas.count, replicas.timeout)
        .await
        .map_err(|source| LockError::Redis {
            name: lease.name.clone(),
            action: "extend",
            source,
        })?;
    if acknowledged < replicas.count {
        return Err(LockError::Unreplicated {
            name: lease.name.clone(),
            acknowledged,
            wanted: replicas.count,
        });
    }
    Ok(true)
}

/// Extends `lease` every `interval` until the task is dropped (the guard aborts it).
///
/// Marks the lease lost, and stops, when Redis refuses an extend, when the local
/// deadline passes without a confirmed extend (Redis slow, paused or unreachable;
/// an extend still in flight then is abandoned), or when `max_hold` is reached.
/// A lost lease is never extended again.
pub(crate) async fn keep_alive(
    backend: Backend,
    lease: Arc<Lease>,
    interval: Duration,
    max_hold: Option<Duration>,
    replicas: Option<Replicas>,
) {
    // Counted from when the lease was known to be ours (as `min_hold` is), not from
    // the earlier send time its validity is counted from. A limit too far ahead to
    // represent is no limit.
    let hold_limit = max_hold.and_then(|max| lease.held_since.checked_add(max));
    let retry_after_error =
        (interval / 4).clamp(Duration::from_millis(1), Duration::from_millis(250));
    let mut next_beat = lease.acquired_at + interval;
    // The guard aborts this task before it lets go, but a step already running
    // (another worker thread) finishes: once the lease has ended, whatever that
    // step sees (a deadline reset to the past, an extend refused because the
    // release deleted the key) is no loss.
    let lose = |reason| {
        if !lease.is_released() {
            lease.mark_lost(reason);
        }
    };
    loop {
        let wake = hold_limit.map_or(next_beat, |limit| next_beat.min(limit));
        tokio::select! {
            biased;
            () = sleep_until(lease.valid_until()) => {
                lose(LostReason::Expired);
                return;
            }
            () = sleep_until(wake) => {}
        }
        if hold_limit.is_some_and(|limit| Instant::now() >= limit) {
            lose(LostReason::MaxHold);
            return;
        }
        let sent_at = Instant::now();
        let outcome = tokio::select! {
            biased;
            () = sleep_until(lease.valid_until()) => {
                lose(LostReason::Expired);
                return;
            }
            outcome = extend_replicated(&backend, &lease, replicas) => outcome,
        };
        if lease.is_released() {
            return;
        }
        match outcome {
            Ok(true) => {
                lease.extended(sent_at);
                next_beat = sent_at + interval;
                tracing::trace!(lock = %lease.name, "lease extended");
            }
            Ok(false) => {
                lose(LostReason::Refused);
                return;
            }
            Err(error) => {
                tracing::warn!(lock = %lease.name, %error, "extend failed; retrying until the lease's local deadline");
                next_beat = Instant::now() + retry_after_error;
            }
        }
    }
}
