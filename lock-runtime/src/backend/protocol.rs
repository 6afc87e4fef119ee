//! The one typed home of the wire formats the scripts (`scripts.rs`) speak: the
//! keys of one lock, the order of each script's arguments, the codes of its
//! replies, and the notices a release sends to waiters. A change to a script's
//! contract changes this file and the Lua, nothing else.

use std::time::Duration;

use super::scripts;
use crate::validity::millis;

/// Appends the four keys of lock `key` that the acquire and release scripts take,
/// all in its hash slot: the lock, its fencing counter (`:fence`), its FIFO wait
/// queue (`:queue`) and its waiters' entries (`:waiters`). The derived names are
/// built in one buffer, as this runs on every contended acquire and release.
fn lock_keys<'a>(cmd: &'a mut redis::Cmd, key: &str) -> &'a mut redis::Cmd {
    cmd.arg(key);
    let mut derived = String::with_capacity(key.len() + ":waiters".len());
    for suffix in [":fence", ":queue", ":waiters"] {
        derived.clear();
        derived.push_str(key);
        derived.push_str(suffix);
        cmd.arg(derived.as_str());
    }
    cmd
}

/// One acquire attempt, as the acquire script takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptRequest<'a> {
    pub(crate) key: &'a str,
    pub(crate) token: &'a str,
    pub(crate) ttl: Duration,
    /// How long the fence key lives in ms (`0`: no fencing token).
    pub(crate) fence_lifetime_ms: u64,
    /// Queue the token if the lock is busy (the caller waits).
    pub(crate) queue: bool,
    /// 1, 2, … within one acquire: a handoff notice names the attempt it answers.
    pub(crate) number: u64,
    pub(crate) fair: bool,
    /// When the waiter first asked, in µs since the epoch by this client's
    /// clock: its place among a quorum's waiters, the same on every node.
    pub(crate) arrived_us: u64,
}

impl AttemptRequest<'_> {
    /// The plain `SET NX PX` that takes a free lock with no script.
    pub(crate) fn plain_set(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key)
            .arg(self.token)
            .arg("NX")
            .arg("PX")
            .arg(millis(self.ttl));
        cmd
    }

    /// The acquire script call; `channel` is where the waiter's notices go.
    pub(crate) fn script(&self, channel: &str) -> redis::Cmd {
        // A waiter's place in the queue is kept for one ttl without a refresh: a
        // dead waiter is handed the lock at most once, and holds up the others by
        // at most its own ttl. Zero: do not queue (try once).
        let place = if self.queue { millis(self.ttl) } else { 0 };
        let mut cmd = scripts::evalsha(&scripts::ACQUIRE, 4);
        lock_keys(&mut cmd, self.key)
            .arg(self.token)
            .arg(millis(self.ttl))
            .arg(self.fence_lifetime_ms)
            .arg(place)
            .arg(self.number)
            .arg(if self.fair { "1" } else { "0" })
            .arg(channel);
        cmd
    }
}

/// The outcome of one acquire attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The key now holds the token, with this fencing token when one was asked for.
    Acquired { fence: Option<u64> },
    /// Someone else holds it (for about `holder_ttl` more, when it has an expiry).
    Busy { holder_ttl: Option<Duration> },
}

impl Attempt {
    /// The acquire script's reply `{acquired, value}`.
    pub(crate) fn from_reply((acquired, value): (i64, i64), fencing: bool) -> Attempt {
        if acquired == 1 {
            Attempt::Acquired {
                fence: fencing.then_some(value as u64),
            }
        } else {
            Attempt::Busy {
                holder_ttl: u64::try_from(value).ok().map(Duration::from_millis),
            }
        }
    }
}

