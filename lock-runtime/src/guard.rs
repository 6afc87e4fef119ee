//! The guard that owns a held lease, and the handle a protected body sees.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::AbortOnDropHandle;

use crate::backend::{Backend, Released, Shape};
use crate::engine::acquire::Acquired;
use crate::engine::lease::Lease;
use crate::engine::release::release_lease;
use crate::error::LockError;
use crate::options::OnLost;

/// A held lease. Its heartbeat runs in the background while the guard lives;
/// [`release`](LockGuard::release) ends it, and so does dropping the guard.
///
/// The guard *owns* the lease (ending it releases the lock); a [`LockHandle`]
/// only *observes* it, for the code the lease protects.
///
/// A guard dropped outside any async runtime (sync code, the end of `main`)
/// waits for its release, a response timeout at most. Dropped inside one, it
/// never blocks: the release is sent in the background, on the runtime the
/// client's connections live on. If that runtime shuts down or the process
/// exits before the release is sent, the lock stays held until its ttl runs
/// out. A service that drops guards and then stops should first call
/// [`flush_releases`](crate::flush_releases), which waits for every release still
/// in flight. The default client's connections live on the crate's own runtime,
/// so its releases outlive the caller's runtime (not the process).
///
/// ```no_run
/// # async fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
/// use lock_runtime::LockOptions;
/// let guard = client.acquire("report:daily", &LockOptions::default().fencing(true)).await?;
/// let token = guard.fencing_token(); // pass it to the storage you write
/// // ... work, checking `guard.is_held()` or racing `guard.lost()` ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "dropping the guard releases the lock (in async code, in the background: see `flush_releases`)"]
pub struct LockGuard {
    lease: Arc<Lease>,
    backend: Backend,
    min_hold: Option<Duration>,
    heartbeat: Option<AbortOnDropHandle<()>>,
    /// Still owns the lease: dropping must release it.
    armed: bool,
    /// A release was sent while the lease was still valid (and, if the guard is
    /// dropped still armed, abandoned): "not ours" at a second release is then
    /// that release's doing, or an expiry after the work was done.
    released_while_held: bool,
    /// A re-entrant guard on a hold the running code already had: its end
    /// releases nothing (the outer hold's owner does).
    nested: bool,
    /// For a set of locks (`acquire_all`): the guards of the other names, in
    /// lock order after this one, and their leases (for handles).
    others: Vec<LockGuard>,
    other_leases: Option<Arc<[Arc<Lease>]>>,
}

impl LockGuard {
    /// The guard of a lease just won through `backend`.
    pub(crate) fn new(
        Acquired { lease, heartbeat }: Acquired,
        backend: Backend,
        min_hold: Option<Duration>,
    ) -> Self {
        LockGuard {
            lease,
            backend,
            min_hold,
            heartbeat,
            armed: true,
            released_while_held: false,
            nested: false,
            others: Vec::new(),
            other_leases: None,
        }
    }

    /// One guard over a set of held locks, `first` and `others` (in lock
    /// order): held while all are, released together.
    pub(crate) fn set(mut first: LockGuard, others: Vec<LockGuard>) -> Self {
        let leases: Vec<Arc<Lease>> = others
            .iter()
            .map(|guard| Arc::clone(&guard.lease))
            .collect();
        first.other_leases = (!leases.is_empty()).then(|| leases.into());
        first.others = others;
        first
    }

    /// A guard on `lease`, held already by the running code, for a re-entrant
    /// acquisition: no heartbeat of its own, and nothing to release.
    pub(crate) fn nested(lease: Arc<Lease>, backend: Backend) -> Self {
        LockGuard {
            lease,
            backend,
            min_hold: None,
            heartbeat: None,
            armed: false,
            released_while_held: false,
            nested: true,
            others: Vec::new(),
            other_leases: None,
        }
    }

    /// Runs `body` as code that holds this lock: inside it, taking the same lock
    /// again (through a client of the same server) is caught at once, as
    /// [`LockError::Reentrant`], or with
    /// [`LockOptions::reentrant`](crate::LockOptions::reentrant) runs under this
    /// hold. `run`, `run_with` and `#[redis_locked]` do this for their bodies;
    /// use it when you hold a guard and call code that may lock the same name.
    ///
    /// ```no_run
    /// # async fn demo(client: lock_runtime::LockClient) -> Result<(), lock_runtime::LockError> {
    /// use lock_runtime::{LockError, LockOptions};
    /// let options = LockOptions::default();
    /// let guard = client.acquire("account:7", &options).await?;
    /// let again = guard.scope(client.acquire("account:7", &options)).await;
    /// assert!(matches!(again, Err(LockError::Reentrant { .. })));
    /// guard.release().await
    /// # }
    /// ```
    pub fn scope<F: Future>(&self, body: F) -> impl Future<Output = F::Output> + use<F> {
        crate::held::scope(self.backend.server(), self.leases().parts(), body)
    }

