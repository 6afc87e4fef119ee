//! Several locks at once: all or nothing, without deadlock.
//!
//! The names are put in one global order (their keys, sorted), so two callers
//! asking for the same names in opposite orders take them in the same order,
//! and neither can hold one the other waits for while waiting for one the other
//! holds. A first attempt tries every name at once (one round trip when all are
//! free); if any is busy, what was won is given back and the names are taken
//! one at a time in that order, each waiting as the options say, within one
//! deadline for the whole set. A failure gives back every lock already won.

use std::future::Future;

use futures_util::future::join_all;
use tokio::time::Instant;

use crate::client::LockClient;
use crate::engine::acquire::{acquire_together, takes_together};
use crate::error::LockError;
use crate::guard::{LockGuard, LockHandle, run_held};
use crate::keys::validate_name;
use crate::options::{LockOptions, Wait};

impl LockClient {
    /// Takes every lock of `names` on the terms of `options`, all or nothing,
    /// and returns one guard for the set: held while every lease of it is,
    /// released together, and lost (`check`, `lost`, a `run` body cancelled)
    /// as soon as any one lease is.
    ///
    /// Duplicate names count once. The locks are taken in one global order
    /// (by key), so callers asking for the same names in any order cannot
    /// deadlock each other; the wait in `options` bounds the whole set. Each
    /// name is an ordinary lock: code that takes one of them alone excludes
    /// and is excluded as usual. The order cannot cover locks the calling
    /// code holds already (re-entry, or a guard it keeps): waiting for a set
    /// while holding another lock is nested locking, and can deadlock as
    /// any can. Take every name the work needs in one set.
    ///
    /// ```no_run
    /// # async fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
    /// use lock_runtime::LockOptions;
    /// // A transfer between two accounts: both locks, in either order.
    /// let guard = client.acquire_all(["account:7", "account:3"], &LockOptions::default()).await?;
    /// assert_eq!(guard.names().len(), 2);
    /// // ... move the money ...
    /// guard.release().await
    /// # }
    /// ```
    pub async fn acquire_all<I, S>(
        &self,
        names: I,
        options: &LockOptions,
    ) -> Result<LockGuard, LockError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = self.lock_order(names)?;
        let [first] = names.as_slice() else {
            return self.acquire_set(&names, options).await;
        };
        self.acquire(first, options).await
    }

    /// [`run`](Self::run) over a set of locks (see [`acquire_all`](Self::acquire_all)).
    pub async fn run_all<I, S, F>(
        &self,
        names: I,
        options: &LockOptions,
        body: F,
    ) -> Result<F::Output, LockError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
        F: Future,
    {
        self.run_all_with(names, options, |_| body).await
    }

    /// [`run_with`](Self::run_with) over a set of locks (see
    /// [`acquire_all`](Self::acquire_all)): the body's handle has each lock's
    /// fencing token ([`LockHandle::fencing_token_of`]), and losing any lease of
    /// the set ends the body as [`run_with`](Self::run_with) does.
    ///
    /// ```no_run
    /// # async fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
    /// use lock_runtime::LockOptions;
    /// let options = LockOptions::default().fencing(true);
    /// client
    ///     .run_all_with(["account:3", "account:7"], &options, |lock| async move {
    ///         let _tokens = (lock.fencing_token_of("account:3"), lock.fencing_token_of("account:7"));
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_all_with<I, S, F, Fut>(
        &self,
        names: I,
        options: &LockOptions,
        body: F,
    ) -> Result<Fut::Output, LockError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
        F: FnOnce(LockHandle) -> Fut,
        Fut: Future,
    {
        let guard = self.acquire_all(names, options).await?;
        run_held(guard, options.on_lost, body).await
    }

    /// The names, checked, without duplicates, in lock order (by key).
    pub(crate) fn lock_order<I, S>(&self, names: I) -> Result<Vec<String>, LockError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keyed = Vec::new();
        for name in names {
            let name = name.as_ref();
            validate_name(name)?;
            keyed.push((self.key_for(name), name.to_owned()));
        }
        if keyed.is_empty() {
            return Err(no_names());
        }
        keyed.sort();
        keyed.dedup_by(|(a, _), (b, _)| a == b);
        Ok(keyed.into_iter().map(|(_, name)| name).collect())
    }

    fn keys_of(&self, names: &[String]) -> Vec<String> {
        names.iter().map(|name| self.key_for(name)).collect()
    }

    /// Two or more names, in lock order.
    async fn acquire_set(
        &self,
        names: &[String],
        options: &LockOptions,
    ) -> Result<LockGuard, LockError> {
        for name in names {
            options.validate(name)?;
        }
        let started = Instant::now();
        // All at once when none was lately contended: one round trip if all are
        // free, and one request when they are on one server (or cluster slot).
        let contended = names
            .iter()
            .any(|name| self.backend().recently_contended(&self.key_for(name)));
        let together = !contended
            && takes_together(options)
            && self.backend().can_take_together(&self.keys_of(names))
            && !names.iter().any(|name| self.holds_here(name));
        if together {
            // Busy (`None`): taken one at a time below.
            if let Some(won) = acquire_together(self.backend(), names, options).await? {
                let guards = won
                    .into_iter()
                    .map(|acquired| {
                        LockGuard::new(acquired, self.backend().clone(), options.min_hold)
                    })
                    .collect();
                return into_set(guards);
            }
        } else if !contended {
            let once = options.clone().wait(Wait::TryOnce);
            let tried = join_all(names.iter().map(|name| self.acquire(name, &once))).await;
            let mut won = Vec::new();
            let mut failure = None;
            for result in tried {
                match result {
                    Ok(guard) => won.push(guard),
                    Err(error) => failure = failure.or(Some(error)),
                }
            }
            match failure {
                None => return into_set(won),
                Some(error) => {
                    give_back(won).await;
                    if !error.is_contended() || options.wait == Wait::TryOnce {
                        return Err(error);
                    }
                }
            }
        }
        // One at a time, in lock order, within one deadline for the set.
        let deadline = match options.wait {
            Wait::For(wait) => Some(started + wait),
            _ => None,
        };
        let mut won = Vec::with_capacity(names.len());
        for name in names {
            let mut terms = options.clone();
            if let Some(deadline) = deadline {
                terms.wait = Wait::For(deadline.saturating_duration_since(Instant::now()));
            }
            match self.acquire(name, &terms).await {
                Ok(guard) => won.push(guard),
                Err(error) => {
                    give_back(won).await;
                    return Err(over_the_set(error, started, options.wait));
                }
            }
        }
        into_set(won)
    }
}

