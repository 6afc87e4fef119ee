//! Reading locks for people: one lock's state on every server that keeps it,
//! and the lock keys matching a pattern (`SCAN`, never `KEYS`), on every
//! primary of a cluster and every server of a quorum.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use redis::aio::ConnectionLike;
use redis::{RedisResult, Value};

use super::protocol::{self, Snapshot};
use super::{Backend, Commands, Topology, scripts};

/// Keys asked for per `SCAN` call.
const SCAN_COUNT: usize = 500;

impl Backend {
    /// Lock `key` as each server that keeps it sees it: one snapshot, or one
    /// per quorum server that answered (at least a majority, else an error).
    pub(crate) async fn snapshots(&self, key: &str) -> RedisResult<Vec<Snapshot>> {
        let cmd = protocol::inspect(key);
        match &self.inner.topology {
            Topology::Nodes(commands) => {
                let mut connection = commands.clone();
                let reply = scripts::run(&scripts::INSPECT, &cmd, &mut connection).await?;
                Ok(vec![Snapshot::from_reply(reply)])
            }
            Topology::Quorum(quorum) => quorum.snapshots(&cmd).await,
        }
    }

    /// How many servers must hold a lease for it to be held: 1, or a quorum's
    /// majority.
    pub(crate) fn majority(&self) -> usize {
        match &self.inner.topology {
            Topology::Nodes(_) => 1,
            Topology::Quorum(quorum) => quorum.majority(),
        }
    }

    /// Every key matching one of `patterns` (globs), on every primary (or
    /// quorum server), each once, sorted.
    pub(crate) async fn scan(&self, patterns: &[String]) -> RedisResult<Vec<String>> {
        let mut found = BTreeSet::new();
        match &self.inner.topology {
            Topology::Nodes(Commands::Cluster(cluster)) => {
                for (host, port) in primaries(&mut cluster.clone()).await? {
                    let mut node = Routed {
                        cluster: cluster.clone(),
                        host,
                        port,
                    };
                    scan_into(&mut node, patterns, &mut found).await?;
                }
            }
            Topology::Nodes(commands) => {
                scan_into(&mut commands.clone(), patterns, &mut found).await?;
            }
            Topology::Quorum(quorum) => {
                let scans = join_all(quorum.connections().into_iter().map(|mut node| async move {
                    let mut keys = BTreeSet::new();
                    scan_into(&mut node, patterns, &mut keys)
                        .await
                        .map(|()| keys)
                }))
                .await;
                // A minority down has nothing to add that a majority lacks;
                // fewer than a majority answering is an error, not "none".
                let mut answered = 0;
                let mut last_error = None;
                for scan in scans {
                    match scan {
                        Ok(keys) => {
                            answered += 1;
                            found.extend(keys);
                        }
                        Err(error) => last_error = Some(error),
                    }
                }
                if answered < quorum.majority()
                    && let Some(error) = last_error
                {
                    return Err(error);
                }
            }
        }
        Ok(found.into_iter().collect())
    }
}

/// `SCAN`s one server for `patterns`, adding what it finds to `found`.
async fn scan_into(
    connection: &mut impl ConnectionLike,
    patterns: &[String],
    found: &mut BTreeSet<String>,
) -> RedisResult<()> {
    for pattern in patterns {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(connection)
                .await?;
            found.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

/// The address of each primary of the cluster, from `CLUSTER SLOTS`.
pub(super) async fn primaries(
    cluster: &mut redis::cluster_async::ClusterConnection,
) -> RedisResult<BTreeSet<(String, u16)>> {
    let slots: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(cluster)
        .await?;
    let mut primaries = BTreeSet::new();
    let Value::Array(ranges) = slots else {
        return Ok(primaries);
    };
    for range in ranges {
        // `[start, end, [host, port, id, …], replicas…]`
        let Value::Array(parts) = range else { continue };
        // The primary: `[host, port, id, metadata]` (the id and metadata in
        // Redis 7; older servers send fewer).
        let Some(Value::Array(primary)) = parts.into_iter().nth(2) else {
            continue;
        };
        let mut primary = primary.into_iter();
        if let (Some(host), Some(port)) = (primary.next(), primary.next()) {
            primaries.insert((
                redis::from_redis_value(host)?,
                redis::from_redis_value(port)?,
            ));
        }
    }
    Ok(primaries)
}

/// The cluster connection with every command sent to one node.
pub(super) struct Routed {
    pub(super) cluster: redis::cluster_async::ClusterConnection,
    pub(super) host: String,
    pub(super) port: u16,
}

impl ConnectionLike for Routed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        });
        Box::pin(self.cluster.route_command(cmd.clone(), routing))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        _pipeline: &'a redis::Pipeline,
        _offset: usize,
        _count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(async {
            Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "pipelines are not routed to one node",
            )))
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}