impl AttemptRequest<'_> {
    /// One quorum node's share of this attempt (see [`scripts::QUORUM_ACQUIRE`]);
    /// `channel` is where the waiter is woken.
    pub(crate) fn quorum_script(&self, channel: &str) -> redis::Cmd {
        let mut cmd = scripts::evalsha(&scripts::QUORUM_ACQUIRE, 4);
        quorum_keys(&mut cmd, self.key)
            .arg(format!("{}:fence", self.key))
            .arg(self.token)
            .arg(millis(self.ttl))
            .arg(if self.fence_lifetime_ms > 0 { "1" } else { "0" })
            .arg(self.waiter_place_ms())
            .arg(channel)
            .arg(self.number)
            .arg(self.arrived_us);
        cmd
    }

    /// How long a waiter's registration lasts without another attempt: one ttl
    /// (`0`: trying once, not registered).
    fn waiter_place_ms(&self) -> u64 {
        if self.queue { millis(self.ttl) } else { 0 }
    }

    /// Gives back what this attempt won on one quorum node (see
    /// [`scripts::QUORUM_RELEASE`]), registering the waiter there.
    pub(crate) fn quorum_rollback(&self, channel: &str) -> redis::Cmd {
        let mut cmd = scripts::evalsha(&scripts::QUORUM_RELEASE, 4);
        quorum_keys(&mut cmd, self.key)
            .arg(format!("{}:released", self.key))
            .arg(self.token)
            .arg("rollback")
            .arg(self.waiter_place_ms())
            .arg(channel)
            .arg(self.number)
            .arg(self.arrived_us);
        cmd
    }
}

/// The keys every quorum acquire and release take first: the lock, the
/// waiters to wake in arrival order (`:wake`), and their entries (`:wakers`).
fn quorum_keys<'a>(cmd: &'a mut redis::Cmd, key: &str) -> &'a mut redis::Cmd {
    cmd.arg(key)
        .arg(format!("{key}:wake"))
        .arg(format!("{key}:wakers"))
}

/// What one quorum node said to an acquire attempt: granted or busy, and with
/// fencing its fence key's value and its clock (µs since the epoch), else zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeAttempt {
    pub(crate) granted: bool,
    /// Granted because the key already held the token: a release handed it to
    /// us (or this attempt was sent again).
    pub(crate) was_ours: bool,
    /// When busy: the holder's remaining lease, if it has an expiry.
    pub(crate) holder_ttl: Option<Duration>,
    pub(crate) last_fence: u64,
    pub(crate) time_us: u64,
}

impl NodeAttempt {
    /// The quorum acquire script's reply `{granted, pttl, fence, time}`
    /// (`granted` 1 if it set the key, 2 if the key held the token already, 0
    /// if busy; the numbers as decimal strings).
    pub(crate) fn from_reply(
        (granted, pttl, fence, time): (i64, String, String, String),
    ) -> NodeAttempt {
        NodeAttempt {
            granted: granted >= 1,
            was_ours: granted == 2,
            holder_ttl: (granted < 1)
                .then(|| pttl.parse().ok().map(Duration::from_millis))
                .flatten(),
            last_fence: fence.parse().unwrap_or(0),
            time_us: time.parse().unwrap_or(0),
        }
    }
}

/// The waiters one release's nodes handed the lock to, counted as the nodes
/// answer (see [`scripts::QUORUM_RELEASE`]): the first handed it by a majority
/// is told it holds the lock; once every node answered, any other is woken,
/// to give back with an attempt what it cannot keep.
#[derive(Debug)]
pub(crate) struct QuorumHandoffs {
    majority: usize,
    /// Each waiter handed the lock: its token, on how many nodes, the least
    /// attempt number they saw, its channel.
    waiters: Vec<(String, usize, u64, String)>,
    /// The waiter told it holds the lock.
    told: Option<String>,
}

/// A notice to publish: the channel, and the payload.
pub(crate) type Tell = (String, String);

impl QuorumHandoffs {
    pub(crate) fn new(majority: usize) -> Self {
        QuorumHandoffs {
            majority,
            waiters: Vec::new(),
            told: None,
        }
    }