/// One guard over guards won in lock order (one per name: never none).
fn into_set(won: Vec<LockGuard>) -> Result<LockGuard, LockError> {
    let mut won = won.into_iter();
    match won.next() {
        Some(first) => Ok(LockGuard::set(first, won.collect())),
        None => Err(no_names()),
    }
}

fn no_names() -> LockError {
    LockError::Config {
        subject: "a set of locks".to_owned(),
        reason: "no lock names given: pass at least one".to_owned(),
    }
}

/// Releases the locks of a set that could not be completed, before the
/// caller hears why.
async fn give_back(won: Vec<LockGuard>) {
    for result in join_all(won.into_iter().map(LockGuard::release)).await {
        if let Err(error) = result {
            tracing::debug!(%error, "giving back a lock of an incomplete set");
        }
    }
}

/// A timeout on one name of a set is a timeout of the set: it waited since
/// the set's start. So is a name found busy once a bounded wait ran out.
fn over_the_set(error: LockError, started: Instant, wait: Wait) -> LockError {
    match error {
        LockError::Timeout {
            name, retry_after, ..
        } => LockError::Timeout {
            name,
            waited: started.elapsed(),
            retry_after,
        },
        LockError::Busy { name, retry_after } if matches!(wait, Wait::For(_)) => {
            LockError::Timeout {
                name,
                waited: started.elapsed(),
                retry_after,
            }
        }
        other => other,
    }
}
