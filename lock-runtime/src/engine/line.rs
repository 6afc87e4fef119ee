//! The line in which tasks of one client wait for the same lock, in process.
//!
//! Of the tasks of one client that want one lock (default mode, waiting allowed),
//! only the one whose *turn* it is talks to Redis: it tries, queues in Redis,
//! takes or is handed the lock, holds it. The others wait here in arrival order.
//! When the task with the turn releases the lock, the release takes it for the
//! next task in line in the same request, and the turn goes with it. Other
//! processes' waiters queued in Redis go first once the lock has gone from task
//! to task here [`LOCAL_STREAK`] times in a row, or after a hold of
//! [`LOCAL_HOLD`] or more (or at once, when nobody waits here). A lock passed
//! between tasks of one process so costs one request per acquisition, and a
//! thousand waiting tasks hold one place in Redis, not a thousand.
//!
//! Mutual exclusion never rests on this line: every holder holds the key in Redis.
//! The line only decides which task asks next. The turn is a value that passes
//! itself on when dropped, so however its owner ends (released, dropped, timed
//! out, failed, panicked, cancelled) the next task gets it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::pending::UnsettledToken;
use crate::backend::NextTask;

/// The lines of one client, by lock key. A key has a line while a task of the
/// client has the turn for it (the line holds the tasks after that one).
#[derive(Debug, Default)]
pub(crate) struct Lines {
    lines: Mutex<HashMap<Arc<str>, VecDeque<Waiter>>>,
    next_id: AtomicU64,
}

/// A task waiting in line.
pub(crate) struct Waiter {
    id: u64,
    terms: NextTask,
    sender: oneshot::Sender<Given>,
}

/// The task a release took out of line, and its token, armed from just before
/// the release is sent until the reply says the lock was not taken for it.
struct Next {
    waiter: Waiter,
    token: Option<UnsettledToken>,
}

/// What a waiting task is given.
pub(crate) enum Given {
    /// The turn: it now tries for the lock in Redis itself. With its token, armed,
    /// when a release that may have taken the lock for it got no answer: its
    /// first attempt then finds out (and the token, dropped, releases it).
    Turn(Turn, Option<UnsettledToken>),
    /// The lock, taken for its token by the release of the task before it.
    Lock(Handover),
}

/// A lock a release took for the next task in line.
pub(crate) struct Handover {
    /// The task's token, armed: if the task is gone before it takes the lock,
    /// dropping this releases the lock (and the turn passes on).
    pub(crate) token: UnsettledToken,
    /// The fencing token taken with it (when the task asked for one).
    pub(crate) fence: Option<u64>,
    /// When the release was sent: the lease's ttl started later.
    pub(crate) valid_from: Instant,
    pub(crate) turn: Turn,
}

/// Where to find a line: the client's lines and the lock's key.
type Place = (Arc<Lines>, Arc<str>);

/// The right to be the one task of this client that asks Redis for a lock. Dropped,
/// it passes to the next task in line (or ends the line).
pub(crate) struct Turn {
    place: Option<Place>,
    /// The next task, taken out of line for the release to offer the lock to
    /// (boxed: a held lease keeps its turn, and most never take anyone out).
    next: Option<Box<Next>>,
    /// How many times in a row the lock has gone from task to task of this
    /// client without passing through the Redis queue.
    streak: u32,
}

/// How many times in a row the lock may go from task to task of one client
/// ahead of other processes' waiters queued in Redis; after that, a release
/// hands it to the first of them. Passing the lock within the process costs one
/// request where a handoff to another process costs two and a notice, and the
/// waiting process's delay stays bounded: at most this many critical sections
/// after the current holder's, each begun only after a hold shorter than
/// [`LOCAL_HOLD`] (the last may itself be long).
pub(crate) const LOCAL_STREAK: u32 = 8;

