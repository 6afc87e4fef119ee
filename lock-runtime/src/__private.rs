//! What `#[redis_locked]` expands to calls. Not public API: no stability promise.
//!
//! Everything here is a thin shim over public calls (`LockClient::run_with`,
//! `run_all_with`, `run_blocking`, `run_all_blocking`, `default_client`), plus the trait that turns a
//! [`LockError`] into the annotated function's return type.

use std::borrow::Borrow;
use std::future::Future;

pub use crate::{LockClient, LockError, LockHandle, LockOptions, Mode, OnLost, Wait};
pub use core::time::Duration;

/// How an annotated function returns a [`LockError`] (lock busy, wait timed out,
/// lease lost, Redis unreachable) through its own return type.
///
/// The impls are `do_not_recommend`: a wrong return type is then reported with
/// this trait's message at the user's return type, not as a list of impls and
/// nested bounds inside this module.
#[diagnostic::on_unimplemented(
    message = "`#[redis_locked]` cannot return a lock failure through `{Self}`",
    label = "this return type cannot carry a `LockError`",
    note = "return `Result<T, E>` with an error type `E` that implements `From<LockError>`: e.g. `LockError`, `anyhow::Error`, `std::io::Error`, or your own error type (`String` and `&str` do not)",
    note = "or return `()`: a function that could not take the lock then logs why (a `tracing` event) and does nothing, like a skipped job tick"
)]
pub trait LockedReturn: Sized {
    /// The value the function returns when it could not run under the lock.
    fn from_lock_error(error: LockError) -> Self;
}

#[diagnostic::do_not_recommend]
impl<T, E: From<LockError>> LockedReturn for Result<T, E> {
    fn from_lock_error(error: LockError) -> Self {
        Err(E::from(error))
    }
}

#[diagnostic::do_not_recommend]
impl LockedReturn for () {
    fn from_lock_error(error: LockError) -> Self {
        if error.is_contended() {
            tracing::info!(lock = error.lock_name(), %error, "skipped: the lock is held elsewhere");
        } else {
            tracing::error!(lock = error.lock_name(), %error, "locked function did not run under its lock");
        }
    }
}

/// The client named by `client = expr` (a `LockClient`, a reference to one, or
/// anything else that borrows as one), cloned so the body may move what it came from.
pub fn client<C: Borrow<LockClient> + ?Sized>(client: &C) -> LockClient {
    client.borrow().clone()
}

/// Options with the given ttl; the expansion chains the other settings.
pub fn options(ttl: Duration) -> LockOptions {
    LockOptions::new(ttl)
}

/// `wait = expr`: a `Duration` (wait up to it) or a `Wait`.
pub fn wait(wait: impl Into<Wait>) -> Wait {
    wait.into()
}

/// The async path: the given client or the default one, then `run_with` (or
/// `run_all_with` for `name = [..]`).
pub async fn run_async<R, F, Fut>(
    client: Option<LockClient>,
    names: &[String],
    options: &LockOptions,
    on_error: fn(LockError) -> R,
    body: F,
) -> R
where
    F: FnOnce(LockHandle) -> Fut,
    Fut: Future<Output = R>,
{
    let client = match client {
        Some(client) => client,
        None => match crate::default_client().await {
            Ok(client) => client,
            Err(error) => return on_error(error),
        },
    };
    let ran = match names {
        [name] => client.run_with(name, options, body).await,
        names => client.run_all_with(names, options, body).await,
    };
    match ran {
        Ok(output) => output,
        Err(error) => on_error(error),
    }
}

/// The sync path: the given client or the default one, then `run_blocking`
/// (or `run_all_blocking`).
pub fn run_blocking<R, F>(
    client: Option<LockClient>,
    names: &[String],
    options: &LockOptions,
    on_error: fn(LockError) -> R,
    body: F,
) -> R
where
    F: FnOnce(LockHandle) -> R,
{
    let client = match client {
        Some(client) => client,
        None => match crate::default_client_blocking() {
            Ok(client) => client,
            Err(error) => return on_error(error),
        },
    };
    let ran = match names {
        [name] => client.run_blocking(name, options, body),
        names => client.run_all_blocking(names, options, body),
    };
    match ran {
        Ok(output) => output,
        Err(error) => on_error(error),
    }
}
