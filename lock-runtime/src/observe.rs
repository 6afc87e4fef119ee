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
        Ok(_) => 0,
        Err(LockError::Busy { .. }) => 1,
        Err(LockError::Timeout { .. }) => 2,
        Err(LockError::Reentrant { .. }) => 3,
        Err(_) => 4,
    };
    span.record("outcome", OUTCOMES[outcome]);
    span.record("attempts", attempts);
    span.record("waited_ms", took.as_millis() as u64);
    #[cfg(feature = "metrics")]
    {
        let label = &meter::OUTCOMES[outcome];
        meter::count(&meter::key("lock_acquire_total", label, name, by_name));
        meter::time(
            &meter::key("lock_acquire_duration_seconds", label, name, by_name),
            took,
        );
        if waited {
            meter::time(
                &meter::key("lock_wait_duration_seconds", label, name, by_name),
                took,
            );
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
    Released = 0,
    Lost = 1,
}

/// A lease of `name` ended after being held for `held`.
pub(crate) fn ended(span: &Span, name: &str, by_name: bool, held: Duration, end: End) {
    span.record("held_ms", held.as_millis() as u64);
    #[cfg(feature = "metrics")]
    {
        let label = &meter::ENDS[end as usize];
        meter::time(
            &meter::key("lock_hold_duration_seconds", label, name, by_name),
            held,
        );
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
            LostReason::Refused => 0,
            LostReason::Expired => 1,
            LostReason::MaxHold => 2,
            LostReason::NotOwnerAtRelease => 3,
        };
        let label = &meter::REASONS[reason];
        meter::count(&meter::key("lock_lost_total", label, name, by_name));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = by_name;
}

/// A release of `name` handed the lock to the next waiter.
pub(crate) fn handed_on(name: &str, by_name: bool) {
    tracing::debug!(target: TARGET, lock = name, "lock handed to the next waiter");
    #[cfg(feature = "metrics")]
    {
        meter::count(&meter::key("lock_handoffs_total", &[], name, by_name));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = by_name;
}

/// The `outcome` of an acquire, as the span records it.
const OUTCOMES: [&str; 5] = ["acquired", "busy", "timeout", "reentrant", "error"];

/// Metrics recorded without allocating: each label but the lock's name is a
/// static, so a client that does not label by name builds its keys from
/// borrowed parts (and, with no recorder installed, the facade's no-op
/// recorder costs a thread-local read).
#[cfg(feature = "metrics")]
mod meter {
    use std::time::Duration;

    use metrics::{Key, Label, Level, Metadata};

    /// Labels by index of [`super::OUTCOMES`].
    pub(super) static OUTCOMES: [[Label; 1]; 5] = [
        [Label::from_static_parts("outcome", "acquired")],
        [Label::from_static_parts("outcome", "busy")],
        [Label::from_static_parts("outcome", "timeout")],
        [Label::from_static_parts("outcome", "reentrant")],
        [Label::from_static_parts("outcome", "error")],
    ];
    /// Labels by [`super::End`] as `usize`.
    pub(super) static ENDS: [[Label; 1]; 2] = [
        [Label::from_static_parts("end", "released")],
        [Label::from_static_parts("end", "lost")],
    ];
    /// Labels of lost leases' reasons.
    pub(super) static REASONS: [[Label; 1]; 4] = [
        [Label::from_static_parts("reason", "refused")],
        [Label::from_static_parts("reason", "expired")],
        [Label::from_static_parts("reason", "max_hold")],
        [Label::from_static_parts("reason", "not_owner_at_release")],
    ];

    static METADATA: Metadata<'static> =
        Metadata::new(super::TARGET, Level::INFO, Some(module_path!()));

    /// `metric` labelled `labels`, and `lock=name` if asked.
    pub(super) fn key(
        metric: &'static str,
        labels: &'static [Label],
        name: &str,
        by_name: bool,
    ) -> Key {
        if by_name {
            let mut labels = labels.to_vec();
            labels.push(Label::new("lock", name.to_owned()));
            Key::from_parts(metric, labels)
        } else {
            Key::from_static_labels(metric, labels)
        }
    }

    /// Adds one to the counter `key`.
    pub(super) fn count(key: &Key) {
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
    }

    /// Records `took` (in seconds) in the histogram `key`.
    pub(super) fn time(key: &Key, took: Duration) {
        metrics::with_recorder(|recorder| {
            recorder
                .register_histogram(key, &METADATA)
                .record(took.as_secs_f64())
        });
    }
}