/// The lock goes to the next task of the same client ahead of other processes'
/// waiters only after a hold shorter than this (timed in the process, from when
/// it knew the lock was its own to its release). What passing it within the
/// process saves (a request and a notice, a fraction of a millisecond) matters
/// for short critical sections only; after a longer one the waiter of another
/// process goes first, so a busy process never makes others wait for several
/// long holds in a row.
pub(crate) const LOCAL_HOLD: Duration = Duration::from_millis(5);

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("key", &self.place.as_ref().map(|(_, key)| key))
            .finish_non_exhaustive()
    }
}

/// A task's place in line: awaits its turn, and leaves the line if dropped first.
pub(crate) struct Ticket {
    place: Place,
    id: u64,
    receiver: oneshot::Receiver<Given>,
}

/// Where a task stands on entering.
pub(crate) enum Entry {
    /// No other task of this client wants the lock: the turn is this task's.
    Turn(Turn),
    /// In line behind others.
    InLine(Ticket),
}

impl Lines {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, VecDeque<Waiter>>> {
        // Every change is one step under the lock: a poisoned map is consistent.
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters the line for `key` with the terms a release needs to take the lock
    /// for this task.
    pub(crate) fn enter(
        self: &Arc<Self>,
        key: &str,
        token: &str,
        ttl_ms: u64,
        fence_lifetime_ms: u64,
    ) -> Entry {
        let mut lines = self.lock();
        let stored = lines
            .get_key_value(key)
            .map(|(stored, _)| Arc::clone(stored));
        let Some((stored, line)) = stored.zip(lines.get_mut(key)) else {
            let key: Arc<str> = Arc::from(key);
            lines.insert(Arc::clone(&key), VecDeque::new());
            return Entry::Turn(Turn {
                place: Some((Arc::clone(self), key)),
                next: None,
                streak: 0,
            });
        };
        let place = (Arc::clone(self), stored);
        let (sender, receiver) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        line.push_back(Waiter {
            id,
            terms: NextTask {
                token: token.to_owned(),
                ttl_ms,
                fence_lifetime_ms,
            },
            sender,
        });
        Entry::InLine(Ticket {
            place,
            id,
            receiver,
        })
    }

    /// How many tasks wait in line for `key` (not counting the one with the turn).
    pub(crate) fn waiting(&self, key: &str) -> usize {
        self.lock().get(key).map_or(0, VecDeque::len)
    }

    /// Gives the turn for `key` to `next`, else to the first task in line still
    /// there, else ends the line. `streak`: the streak of the turn passed on.
    fn pass_on(self: Arc<Self>, key: Arc<str>, mut next: Option<Box<Next>>, streak: u32) {
        loop {
            let (waiter, token) = match next.take() {
                Some(next) => (next.waiter, next.token),
                None => {
                    let mut lines = self.lock();
                    match lines.get_mut(&key).and_then(VecDeque::pop_front) {
                        Some(waiter) => (waiter, None),
                        None => {
                            lines.remove(&key);
                            return;
                        }
                    }
                }
            };
            // With an armed token, a release that got no answer may have taken
            // the lock for this task: that counts as a handoff in the process,
            // or releases cut short would restart the streak and could keep the
            // lock here for ever. Otherwise the task asks Redis: a fresh streak.
            let turn = Turn {
                place: Some((Arc::clone(&self), Arc::clone(&key))),
                next: None,
                streak: if token.is_some() {
                    streak.saturating_add(1)
                } else {
                    0
                },
            };
            // Sent outside the lock: a turn that comes back is disarmed here (its
            // token, if any, dropped: released), and one dropped unreceived later
            // passes itself on.
            match waiter.sender.send(Given::Turn(turn, token)) {
                Ok(()) => return,
                Err(given) => given.into_turn().disarm(),
            }
        }
    }
}

impl Given {
    fn into_turn(self) -> Turn {
        match self {
            Given::Turn(turn, _) => turn,
            Given::Lock(handed) => handed.turn,
        }
    }
}

impl Turn {
    /// Takes the next task out of line, for the release to take the lock for it:
    /// the turn goes to it with the lock ([`hand_lock`](Self::hand_lock)), or alone
    /// when this is dropped.
    pub(crate) fn next_waiter(&mut self) -> Option<&NextTask> {
        if self.next.is_none() {
            let (lines, key) = self.place.as_ref()?;
            let waiter = lines.lock().get_mut(key).and_then(VecDeque::pop_front)?;
            self.next = Some(Box::new(Next {
                waiter,
                token: None,
            }));
        }
        self.next.as_ref().map(|next| &next.waiter.terms)
    }

