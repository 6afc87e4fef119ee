//! The one error type of the crate.

use std::fmt;
use std::time::Duration;

/// Why a lease that was held is no longer held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostReason {
    /// Redis answered an extend with "not yours": the key expired or was deleted,
    /// and may already belong to someone else.
    Refused,
    /// The local validity deadline passed before an extend was confirmed (Redis
    /// unreachable, paused, or too slow), so the lease must be presumed expired.
    Expired,
    /// The hold reached its configured `max_hold` and was not extended further.
    MaxHold,
    /// The release found the key no longer holding this lease's token.
    NotOwnerAtRelease,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::Refused => "Redis refused to extend it (the key expired or was deleted)",
            LostReason::Expired => {
                "its local validity deadline passed before Redis confirmed an extension"
            }
            LostReason::MaxHold => "it reached its max_hold and was not extended further",
            LostReason::NotOwnerAtRelease => {
                "at release the key no longer held this lease's token (it expired or was taken)"
            }
        })
    }
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("; the holder's lease ends in at most {} ms", d.as_millis()),
        None => String::new(),
    }
}

/// Everything that can go wrong when taking, keeping or releasing a lock.
///
/// Every message names the lock (or, before any lock is involved, the server) and
/// says what happened.
///
/// ```
/// use lock_runtime::LockError;
/// let e = LockError::Busy { name: "invoice:7".into(), retry_after: None };
/// assert_eq!(e.to_string(), "lock `invoice:7` is busy: another owner holds it");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock is held by someone else and the options said to try only once.
    #[error(
        "lock `{name}` is busy: another owner holds it{}",
        retry_hint(retry_after)
    )]
    Busy {
        /// The lock's name.
        name: String,
        /// The holder's remaining lease as Redis reported it, if it has one.
        retry_after: Option<Duration>,
    },
    /// The lock stayed busy for the whole allowed wait.
    #[error(
        "timed out after {} ms waiting for lock `{name}`{}",
        waited.as_millis(),
        retry_hint(retry_after)
    )]
    Timeout {
        /// The lock's name.
        name: String,
        /// How long the caller waited.
        waited: Duration,
        /// The holder's remaining lease at the last attempt, if known.
        retry_after: Option<Duration>,
    },
    /// The lease was lost while held: the protected work may have overlapped with
    /// another holder and must not be treated as done under the lock.
    #[error("lease on lock `{name}` was lost: {reason}")]
    Lost {
        /// The lock's name.
        name: String,
        /// What happened.
        reason: LostReason,
    },
    /// The lock name cannot be used.
    #[error("invalid lock name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name (possibly truncated).
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Options or client configuration are inconsistent or malformed.
    #[error("invalid configuration for {subject}: {reason}")]
    Config {
        /// What was being configured: a lock (``lock `name` ``) or a client
        /// (`client for <url>`).
        subject: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Could not connect or authenticate to Redis.
    #[error("cannot connect to Redis at {server}: {reason}")]
    Connection {
        /// The server address (without credentials).
        server: String,
        /// A short human description (timeout, refused, authentication failed, ...).
        reason: String,
        /// The underlying Redis error, when there is one.
        #[source]
        source: Option<redis::RedisError>,
    },
    /// A Redis command for a lock failed.
    #[error("Redis error on lock `{name}` while trying to {action}: {source}")]
    Redis {
        /// The lock's name.
        name: String,
        /// What the client was doing (`acquire`, `extend`, `release`).
        action: &'static str,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },
    /// Fewer replicas than [`LockOptions::replicas`](crate::LockOptions::replicas)
    /// asked for acknowledged the lease in time; it was given back.
    #[error(
        "lock `{name}` was not taken: {acknowledged} of the {wanted} replicas asked for acknowledged its lease in time (replicas down or lagging?)"
    )]
    Unreplicated {
        /// The lock's name.
        name: String,
        /// Replicas that acknowledged.
        acknowledged: u32,
        /// Replicas asked for.
        wanted: u32,
    },
    /// The running code already holds this lock through a client of the same
    /// server (it is inside a `run` body, an annotated function or a guard's
    /// `scope` for it), and the options do not allow re-entry: waiting would be
    /// waiting on itself. Detected before any request is sent.
    #[error(
        "lock `{name}` is already held by this task (or thread): taking it again would wait on itself; allow it with `reentrant = true` (attribute) or `LockOptions::reentrant(true)`, so the inner call runs under the outer hold, or take the lock only in the outer call"
    )]
    Reentrant {
        /// The lock's name.
        name: String,
    },
}

impl LockError {
    /// The name of the lock the error is about, when there is one.
    pub fn lock_name(&self) -> Option<&str> {
        match self {
            LockError::Busy { name, .. }
            | LockError::Timeout { name, .. }
            | LockError::Lost { name, .. }
            | LockError::InvalidName { name, .. }
            | LockError::Redis { name, .. }
            | LockError::Unreplicated { name, .. }
            | LockError::Reentrant { name } => Some(name),
            LockError::Config { .. } | LockError::Connection { .. } => None,
        }
    }

    /// For `Busy` and `Timeout`: how long the current holder's lease can last at most,
    /// a good `Retry-After` hint.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LockError::Busy { retry_after, .. } | LockError::Timeout { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// True for `Busy` and `Timeout`: someone else has the lock.
    pub fn is_contended(&self) -> bool {
        matches!(self, LockError::Busy { .. } | LockError::Timeout { .. })
    }
}

impl From<LockError> for std::io::Error {
    fn from(error: LockError) -> Self {
        use std::io::ErrorKind;
        let kind = match &error {
            LockError::Busy { .. } => ErrorKind::WouldBlock,
            LockError::Timeout { .. } => ErrorKind::TimedOut,
            LockError::Lost { .. } => ErrorKind::ConnectionAborted,
            LockError::InvalidName { .. } | LockError::Config { .. } => ErrorKind::InvalidInput,
            LockError::Connection { .. } => ErrorKind::NotConnected,
            LockError::Redis { .. } => ErrorKind::Other,
            LockError::Unreplicated { .. } => ErrorKind::TimedOut,
            LockError::Reentrant { .. } => ErrorKind::Deadlock,
        };
        std::io::Error::new(kind, error)
    }
}
