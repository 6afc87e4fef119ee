//! A primary watched by Redis Sentinel: `redis-sentinel://[user:password@]s1:26379,s2:26379[/db]#mastername`.
//!
//! The sentinels name the current primary (`SENTINEL get-master-addr-by-name`),
//! which is checked with `ROLE` before it is used. redis resolves the primary
//! only when a connection is made; following a failover is done here: the
//! primary is looked up again when a command fails in a way a failover causes
//! (`READONLY` from a demoted primary, a dropped or refused connection, a
//! timeout from one that stopped answering) and when a sentinel announces
//! `+switch-master` for this master.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, PushInfo, PushKind, RedisFuture, Value};

use super::Settings;
use super::connect::{open_client, unreachable};
use crate::error::LockError;

/// A parsed `redis-sentinel://` URL.
#[derive(Clone)]
pub(crate) struct SentinelUrl {
    /// `host:port` of each sentinel (port 26379 where none is given).
    sentinels: Vec<String>,
    master: String,
    /// `user:password@` for the data nodes, or empty.
    userinfo: String,
    /// `/db` or empty.
    db: String,
}

impl SentinelUrl {
    /// `None` if `url` is not a `redis-sentinel://` URL; an error if it is one
    /// but lacks something.
    pub(crate) fn parse(url: &str) -> Option<Result<SentinelUrl, String>> {
        let rest = url.strip_prefix("redis-sentinel://")?;
        Some(SentinelUrl::parse_rest(rest))
    }

    fn parse_rest(rest: &str) -> Result<SentinelUrl, String> {
        let (rest, master) = rest.split_once('#').ok_or_else(|| {
            "a redis-sentinel:// URL names the master after `#`, e.g. redis-sentinel://s1:26379,s2:26379#mymaster".to_owned()
        })?;
        if master.is_empty() {
            return Err("the master name after `#` is empty".to_owned());
        }
        let (authority, db) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
            None => (String::new(), authority),
        };
        let sentinels: Vec<String> = hosts
            .split(',')
            .filter(|host| !host.is_empty())
            .map(|host| {
                if host.contains(':') {
                    host.to_owned()
                } else {
                    format!("{host}:26379")
                }
            })
            .collect();
        if sentinels.is_empty() {
            return Err("no sentinel address before the master name".to_owned());
        }
        Ok(SentinelUrl {
            sentinels,
            master: master.to_owned(),
            userinfo,
            db: db.to_owned(),
        })
    }

    /// The sentinels and master, for messages (no credentials).
    pub(crate) fn shown(&self) -> String {
        format!("{}#{}", self.sentinels.join(","), self.master)
    }

    fn data_url(&self, address: &str) -> String {
        format!("redis://{}{address}{}", self.userinfo, self.db)
    }
}

/// The current primary and a connection to it.
struct Current {
    address: String,
    client: redis::Client,
    connection: MultiplexedConnection,
    /// Counts the primaries found, so that many failed commands trigger one
    /// look-up for the primary they failed on.
    generation: u64,
}

/// A Sentinel group: where its primary is now, and a connection to it.
pub(crate) struct SentinelGroup {
    url: SentinelUrl,
    settings: Settings,
    current: Mutex<Current>,
    /// One look-up at a time.
    looking: tokio::sync::Mutex<()>,
    runtime: tokio::runtime::Handle,
}

/// The command connection: to the primary the sentinels name now.
#[derive(Clone)]
pub(crate) struct SentinelCommands(Arc<SentinelGroup>);