    /// Whether the lock, held for `held`, may go to the next task in line ahead
    /// of other processes' waiters queued in Redis (see [`LOCAL_STREAK`] and
    /// [`LOCAL_HOLD`]).
    pub(crate) fn may_keep(&self, held: Duration) -> bool {
        self.streak < LOCAL_STREAK && held < LOCAL_HOLD
    }

    /// Arms the next task's token (see [`next_waiter`](Self::next_waiter)) before
    /// a release that may take the lock for it is sent: whatever happens to the
    /// release and the task, the token ends up with the task or released.
    pub(crate) fn arm_next(&mut self, token: UnsettledToken) {
        if let Some(next) = self.next.as_mut() {
            next.token = Some(token);
        }
    }

    /// The release answered, and did not take the lock for the next task: its
    /// token has nothing to release.
    pub(crate) fn not_taken(&mut self) {
        if let Some(token) = self.next.as_mut().and_then(|next| next.token.take()) {
            token.disarm();
        }
    }

    /// Gives the next task (see [`next_waiter`](Self::next_waiter)) the lock the
    /// release sent at `valid_from` took for its token, with its fencing token,
    /// and the turn with it. If that task is gone, the lock is released and the
    /// turn passes on.
    pub(crate) fn hand_lock(mut self, fence: Option<u64>, valid_from: Instant) {
        // No task taken out of line (or its token not armed): dropping `self`
        // passes the turn on as usual, with the token if any.
        let Some(next) = self.next.take_if(|next| next.token.is_some()) else {
            return;
        };
        let Next {
            waiter,
            token: Some(token),
        } = *next
        else {
            return;
        };
        let Some(place) = self.place.take() else {
            // A disarmed turn is nobody's to give: the task asks Redis without
            // one, and its token, dropped, releases the lock.
            return;
        };
        let handed = Handover {
            token,
            fence,
            valid_from,
            turn: Turn {
                place: Some(place),
                next: None,
                streak: self.streak.saturating_add(1),
            },
        };
        if let Err(given) = waiter.sender.send(Given::Lock(handed)) {
            // Dropped outside any lock: its token releases, its turn passes on.
            drop(given);
        }
    }

