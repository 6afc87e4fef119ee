//! The crate's own small tokio runtime, on a background thread.
//!
//! It hosts what must outlive any one caller's runtime: the lazily made default
//! client's connections (a `#[tokio::test]` runtime ends with its test).

use std::cell::Cell;
use std::sync::OnceLock;

use crate::LockError;

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