    /// Counts one node's release reply `{held, token, attempt, channel}`:
    /// whether the lock was ours there, and the notice to publish when this
    /// node made a majority hand it to one waiter.
    pub(crate) fn note(
        &mut self,
        (held, token, attempt, channel): (i64, String, String, String),
    ) -> (bool, Option<Tell>) {
        let ours = held == 1;
        let Ok(attempt) = attempt.parse::<u64>() else {
            return (ours, None);
        };
        if token.is_empty() {
            return (ours, None);
        }
        let index = match self.waiters.iter().position(|(known, ..)| *known == token) {
            Some(index) => {
                let waiter = &mut self.waiters[index];
                waiter.1 += 1;
                waiter.2 = waiter.2.min(attempt);
                index
            }
            None => {
                self.waiters.push((token, 1, attempt, channel));
                self.waiters.len() - 1
            }
        };
        let (token, nodes, attempt, channel) = &self.waiters[index];
        if self.told.is_some() || *nodes < self.majority {
            return (ours, None);
        }
        self.told = Some(token.clone());
        // The handoff names the least attempt the nodes saw: the waiter takes
        // it as its lease only if that is its latest (then every one of those
        // nodes handed it the lock after that attempt was sent, and the lease
        // counts from that send), else it is a wake-up. A fenced waiter is
        // woken: its attempt writes the fencing token back to a majority.
        let fenced = crate::token::record(token).is_none_or(|record| record.fenced);
        let payload = if fenced {
            token.clone()
        } else {
            format!("{token}:{attempt}:0")
        };
        (ours, Some((channel.clone(), payload)))
    }

    /// Once every node answered: a wake-up for each waiter handed the lock
    /// that was not told it holds it (no majority agreed, or it got only a
    /// minority), so that it finds out with an attempt and gives back what it
    /// cannot keep.
    pub(crate) fn finish(self) -> Vec<Tell> {
        let told = self.told;
        self.waiters
            .into_iter()
            .filter(|(token, ..)| told.as_ref() != Some(token))
            .map(|(token, _, _, channel)| (channel, token))
            .collect()
    }
}

/// The fencing token of a lease whose attempt was answered with these
/// `(last fence, clock)` pairs (granting and busy nodes alike): larger than
/// every fence they hold, and than each one's clock in µs (so it stays above
/// earlier tokens if every fence key that held them is gone, as long as the
/// clocks do not go back).
pub(crate) fn quorum_fence(answered: impl IntoIterator<Item = (u64, u64)>) -> u64 {
    answered
        .into_iter()
        .map(|(last, time_us)| last.saturating_add(1).max(time_us))
        .max()
        .unwrap_or(1)
}

/// Writes `fence` back to one quorum node (see [`scripts::QUORUM_FENCE`]).
pub(crate) fn quorum_fence_write(
    key: &str,
    token: &str,
    fence: u64,
    lifetime_ms: u64,
) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::QUORUM_FENCE, 2);
    cmd.arg(key)
        .arg(format!("{key}:fence"))
        .arg(token)
        .arg(fence)
        .arg(lifetime_ms);
    cmd
}

/// One quorum node's share of an extend (see [`scripts::QUORUM_EXTEND`]).
pub(crate) fn quorum_extend(key: &str, token: &str, ttl: Duration) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::QUORUM_EXTEND, 2);
    cmd.arg(key)
        .arg(format!("{key}:released"))
        .arg(token)
        .arg(millis(ttl));
    cmd
}

/// One quorum node's share of a release (see [`scripts::QUORUM_RELEASE`]),
/// leaving a receipt for `receipt` so an extend in flight cannot undo it.
pub(crate) fn quorum_release(key: &str, token: &str, receipt: Duration, force: bool) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::QUORUM_RELEASE, 4);
    quorum_keys(&mut cmd, key)
        .arg(format!("{key}:released"))
        .arg(token)
        .arg(if force { "force" } else { "release" })
        .arg(millis(receipt).max(1));
    cmd
}

/// The extend script call: compare-and-`PEXPIRE` to `ttl`.
pub(crate) fn extend(key: &str, token: &str, ttl: Duration) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::EXTEND, 1);
    cmd.arg(key).arg(token).arg(millis(ttl));
    cmd
}

