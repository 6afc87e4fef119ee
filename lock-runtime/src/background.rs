//! The crate's own small tokio runtime, on a background thread.
//!
//! It hosts what must outlive any one caller's runtime: the lazily made default
//! client's connections (a `#[tokio::test]` runtime ends with its test).

use std::sync::OnceLock;

use crate::LockError;

static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

/// A handle on the background runtime, started on first use.
pub(crate) fn handle() -> Result<tokio::runtime::Handle, LockError> {
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lock-runtime")
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