impl SentinelGroup {
    /// Finds the primary through the sentinels and connects to it; then watches
    /// the sentinels for failovers. Fails within the connect timeout.
    pub(crate) async fn connect(
        url: &SentinelUrl,
        settings: &Settings,
        runtime: tokio::runtime::Handle,
    ) -> Result<SentinelCommands, LockError> {
        let shown = url.shown();
        let found = tokio::time::timeout(settings.connect_timeout, locate(url, settings)).await;
        let (address, client, connection) = match found {
            Err(_) => return Err(unreachable(&shown, settings.connect_timeout, None)),
            Ok(Err(Located::Unknown(reason))) => {
                return Err(LockError::Config {
                    subject: format!(
                        "Sentinel master `{}` at {}",
                        url.master,
                        url.sentinels.join(",")
                    ),
                    reason,
                });
            }
            Ok(Err(Located::Failed(error))) => {
                return Err(unreachable(&shown, settings.connect_timeout, Some(error)));
            }
            Ok(Err(Located::Invalid(error))) => return Err(error),
            Ok(Ok(found)) => found,
        };
        tracing::debug!(master = %url.master, %address, "Sentinel names the primary");
        let group = Arc::new(SentinelGroup {
            url: url.clone(),
            settings: settings.clone(),
            current: Mutex::new(Current {
                address,
                client,
                connection,
                generation: 0,
            }),
            looking: tokio::sync::Mutex::new(()),
            runtime: runtime.clone(),
        });
        runtime.spawn(watch_switch_master(Arc::downgrade(&group)));
        Ok(SentinelCommands(group))
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks the primary up again (unless one newer than `generation` was found
    /// meanwhile), retrying with backoff until one answers as primary.
    async fn relocate(self: Arc<Self>, generation: u64) {
        let _looking = self.looking.lock().await;
        let mut pause = Duration::from_millis(20);
        loop {
            if self.current().generation != generation {
                return;
            }
            match tokio::time::timeout(
                self.settings.connect_timeout,
                locate(&self.url, &self.settings),
            )
            .await
            {
                Ok(Ok((address, client, connection))) => {
                    let mut current = self.current();
                    if current.address != address {
                        tracing::info!(master = %self.url.master, from = %current.address, to = %address, "following the Sentinel failover");
                    }
                    *current = Current {
                        address,
                        client,
                        connection,
                        generation: generation + 1,
                    };
                    return;
                }
                Ok(Err(located)) => {
                    tracing::debug!(master = %self.url.master, reason = %located, "no primary yet; asking the sentinels again");
                }
                Err(_) => {
                    tracing::debug!(master = %self.url.master, "the look-up timed out; asking the sentinels again");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn spawn_relocate(self: &Arc<Self>, generation: u64) {
        self.runtime.spawn(Arc::clone(self).relocate(generation));
    }
}

impl SentinelCommands {
    /// The primary now, for the notice connection.
    pub(crate) fn primary_client(&self) -> redis::Client {
        self.0.current().client.clone()
    }

    /// Sends one command (or pipeline) to the current primary; an error a
    /// failover causes starts a look-up, in the background, for the next.
    async fn send<T>(
        &self,
        send: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let (mut connection, generation) = {
            let current = self.0.current();
            (current.connection.clone(), current.generation)
        };
        let result = send(&mut connection).await;
        if let Err(error) = &result
            && (error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                || error.is_io_error()
                || error.is_connection_dropped()
                || error.is_timeout())
        {
            tracing::debug!(master = %self.0.url.master, %error, "command failed; asking the sentinels for the primary");
            self.0.spawn_relocate(generation);
        }
        result
    }
}

impl ConnectionLike for SentinelCommands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.send(async |connection: &mut MultiplexedConnection| {
                connection.req_packed_command(cmd).await
            })
            .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.send(async |connection: &mut MultiplexedConnection| {
                connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        self.0.current().connection.get_db()
    }
}

/// Why no primary was found.
enum Located {
    /// No sentinel answered.
    Failed(redis::RedisError),
    /// The sentinels answered, but know no such master, or it is not a
    /// primary (yet).
    Unknown(String),
    /// The data node's URL is wrong.
    Invalid(LockError),
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Located::Failed(error) => write!(f, "{error}"),
            Located::Unknown(reason) => f.write_str(reason),
            Located::Invalid(error) => write!(f, "{error}"),
        }
    }
}

/// Asks each sentinel in turn where the primary is, and connects to it,
/// checking it says it is a primary (`ROLE`).
async fn locate(
    url: &SentinelUrl,
    settings: &Settings,
) -> Result<(String, redis::Client, MultiplexedConnection), Located> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.response_timeout));
    let mut failure = Located::Unknown("no sentinel was asked".to_owned());
    for sentinel in &url.sentinels {
        let asked = async {
            let client = redis::Client::open(format!("redis://{sentinel}"))?;
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&url.master)
                .query_async::<Option<(String, u16)>>(&mut connection)
                .await
        };
        let (host, port) = match asked.await {
            Ok(Some(address)) => address,
            Ok(None) => {
                failure = Located::Unknown(format!(
                    "sentinel {sentinel} knows no master named `{}`: check the name after `#`",
                    url.master
                ));
                continue;
            }
            Err(error) => {
                failure = Located::Failed(error);
                continue;
            }
        };
        let address = format!("{host}:{port}");
        let client = open_client(
            &url.data_url(&address),
            settings.tls_root_certificate.clone(),
        )
        .map_err(Located::Invalid)?;
        let checked = async {
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut connection).await?;
            let primary =
                matches!(role.first(), Some(Value::BulkString(role)) if role == b"master");
            Ok::<_, redis::RedisError>((connection, primary))
        };
        match checked.await {
            Ok((connection, true)) => return Ok((address, client, connection)),
            Ok((_, false)) => {
                failure = Located::Unknown(format!(
                    "sentinel {sentinel} names {address} as the primary of `{}`, which says it is not one (a failover in progress?)",
                    url.master
                ));
            }
            Err(error) => failure = Located::Failed(error),
        }
    }
    Err(failure)
}

