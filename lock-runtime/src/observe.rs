//! What the engine tells the outside about its locks: `tracing` spans and
//! events, and with the `metrics` feature, counters and histograms on the
//! `metrics` facade. Every span and event of the crate has a target starting
//! with `lock_runtime` (so `RUST_LOG=lock_runtime=debug` shows them all); the
//! happy path is quiet at INFO.
//!
//! Spans: `lock.acquire` (fields `lock`, `wait`, then `outcome`, `attempts`,
//! `waited_ms`) around each acquire, and `lock.hold` (`lock`, `fence`, then
//! `held_ms`) for the life of each lease, entered around the body of `run`
//! and the attribute. Events: a lost lease (WARN), handoffs and background
//! releases (DEBUG; a background release that gave up, WARN).
//!
//! Metrics (all labelled by `outcome` or `end`, and by `lock` only where the
//! client asked: [`metrics_by_lock_name`](crate::LockClientBuilder::metrics_by_lock_name)):
//! `lock_acquire_total` and `lock_acquire_duration_seconds` per acquire
//! (`outcome`: `acquired`, `busy`, `timeout`, `reentrant`, `error`),
//! `lock_wait_duration_seconds` for acquires that found the lock taken,
//! `lock_hold_duration_seconds` per lease (`end`: `released`, `lost`),
//! `lock_lost_total` (`reason`) and `lock_handoffs_total`.

use std::time::Duration;

use tracing::Span;
use tracing::field::Empty;

use crate::error::{LockError, LostReason};

/// The target of the spans and events made here.
pub(crate) const TARGET: &str = "lock_runtime";

/// The span around one acquire of lock `name`.
pub(crate) fn acquire_span(name: &str, wait: &crate::Wait) -> Span {
    tracing::debug_span!(
        target: TARGET,
        "lock.acquire",
        lock = name,
        wait = ?wait,
        outcome = Empty,
        attempts = Empty,
        waited_ms = Empty
    )
}

/// An acquire of `name` ended with `result` after `took`, having sent
/// `attempts` attempts; `waited`: it found the lock taken at least once.
pub(crate) fn acquired<T>(
    span: &Span,
    name: &str,
    by_name: bool,
    result: &Result<T, LockError>,
    attempts: u64,
    waited: bool,
    took: Duration,
) {
    let outcome = match result {
        Ok(_) => "acquired",
        Err(LockError::Busy { .. }) => "busy",
        Err(LockError::Timeout { .. }) => "timeout",
        Err(LockError::Reentrant { .. }) => "reentrant",
        Err(_) => "error",
    };
    span.record("outcome", outcome);
    span.record("attempts", attempts);
    span.record("waited_ms", took.as_millis() as u64);
    #[cfg(feature = "metrics")]
    {
        let labels = labels("outcome", outcome, name, by_name);
        metrics::counter!("lock_acquire_total", labels.clone()).increment(1);
        metrics::histogram!("lock_acquire_duration_seconds", labels.clone())
            .record(took.as_secs_f64());
        if waited {
            metrics::histogram!("lock_wait_duration_seconds", labels.clone())
                .record(took.as_secs_f64());
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (name, by_name, waited);
}

/// The span of one lease of lock `name`, for as long as it lives, under
/// `parent` (the span the acquire was called in, not the acquire's own).
pub(crate) fn hold_span(parent: &Span, name: &str, fence: Option<u64>) -> Span {
    tracing::debug_span!(target: TARGET, parent: parent, "lock.hold", lock = name, fence, held_ms = Empty)
}

/// How a lease ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum End {
    Released,
    Lost,
}

/// A lease of `name` ended after being held for `held`.
pub(crate) fn ended(span: &Span, name: &str, by_name: bool, held: Duration, end: End) {
    span.record("held_ms", held.as_millis() as u64);
    #[cfg(feature = "metrics")]
    {
        let end = match end {
            End::Released => "released",
            End::Lost => "lost",
        };
        metrics::histogram!(
            "lock_hold_duration_seconds",
            labels("end", end, name, by_name)
        )
        .record(held.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (name, by_name, end);
}

/// A lease of `name` was found lost, for `reason`.
pub(crate) fn lost(span: &Span, name: &str, by_name: bool, reason: LostReason) {
    span.in_scope(|| tracing::warn!(target: TARGET, lock = name, %reason, "lease lost"));
    #[cfg(feature = "metrics")]
    {
        let reason = match reason {
            LostReason::Refused => "refused",
            LostReason::Expired => "expired",
            LostReason::MaxHold => "max_hold",
            LostReason::NotOwnerAtRelease => "not_owner_at_release",
        };
        metrics::counter!("lock_lost_total", labels("reason", reason, name, by_name)).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = by_name;
}

/// A release of `name` handed the lock to the next waiter.
pub(crate) fn handed_on(name: &str, by_name: bool) {
    tracing::debug!(target: TARGET, lock = name, "lock handed to the next waiter");
    #[cfg(feature = "metrics")]
    {
        let labels: Vec<metrics::Label> = if by_name {
            vec![metrics::Label::new("lock", name.to_owned())]
        } else {
            Vec::new()
        };
        metrics::counter!("lock_handoffs_total", labels.clone()).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = by_name;
}

/// `key=value`, and `lock=name` if asked.
#[cfg(feature = "metrics")]
fn labels(
    key: &'static str,
    value: &'static str,
    name: &str,
    by_name: bool,
) -> Vec<metrics::Label> {
    let mut labels = vec![metrics::Label::new(key, value)];
    if by_name {
        labels.push(metrics::Label::new("lock", name.to_owned()));
    }
    labels
}