    /// [`scope`](Self::scope) for synchronous code: runs `body` on this thread
    /// as code that holds this lock.
    pub fn scope_blocking<T>(&self, body: impl FnOnce() -> T) -> T {
        crate::held::scope_blocking(self.backend.server(), self.leases().parts(), body)
    }

    fn leases(&self) -> Leases<'_> {
        Leases {
            first: &self.lease,
            others: self.other_leases.as_deref().unwrap_or_default(),
        }
    }

    /// The lock's name (for a set of locks, the first in lock order: see
    /// [`names`](Self::names)).
    pub fn name(&self) -> &str {
        &self.lease.name
    }

    /// The names of the locks this guard holds: one, or for
    /// [`acquire_all`](crate::LockClient::acquire_all) each once, in lock order.
    pub fn names(&self) -> Vec<&str> {
        self.leases().names()
    }

    /// The fencing token of this acquisition, when the options asked for fencing:
    /// strictly larger than every earlier token for the same name. (For a set
    /// of locks, the first's: see [`fencing_token_of`](Self::fencing_token_of).)
    pub fn fencing_token(&self) -> Option<u64> {
        self.lease.fence
    }

    /// The fencing token of lock `name` of this guard, when fencing is on.
    pub fn fencing_token_of(&self, name: &str) -> Option<u64> {
        self.leases().fence_of(name)
    }

    /// True while the lease is valid: not lost, and within its local deadline
    /// (for a set of locks: every lease of the set).
    pub fn is_held(&self) -> bool {
        self.leases().is_held()
    }

    /// How long the lease is certainly still valid without another extend (for
    /// a set: the shortest).
    pub fn time_left(&self) -> Option<Duration> {
        self.leases().time_left()
    }

    /// `Ok(())` while held, else the [`LockError::Lost`] saying why: use it with
    /// `?` before each step that must not run without the lock.
    ///
    /// ```no_run
    /// # use lock_runtime::{LockClient, LockError, LockOptions};
    /// # async fn write(_: u64) {}
    /// # async fn demo(client: LockClient, rows: Vec<u64>) -> Result<(), LockError> {
    /// let guard = client.acquire("import", &LockOptions::default()).await?;
    /// for row in rows {
    ///     guard.check()?; // the lease still covers this step
    ///     write(row).await;
    /// }
    /// guard.release().await
    /// # }
    /// ```
    pub fn check(&self) -> Result<(), LockError> {
        self.leases().check()
    }

    /// Completes with [`LockError::Lost`] when the lease is lost (never, if it is
    /// released first). The future is `'static` and can be moved into a task.
    ///
    /// Race it against the work to stop the moment the lock is gone (what
    /// [`LockClient::run`](crate::LockClient::run) does for you):
    ///
    /// ```no_run
    /// # use lock_runtime::{LockClient, LockError, LockOptions};
    /// # async fn rebuild_index() -> Result<(), LockError> { Ok(()) }
    /// # async fn demo(client: LockClient) -> Result<(), LockError> {
    /// let guard = client.acquire("search-index", &LockOptions::default()).await?;
    /// tokio::select! {
    ///     lost = guard.lost() => return Err(lost), // the work is dropped here
    ///     done = rebuild_index() => done?,
    /// }
    /// guard.release().await
    /// # }
    /// ```
    pub fn lost(&self) -> impl Future<Output = LockError> + Send + use<> {
        self.leases().lost()
    }

    /// A cheap, cloneable view of this lease for the code it protects: hand it to
    /// the functions or tasks doing the work while the guard stays with the code
    /// that releases.
    ///
    /// ```no_run
    /// # use lock_runtime::{LockClient, LockError, LockHandle, LockOptions};
    /// async fn upload(lock: LockHandle, part: u32) -> Result<(), LockError> {
    ///     lock.check()?;
    ///     // ... send `part`, tagged with `lock.fencing_token()` ...
    ///     Ok(())
    /// }
    /// # async fn demo(client: LockClient) -> Result<(), LockError> {
    /// let guard = client.acquire("backup", &LockOptions::default().fencing(true)).await?;
    /// tokio::try_join!(upload(guard.handle(), 0), upload(guard.handle(), 1))?;
    /// guard.release().await
    /// # }
    /// ```
    pub fn handle(&self) -> LockHandle {
        LockHandle {
            lease: Arc::clone(&self.lease),
            others: self.other_leases.clone(),
        }
    }

    /// Stops the heartbeat and releases the lease: compare-and-delete, or, when
    /// someone waits, a direct handoff: to the next task of this client in line
    /// (see [`LockClient::tasks_in_line`](crate::LockClient::tasks_in_line)), or to the longest-waiting waiter
    /// queued in Redis. With
    /// `min_hold`, an early release leaves the key to expire at acquisition +
    /// `min_hold` instead.
    ///
    /// Handles of this lease report it as not held from the moment `release` is
    /// called (the lock may be free, or another's, before the answer comes), as
    /// they do once the guard is dropped.
    ///
    /// Returns [`LockError::Lost`] if the lease was already lost: whatever was done
    /// under it may have overlapped with another holder. A re-entrant guard
    /// (see [`LockOptions::reentrant`](crate::LockOptions::reentrant)) releases
    /// nothing: the outer hold goes on.
    pub async fn release(mut self) -> Result<(), LockError> {
        let others = std::mem::take(&mut self.others);
        if !others.is_empty() {
            return release_set(std::iter::once(self).chain(others).collect()).await;
        }
        if self.nested {
            // The outer hold goes on: nothing to send, and nothing to end.
            return self.check();
        }
        self.heartbeat = None;
        let lost_before = self.lease.is_lost().then(|| self.lease.lost_error());
        self.released_while_held = self.lease.is_held();
        // Let go before the release is sent: it may take effect (the lock freed or
        // handed on) well before its answer comes, and a handle must not report
        // the lock held meanwhile.
        self.lease.ended();
        let result = release_lease(
            &self.backend,
            &self.lease,
            self.min_hold,
            self.lease.take_turn(),
            false,
        )
        .await;
        // Only now: if this future is dropped mid-release, `Drop` still releases.
        self.armed = false;
        if matches!(result, Ok(Released::HandedOn | Released::HandedHere { .. })) {
            // Let the runtime run what is ready first (the heir, if it is in this
            // process or its notice has arrived) before the caller goes on,
            // typically to queue for the lock again: that request would otherwise
            // go first, and delay the heir's at the client and at the server.
            // Dropped here, nothing is left undone.
            tokio::task::yield_now().await;
        }
        match (lost_before, result) {
            (Some(lost), _) => Err(lost),
            (None, result) => result.map(drop),
        }
    }

    /// Stops the heartbeat; returns the lease if it still has to be released.
    fn disarm(&mut self) -> Option<Arc<Lease>> {
        self.heartbeat = None;
        std::mem::take(&mut self.armed).then(|| Arc::clone(&self.lease))
    }
}