    /// Forgets the turn without passing it on (it was never given).
    fn disarm(mut self) {
        self.place = None;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some((lines, key)) = self.place.take() {
            lines.pass_on(key, self.next.take(), self.streak);
        }
    }
}

impl Ticket {
    /// Waits for the turn or the lock. `None` if neither can come (not expected:
    /// every path that takes a task out of line sends it one), so the task asks
    /// Redis without a turn, which is still safe.
    pub(crate) async fn given(&mut self) -> Option<Given> {
        (&mut self.receiver).await.ok()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let (lines, key) = &self.place;
        let waiter = {
            let mut lines = lines.lock();
            lines.get_mut(key).and_then(|line| {
                let at = line.iter().position(|waiter| waiter.id == self.id)?;
                line.remove(at)
            })
        };
        // Still in line: just leave. Taken out of line already, it was sent, or
        // is being sent, the turn or the lock; the receiver, dropped after this,
        // drops what came, which passes the turn on (and releases the lock).
        drop(waiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(entry: Entry) -> Turn {
        match entry {
            Entry::Turn(turn) => turn,
            Entry::InLine(_) => panic!("expected the turn"),
        }
    }

    fn ticket(entry: Entry) -> Ticket {
        match entry {
            Entry::InLine(ticket) => ticket,
            Entry::Turn(_) => panic!("expected a place in line"),
        }
    }

    fn given_turn(ticket: &mut Ticket) -> Option<Turn> {
        match ticket.receiver.try_recv() {
            Ok(Given::Turn(turn, None)) => Some(turn),
            _ => None,
        }
    }

    fn has_turn(ticket: &mut Ticket, what: &str) -> Turn {
        let Some(turn) = given_turn(ticket) else {
            panic!("{what}");
        };
        turn
    }

    #[test]
    fn the_lock_stays_in_the_process_only_after_a_short_hold_in_a_short_streak() {
        let lines = Arc::new(Lines::default());
        let fresh = turn(lines.enter("k", "a", 1, 0));
        assert!(fresh.may_keep(Duration::ZERO));
        assert!(fresh.may_keep(LOCAL_HOLD - Duration::from_micros(1)));
        assert!(
            !fresh.may_keep(LOCAL_HOLD),
            "a long hold lets others go first"
        );
        let streak_end = Turn {
            place: None,
            next: None,
            streak: LOCAL_STREAK,
        };
        assert!(
            !streak_end.may_keep(Duration::ZERO),
            "a full streak lets others go first"
        );
        let streak_last = Turn {
            place: None,
            next: None,
            streak: LOCAL_STREAK - 1,
        };
        assert!(streak_last.may_keep(Duration::ZERO));
    }

    #[test]
    fn the_turn_passes_in_arrival_order_and_the_line_ends() {
        let lines = Arc::new(Lines::default());
        let first = turn(lines.enter("k", "a", 1, 0));
        let mut second = ticket(lines.enter("k", "b", 1, 0));
        let mut third = ticket(lines.enter("k", "c", 1, 0));
        assert_eq!(lines.waiting("k"), 2);
        drop(first);
        let second_turn = has_turn(&mut second, "second has the turn");
        assert!(given_turn(&mut third).is_none());
        drop(second_turn);
        let third_turn = has_turn(&mut third, "third has the turn");
        drop(third_turn);
        assert!(lines.lock().is_empty(), "the line ends with its last turn");
        // Another lock's line is separate.
        let _other = turn(lines.enter("other", "x", 1, 0));
        let _again = turn(lines.enter("k", "d", 1, 0));
    }

    #[test]
    fn a_task_gone_from_line_is_skipped() {
        let lines = Arc::new(Lines::default());
        let first = turn(lines.enter("k", "a", 1, 0));
        let second = ticket(lines.enter("k", "b", 1, 0));
        let mut third = ticket(lines.enter("k", "c", 1, 0));
        drop(second);
        assert_eq!(lines.waiting("k"), 1);
        drop(first);
        assert!(given_turn(&mut third).is_some());
    }

    #[test]
    fn a_turn_sent_but_never_received_passes_on() {
        let lines = Arc::new(Lines::default());
        let mut first = turn(lines.enter("k", "a", 1, 0));
        let second = ticket(lines.enter("k", "b", 1, 0));
        let mut third = ticket(lines.enter("k", "c", 1, 0));
        // The release took the second out of line, then gave up (no lock taken).
        assert_eq!(first.next_waiter().map(|w| w.token.as_str()), Some("b"));
        assert_eq!(lines.waiting("k"), 1);
        drop(first);
        // The second's turn sits unreceived; it is gone before reading it.
        drop(second);
        let third_turn = has_turn(&mut third, "the turn reached the third");
        drop(third_turn);
        assert!(lines.lock().is_empty());
    }

    #[test]
    fn a_lock_handed_without_a_task_taken_out_of_line_still_passes_the_turn() {
        let lines = Arc::new(Lines::default());
        let first = turn(lines.enter("k", "a", 1, 0));
        let mut second = ticket(lines.enter("k", "b", 1, 0));
        first.hand_lock(None, Instant::now());
        assert!(given_turn(&mut second).is_some());
    }

    #[test]
    fn a_turn_for_a_task_already_gone_goes_to_the_next() {
        let lines = Arc::new(Lines::default());
        let mut first = turn(lines.enter("k", "a", 1, 0));
        let second = ticket(lines.enter("k", "b", 1, 0));
        let mut third = ticket(lines.enter("k", "c", 1, 0));
        assert!(first.next_waiter().is_some());
        // The second leaves while the release runs (it is out of line already).
        drop(second);
        drop(first);
        assert!(given_turn(&mut third).is_some());
    }
}
