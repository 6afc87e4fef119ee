//! Which locks the running code holds, so that taking one of them again is
//! caught at once instead of waiting on itself.
//!
//! A holder is a *scope*: the body of a `run`, `run_with` or `#[redis_locked]`
//! call, or a future given to [`LockGuard::scope`](crate::LockGuard::scope),
//! with everything it awaits in the same task; for sync code, the body of a
//! `run_blocking` on its thread. An async scope is a tokio task-local value, so
//! it follows the body across `.await` points and worker threads, and is not
//! seen by a spawned task (a different holder) or by a sibling future joined
//! with the body (`join!`, `join_all`: they may run while the body waits, so
//! they are not inside it). A sync scope is a thread-local one.
//!
//! A lock is identified by the server a client talks to and the lock's key, so
//! two clients of the same deployment and prefix count as one.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

use crate::engine::lease::Lease;

/// One lock held by the current scope.
#[derive(Clone)]
struct HeldLock {
    server: Arc<str>,
    lease: Arc<Lease>,
}

/// The locks a scope holds, innermost last. Small (one entry per nesting
/// level), so a copy per nested scope costs little.
#[derive(Clone, Default)]
pub(crate) struct Held(Vec<HeldLock>);

tokio::task_local! {
    static TASK_HELD: Held;
}

thread_local! {
    static THREAD_HELD: RefCell<Held> = RefCell::default();
}

/// The lease of lock `key` on `server` that the running code holds, if any:
/// the current task's scope first, then the current thread's. (So a task
/// spawned on a runtime that a blocking body drives on its own thread counts
/// as that body: a known limit.) A lease already released (a scope that
/// outlived its guard) is not held.
pub(crate) fn holding(server: &str, key: &str) -> Option<Arc<Lease>> {
    let find = |held: &Held| {
        held.0
            .iter()
            .rev()
            .find(|lock| {
                &*lock.server == server && lock.lease.key == key && !lock.lease.is_released()
            })
            .map(|lock| Arc::clone(&lock.lease))
    };
    TASK_HELD
        .try_with(|held| find(held))
        .ok()
        .flatten()
        .or_else(|| THREAD_HELD.with(|held| find(&held.borrow())))
}

impl Held {
    fn add(&mut self, server: &str, (first, others): (&Arc<Lease>, &[Arc<Lease>])) {
        let server: Arc<str> = Arc::from(server);
        self.0
            .extend(std::iter::once(first).chain(others).map(|lease| HeldLock {
                server: Arc::clone(&server),
                lease: Arc::clone(lease),
            }));
    }
}

/// Whether the running code holds any lock at all: the cheap check made
/// before each acquire builds a key to look for.
pub(crate) fn holds_any() -> bool {
    TASK_HELD
        .try_with(|held| !held.0.is_empty())
        .unwrap_or(false)
        || THREAD_HELD.with(|held| !held.borrow().0.is_empty())
}

/// What the running code holds: the current task's scope and the current
/// thread's, to carry into work done for it elsewhere (a blocking call's
/// acquire, on the background runtime).
pub(crate) fn current() -> Held {
    let mut held = TASK_HELD.try_with(Held::clone).unwrap_or_default();
    THREAD_HELD.with(|thread| held.0.extend(thread.borrow().0.iter().cloned()));
    held
}

/// Runs `body` as code that holds what `held` says (from [`current`]).
pub(crate) fn within<F: Future>(held: Held, body: F) -> impl Future<Output = F::Output> {
    TASK_HELD.scope(held, body)
}

/// Runs `body` as a scope that holds `leases` (of locks on `server`: a
/// guard's first and other leases).
pub(crate) fn scope<F: Future>(
    server: &str,
    leases: (&Arc<Lease>, &[Arc<Lease>]),
    body: F,
) -> impl Future<Output = F::Output> + use<F> {
    let mut held = TASK_HELD.try_with(Held::clone).unwrap_or_default();
    held.add(server, leases);
    TASK_HELD.scope(held, body)
}

/// Runs the sync `body` as a scope of the current thread that holds `leases`.
pub(crate) fn scope_blocking<T>(
    server: &str,
    leases: (&Arc<Lease>, &[Arc<Lease>]),
    body: impl FnOnce() -> T,
) -> T {
    /// Restores the thread's scope however `body` ends (a panic included).
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_HELD.with(|held| held.borrow_mut().0.truncate(self.0));
        }
    }
    let depth = THREAD_HELD.with(|held| {
        let mut held = held.borrow_mut();
        let depth = held.0.len();
        held.add(server, leases);
        depth
    });
    let _restore = Restore(depth);
    body()
}