/// Releases the guards of a set (each one lock): where nobody waits for them,
/// in one request; the rest each with a release of its own, all at once. A
/// lease that was lost is the answer.
async fn release_set(mut guards: Vec<LockGuard>) -> Result<(), LockError> {
    let lost_before = guards.iter().find_map(|guard| guard.check().err());
    let together = guards.iter().all(|guard| {
        !guard.nested
            && guard.min_hold.is_none()
            && !guard.lease.has_turn()
            && !Shape::of_token(&guard.lease.token).is_shared()
    });
    let mut results = Vec::with_capacity(guards.len());
    // A second release for each guard whose first may have done its work.
    let mut again = false;
    if together {
        let leases: Vec<Arc<Lease>> = guards
            .iter()
            .map(|guard| Arc::clone(&guard.lease))
            .collect();
        let keys: Vec<String> = leases.iter().map(|lease| lease.key.clone()).collect();
        let tokens: Vec<&str> = leases.iter().map(|lease| lease.token.as_str()).collect();
        for guard in &mut guards {
            // As `release` does: let go before the request is sent.
            guard.heartbeat = None;
            guard.released_while_held = guard.lease.is_held();
            guard.lease.ended();
        }
        let released = match guards.first() {
            Some(first) => first.backend.release_together(&keys, &tokens).await,
            None => Ok(Vec::new()),
        };
        match released {
            Ok(deleted) => {
                for (guard, deleted) in guards.iter_mut().zip(deleted) {
                    if deleted {
                        let _released = guard.disarm();
                        tracing::debug!(lock = %guard.lease.name, "lock released");
                        results.push(Ok(()));
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "releasing a set together failed; releasing each lock");
                // Sent, and perhaps done, unless the server refused it: then
                // a "not ours" at the next release is a lost lease.
                again = error.is_io_error() || error.is_timeout() || error.is_connection_dropped();
            }
        }
    }
    let rest = guards
        .into_iter()
        .filter(|guard| guard.armed)
        .map(|mut guard| async move {
            if !again {
                // Untouched by the request: an ordinary release (handoffs too).
                return guard.release().await;
            }
            let released = release_lease(&guard.backend, &guard.lease, None, None, true).await;
            let _released = guard.disarm();
            released.map(drop)
        });
    results.extend(futures_util::future::join_all(rest).await);
    match lost_before {
        Some(lost) => Err(lost),
        None => results.into_iter().find(Result::is_err).unwrap_or(Ok(())),
    }
}

/// The lock's name, fencing token, state, how long it has been held and how
/// long it is certainly valid (for a set, each lock's); never the lease token
/// (the secret that authorises a release).
impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.leases().describe("LockGuard", f)
    }
}

