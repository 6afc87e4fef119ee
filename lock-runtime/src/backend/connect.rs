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
        reason: url_error_hint(url, &error),
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

const URL_FORMS: &str =
    "expected redis://[user:password@]host[:port][/db], rediss://… or redis+unix:///path";

/// What is wrong with a URL the redis crate rejected, in our words where we can
/// tell (scheme, host, port, database), else the crate's reason.
fn url_error_hint(url: &str, error: &redis::RedisError) -> String {
    let reason = error.to_string();
    if reason.contains("TLS") || reason.contains("tls") {
        return format!("{reason} (rediss:// needs lock-runtime's `tls` feature)");
    }
    match url_problem(url) {
        Some(problem) => format!("{problem} ({URL_FORMS})"),
        None => format!("the redis crate cannot use it: {reason} ({URL_FORMS})"),
    }
}

/// The first thing wrong with `url` as a `redis://` / `rediss://` /
/// `redis+unix://` URL, if it is one we can name.
fn url_problem(url: &str) -> Option<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(
            "it has no scheme: it must start with `redis://`, `rediss://` or `redis+unix://`"
                .into(),
        );
    };
    match scheme {
        "redis" | "rediss" => {}
        "redis+unix" | "unix" => {
            return rest
                .is_empty()
                .then(|| "it names no socket path, e.g. `redis+unix:///run/redis.sock`".into());
        }
        other => {
            return Some(format!(
                "scheme `{other}` is not one Redis speaks: use `redis://`, `rediss://` (TLS) or `redis+unix://`"
            ));
        }
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    // `[::1]` is a host without a port; `[::1]:6379` and `h:6379` have one.
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !host_port.ends_with(']') => (host, Some(port)),
        _ => (host_port, None),
    };
    if host.is_empty() {
        return Some("it names no host, e.g. `redis://127.0.0.1:6379`".into());
    }
    if host.chars().any(|c| c.is_whitespace()) {
        return Some("the host contains a space".into());
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|port| port > 0)
    {
        return Some(format!("port `{port}` is not a number from 1 to 65535"));
    }
    let db = tail.strip_prefix('/').unwrap_or_default();
    let db = db.split(['?', '#']).next().unwrap_or_default();
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Some(format!("database `/{db}` is not a number (e.g. `/0`)"));
    }
    None
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
    if super::permissions::is_denied(error) {
        // Logged in, but a command the client sends while connecting is
        // denied (say `ROLE` to a Sentinel-watched primary).
        format!(
            "the Redis user may not run a command the client needs to connect ({error}): grant the rule the README's \"Least privilege\" gives (`lock_runtime::acl_rule`), with `+role` for a Sentinel-watched primary and `+cluster|slots +asking` on a Cluster"
        )
    } else if error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(code, "WRONGPASS" | "NOAUTH")
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
    fn malformed_urls_are_explained_in_our_words() {
        let problem = |url| url_problem(url).unwrap_or_default();
        assert!(problem("redis//oops").contains("no scheme"));
        assert!(problem("not a url").contains("no scheme"));
        assert!(problem("http://127.0.0.1:6379").contains("scheme `http`"));
        assert!(problem("redis://:6379").contains("no host"));
        assert!(problem("redis://u:p@:6379").contains("no host"));
        assert!(problem("redis://bad host/").contains("space"));
        assert!(problem("redis://127.0.0.1:99999999").contains("port `99999999`"));
        assert!(problem("redis://127.0.0.1:abc").contains("port `abc`"));
        assert!(problem("redis://127.0.0.1:6379/x").contains("database `/x`"));
        assert!(problem("redis+unix://").contains("socket path"));
        for fine in [
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1",
            "rediss://u:p@host:6380/2",
            "redis://[::1]:6379/0?protocol=resp3",
            "redis://[::1]",
            "redis+unix:///run/redis.sock",
        ] {
            assert_eq!(url_problem(fine), None, "{fine}");
        }
    }

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
