//! Whether a handoff notice gives a waiter the lock without another request.

use std::time::Duration;

use tokio::time::Instant;

use crate::backend::Handoff;
use crate::validity::fresh;

/// What a waiter may do with the handoff notices it got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handed {
    /// No handoff answers our latest queued attempt: a wake-up at most.
    No,
    /// Handed to us, but our latest queued attempt is too old to count the lease
    /// from: confirm it with another attempt.
    Stale,
    /// Handed to us after the attempt sent at `valid_from` was queued, so the
    /// key's ttl started after `valid_from`: the lease is ours from then.
    Yes { fence: u64, valid_from: Instant },
}

/// Whether `handoff` gives us the lock (a lease of `ttl`) without another round
/// trip.
///
/// Only a handoff that names our latest queued attempt counts: the release read
/// that attempt's number from our place in the queue, so the handoff happened
/// after that attempt reached Redis, hence after it was sent, and the handed
/// lease ends no sooner than `sent + ttl`. A handoff naming an older attempt is
/// stale (e.g. a notice delayed past a lease that expired before we re-queued):
/// only a wake-up. Half a ttl must be left, or we confirm instead.
pub(crate) fn handed_over(
    handoff: Option<Handoff>,
    queued_by: Option<(u64, Instant)>,
    ttl: Duration,
) -> Handed {
    let (Some(handoff), Some((attempt, sent_at))) = (handoff, queued_by) else {
        return Handed::No;
    };
    if handoff.attempt != attempt {
        return Handed::No;
    }
    if fresh(sent_at, ttl) {
        Handed::Yes {
            fence: handoff.fence,
            valid_from: sent_at,
        }
    } else {
        Handed::Stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_handoff_answering_the_latest_queued_attempt_counts() {
        let ttl = Duration::from_secs(10);
        let now = Instant::now();
        let handoff = |attempt| Some(Handoff { attempt, fence: 9 });
        assert_eq!(handed_over(None, Some((3, now)), ttl), Handed::No);
        assert_eq!(handed_over(handoff(3), None, ttl), Handed::No);
        // A notice for an earlier attempt: that handoff came before our latest
        // attempt was queued (and its lease may be gone), so it is only a wake-up.
        assert_eq!(handed_over(handoff(2), Some((3, now)), ttl), Handed::No);
        assert_eq!(
            handed_over(handoff(3), Some((3, now)), ttl),
            Handed::Yes {
                fence: 9,
                valid_from: now
            }
        );
        // Queued too long ago to count on half a ttl: confirm with a request.
        let Some(long_ago) = now.checked_sub(Duration::from_secs(6)) else {
            panic!("the monotonic clock starts at boot, more than 6 s ago");
        };
        assert_eq!(
            handed_over(handoff(3), Some((3, long_ago)), ttl),
            Handed::Stale
        );
    }
}
