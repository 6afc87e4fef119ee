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
/// the current task's scope first, then the current thread's.
pub(crate) fn holding(server: &str, key: &str) -> Option<Arc<Lease>> {
    let find = |held: &Held| {
        held.0
            .iter()
            .rev()
            .find(|lock| &*lock.server == server && lock.lease.key == key)
            .map(|lock| Arc::clone(&lock.lease))
    };
    TASK_HELD
        .try_with(|held| find(held))
        .ok()
        .flatten()
        .or_else(|| THREAD_HELD.with(|held| find(&held.borrow())))
}

/// The current task's held locks plus `lease`.
fn with_lease(server: &str, lease: &Arc<Lease>) -> Held {
    let mut held = TASK_HELD.try_with(Held::clone).unwrap_or_default();
    held.0.push(HeldLock {
        server: Arc::from(server),
        lease: Arc::clone(lease),
    });
    held
}

/// Runs `body` as a scope that holds `lease` (of a lock on `server`).
pub(crate) fn scope<F: Future>(
    server: &str,
    lease: &Arc<Lease>,
    body: F,
) -> impl Future<Output = F::Output> + use<F> {
    TASK_HELD.scope(with_lease(server, lease), body)
}

/// Runs the sync `body` as a scope of the current thread that holds `lease`.
pub(crate) fn scope_blocking<T>(server: &str, lease: &Arc<Lease>, body: impl FnOnce() -> T) -> T {
    /// Restores the thread's scope however `body` ends (a panic included).
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_HELD.with(|held| held.borrow_mut().0.truncate(self.0));
        }
    }
    let depth = THREAD_HELD.with(|held| {
        let mut held = held.borrow_mut();
        held.0.push(HeldLock {
            server: Arc::from(server),
            lease: Arc::clone(lease),
        });
        held.0.len() - 1
    });
    let _restore = Restore(depth);
    body()
}
