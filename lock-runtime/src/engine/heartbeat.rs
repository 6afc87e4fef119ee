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

/// Extends `leases` together: one lease as [`extend_replicated`], a set
/// taken together (one server or slot, no replicas) in one request. For each,
/// whether it was still ours and now lasts its ttl more.
async fn extend_all(
    backend: &Backend,
    leases: &[Arc<Lease>],
    replicas: Option<Replicas>,
) -> Result<Vec<bool>, LockError> {
    let (first, rest) = match leases {
        [] => return Ok(Vec::new()),
        [lease] => return Ok(vec![extend_replicated(backend, lease, replicas).await?]),
        [first, rest @ ..] => (first, rest),
    };
    let keys: Vec<&str> = leases.iter().map(|lease| lease.key.as_str()).collect();
    let tokens: Vec<&str> = leases.iter().map(|lease| lease.token.as_str()).collect();
    debug_assert!(rest.iter().all(|lease| lease.ttl == first.ttl));
    backend
        .extend_together(&keys, &tokens, first.ttl)
        .await
        .map_err(|source| LockError::Redis {
            name: first.name.clone(),
            action: "extend",
            source,
        })
}

/// Extends `leases` every `interval` until the task is dropped (the guard
/// aborts it): one lease, or the leases of a set taken together (same ttl,
/// won by one request), extended by one request per beat.
///
/// Marks a lease lost, and stops, when Redis refuses its extend, when the
/// local deadline passes without a confirmed extend (Redis slow, paused or
/// unreachable; an extend still in flight then is abandoned: every lease is
/// lost), or when `max_hold` is reached (every lease). A lost lease is never
/// extended again.
pub(crate) async fn keep_alive(
    backend: Backend,
    leases: Vec<Arc<Lease>>,
    interval: Duration,
    max_hold: Option<Duration>,
    replicas: Option<Replicas>,
) {
    let Some(first) = leases.first().map(Arc::clone) else {
        return;
    };
    // Counted from when the lease was known to be ours (as `min_hold` is), not from
    // the earlier send time its validity is counted from. A limit too far ahead to
    // represent is no limit.
    let hold_limit = max_hold.and_then(|max| first.held_since.checked_add(max));
    let retry_after_error =
        (interval / 4).clamp(Duration::from_millis(1), Duration::from_millis(250));
    let mut next_beat = first.acquired_at + interval;
    // The earliest local deadline (a set's leases share theirs).
    let valid_until = || {
        leases
            .iter()
            .map(|lease| lease.valid_until())
            .min()
            .unwrap_or_else(Instant::now)
    };
    // The guard aborts this task before it lets go, but a step already running
    // (another worker thread) finishes: once a lease has ended, whatever that
    // step sees (a deadline reset to the past, an extend refused because the
    // release deleted the key) is no loss.
    let lose = |lease: &Lease, reason| {
        if !lease.is_released() {
            lease.mark_lost(reason);
        }
    };
    let lose_all = |reason| leases.iter().for_each(|lease| lose(lease, reason));
    loop {
        let wake = hold_limit.map_or(next_beat, |limit| next_beat.min(limit));
        tokio::select! {
            biased;
            () = sleep_until(valid_until()) => {
                lose_all(LostReason::Expired);
                return;
            }
            () = sleep_until(wake) => {}
        }
        if hold_limit.is_some_and(|limit| Instant::now() >= limit) {
            lose_all(LostReason::MaxHold);
            return;
        }
        let sent_at = Instant::now();
        let outcome = tokio::select! {
            biased;
            () = sleep_until(valid_until()) => {
                lose_all(LostReason::Expired);
                return;
            }
            outcome = extend_all(&backend, &leases, replicas) => outcome,
        };
        if leases.iter().any(|lease| lease.is_released()) {
            return;
        }
        match outcome {
            Ok(extended) if extended.len() == leases.len() && extended.iter().all(|ok| *ok) => {
                for lease in &leases {
                    lease.extended(sent_at);
                }
                next_beat = sent_at + interval;
                tracing::trace!(lock = %first.name, locks = leases.len(), "lease extended");
            }
            Ok(extended) => {
                // Refused for some: those are lost; the others keep the time
                // this extend gave them, and end there (a set is lost with
                // any of its leases).
                for (index, lease) in leases.iter().enumerate() {
                    if extended.get(index) == Some(&true) {
                        lease.extended(sent_at);
                    } else {
                        lose(lease, LostReason::Refused);
                    }
                }
                return;
            }
            Err(error) => {
                tracing::warn!(lock = %first.name, %error, "extend failed; retrying until the lease's local deadline");
                next_beat = Instant::now() + retry_after_error;
            }
        }
    }
}