/// As for [`LockGuard`]: never the lease token.
impl std::fmt::Debug for LockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.leases().describe("LockHandle", f)
    }
}

/// The leases of a guard or handle: one, or a set's, first in lock order.
#[derive(Clone, Copy)]
pub(crate) struct Leases<'a> {
    first: &'a Arc<Lease>,
    others: &'a [Arc<Lease>],
}

impl<'a> Leases<'a> {
    /// The first lease and the others.
    fn parts(self) -> (&'a Arc<Lease>, &'a [Arc<Lease>]) {
        (self.first, self.others)
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = &'a Arc<Lease>> {
        std::iter::once(self.first).chain(self.others)
    }

    fn names(self) -> Vec<&'a str> {
        self.iter().map(|lease| lease.name.as_str()).collect()
    }

    fn fence_of(self, name: &str) -> Option<u64> {
        self.iter().find(|lease| lease.name == name)?.fence
    }

    fn is_held(self) -> bool {
        self.iter().all(|lease| lease.is_held())
    }

    fn time_left(self) -> Option<Duration> {
        self.iter().map(|lease| lease.time_left()).min()?
    }

    fn check(self) -> Result<(), LockError> {
        match self.iter().find(|lease| !lease.is_held()) {
            Some(lease) => Err(lease.lost_error()),
            None => Ok(()),
        }
    }

    /// The first loss among the leases: losing one lock of a set is losing the set.
    fn lost(self) -> impl Future<Output = LockError> + Send + use<> {
        let leases: Vec<Arc<Lease>> = self.iter().cloned().collect();
        async move {
            let losses = leases.iter().map(|lease| Box::pin(lease.wait_lost()));
            futures_util::future::select_all(losses).await.0
        }
    }

    fn describe(self, kind: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.others.is_empty() {
            return self.first.describe(kind, f);
        }
        let mut list = f.debug_list();
        for lease in self.iter() {
            list.entry(&Described(kind, lease));
        }
        list.finish()
    }
}

struct Described<'a>(&'a str, &'a Lease);

impl std::fmt::Debug for Described<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.1.describe(self.0, f)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(lease) = self.disarm() else {
            return;
        };
        let backend = self.backend.clone();
        let min_hold = self.min_hold;
        // Taken here, not in the task: if the task never runs (its runtime is
        // shutting down), the turn still passes on as it is dropped.
        let turn = lease.take_turn();
        let again = self.released_while_held;
        // Let go at once (see `release`): handles report the lock as not held
        // from here, not from when the background release is answered.
        lease.ended();
        tracing::debug!(lock = %lease.name, "guard dropped; releasing in the background");
        // The release runs on the runtime the client's connections live on (for
        // the default client and sync callers, the crate's own, which outlives
        // the caller's), counted until done: `flush_releases` waits for it.
        let done = self.backend.spawn_release(async move {
            if let Err(error) = release_lease(&backend, &lease, min_hold, turn, again).await {
                tracing::debug!(%error, "background release after drop did not complete");
            }
        });
        // Dropped outside any async runtime (sync code, or the end of `main`):
        // nothing else would wait for the release, and blocking is what sync
        // code does anyway, so wait for it here, for a response timeout at
        // most. Inside a runtime, never block: it runs in the background.
        // (A current-thread runtime runs nothing while no one drives it: no
        // use waiting for it.)
        if tokio::runtime::Handle::try_current().is_err()
            && !crate::rt::on_background_thread()
            && self.backend.runtime_has_own_threads()
        {
            let _ = done.recv_timeout(self.backend.response_timeout());
        }
    }
}

