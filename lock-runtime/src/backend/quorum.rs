//! A quorum of independent Redis servers (Redlock):
//! `redlock://[user:password@]h1:p1,h2:p2,h3:p3[/db]` (`redlocks://` for TLS),
//! or one full URL per server from [`LockClient::quorum`](crate::LockClient::quorum).
//!
//! A lease is held only while a majority of the N servers hold its token. Every
//! operation goes to all N at once, each request bounded by a per-node timeout
//! far below the ttl, so a server that is down or paused costs that timeout at
//! most:
//! - acquire: held if a majority granted it (the engine then checks that the
//!   lease, counted from this attempt's first send minus the drift allowance, is
//!   still valid); else what was won is given back on every node and the caller
//!   waits as told. With fencing, every answering node (granting or busy)
//!   reports its fence and clock, the token is one above every fence and clock
//!   seen, and it is written back to all of them, the lease counting once a
//!   majority of those holding it stored it: one more parallel round trip. Any two majorities share a node, so a later lease reads a fence at
//!   least as large: tokens rise even when a minority is down or restarted empty.
//! - extend: held only if a majority still held it and extended it; a node that
//!   lost the key (restarted empty) is given it back where it is free, but does
//!   not count. A release leaves a short receipt, so an extend in flight cannot
//!   bring the key back.
//! - release: on every node; the caller is answered once a majority has, the slow
//!   nodes finish in the background (counted by `flush_releases`).
//! - waiting: a busy node registers the waiter by its arrival, as its own
//!   client's clock tells it (within a second of the node's), so every node
//!   orders the same waiters alike. A release hands the lock on each node to
//!   the first live waiter there, and the releasing client, which hears every
//!   node, tells the waiter that a majority handed it the lock that it holds
//!   it (no request of its own: the lease counts from its attempt that those
//!   nodes had seen), publishing on every node since the waiter's notice
//!   connection is on one of them. A fenced waiter, or one the nodes did not
//!   agree on, is woken instead and finds out with an attempt. A handed node
//!   is given back by a waiter's later failed attempt, not by the failed
//!   attempt it answered.
//!
//! Not in quorum mode: FIFO (`fair`: the line is in arrival order, but a
//! waiter whose attempt reached only some nodes before a release may be
//! passed over) and the `replicas` option (each server stands alone).

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, RedisResult};

use super::Settings;
use super::connect::{Endpoints, open_client, redact_url, unreachable};
use super::protocol::{
    Attempt, AttemptRequest, NodeAttempt, QuorumHandoffs, Released, Snapshot, Tell, quorum_extend,
    quorum_fence, quorum_fence_write, quorum_release,
};
use super::scripts;
use crate::error::LockError;
use crate::token::jitter;

/// The fewest servers a quorum takes: with fewer, one failure stops all locking.
const MIN_NODES: usize = 3;

/// The per-node timeout is at most this share of the ttl, so that a lease won
/// despite a silent node still has most of its ttl left.
const NODE_TIMEOUT_SHARE: u32 = 10;
const NODE_TIMEOUT_FLOOR: Duration = Duration::from_millis(5);

/// The longest pause after a split vote (each contender won a minority): long
/// enough that the contenders do not collide again at once.
const SPLIT_PAUSE_CEILING: Duration = Duration::from_millis(10);

/// The servers of a quorum client, each given as a full URL.
pub(crate) fn parse_url(url: &str) -> Option<Result<Vec<String>, String>> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redlock://") {
        ("redis", rest)
    } else {
        ("rediss", url.strip_prefix("redlocks://")?)
    };
    let Some(endpoints) = Endpoints::parse(&format!("{scheme}://{rest}")) else {
        return Some(Err("not a list of servers".to_owned()));
    };
    Some(Ok(endpoints.urls()))
}

/// One server of the quorum.
struct Node {
    /// `host:port`, for messages.
    server: String,
    client: redis::Client,
    commands: ConnectionManager,
}