/// What a release needs to take the lock for the next task of this client in line.
#[derive(Debug, Clone)]
pub(crate) struct NextTask {
    /// The task's token: the lock is taken for it in Redis under this token.
    pub(crate) token: String,
    /// Its lease's ttl in ms.
    pub(crate) ttl_ms: u64,
    /// How long its fence key lives in ms, `0` without fencing.
    pub(crate) fence_lifetime_ms: u64,
}

/// The release script call for `token`; `next`: the next task in line, and
/// whether it takes the lock ahead of the queue.
///
/// `receipt`: leave a receipt of the release (the key `<key>:released` holding
/// the token) for this long, so that the same release sent again (a cluster
/// connection re-sends a command whose answer a dropped connection lost) is
/// answered as done, not as a lease that was no longer ours.
pub(crate) fn release(
    key: &str,
    token: &str,
    channel: &str,
    receipt: Option<Duration>,
    next: Option<(&NextTask, bool)>,
) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::RELEASE, if receipt.is_some() { 5 } else { 4 });
    lock_keys(&mut cmd, key);
    if receipt.is_some() {
        let mut receipt_key = String::with_capacity(key.len() + ":released".len());
        receipt_key.push_str(key);
        receipt_key.push_str(":released");
        cmd.arg(receipt_key);
    }
    cmd.arg(token).arg(channel).arg(receipt.map_or(0, millis));
    if let Some((next, keep)) = next {
        cmd.arg(&next.token)
            .arg(next.ttl_ms)
            .arg(next.fence_lifetime_ms)
            .arg(if keep { "1" } else { "0" });
    }
    cmd
}

/// The release script call that frees lock `key` only if `token` holds it
/// (an operator's forced release: no receipt, no queue changes otherwise).
pub(crate) fn force_release(key: &str, token: &str, channel: &str) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::RELEASE, 4);
    lock_keys(&mut cmd, key).arg(token).arg(channel).arg("-1");
    cmd
}

/// The forced release of a lock with many holders: `token` lets go if it
/// holds, else nothing changes.
pub(crate) fn many_force_release(key: &str, token: &str) -> redis::Cmd {
    let mut cmd = many_release(key, token);
    cmd.arg("force");
    cmd
}

/// What a release did with a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    /// The token did not hold it (a waiter leaving, or a lease already lost).
    NotOurs,
    /// Freed it (or, before `min_hold` is over, left it to expire then).
    Ended,
    /// Handed it to the next queued waiter.
    HandedOn,
    /// Took it for the next task of this client in line (within the streak, or
    /// no other process's waiter was queued), with this fencing token when that
    /// task asked for one.
    HandedHere { fence: Option<u64> },
}

/// A script's result code with the strings that came with it: the reply
/// `{code, {strings…}}`, or a bare `code` (no strings).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Coded(pub(crate) i64, pub(crate) Vec<String>);

impl redis::FromRedisValue for Coded {
    fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
        match value {
            redis::Value::Int(code) => Ok(Coded(code, Vec::new())),
            other => {
                let (code, strings) = redis::from_redis_value(other)?;
                Ok(Coded(code, strings))
            }
        }
    }
}

impl Released {
    /// The release script's reply, and the notices for this client's own waiters
    /// that came with it (to deliver in process). `fenced_next`: the next task
    /// asked for a fencing token.
    pub(crate) fn from_reply(
        Coded(code, strings): Coded,
        fenced_next: bool,
    ) -> (Released, Vec<String>) {
        let released = match code {
            // The reply then carries the fencing token taken for the next task.
            3 => {
                return (
                    Released::HandedHere {
                        fence: strings
                            .first()
                            .and_then(|fence| fence.parse().ok())
                            .filter(|_| fenced_next),
                    },
                    Vec::new(),
                );
            }
            2 => Released::HandedOn,
            1 => Released::Ended,
            _ => Released::NotOurs,
        };
        (released, strings)
    }
}

/// A release handed the lock to a waiter: which of its attempts the release saw
/// queued (the handoff happened after that attempt reached Redis), and the
/// fencing token that came with the lock (0 without fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handoff {
    pub(crate) attempt: u64,
    pub(crate) fence: u64,
}