/// What a protected body sees of its lease: fencing token, validity, loss.
///
/// A handle *observes* a lease that a [`LockGuard`] (or `run_with`, or the
/// attribute's `guard = …`) owns: it cannot release it or keep it alive.
/// Cheap to clone, `Send + Sync`, and usable after the guard is gone (it then
/// reports the lease as no longer held).
#[derive(Clone)]
pub struct LockHandle {
    lease: Arc<Lease>,
    /// The other leases of a set of locks, in lock order.
    others: Option<Arc<[Arc<Lease>]>>,
}

impl LockHandle {
    fn leases(&self) -> Leases<'_> {
        Leases {
            first: &self.lease,
            others: self.others.as_deref().unwrap_or_default(),
        }
    }

    /// The lock's name (for a set of locks, the first in lock order).
    pub fn name(&self) -> &str {
        &self.lease.name
    }

    /// The names of the locks held: one, or a set's, in lock order.
    pub fn names(&self) -> Vec<&str> {
        self.leases().names()
    }

    /// The fencing token of this acquisition, when fencing is on (for a set of
    /// locks, the first's).
    pub fn fencing_token(&self) -> Option<u64> {
        self.lease.fence
    }

    /// The fencing token of lock `name` of this hold, when fencing is on.
    pub fn fencing_token_of(&self, name: &str) -> Option<u64> {
        self.leases().fence_of(name)
    }

    /// True while the lease is valid: not lost, and within its local deadline
    /// (for a set: every lease of it).
    pub fn is_held(&self) -> bool {
        self.leases().is_held()
    }

    /// How long the lease is certainly still valid without another extend (for
    /// a set: the shortest).
    pub fn time_left(&self) -> Option<Duration> {
        self.leases().time_left()
    }

    /// `Ok(())` while held, else the [`LockError::Lost`] saying why; use it with `?`
    /// before a step that must not run without the lock.
    pub fn check(&self) -> Result<(), LockError> {
        self.leases().check()
    }

    /// Completes with [`LockError::Lost`] when the lease (for a set, any of
    /// them) is lost.
    pub fn lost(&self) -> impl Future<Output = LockError> + Send + use<> {
        self.leases().lost()
    }
}

/// A `run` body under `guard`: in the guard's scope, raced against the lease's
/// loss as `on_lost` says; then [`finish`].
pub(crate) async fn run_held<F, Fut>(
    guard: LockGuard,
    on_lost: OnLost,
    body: F,
) -> Result<Fut::Output, LockError>
where
    F: FnOnce(LockHandle) -> Fut,
    Fut: Future,
{
    guard.check()?;
    let handle = guard.handle();
    let body = tracing::Instrument::instrument(
        guard.scope(body(handle.clone())),
        guard.lease.span.clone(),
    );
    let output = match on_lost {
        OnLost::Cancel => {
            tokio::select! {
                biased;
                lost = handle.lost() => return Err(lost),
                output = body => output,
            }
        }
        OnLost::Notify => body.await,
    };
    finish(guard, output).await
}

/// After the body of `run`: the result counts only if the lease was still valid when
/// the body ended; then release.
pub(crate) async fn finish<T>(guard: LockGuard, output: T) -> Result<T, LockError> {
    guard.check()?;
    after_release(guard.release().await, output)
}

/// The outcome of a body that ended while its lease was valid, given how the
/// release went.
pub(crate) fn after_release<T>(released: Result<(), LockError>, output: T) -> Result<T, LockError> {
    match released {
        Ok(()) => Ok(output),
        Err(lost @ LockError::Lost { .. }) => Err(lost),
        Err(error) => {
            // The body finished while the lease was valid; only the release failed,
            // and the ttl will free the lock.
            tracing::warn!(%error, "release failed after the protected work completed");
            Ok(output)
        }
    }
}
