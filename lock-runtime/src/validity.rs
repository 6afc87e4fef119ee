//! How long a lease can be counted on: the drift allowance, the local deadline
//! of a lease won by a request sent at a given moment, and durations as Redis
//! takes them (milliseconds).

use std::time::Duration;

use tokio::time::Instant;

/// What `Wait::Forever` (and any deadline too far ahead to represent) means in
/// practice, as tokio's `Instant::far_future` does.
pub(crate) const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

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

/// Whether a lease of `ttl` counted from `valid_from` has half its ttl left at
/// least: enough to hand a task without confirming it first.
pub(crate) fn fresh(valid_from: Instant, ttl: Duration) -> bool {
    valid_until(valid_from, ttl)
        .checked_duration_since(Instant::now())
        .is_some_and(|left| left >= ttl / 2)
}

/// `at + duration`, or [`FOREVER`] from `at` when that is too far to represent.
pub(crate) fn after(at: Instant, duration: Duration) -> Instant {
    at.checked_add(duration).unwrap_or(at + FOREVER)
}

/// A duration in whole milliseconds, as Redis takes ttls (saturating).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_counts_from_its_send_minus_the_drift_allowance() {
        let sent = Instant::now();
        let ttl = Duration::from_secs(10);
        assert_eq!(drift_allowance(ttl), Duration::from_millis(102));
        assert_eq!(valid_until(sent, ttl), sent + Duration::from_millis(9_898));
        assert!(fresh(sent, ttl));
        let Some(long_ago) = sent.checked_sub(Duration::from_secs(6)) else {
            panic!("the monotonic clock starts at boot, more than 6 s ago");
        };
        assert!(!fresh(long_ago, ttl), "under half the ttl left");
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(after(sent, Duration::MAX), sent + FOREVER);
    }
}
