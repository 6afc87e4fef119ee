//! The crate's own small tokio runtime, on a background thread, and blocking on it.
//!
//! It hosts what must outlive any one caller's runtime: the lazily made default
//! client's connections (a `#[tokio::test]` runtime ends with its test), and the
//! clients that synchronous callers use.

use std::cell::Cell;
use std::future::Future;
use std::sync::{OnceLock, mpsc};

use crate::error::LockError;

static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

thread_local! {
    static ON_BACKGROUND: Cell<bool> = const { Cell::new(false) };
}

/// True on the background runtime's own threads (where blocking on it would deadlock).
pub(crate) fn on_background_thread() -> bool {
    ON_BACKGROUND.with(Cell::get)
}

/// A handle on the background runtime, started on first use.
pub(crate) fn handle() -> Result<tokio::runtime::Handle, LockError> {
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lock-runtime")
            .on_thread_start(|| ON_BACKGROUND.with(|flag| flag.set(true)))
            .enable_all()
            .build()
            .map_err(|error| error.to_string())
    });
    match runtime {
        Ok(runtime) => Ok(runtime.handle().clone()),
        Err(error) => Err(LockError::Config {
            subject: "the lock runtime".to_owned(),
            reason: format!("cannot start its background thread: {error}"),
        }),
    }
}

/// Runs `future` on the background runtime and waits for its output. Blocks only
/// the calling thread, so it works with no runtime at all, and inside a runtime it
/// cannot deadlock on that runtime.
pub(crate) fn block_on_background<F>(future: F) -> Result<F::Output, LockError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if on_background_thread() {
        return Err(LockError::Config {
            subject: "a blocking lock call".to_owned(),
            reason: "it ran on the lock runtime's own thread, where it would deadlock".to_owned(),
        });
    }
    let (sender, receiver) = mpsc::sync_channel(1);
    handle()?.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver.recv().map_err(|_| LockError::Config {
        subject: "a blocking lock call".to_owned(),
        reason: "the lock runtime's task ended without an answer (it panicked)".to_owned(),
    })
}
