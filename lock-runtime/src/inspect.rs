//! What an operator needs to see and do: who holds a lock, since when, for
//! how long yet, who waits for it ([`LockClient::inspect`],
//! [`LockClient::list`]), and freeing a stuck lock without touching a newer
//! holder's ([`LockClient::force_release`]).
//!
//! Every lease token carries its holder's record (host, process id, the
//! client's [`holder_label`](crate::LockClientBuilder::holder_label), when it
//! asked), written by the acquire itself: reading it costs the lock's users
//! nothing. The record is for people only; the token decides who holds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;

use crate::backend::{Shape, Snapshot};
use crate::client::LockClient;
use crate::error::LockError;
use crate::keys::{lease_key_patterns, name_of_key, validate_name};
use crate::token;

/// A lock as Redis keeps it at one moment: who holds it and who waits.
///
/// ```no_run
/// # async fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
/// let state = client.inspect("invoice:42").await?;
/// for holder in &state.holders {
///     if let Some(who) = &holder.identity {
///         println!("held by pid {} on {} for {:?}", who.pid, who.host, holder.held_for);
///     }
/// }
/// println!("{} waiting", state.waiters.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockState {
    /// The lock's name.
    pub name: String,
    /// The Redis key of its lease.
    pub key: String,
    /// Its holders: none (free), one, or several (a semaphore, readers).
    pub holders: Vec<Holder>,
    /// Who waits for it, in arrival order (at most 100 of each kind).
    pub waiters: Vec<Waiter>,
    /// The last fencing token taken for the name, if any is remembered.
    pub last_fence: Option<u64>,
}

impl LockState {
    /// Whether anyone holds the lock.
    pub fn is_held(&self) -> bool {
        !self.holders.is_empty()
    }
}

/// One holder of a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Its lease token: what [`LockClient::force_release`] takes.
    pub token: String,
    /// What it holds.
    pub share: Share,
    /// Who it is, if its token says (tokens of versions before 0.2 do not).
    pub identity: Option<HolderIdentity>,
    /// How long since it asked for the lock: the server's clock now less the
    /// holder's clock when it asked (for a holder that waited, its wait is
    /// included; clocks apart by more than that make it `None` or short).
    pub held_for: Option<Duration>,
    /// How long its lease lasts unless extended (`None`: no expiry).
    pub ttl_left: Option<Duration>,
    /// Its fencing token, if it asked for one.
    pub fence: Option<u64>,
}

/// One waiter for a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Waiter {
    /// The token it waits with.
    pub token: String,
    /// What it waits for.
    pub share: Share,
    /// Who it is, if its token says.
    pub identity: Option<HolderIdentity>,
    /// How long since it asked (the server's clock less the waiter's).
    pub waiting_for: Option<Duration>,
}

/// Who holds (or waits for) a lease, as its token records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HolderIdentity {
    /// The holder's host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Its client's [`holder_label`](crate::LockClientBuilder::holder_label).
    pub label: Option<String>,
    /// When it asked for the lock, by its own clock.
    pub since: SystemTime,
}

/// What a holder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Share {
    /// The lock, alone.
    Exclusive,
    /// One permit of a semaphore of `of`.
    Permit {
        /// The semaphore's permits.
        of: u32,
    },
    /// A read share.
    Read,
    /// The write share.
    Write,
}

impl Share {
    fn of_token(token: &str) -> Share {
        match Shape::of_token(token) {
            Shape::Exclusive => Share::Exclusive,
            Shape::Permits(of) => Share::Permit { of },
            Shape::Read => Share::Read,
            Shape::Write => Share::Write,
        }
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Share::Exclusive => f.write_str("exclusive"),
            Share::Permit { of } => write!(f, "permit of {of}"),
            Share::Read => f.write_str("read"),
            Share::Write => f.write_str("write"),
        }
    }
}

impl std::fmt::Display for HolderIdentity {
    /// `label@host:pid`, or `host:pid` without a label.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(label) = &self.label {
            write!(f, "{label}@")?;
        }
        write!(f, "{}:{}", self.host, self.pid)
    }
}

