//! Turning a URL into a `redis::Client`, and what to tell the user when that or
//! the first connection fails. Shared by every topology.

use std::time::Duration;

use crate::error::LockError;

/// The client for `url`, with `TCP_NODELAY` on (and the private CA for
/// `rediss://`, if given); a URL that does not parse is [`LockError::Config`].
pub(crate) fn open_client(
    url: &str,
    tls_root_certificate: Option<Vec<u8>>,
) -> Result<redis::Client, LockError> {
    open(url, tls_root_certificate).map_err(|error| LockError::Config {
        subject: format!("Redis URL `{}`", redact_url(url)),
        reason: url_error_hint(&error),
    })
}

fn open(url: &str, tls_root_certificate: Option<Vec<u8>>) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    // Every lock operation is one small request waiting for its answer: never let
    // Nagle's algorithm hold a request back.
    let info = url.into_connection_info()?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let info = info.set_tcp_settings(tcp);
    match tls_root_certificate {
        #[cfg(feature = "tls")]
        Some(root_cert) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            },
        ),
        _ => redis::Client::open(info),
    }
}

/// A `redis://` or `rediss://` URL taken apart, with one host or a seed list
/// (`redis://[user:password@]h1:p1,h2:p2,h3:p3[/db]`), so that the same
/// credentials and settings can address every node of a cluster.
#[derive(Clone)]
pub(crate) struct Endpoints {
    scheme: String,
    /// `user:password@` or empty.
    userinfo: String,
    hosts: Vec<String>,
    /// `/db?query` or empty.
    rest: String,
}

impl Endpoints {
    /// `None` for other schemes (`redis+unix://`), which name one server.
    pub(crate) fn parse(url: &str) -> Option<Endpoints> {
        let (scheme, rest) = url.split_once("://")?;
        if scheme != "redis" && scheme != "rediss" {
            return None;
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
            None => (String::new(), authority),
        };
        Some(Endpoints {
            scheme: scheme.to_owned(),
            userinfo,
            hosts: hosts.split(',').map(str::to_owned).collect(),
            rest: tail.to_owned(),
        })
    }

    /// More than one host: a cluster's seed list.
    pub(crate) fn is_seed_list(&self) -> bool {
        self.hosts.len() > 1
    }

    /// One URL per host given.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.hosts.iter().map(|host| self.url_for(host)).collect()
    }

    /// The URL of `host` (`h:p`) with this URL's scheme, credentials and settings.
    pub(crate) fn url_for(&self, host: &str) -> String {
        format!("{}://{}{host}{}", self.scheme, self.userinfo, self.rest)
    }

    /// The hosts, for messages (no credentials).
    pub(crate) fn shown(&self) -> String {
        self.hosts.join(",")
    }
}

/// `url` with any password replaced by `***`, for logs and messages (the
/// library's own errors and `Debug` output already do this).
///
/// ```
/// assert_eq!(
///     lock_runtime::redact_url("redis://app:s3cret@10.0.0.5:6379/0"),
///     "redis://app:***@10.0.0.5:6379/0"
/// );
/// assert_eq!(lock_runtime::redact_url("redis://10.0.0.5"), "redis://10.0.0.5");
/// ```
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((credentials, host)) = rest.rsplit_once('@')
    {
        let user = credentials.split(':').next().unwrap_or_default();
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

fn url_error_hint(error: &redis::RedisError) -> String {
    let mut reason = error.to_string();
    if reason.contains("TLS") || reason.contains("tls") {
        reason.push_str(" (rediss:// needs lock-runtime's `tls` feature)");
    } else {
        reason.push_str(
            " (expected redis://[user:password@]host[:port][/db], rediss://… or redis+unix:///path)",
        );
    }
    reason
}

/// The [`LockError::Connection`] for `server` when connecting failed with `error`
/// (`None`: no answer within `connect_timeout`).
pub(crate) fn unreachable(
    server: &str,
    connect_timeout: Duration,
    error: Option<redis::RedisError>,
) -> LockError {
    let reason = match &error {
        None => no_answer(connect_timeout),
        Some(error) if error.is_timeout() => no_answer(connect_timeout),
        Some(error) => describe_connect_error(error),
    };
    LockError::Connection {
        server: server.to_owned(),
        reason,
        source: error,
    }
}

fn no_answer(connect_timeout: Duration) -> String {
    format!("no answer within the connect timeout ({connect_timeout:?})")
}

fn describe_connect_error(error: &redis::RedisError) -> String {
    let code = error.code().unwrap_or_default();
    if error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
    {
        "authentication failed: check the user name and password in the URL".to_owned()
    } else if error.is_connection_refusal() {
        "connection refused: is redis-server running at that address?".to_owned()
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact_url("redis://u:secret@h:1,g:2"),
            "redis://u:***@h:1,g:2"
        );
    }

    #[test]
    fn a_seed_list_gives_one_url_per_node_with_the_same_credentials() {
        let Some(seeds) = Endpoints::parse("rediss://u:p@h1:7000,h2:7001/0?protocol=resp3") else {
            panic!("parses");
        };
        assert!(seeds.is_seed_list());
        assert_eq!(
            seeds.urls(),
            [
                "rediss://u:p@h1:7000/0?protocol=resp3",
                "rediss://u:p@h2:7001/0?protocol=resp3"
            ]
        );
        assert_eq!(seeds.shown(), "h1:7000,h2:7001");
        assert_eq!(
            seeds.url_for("h3:7002"),
            "rediss://u:p@h3:7002/0?protocol=resp3"
        );
        let Some(one) = Endpoints::parse("redis://127.0.0.1:6379") else {
            panic!("parses");
        };
        assert!(!one.is_seed_list());
        assert!(Endpoints::parse("redis+unix:///tmp/redis.sock").is_none());
    }
}