/// One notice for one waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `<token>`: try now.
    Wake,
    /// `<token>:<attempt>:<fence>`: the lock is the waiter's.
    Handoff(Handoff),
    /// `<token>:<ttl ms>`: the lock was just handed to the waiter ahead for
    /// this long; check again by then.
    HeadsUp { ttl: Duration },
}

/// Splits a notice payload into the waiter's token and the notice. `None` for a
/// malformed payload.
pub(crate) fn parse_notice(payload: &str) -> Option<(&str, Notice)> {
    let mut parts = payload.split(':');
    let token = parts.next()?;
    let notice = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Notice::Wake,
        (Some(ttl), None, _) => Notice::HeadsUp {
            ttl: Duration::from_millis(ttl.parse().ok()?),
        },
        (Some(attempt), Some(fence), None) => Notice::Handoff(Handoff {
            attempt: attempt.parse().ok()?,
            fence: fence.parse().ok()?,
        }),
        _ => return None,
    };
    Some((token, notice))
}

/// Who may hold a lock together: one holder, or many (a semaphore's permits,
/// read/write). The shape travels in the token: an exclusive token is 32 hex
/// digits; a shared one has a prefix, `s<permits>-`, `r-` or `w-`, so every
/// request that names a token (extend, release, the background releases)
/// reaches the right script without being told, and a waiter's queue entry
/// says what it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Exclusive,
    /// A semaphore of this many permits.
    Permits(u32),
    Read,
    Write,
}

impl Shape {
    /// The shape `options` ask for.
    pub(crate) fn of(options: &crate::options::LockOptions) -> Shape {
        use crate::options::Mode;
        match (options.permits, options.mode) {
            (Some(permits), _) => Shape::Permits(permits),
            (None, Mode::Read) => Shape::Read,
            (None, Mode::Write) => Shape::Write,
            (None, _) => Shape::Exclusive,
        }
    }

    /// The shape a token was made for (read from its random part: the
    /// holder's record after the first `|` may hold `-`s).
    pub(crate) fn of_token(token: &str) -> Shape {
        let random = token.split('|').next().unwrap_or(token);
        match random.split_once('-').map(|(prefix, _)| prefix) {
            None => Shape::Exclusive,
            Some("r") => Shape::Read,
            Some("w") => Shape::Write,
            Some(permits) => permits
                .strip_prefix('s')
                .and_then(|count| count.parse().ok())
                .map_or(Shape::Exclusive, Shape::Permits),
        }
    }

    /// What a token of this shape starts with (empty: exclusive).
    pub(crate) fn token_prefix(self) -> String {
        match self {
            Shape::Exclusive => String::new(),
            Shape::Permits(permits) => format!("s{permits}-"),
            Shape::Read => "r-".to_owned(),
            Shape::Write => "w-".to_owned(),
        }
    }

    /// How an error message names the shape (as the scripts name a
    /// holder's: `a semaphore of 4`).
    pub(crate) fn describe(self) -> String {
        match self {
            Shape::Exclusive => "an exclusive lock".to_owned(),
            Shape::Permits(permits) => format!("a semaphore of {permits}"),
            Shape::Read => "a read lock".to_owned(),
            Shape::Write => "a write lock".to_owned(),
        }
    }

    pub(crate) fn is_shared(self) -> bool {
        self != Shape::Exclusive
    }
}

/// The script call that takes the locks at `keys` together (see
/// [`scripts::TAKE_TOGETHER`]), each for its token of `tokens`.
pub(crate) fn take_together(keys: &[String], tokens: &[&str], ttl: Duration) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::TAKE_TOGETHER, keys.len());
    for key in keys {
        cmd.arg(key);
    }
    for token in tokens {
        cmd.arg(*token);
    }
    cmd.arg(millis(ttl));
    cmd
}