/// Who a token's record names, and how long ago (by `now_ms`, server time)
/// it asked.
fn identity_of(token: &str, now_ms: u64) -> (Option<HolderIdentity>, Option<Duration>, bool) {
    let Some(record) = token::record(token) else {
        return (None, None, false);
    };
    let now = UNIX_EPOCH + Duration::from_millis(now_ms);
    let ago = now.duration_since(record.since).unwrap_or(Duration::ZERO);
    let identity = HolderIdentity {
        host: record.host.to_owned(),
        pid: record.pid,
        label: Some(record.label.to_owned()).filter(|label| !label.is_empty()),
        since: record.since,
    };
    (Some(identity), Some(ago), record.fenced)
}

/// One lock's state from the servers' `snapshots`: a holder counts where
/// `majority` of them hold its token, with the lease left on the last of a
/// majority (one server: its own view).
fn merge(name: &str, key: String, snapshots: &[Snapshot], majority: usize) -> LockState {
    let now_ms = snapshots.iter().map(|s| s.now_ms).max().unwrap_or(0);
    let last_fence = snapshots.iter().filter_map(|s| s.last_fence).max();
    let mut tokens: Vec<&str> = Vec::new();
    for snapshot in snapshots {
        for (token, _) in &snapshot.holders {
            if !tokens.contains(&token.as_str()) {
                tokens.push(token);
            }
        }
    }
    let holders: Vec<Holder> = tokens
        .into_iter()
        .filter_map(|token| {
            // Longest first; `None` (no expiry) is the longest.
            let mut left: Vec<Option<Duration>> = snapshots
                .iter()
                .filter_map(|s| s.holders.iter().find(|(held, _)| held == token))
                .map(|(_, left)| *left)
                .collect();
            left.sort_by(|a, b| match (a, b) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, _) => std::cmp::Ordering::Less,
                (_, None) => std::cmp::Ordering::Greater,
                (Some(a), Some(b)) => b.cmp(a),
            });
            let ttl_left = *left.get(majority.max(1) - 1)?;
            let share = Share::of_token(token);
            let (identity, held_for, fenced) = identity_of(token, now_ms);
            Some(Holder {
                token: token.to_owned(),
                share,
                identity,
                held_for,
                ttl_left,
                fence: last_fence.filter(|_| fenced && share == Share::Exclusive),
            })
        })
        .collect();
    let mut waiting: Vec<&str> = Vec::new();
    for snapshot in snapshots {
        for token in &snapshot.waiters {
            // A quorum's holder that had waited stays registered as a waiter
            // until its release: it is shown as the holder only.
            let holds = holders.iter().any(|holder: &Holder| holder.token == *token);
            if !holds && !waiting.contains(&token.as_str()) {
                waiting.push(token);
            }
        }
    }
    let waiters = waiting
        .into_iter()
        .map(|token| {
            let (identity, waiting_for, _) = identity_of(token, now_ms);
            Waiter {
                token: token.to_owned(),
                share: Share::of_token(token),
                identity,
                waiting_for,
            }
        })
        .collect();
    LockState {
        name: name.to_owned(),
        key,
        holders,
        waiters,
        last_fence,
    }
}

/// How many locks [`LockClient::list`] reads at once.
const LIST_CONCURRENCY: usize = 32;

impl LockClient {
    /// Lock `name` as Redis keeps it now: its holders (who, since when, the
    /// lease left, the fencing token), and who waits. One request (on a quorum,
    /// one per server: a holder counts where a majority hold its lease). For
    /// people and dashboards: by the time it returns, the lock may have moved on.
    pub async fn inspect(&self, name: &str) -> Result<LockState, LockError> {
        validate_name(name)?;
        let backend = self.backend();
        let key = backend.lease_key(name);
        let snapshots = backend
            .snapshots(&key)
            .await
            .map_err(|source| LockError::Redis {
                name: name.to_owned(),
                action: "inspect",
                source,
            })?;
        Ok(merge(name, key, &snapshots, backend.majority()))
    }

