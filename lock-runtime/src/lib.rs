//! Distributed locks on Redis that are safe to trust with money and data.
//!
//! A lock is a *lease* on one Redis key: taken in one round trip with a random
//! 128-bit token, kept alive by a heartbeat owned by the holder, and released only
//! by that holder (compare-and-delete). The holder counts the lease from when it
//! *sent* each acquire or extend, so when Redis is slow, paused or gone it gives the
//! lease up on its own before anyone else can be granted it. Optional fencing
//! tokens let the storage you write reject a holder whose lease has passed on.
//!
//! ```no_run
//! use std::time::Duration;
//! use lock_runtime::{LockClient, LockOptions, Wait};
//!
//! # async fn demo() -> Result<(), lock_runtime::LockError> {
//! let client = LockClient::connect("redis://127.0.0.1:6379").await?;
//! let options = LockOptions::new(Duration::from_secs(30)).wait(Wait::For(Duration::from_secs(5)));
//!
//! // Scoped: the body is dropped if the lease is lost, and the lock is released
//! // however the body ends.
//! client.run("invoice:42", &options, async { /* settle invoice 42 */ }).await?;
//!
//! // By hand: a guard with a background heartbeat.
//! let guard = client.acquire("invoice:42", &options.clone().fencing(true)).await?;
//! let fence = guard.fencing_token();
//! guard.release().await?;
//! # let _ = fence; Ok(()) }
//! ```

// The README's code blocks compile as doctests, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[doc(hidden)]
pub mod __private;
#[cfg(feature = "axum")]
mod axum;
mod backend;
mod backoff;
mod blocking;
mod builder;
/// The `lockctl` tool's implementation (the `cli` feature); run it as the
/// `lockctl` binary.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
mod client;
mod engine;
mod error;
mod global;
mod guard;
mod held;
mod inspect;
mod keys;
mod observe;
mod options;
mod rt;
mod sets;
mod token;
mod validity;

pub use backend::{ClusterMode, acl_rule, redact_url};
pub use blocking::default_client_blocking;
pub use builder::LockClientBuilder;
pub use client::LockClient;
pub use error::{LockError, LostReason};
pub use global::{DEFAULT_REDIS_URL, default_client, set_default_client};
pub use guard::{LockGuard, LockHandle};
pub use inspect::{Holder, HolderIdentity, LockState, Share, Waiter};
pub use keys::{DEFAULT_PREFIX, MAX_NAME_LEN};
/// [`LockError`]: crate::LockError
#[doc(inline)]
pub use lock_macros::redis_locked;
pub use options::{LockOptions, Mode, OnLost, Replicas, Wait};
pub use rt::{flush_releases, flush_releases_blocking};