/// The script call that extends the locks at `keys` together, each held by
/// its token of `tokens` (see [`scripts::EXTEND_TOGETHER`]).
pub(crate) fn extend_together(keys: &[&str], tokens: &[&str], ttl: Duration) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::EXTEND_TOGETHER, keys.len());
    for key in keys {
        cmd.arg(*key);
    }
    for token in tokens {
        cmd.arg(*token);
    }
    cmd.arg(millis(ttl));
    cmd
}

/// The script call that releases the locks at `keys` together where nobody
/// waits (see [`scripts::RELEASE_TOGETHER`]): each lock's key and its queue.
pub(crate) fn release_together(keys: &[String], tokens: &[&str]) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::RELEASE_TOGETHER, 2 * keys.len());
    for key in keys {
        cmd.arg(key).arg(format!("{key}:queue"));
    }
    for token in tokens {
        cmd.arg(*token);
    }
    cmd
}

/// Appends the three keys of a lock with many holders `key`: its holders (the key itself,
/// a sorted set of tokens by lease end), its waiters by arrival (`:wait`) and
/// their entries (`:wakers`).
fn many_keys<'a>(cmd: &'a mut redis::Cmd, key: &str) -> &'a mut redis::Cmd {
    cmd.arg(key)
        .arg(format!("{key}:wait"))
        .arg(format!("{key}:wakers"))
}

impl AttemptRequest<'_> {
    /// The acquire script call of a lock with many holders (see [`scripts::MANY_ACQUIRE`]).
    pub(crate) fn many_script(&self, channel: &str) -> redis::Cmd {
        let place = if self.queue { millis(self.ttl) } else { 0 };
        let mut cmd = scripts::evalsha(&scripts::MANY_ACQUIRE, 3);
        many_keys(&mut cmd, self.key)
            .arg(self.token)
            .arg(millis(self.ttl))
            .arg(place)
            .arg(if self.fair { "1" } else { "0" })
            .arg(channel);
        cmd
    }
}

/// The extend script call of a lock with many holders: `token`'s lease lasts `ttl` more.
pub(crate) fn many_extend(key: &str, token: &str, ttl: Duration) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::MANY_EXTEND, 3);
    many_keys(&mut cmd, key).arg(token).arg(millis(ttl));
    cmd
}

/// The release script call of a lock with many holders: `token` lets go (as a holder, or leaves
/// the queue as a waiter), and the waiters that may now go are woken.
pub(crate) fn many_release(key: &str, token: &str) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::MANY_RELEASE, 3);
    many_keys(&mut cmd, key).arg(token);
    cmd
}

/// The script call that reads lock `key`'s state (see [`scripts::INSPECT`]).
pub(crate) fn inspect(key: &str) -> redis::Cmd {
    let mut cmd = scripts::evalsha(&scripts::INSPECT, 7);
    lock_keys(&mut cmd, key)
        .arg(format!("{key}:wait"))
        .arg(format!("{key}:wake"))
        .arg(format!("{key}:wakers"));
    cmd
}

/// One server's view of a lock, as [`scripts::INSPECT`] read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The server's clock, ms since the epoch.
    pub(crate) now_ms: u64,
    /// The tokens holding it, each with its lease's time left (`None`: no expiry).
    pub(crate) holders: Vec<(String, Option<Duration>)>,
    /// The fence key's value: the last fencing token taken for the name.
    pub(crate) last_fence: Option<u64>,
    /// The tokens waiting (whose place has not lapsed), in arrival order.
    pub(crate) waiters: Vec<String>,
}

/// The inspect script's reply.
type InspectReply = (
    String,
    String,
    Vec<String>,
    String,
    Vec<String>,
    Vec<String>,
    Vec<String>,
);