    /// Every lock whose name matches `pattern` (a Redis glob: `*`, `?`,
    /// `[..]`; `*` for all) that is held or waited for now, sorted by name.
    /// Found with `SCAN` (never `KEYS`), on every primary of a Cluster and
    /// every server of a quorum.
    ///
    /// ```no_run
    /// # async fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
    /// for lock in client.list("invoice:*").await? {
    ///     println!("{}: {} holder(s), {} waiting", lock.name, lock.holders.len(), lock.waiters.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, pattern: &str) -> Result<Vec<LockState>, LockError> {
        let backend = self.backend();
        let patterns = lease_key_patterns(backend.prefix(), pattern, backend.is_cluster());
        let keys = backend
            .scan(&patterns)
            .await
            .map_err(|source| LockError::Redis {
                name: pattern.to_owned(),
                action: "list the locks matching",
                source,
            })?;
        let names: Vec<String> = keys
            .iter()
            .filter_map(|key| name_of_key(backend.prefix(), key))
            .map(str::to_owned)
            .collect();
        let mut locks = Vec::with_capacity(names.len());
        for batch in names.chunks(LIST_CONCURRENCY) {
            for state in join_all(batch.iter().map(|name| self.inspect(name))).await {
                let state = state?;
                if state.is_held() || !state.waiters.is_empty() {
                    locks.push(state);
                }
            }
        }
        locks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(locks)
    }

    /// Frees lock `name` if the lease `token` (a [`Holder::token`] from
    /// [`inspect`](Self::inspect)) still holds it, as its holder's release
    /// would: the next waiter is handed the lock or woken. Returns `false`,
    /// changing nothing, if that lease no longer holds it (released, expired,
    /// or a newer holder's): a lock is never freed from under a holder its
    /// caller did not see. The old holder's heartbeat then finds its lease gone
    /// and reports it lost ([`LockGuard::lost`](crate::LockGuard::lost)).
    ///
    /// For operators (`lockctl release`): a stuck lock's holder is usually
    /// hung or partitioned, and may still be writing; freeing the lock lets
    /// another in beside it. Fencing tokens are what keep it from doing harm.
    pub async fn force_release(&self, name: &str, token: &str) -> Result<bool, LockError> {
        validate_name(name)?;
        if token.is_empty() || token.contains(':') {
            return Err(LockError::Config {
                subject: format!("lock `{name}`"),
                reason: format!("`{token}` is not a lease token (see `inspect`)"),
            });
        }
        let backend = self.backend();
        let key = backend.lease_key(name);
        let freed =
            backend
                .force_release(&key, token)
                .await
                .map_err(|source| LockError::Redis {
                    name: name.to_owned(),
                    action: "release",
                    source,
                })?;
        tracing::info!(lock = name, freed, "force release");
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(now_ms: u64, holders: &[(&str, Option<u64>)], waiters: &[&str]) -> Snapshot {
        Snapshot {
            now_ms,
            holders: holders
                .iter()
                .map(|(token, left)| ((*token).to_owned(), left.map(Duration::from_millis)))
                .collect(),
            last_fence: Some(7),
            waiters: waiters.iter().map(|w| (*w).to_owned()).collect(),
        }
    }

    #[test]
    fn a_holder_is_read_from_its_token() {
        let token = "0123456789abcdef0123456789abcdef|f1000|42|web-1|billing";
        let state = merge(
            "n",
            "lock:{n}".into(),
            &[snapshot(4_000, &[(token, Some(900))], &["w-ff|x3500|9|h|"])],
            1,
        );
        assert_eq!(state.holders.len(), 1);
        let holder = &state.holders[0];
        assert_eq!(holder.held_for, Some(Duration::from_secs(3)));
        assert_eq!(holder.ttl_left, Some(Duration::from_millis(900)));
        assert_eq!(holder.fence, Some(7));
        let who = holder.identity.as_ref().map(ToString::to_string);
        assert_eq!(who.as_deref(), Some("billing@web-1:42"));
        assert_eq!(state.waiters[0].share, Share::Write);
        assert_eq!(
            state.waiters[0].waiting_for,
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            state.waiters[0]
                .identity
                .as_ref()
                .and_then(|w| w.label.clone()),
            None
        );
    }

    #[test]
    fn on_a_quorum_a_holder_counts_where_a_majority_hold_it() {
        let snapshots = [
            snapshot(
                10,
                &[("a|x1|1|h|", Some(300)), ("b|x1|1|h|", Some(50))],
                &[],
            ),
            snapshot(10, &[("a|x1|1|h|", Some(200))], &["c"]),
            snapshot(10, &[("a|x1|1|h|", Some(100))], &["c", "d"]),
        ];
        let state = merge("n", "k".into(), &snapshots, 2);
        assert_eq!(state.holders.len(), 1, "b holds one server of three");
        assert_eq!(state.holders[0].ttl_left, Some(Duration::from_millis(200)));
        assert_eq!(state.holders[0].fence, None, "not fenced");
        let waiters: Vec<&str> = state.waiters.iter().map(|w| w.token.as_str()).collect();
        assert_eq!(waiters, ["c", "d"]);
    }
}
