//! Configuring a [`LockClient`](crate::LockClient): the URL, key prefix,
//! timeouts and TLS roots. `connect` (in `client.rs`) turns it into a client.

use std::time::Duration;

use crate::backend::{ClusterMode, Settings, redact_url};
use crate::keys::DEFAULT_PREFIX;

/// Configures and connects a [`LockClient`](crate::LockClient).
///
/// ```no_run
/// # async fn demo() -> Result<(), lock_runtime::LockError> {
/// use std::time::Duration;
/// let client = lock_runtime::LockClient::builder("redis://:secret@10.0.0.5:6379/0")
///     .prefix("billing:lock:")
///     .connect_timeout(Duration::from_secs(2))
///     .response_timeout(Duration::from_secs(1))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "call `.connect().await` to get a client"]
pub struct LockClientBuilder {
    pub(crate) settings: Settings,
}

impl std::fmt::Debug for LockClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings = &self.settings;
        f.debug_struct("LockClientBuilder")
            .field("url", &redact_url(&settings.url))
            .field("prefix", &settings.prefix)
            .field("connect_timeout", &settings.connect_timeout)
            .field("response_timeout", &settings.response_timeout)
            .field("holder_label", &settings.holder_label)
            .finish_non_exhaustive()
    }
}

impl LockClientBuilder {
    /// A builder for `url` with the defaults: prefix `lock:`, 5 s timeouts.
    pub(crate) fn new(url: String) -> Self {
        LockClientBuilder {
            settings: Settings {
                url,
                prefix: DEFAULT_PREFIX.to_owned(),
                connect_timeout: Duration::from_secs(5),
                response_timeout: Duration::from_secs(5),
                tls_root_certificate: None,
                cluster: ClusterMode::Detect,
                quorum: None,
                holder_label: None,
                metrics_by_name: false,
                check_permissions: true,
            },
        }
    }

    /// For `rediss://` URLs: trust this CA certificate (PEM) instead of the public
    /// web roots, e.g. for a server whose certificate your organisation signs.
    #[cfg(feature = "tls")]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.tls_root_certificate = Some(pem.into());
        self
    }

    /// Prefix of every key and channel this client uses (default `lock:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// How long connecting (TCP, TLS, AUTH, first PING) may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Whether the server is a Redis Cluster: by default detected at connect
    /// (a seed list `redis://h1:p1,h2:p2` is one; one address is one if the
    /// server says so); [`ClusterMode::Require`] or [`ClusterMode::Forbid`]
    /// decide instead.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// use lock_runtime::{ClusterMode, LockClient};
    /// let client = LockClient::builder("redis://10.0.0.5:7000")
    ///     .cluster(ClusterMode::Require)
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster(mut self, mode: ClusterMode) -> Self {
        self.settings.cluster = mode;
        self
    }

    /// Names this application in the holder record every lease of the client
    /// carries (with host name, process id and when the lease was asked for),
    /// for [`LockClient::inspect`](crate::LockClient::inspect) and `lockctl`.
    /// At most 64 bytes, without `:`, `|`, whitespace or control characters
    /// (else `connect` fails with [`LockError::Config`](crate::LockError::Config)).
    /// The record is shown to people, never trusted: the lease's random token
    /// decides who holds a lock.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), lock_runtime::LockError> {
    /// let client = lock_runtime::LockClient::builder("redis://127.0.0.1:6379")
    ///     .holder_label("billing-worker")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn holder_label(mut self, label: impl Into<String>) -> Self {
        self.settings.holder_label = Some(label.into());
        self
    }

    /// Label this client's metrics (the `metrics` feature) with each lock's
    /// name as well (`lock="invoice:42"`). Off by default: one series per
    /// name grows without bound where names carry ids.
    #[cfg(feature = "metrics")]
    pub fn metrics_by_lock_name(mut self, by_name: bool) -> Self {
        self.settings.metrics_by_name = by_name;
        self
    }

    /// Whether `connect` checks that the Redis user may run every command a
    /// lock needs, on keys and channels of the prefix (default `true`; see
    /// the README's "Least privilege"). Turn it off for a user allowed only
    /// some lock names (the check asks about keys of its own), or a read-only
    /// account that only inspects locks: such a client then fails at the
    /// first request it is denied.
    pub fn check_permissions(mut self, check: bool) -> Self {
        self.settings.check_permissions = check;
        self
    }

    /// How long one command may wait for its answer (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.settings.response_timeout = timeout;
        self
    }
}