impl Snapshot {
    pub(crate) fn from_reply(
        (_kind, now, holders, fence, queue, wait, wake): InspectReply,
    ) -> Snapshot {
        let now_ms: u64 = now.parse().unwrap_or(0);
        let holders = holders
            .chunks_exact(2)
            .map(|pair| {
                let left = pair[1].parse::<u64>().ok().map(Duration::from_millis);
                (pair[0].clone(), left)
            })
            .collect();
        // Each list's entries start with the waiter's deadline: in ms, but
        // in µs for a quorum node's.
        let live = |pairs: &[String], now: u64| -> Vec<String> {
            pairs
                .chunks_exact(2)
                .filter(|pair| {
                    let digits: String = pair[1].chars().take_while(char::is_ascii_digit).collect();
                    digits.parse::<u64>().is_ok_and(|deadline| deadline >= now)
                })
                .map(|pair| pair[0].clone())
                .collect()
        };
        let mut waiters = live(&queue, now_ms);
        waiters.extend(live(&wait, now_ms));
        waiters.extend(live(&wake, now_ms.saturating_mul(1000)));
        Snapshot {
            now_ms,
            holders,
            last_fence: fence.parse().ok(),
            waiters,
        }
    }
}

#[cfg(test)]
mod tests {
    use redis::{FromRedisValue, Value};

    use super::*;

    #[test]
    fn a_waiter_handed_the_lock_by_a_majority_is_told_once_the_rest_are_woken() {
        let identity = crate::token::Identity::new(None).unwrap_or_else(|error| panic!("{error}"));
        let plain = identity.mint("t", "", false).unwrap_or_default();
        let other = identity.mint("t", "", false).unwrap_or_default();
        let reply = |held, token: &str, attempt: &str| {
            (held, token.to_owned(), attempt.to_owned(), "ch".to_owned())
        };
        let mut handoffs = QuorumHandoffs::new(3);
        assert_eq!(handoffs.note(reply(1, &plain, "4")), (true, None));
        assert_eq!(handoffs.note(reply(0, "", "")), (false, None));
        assert_eq!(handoffs.note(reply(1, &other, "2")), (true, None));
        assert_eq!(handoffs.note(reply(1, &plain, "3")), (true, None));
        // The third node for `plain`: told, naming the least attempt seen.
        assert_eq!(
            handoffs.note(reply(1, &plain, "4")),
            (true, Some(("ch".to_owned(), format!("{plain}:3:0"))))
        );
        // Told once; the waiter handed a minority is woken at the end.
        assert_eq!(handoffs.note(reply(1, &plain, "4")), (true, None));
        assert_eq!(handoffs.finish(), [("ch".to_owned(), other.clone())]);
        // A fenced waiter is only woken: its attempt writes the fence back.
        let fenced = identity.mint("t", "", true).unwrap_or_default();
        let mut handoffs = QuorumHandoffs::new(2);
        handoffs.note(reply(1, &fenced, "1"));
        assert_eq!(
            handoffs.note(reply(1, &fenced, "1")).1,
            Some(("ch".to_owned(), fenced.clone()))
        );
        assert!(handoffs.finish().is_empty());
    }

    #[test]
    fn a_token_says_its_shape() {
        for shape in [
            Shape::Exclusive,
            Shape::Permits(7),
            Shape::Read,
            Shape::Write,
        ] {
            let token = format!(
                "{}0123456789abcdef0123456789abcdef|x1|7|web-01|a-b",
                shape.token_prefix()
            );
            assert_eq!(Shape::of_token(&token), shape, "{token}");
            // A wake-up notice naming it parses back to the same token.
            assert_eq!(
                parse_notice(&token).map(|(named, _)| named),
                Some(token.as_str())
            );
        }
    }

    #[test]
    fn a_result_is_a_bare_code_or_a_code_with_strings() {
        assert_eq!(
            Coded::from_redis_value(Value::Int(1)).ok(),
            Some(Coded(1, Vec::new()))
        );
        let with_notices = Value::Array(vec![
            Value::Int(2),
            Value::Array(vec![Value::BulkString(b"token:3:0".to_vec())]),
        ]);
        assert_eq!(
            Coded::from_redis_value(with_notices).ok(),
            Some(Coded(2, vec!["token:3:0".to_owned()]))
        );
        assert!(Coded::from_redis_value(Value::Nil).is_err());
    }