/// Listens on the sentinels (one at a time, moving on when one goes away) for
/// `+switch-master` of this master, and looks the primary up when one comes.
/// Ends when the group is dropped.
async fn watch_switch_master(group: Weak<SentinelGroup>) {
    let mut next = 0usize;
    loop {
        let Some(strong) = group.upgrade() else {
            return;
        };
        let sentinels = strong.url.sentinels.clone();
        let master = strong.url.master.clone();
        let timeout = strong.settings.connect_timeout;
        drop(strong);
        let sentinel = &sentinels[next % sentinels.len()];
        next += 1;
        let (sender, mut pushes) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
        let subscribed = async {
            let client = redis::Client::open(format!("redis://{sentinel}/?protocol=resp3"))?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_push_sender(sender);
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            connection.subscribe("+switch-master").await?;
            Ok::<_, redis::RedisError>(connection)
        };
        let Ok(_connection) = subscribed.await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            let push = tokio::select! {
                push = pushes.recv() => push,
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if group.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            };
            let Some(push) = push else { break };
            if push.kind == PushKind::Disconnection {
                break;
            }
            // [channel, "<master> <old ip> <old port> <new ip> <new port>"]
            let about_us = push.kind == PushKind::Message
                && matches!(push.data.get(1), Some(Value::BulkString(payload))
                    if payload.split(|byte| *byte == b' ').next() == Some(master.as_bytes()));
            if about_us && let Some(strong) = group.upgrade() {
                let generation = strong.current().generation;
                tracing::debug!(%master, "+switch-master: looking the primary up");
                strong.spawn_relocate(generation);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_their_sentinels_and_master() {
        let Some(Ok(url)) = SentinelUrl::parse("redis-sentinel://u:p@s1:26379,s2/2#mymaster")
        else {
            panic!("parses");
        };
        assert_eq!(url.sentinels, ["s1:26379", "s2:26379"]);
        assert_eq!(url.master, "mymaster");
        assert_eq!(url.data_url("10.0.0.1:6379"), "redis://u:p@10.0.0.1:6379/2");
        assert_eq!(url.shown(), "s1:26379,s2:26379#mymaster");
        assert!(SentinelUrl::parse("redis://h:1").is_none());
        for bad in [
            "redis-sentinel://s1:26379",
            "redis-sentinel://s1:26379#",
            "redis-sentinel://#m",
        ] {
            assert!(matches!(SentinelUrl::parse(bad), Some(Err(_))), "{bad}");
        }
    }
}