/// The servers of a quorum, connected.
pub(crate) struct Quorum {
    nodes: Vec<Node>,
    /// How many must agree: N/2 + 1.
    majority: usize,
    response_timeout: Duration,
}

/// What one node's request came to.
type Reply<T> = Result<T, RedisError>;

impl Quorum {
    /// Connects to every server of `urls`: at least [`MIN_NODES`] distinct ones,
    /// none a cluster node, none refusing the credentials, and a majority
    /// answering now (the others are connected to when they come back).
    pub(crate) async fn connect(urls: &[String], settings: &Settings) -> Result<Quorum, LockError> {
        let config_error = |reason: String| LockError::Config {
            subject: format!(
                "quorum of {}",
                urls.iter()
                    .map(|url| redact_url(url))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            reason,
        };
        let mut clients = Vec::with_capacity(urls.len());
        for url in urls {
            let client = open_client(url, settings.tls_root_certificate.clone())?;
            let server = client.get_connection_info().addr().to_string();
            if clients
                .iter()
                .any(|(known, _): &(String, _)| *known == server)
            {
                return Err(config_error(format!(
                    "{server} is given twice: a quorum needs independent servers"
                )));
            }
            clients.push((server, client));
        }
        if clients.len() < MIN_NODES {
            return Err(config_error(format!(
                "a quorum needs at least {MIN_NODES} independent servers (5 is usual), got {}",
                clients.len()
            )));
        }
        let majority = clients.len() / 2 + 1;
        let probes = join_all(
            clients
                .iter()
                .map(|(server, client)| super::single::probe(client, server, settings)),
        )
        .await;
        let mut down = Vec::new();
        for ((server, _), probe) in clients.iter().zip(probes) {
            match probe {
                Ok(false) => {}
                Ok(true) => {
                    return Err(config_error(format!(
                        "{server} is a Redis Cluster node; a quorum takes independent servers (for a cluster, connect with redis://{server})"
                    )));
                }
                Err(LockError::Connection { reason, source, .. })
                    if source.as_ref().is_none_or(|error| {
                        error.kind() != ErrorKind::AuthenticationFailed
                            && !error.to_string().contains("NOPERM")
                    }) =>
                {
                    down.push((server.clone(), reason));
                }
                Err(error) => return Err(error),
            }
        }
        if clients.len() - down.len() < majority {
            return Err(LockError::Connection {
                server: format!("quorum of {}", clients.len()),
                reason: format!(
                    "{} of {} servers answer, a majority is {majority}: {}",
                    clients.len() - down.len(),
                    clients.len(),
                    down.iter()
                        .map(|(server, reason)| format!("{server}: {reason}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                source: None,
            });
        }
        for (server, reason) in &down {
            tracing::warn!(%server, reason, "quorum server unreachable at connect; connecting when it is back");
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout))
            // A server that is down is tried again at the next request, not
            // after a long series of retries.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let mut nodes = Vec::with_capacity(clients.len());
        for (server, client) in clients {
            let commands = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                .map_err(|error| unreachable(&server, settings.connect_timeout, Some(error)))?;
            nodes.push(Node {
                server,
                client,
                commands,
            });
        }
        Ok(Quorum {
            nodes,
            majority,
            response_timeout: settings.response_timeout,
        })
    }

    /// The servers, for messages: `quorum of 5 (h1:p1,…)`.
    pub(crate) fn shown(&self) -> String {
        format!(
            "quorum of {} ({})",
            self.nodes.len(),
            self.nodes
                .iter()
                .map(|node| node.server.as_str())
                .collect::<Vec<_>>()
                .join(",")
        )
    }

    /// Every server, for the notice connection.
    pub(crate) fn clients(&self) -> Vec<redis::Client> {
        self.nodes.iter().map(|node| node.client.clone()).collect()
    }

    /// How many servers must agree.
    pub(crate) fn majority(&self) -> usize {
        self.majority
    }

    /// Each server's command connection.
    pub(crate) fn connections(&self) -> Vec<ConnectionManager> {
        self.nodes
            .iter()
            .map(|node| node.commands.clone())
            .collect()
    }

    /// Lock state as each server that answers sees it (`cmd`: an
    /// [`INSPECT`](scripts::INSPECT) call); an error unless a majority answered.
    pub(crate) async fn snapshots(&self, cmd: &redis::Cmd) -> RedisResult<Vec<Snapshot>> {
        let replies = self
            .fan_out(
                0..self.nodes.len(),
                self.response_timeout,
                &scripts::INSPECT,
                cmd,
            )
            .await;
        let mut snapshots = Vec::new();
        let mut errors = Vec::new();
        for (index, reply) in replies {
            match reply {
                Ok(reply) => snapshots.push(Snapshot::from_reply(reply)),
                Err(error) => errors.push((index, error)),
            }
        }
        if snapshots.len() < self.majority {
            return Err(self.no_majority("inspect", snapshots.len(), errors));
        }
        Ok(snapshots)
    }

    /// How long one node may take to answer a request of a lease of `ttl`.
    fn node_timeout(&self, ttl: Duration) -> Duration {
        (ttl / NODE_TIMEOUT_SHARE)
            .max(NODE_TIMEOUT_FLOOR)
            .min(self.response_timeout)
    }

    /// Sends `cmd` (a call of `script`) to the nodes at `indices` at once, each
    /// bounded by `timeout`; the replies in the same order.
    async fn fan_out<T: redis::FromRedisValue>(
        &self,
        indices: impl Iterator<Item = usize>,
        timeout: Duration,
        script: &redis::Script,
        cmd: &redis::Cmd,
    ) -> Vec<(usize, Reply<T>)> {
        join_all(indices.map(|index| async move {
            let node = &self.nodes[index];
            let mut connection = node.commands.clone();
            let reply =
                match tokio::time::timeout(timeout, scripts::run(script, cmd, &mut connection))
                    .await
                {
                    Ok(reply) => reply,
                    Err(_) => Err(silent(&node.server, timeout)),
                };
            (index, reply)
        }))
        .await
    }

    /// A plain `SET NX PX` of the attempt's token on every node: whether a
    /// majority set it (then the lease is held, counted from before the send).
    pub(crate) async fn plain_majority(&self, request: &AttemptRequest<'_>) -> bool {
        let timeout = self.node_timeout(request.ttl);
        let set = request.plain_set();
        let replies = join_all(self.nodes.iter().map(|node| {
            let mut connection = node.commands.clone();
            let set = &set;
            async move {
                tokio::time::timeout(timeout, set.query_async::<Option<String>>(&mut connection))
                    .await
            }
        }))
        .await;
        let granted = replies
            .into_iter()
            .filter(|reply| matches!(reply, Ok(Ok(Some(_)))))
            .count();
        granted >= self.majority
    }

    /// One acquire attempt on every node.
    pub(crate) async fn try_acquire(
        &self,
        request: &AttemptRequest<'_>,
        channel: &str,
    ) -> RedisResult<Attempt> {
        let timeout = self.node_timeout(request.ttl);
        let cmd = request.quorum_script(channel);
        let replies = self
            .fan_out::<(i64, String, String, String)>(
                0..self.nodes.len(),
                timeout,
                &scripts::QUORUM_ACQUIRE,
                &cmd,
            )
            .await;
        let mut answered = Vec::new();
        let (mut granted, mut busy, mut handed) = (0, 0, 0);
        let mut holder_ttl: Option<Duration> = None;
        let mut errors = Vec::new();
        for (index, reply) in replies {
            match reply.map(NodeAttempt::from_reply) {
                Ok(node) => {
                    if node.granted {
                        granted += 1;
                        handed += usize::from(node.was_ours);
                    } else {
                        busy += 1;
                        holder_ttl = match (holder_ttl, node.holder_ttl) {
                            (Some(known), Some(ttl)) => Some(known.min(ttl)),
                            (known, ttl) => known.or(ttl),
                        };
                    }
                    answered.push((index, node));
                }
                Err(error) => errors.push((index, error)),
            }
        }
        if granted >= self.majority {
            if request.fence_lifetime_ms == 0 {
                return Ok(Attempt::Acquired { fence: None });
            }
            // Above every fence any answering node holds, busy ones included
            // (one may hold the only copy of the last token), and written back
            // to all of them; the lease counts once a majority of those holding
            // it stored the token.
            let fence = quorum_fence(
                answered
                    .iter()
                    .map(|(_, node)| (node.last_fence, node.time_us)),
            );
            let write =
                quorum_fence_write(request.key, request.token, fence, request.fence_lifetime_ms);
            let written = self
                .fan_out::<i64>(
                    answered.iter().map(|(index, _)| *index),
                    timeout,
                    &scripts::QUORUM_FENCE,
                    &write,
                )
                .await;
            let mut stored = 0;
            for (index, reply) in written {
                match reply {
                    Ok(1) => stored += 1,
                    Ok(_) => {}
                    Err(error) => errors.push((index, error)),
                }
            }
            if stored >= self.majority {
                return Ok(Attempt::Acquired { fence: Some(fence) });
            }
        }
        // No majority: give back what was won, on every node (a node that did not
        // answer may still have granted it), before trying again. When every
        // node answered busy there is nothing to give back (and each of them
        // registered the waiter).
        if granted > 0 || answered.len() < self.nodes.len() {
            let rollback = request.quorum_rollback(channel);
            let _ = self
                .fan_out::<redis::Value>(
                    0..self.nodes.len(),
                    timeout,
                    &scripts::QUORUM_RELEASE,
                    &rollback,
                )
                .await;
        }
        if busy >= self.majority && handed == 0 {
            // Someone holds the lock.
            return Ok(Attempt::Busy { holder_ttl });
        }
        if busy > 0 && answered.len() >= self.majority {
            // Contenders split the nodes between them (also when releases
            // handed some nodes to us and others to another waiter): each
            // backs off for a random moment before trying again.
            return Ok(Attempt::Busy {
                holder_ttl: Some(split_pause(request.ttl)),
            });
        }
        Err(self.no_majority("acquire", answered.len(), errors))
    }

    /// Extends the lease of `token` on every node: `Ok(true)` if a majority
    /// still held it and now holds it for `ttl` more; `Ok(false)` if so many
    /// nodes did not hold it that a majority cannot have. A node that had lost
    /// the key (restarted empty) and where it is free takes it again, but does
    /// not count: another client may have held it there meanwhile. An error if
    /// too few answered to tell.
    pub(crate) async fn extend(&self, key: &str, token: &str, ttl: Duration) -> RedisResult<bool> {
        let cmd = quorum_extend(key, token, ttl);
        let replies = self
            .fan_out::<i64>(
                0..self.nodes.len(),
                self.node_timeout(ttl),
                &scripts::QUORUM_EXTEND,
                &cmd,
            )
            .await;
        let (mut held, mut refused) = (0, 0);
        let mut errors = Vec::new();
        for (index, reply) in replies {
            match reply {
                Ok(1) => held += 1,
                // Taken again (2), or another's (0).
                Ok(_) => refused += 1,
                Err(error) => errors.push((index, error)),
            }
        }
        if held >= self.majority {
            Ok(true)
        } else if refused > self.nodes.len() - self.majority {
            Ok(false)
        } else {
            Err(self.no_majority("extend", held + refused, errors))
        }
    }

    /// Releases `token` on every node. Answers once a majority has (the others
    /// finish in the background on `runtime`, counted by `flush_releases`):
    /// `Ended` if a majority held the token, `NotOurs` if so many did not that a
    /// majority cannot have, an error if too few answered. `force`: an
    /// operator's release (see [`scripts::QUORUM_RELEASE`]).
    ///
    /// Each node hands a free lock to its first waiter; the waiter that a
    /// majority handed it to is told so here, on every node (its notice
    /// connection is on one of them), without waiting for the rest; once all
    /// have answered, any other waiter handed a node is woken.
    pub(crate) async fn release(
        &self,
        key: &str,
        token: &str,
        runtime: &tokio::runtime::Handle,
        force: bool,
    ) -> RedisResult<Released> {
        let started = tokio::time::Instant::now();
        // The receipt outlasts any extend of this lease still on its way.
        let receipt = self.response_timeout * 2;
        let cmd = std::sync::Arc::new(quorum_release(key, token, receipt, force));
        let timeout = self.response_timeout;
        let mut replies: FuturesUnordered<_> = self
            .nodes
            .iter()
            .map(|node| {
                let (cmd, server) = (std::sync::Arc::clone(&cmd), node.server.clone());
                let mut connection = node.commands.clone();
                async move {
                    let release = scripts::run::<(i64, String, String, String)>(
                        &scripts::QUORUM_RELEASE,
                        &cmd,
                        &mut connection,
                    );
                    match tokio::time::timeout(timeout, release).await {
                        Ok(reply) => reply,
                        Err(_) => Err(silent(&server, timeout)),
                    }
                }
            })
            .collect();
        let mut handoffs = QuorumHandoffs::new(self.majority);
        let (mut ours, mut not_ours) = (0, 0);
        let mut errors = Vec::new();
        let mut decided = None;
        while let Some(reply) = replies.next().await {
            match reply {
                Ok(reply) => {
                    let (held, tell) = handoffs.note(reply);
                    if held {
                        ours += 1;
                    } else {
                        not_ours += 1;
                    }
                    if let Some(tell) = tell {
                        // Told before this call returns, so the notice goes
                        // out ahead of whatever the releaser sends next (it
                        // often asks for the lock again at once); waited for
                        // as long as the release took so far at most, so a
                        // stalled node does not hold the releaser up (the
                        // notice is sent to it all the same).
                        let bound = started.elapsed().max(Duration::from_millis(1));
                        let _ =
                            tokio::time::timeout(bound, self.publisher().publish(vec![tell])).await;
                    }
                }
                Err(error) => errors.push((usize::MAX, error)),
            }
            if ours >= self.majority {
                decided = Some(Released::Ended);
            } else if not_ours > self.nodes.len() - self.majority {
                decided = Some(Released::NotOurs);
            }
            if decided.is_some() {
                break;
            }
        }
        if let Some(released) = decided {
            // The servers yet to answer finish in the background.
            if replies.is_empty() {
                self.publish(runtime, handoffs.finish());
            } else {
                let publisher = self.publisher();
                let _done = crate::rt::spawn_release(runtime, async move {
                    while let Some(reply) = replies.next().await {
                        if let Ok(reply) = reply
                            && let (_, Some(tell)) = handoffs.note(reply)
                        {
                            publisher.publish(vec![tell]).await;
                        }
                    }
                    publisher.publish(handoffs.finish()).await;
                });
            }
            return Ok(released);
        }
        self.publish(runtime, handoffs.finish());
        // Every node answered or failed, and neither side has a majority (some
        // nodes are down): the lease was ours where it was still held.
        if ours + not_ours >= self.majority {
            return Ok(if ours >= not_ours {
                Released::Ended
            } else {
                Released::NotOurs
            });
        }
        Err(self.no_majority("release", ours + not_ours, errors))
    }

    /// What publishes notices on every node.
    fn publisher(&self) -> Publisher {
        Publisher {
            connections: self.connections(),
            timeout: self.response_timeout,
        }
    }

    /// Publishes `tells` on every node, in the background on `runtime`.
    fn publish(&self, runtime: &tokio::runtime::Handle, tells: Vec<Tell>) {
        if tells.is_empty() {
            return;
        }
        let publisher = self.publisher();
        let _done = crate::rt::spawn_release(runtime, async move {
            publisher.publish(tells).await;
        });
    }

    /// The longest remaining lease at `key` among the nodes that answer
    /// (`PTTL`), as a hint for when the lock may be free.
    pub(crate) async fn remaining_lease(&self, key: &str) -> RedisResult<Option<Duration>> {
        let left = join_all(self.nodes.iter().map(|node| async move {
            let mut connection = node.commands.clone();
            let mut pttl = redis::cmd("PTTL");
            pttl.arg(key);
            tokio::time::timeout(
                self.response_timeout,
                pttl.query_async::<i64>(&mut connection),
            )
            .await
        }))
        .await;
        Ok(left
            .into_iter()
            .filter_map(|reply| u64::try_from(reply.ok()?.ok()?).ok())
            .max()
            .map(Duration::from_millis))
    }

    /// The error when too few nodes answered to decide: the nodes' own error if
    /// none of them can recover by trying again (a script error, a denied
    /// command), else one naming how many answered and why the others did not.
    fn no_majority(
        &self,
        action: &str,
        answered: usize,
        errors: Vec<(usize, RedisError)>,
    ) -> RedisError {
        // A lasting error (a script error, a denied command) ends a wait only
        // when every node that failed failed so: one may be out of memory
        // while the others are merely restarting.
        let lasting = |error: &RedisError| {
            error.kind() == ErrorKind::AuthenticationFailed
                || matches!(error.retry_method(), redis::RetryMethod::NoRetry)
        };
        if let Some((_, first)) = errors.first()
            && errors.iter().all(|(_, error)| lasting(error))
        {
            return first.clone();
        }
        let why = errors
            .iter()
            .map(|(index, error)| match self.nodes.get(*index) {
                Some(node) => format!("{}: {error}", node.server),
                None => error.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        RedisError::from((
            ErrorKind::Io,
            "no majority of the quorum answered",
            format!(
                "{action}: {answered} of {} servers answered, a majority is {} ({why})",
                self.nodes.len(),
                self.majority
            ),
        ))
    }
}

/// Publishes notices on every node of a quorum: a waiter's notice connection
/// is on one of them, whichever.
struct Publisher {
    connections: Vec<ConnectionManager>,
    timeout: Duration,
}

impl Publisher {
    async fn publish(&self, tells: Vec<Tell>) {
        if tells.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (channel, payload) in &tells {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        join_all(self.connections.iter().map(|connection| {
            let mut connection = connection.clone();
            let pipe = &pipe;
            async move {
                // A node that is down or slow misses the notice; the waiter's
                // connection is on another, or it finds out at its next poll.
                let _ = tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut connection))
                    .await;
            }
        }))
        .await;
    }
}

/// The error of a server that gave no answer within `timeout`.
fn silent(server: &str, timeout: Duration) -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "no answer",
        format!("{server} gave no answer within {} ms", timeout.as_millis()),
    ))
}

/// A random pause after a split vote: up to a tenth of the ttl, at most
/// [`SPLIT_PAUSE_CEILING`], at least a millisecond.
fn split_pause(ttl: Duration) -> Duration {
    let ceiling = (ttl / 10).min(SPLIT_PAUSE_CEILING);
    Duration::from_millis(1) + Duration::from_micros(jitter(ceiling.as_micros() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redlock_url_names_each_server_with_the_same_credentials() {
        let Some(Ok(urls)) = parse_url("redlock://u:p@h1:7000,h2:7001,h3:7002/0") else {
            panic!("parses");
        };
        assert_eq!(
            urls,
            [
                "redis://u:p@h1:7000/0",
                "redis://u:p@h2:7001/0",
                "redis://u:p@h3:7002/0"
            ]
        );
        let Some(Ok(tls)) = parse_url("redlocks://h1,h2,h3") else {
            panic!("parses");
        };
        assert_eq!(tls[0], "rediss://h1");
        assert!(parse_url("redis://h1,h2,h3").is_none());
    }

    #[test]
    fn a_split_pause_is_short_and_never_zero() {
        for _ in 0..100 {
            let pause = split_pause(Duration::from_secs(30));
            assert!(pause >= Duration::from_millis(1));
            assert!(pause <= SPLIT_PAUSE_CEILING + Duration::from_millis(1));
        }
        assert!(split_pause(Duration::from_millis(20)) <= Duration::from_millis(3));
    }
}