    #[test]
    fn release_replies_map_to_what_was_done() {
        let reply = |code, strings: &[&str]| {
            Released::from_reply(
                Coded(code, strings.iter().map(|s| (*s).to_owned()).collect()),
                true,
            )
        };
        assert_eq!(reply(1, &[]), (Released::Ended, vec![]));
        assert_eq!(
            reply(2, &["t:1:0"]),
            (Released::HandedOn, vec!["t:1:0".to_owned()])
        );
        assert_eq!(
            reply(3, &["17"]),
            (Released::HandedHere { fence: Some(17) }, vec![])
        );
        assert_eq!(reply(0, &[]), (Released::NotOurs, vec![]));
        assert_eq!(
            Attempt::from_reply((0, 1500), false),
            Attempt::Busy {
                holder_ttl: Some(Duration::from_millis(1500))
            }
        );
        assert_eq!(
            Attempt::from_reply((0, -2), false),
            Attempt::Busy { holder_ttl: None }
        );
        assert_eq!(
            Attempt::from_reply((1, 9), true),
            Attempt::Acquired { fence: Some(9) }
        );
    }

    #[test]
    fn a_quorum_fence_is_above_every_fence_and_clock_the_granting_nodes_report() {
        assert_eq!(quorum_fence([(5, 0), (9, 0), (7, 0)]), 10);
        assert_eq!(quorum_fence([(5, 1_000), (0, 2_000)]), 2_000);
        assert_eq!(quorum_fence([(3_000, 2_000), (0, 2_500)]), 3_001);
        let reply = |granted, pttl: &str, fence: &str, time: &str| {
            NodeAttempt::from_reply((granted, pttl.into(), fence.into(), time.into()))
        };
        assert_eq!(
            reply(1, "0", "41", "1790000000000000"),
            NodeAttempt {
                granted: true,
                was_ours: false,
                holder_ttl: None,
                last_fence: 41,
                time_us: 1_790_000_000_000_000
            }
        );
        assert_eq!(
            reply(0, "250", "7", "9"),
            NodeAttempt {
                granted: false,
                was_ours: false,
                holder_ttl: Some(Duration::from_millis(250)),
                last_fence: 7,
                time_us: 9
            }
        );
        assert_eq!(reply(0, "-1", "0", "0").holder_ttl, None);
        // Handed to us (or sent again): granted, and said so.
        let handed = reply(2, "0", "0", "0");
        assert!(handed.granted && handed.was_ours);
    }

    #[test]
    fn a_snapshot_keeps_live_waiters_only() {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let snapshot = Snapshot::from_reply((
            "string".into(),
            "1000".into(),
            strings(&["tok", "1500"]),
            "42".into(),
            strings(&["live", "2000:5:1:0:ch", "dead", "999:5:1:0:ch"]),
            strings(&["reader", "1000 ch"]),
            strings(&["q", "1000001 ch", "gone", "999999 ch"]),
        ));
        assert_eq!(
            snapshot,
            Snapshot {
                now_ms: 1000,
                holders: vec![("tok".into(), Some(Duration::from_millis(1500)))],
                last_fence: Some(42),
                waiters: strings(&["live", "reader", "q"]),
            }
        );
        let free = Snapshot::from_reply((
            "none".into(),
            "5".into(),
            vec![],
            String::new(),
            vec![],
            vec![],
            vec![],
        ));
        assert_eq!(free.last_fence, None);
        assert!(free.holders.is_empty());
    }

    #[test]
    fn notices_are_wake_ups_or_handoffs() {
        assert_eq!(parse_notice("ab12"), Some(("ab12", Notice::Wake)));
        assert_eq!(
            parse_notice("ab12:7:1790000000000001"),
            Some((
                "ab12",
                Notice::Handoff(Handoff {
                    attempt: 7,
                    fence: 1_790_000_000_000_001
                })
            ))
        );
        assert_eq!(
            parse_notice("ab12:1500"),
            Some((
                "ab12",
                Notice::HeadsUp {
                    ttl: Duration::from_millis(1500)
                }
            ))
        );
        assert_eq!(parse_notice("ab12:x:0"), None);
        assert_eq!(parse_notice("ab12:-1"), None);
        assert_eq!(parse_notice("ab12:1:2:3"), None);
    }
}
