//! Tokens whose state in Redis is not known for certain, and the releases that
//! are sent in the background to clean them up.
//!
//! An acquire whose answer was lost may have set the key; a waiter that gives up
//! is still queued; a release that failed may not have reached Redis. Each ends
//! with a compare-and-delete of its own token, retried in the background, so a
//! repeat after one that did its work changes nothing.

use std::time::Duration;

use crate::backend::{Backend, Shape};
use crate::error::LockError;

/// A background release that fails (the connection lost, or Redis slow) is sent
/// again after this pause, doubling, up to [`RELEASE_ATTEMPTS`] in all (about
/// 6 s of pauses): enough to outlast a reconnect, so that a lost release does
/// not leave the lock held until its ttl.
const RELEASE_RETRY_FIRST: Duration = Duration::from_millis(100);
const RELEASE_ATTEMPTS: u32 = 7;

/// Best-effort release of a token whose acquire outcome is unknown, that may
/// be queued or have been handed the lock, or whose release failed: sent again
/// on errors, [`RELEASE_ATTEMPTS`] times at most, with doubling pauses. Each
/// is a compare-and-delete of this token (or leaves the queue), so a repeat
/// after one that did its work changes nothing.
pub(crate) fn release_in_background(backend: &Backend, key: String, token: String) {
    let releasing = backend.clone();
    // Not waited for: counted, for `flush_releases`.
    let _done = backend.spawn_release(async move {
        let mut pause = RELEASE_RETRY_FIRST;
        for attempt in 1..=RELEASE_ATTEMPTS {
            match releasing.release(&key, &token, None).await {
                Ok(_) => return,
                Err(error) if attempt < RELEASE_ATTEMPTS => {
                    tracing::debug!(%key, %error, attempt, "background release failed; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(error) => {
                    tracing::warn!(%key, %error, "background release failed; the lock's ttl will free it");
                }
            }
        }
    });
}

/// A token whose acquire attempt may have set the key: unless settled (handed to a
/// guard, or known not to be set), dropping it spawns a compare-and-delete, so an
/// acquire cancelled or failed mid-request does not leave the lock held until its ttl.
///
/// A busy attempt of a waiter queues the token, so it stays armed until the lock
/// is ours, and dropping it (timeout, cancellation) leaves the queue, handing the
/// lock on if a release had just handed it to us.
pub(crate) struct UnsettledToken {
    backend: Backend,
    key: String,
    token: String,
    armed: bool,
}

impl UnsettledToken {
    /// A fresh token of `shape` for lock `name` at `key`, not yet sent,
    /// carrying this client's holder record (`fenced`: the lease asks for a
    /// fencing token).
    pub(crate) fn new(
        backend: &Backend,
        key: &str,
        name: &str,
        shape: Shape,
        fenced: bool,
    ) -> Result<Self, LockError> {
        let token = backend
            .identity()
            .mint(name, &shape.token_prefix(), fenced)?;
        Ok(UnsettledToken {
            backend: backend.clone(),
            key: key.to_owned(),
            token,
            armed: false,
        })
    }

    /// `token`, which a release has just made the holder of `key`.
    pub(crate) fn holding(backend: &Backend, key: &str, token: &str) -> Self {
        UnsettledToken {
            backend: backend.clone(),
            key: key.to_owned(),
            token: token.to_owned(),
            armed: true,
        }
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// An attempt with this token is about to be sent: from now it may hold the key.
    pub(crate) fn arm(&mut self) {
        self.armed = true;
    }

    /// Known not to hold or wait for the lock: nothing to release.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }

    /// The key and token, for the guard that now owns the lease.
    pub(crate) fn settle(&mut self) -> (String, String) {
        self.armed = false;
        (self.key.clone(), std::mem::take(&mut self.token))
    }

    /// The attempt found the lock busy: the key is not ours (but `queued`: the
    /// token now waits in the lock's queue, and must leave it if we give up).
    pub(crate) fn busy(&mut self, queued: bool) {
        self.armed = queued;
    }
}

impl Drop for UnsettledToken {
    fn drop(&mut self) {
        if self.armed {
            release_in_background(
                &self.backend,
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
        }
    }
}
