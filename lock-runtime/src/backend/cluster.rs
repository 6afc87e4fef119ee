//! Redis Cluster: one cluster connection that sends each command to the primary
//! serving its key's slot (following `MOVED`/`ASK` while slots move), and the
//! addresses of every node, any of which can carry the client's notices
//! (classic pub/sub messages reach every node of a cluster).

use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

use super::Settings;
use super::connect::{Endpoints, open_client, unreachable};
use crate::error::LockError;

/// How many times the cluster connection sends a command again (after a
/// redirect, a dropped connection or a timeout) before it gives up. The
/// scripts stay correct when re-sent: an acquire that already took the lock
/// reports it taken, and a release leaves a receipt (see `protocol::release`).
pub(crate) const RETRIES: u32 = 6;

/// A connected cluster.
pub(crate) struct Cluster {
    pub(crate) commands: ClusterConnection,
    /// Every node (primaries and replicas), for the notice connection.
    pub(crate) nodes: Vec<redis::Client>,
}

impl Cluster {
    /// Connects to the cluster that `seeds` belong to, checking that every
    /// primary answers; fails within the connect timeout.
    pub(crate) async fn connect(
        seeds: &Endpoints,
        settings: &Settings,
    ) -> Result<Cluster, LockError> {
        let server = seeds.shown();
        let failed = |error| unreachable(&server, settings.connect_timeout, error);
        let mut infos = Vec::new();
        for url in seeds.urls() {
            let client = open_client(&url, settings.tls_root_certificate.clone())?;
            infos.push(client.get_connection_info().clone());
        }
        let builder = ClusterClientBuilder::new(infos)
            .connection_timeout(settings.connect_timeout)
            .response_timeout(settings.response_timeout)
            .retries(RETRIES)
            // Between re-sends after TRYAGAIN (a slot migrating) or CLUSTERDOWN:
            // 10 ms doubling to 0.5 s, not redis's 1.28 s at least; a waiter
            // rides out longer outages itself, until its own deadline.
            .min_retry_wait(10)
            .max_retry_wait(500)
            .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        #[cfg(feature = "tls")]
        let builder = match &settings.tls_root_certificate {
            Some(root_cert) => builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert.clone()),
            }),
            None => builder,
        };
        let client = builder.build().map_err(|error| LockError::Config {
            subject: format!("Redis Cluster at {server}"),
            reason: error.to_string(),
        })?;
        let connect = async {
            let mut commands = client.get_async_connection().await?;
            // Routed to every primary: all of them answer, or connecting fails.
            redis::cmd("PING")
                .query_async::<String>(&mut commands)
                .await?;
            let slots: redis::Value = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut commands)
                .await?;
            Ok::<_, redis::RedisError>((commands, slots))
        };
        let (commands, slots) = match tokio::time::timeout(settings.connect_timeout, connect).await
        {
            Err(_) => return Err(failed(None)),
            Ok(Err(error)) => return Err(failed(Some(error))),
            Ok(Ok(connected)) => connected,
        };
        let mut nodes = Vec::new();
        for address in node_addresses(&slots) {
            nodes.push(open_client(
                &seeds.url_for(&address),
                settings.tls_root_certificate.clone(),
            )?);
        }
        if nodes.is_empty() {
            // CLUSTER SLOTS named nobody: the seeds themselves carry notices.
            for url in seeds.urls() {
                nodes.push(open_client(&url, settings.tls_root_certificate.clone())?);
            }
        }
        Ok(Cluster { commands, nodes })
    }
}

/// Whether the server behind `connection` runs in cluster mode (`INFO cluster`).
pub(crate) async fn is_cluster_node(
    connection: &mut impl ConnectionLike,
) -> redis::RedisResult<bool> {
    let info: String = match redis::cmd("INFO")
        .arg("cluster")
        .query_async(connection)
        .await
    {
        Ok(info) => info,
        // A user denied INFO: taken for a plain server (a cluster node would
        // then answer the first lock request with a clear MOVED; a seed list,
        // or `ClusterMode::Require`, says it is a cluster instead).
        Err(error) if super::permissions::is_denied(&error) => {
            tracing::debug!(%error, "INFO denied: not asking whether the server is a cluster node");
            return Ok(false);
        }
        Err(error) => return Err(error),
    };
    Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
}

/// `host:port` of every node in a `CLUSTER SLOTS` reply
/// (`[[start, end, [host, port, id, …], replicas…], …]`), each once.
fn node_addresses(slots: &redis::Value) -> Vec<String> {
    let mut addresses = Vec::new();
    let redis::Value::Array(ranges) = slots else {
        return addresses;
    };
    for range in ranges {
        let redis::Value::Array(items) = range else {
            continue;
        };
        for node in items.iter().skip(2) {
            let redis::Value::Array(fields) = node else {
                continue;
            };
            let host = match fields.first() {
                Some(redis::Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
                Some(redis::Value::SimpleString(host)) => host.clone(),
                _ => continue,
            };
            let Some(redis::Value::Int(port)) = fields.get(1) else {
                continue;
            };
            let address = format!("{host}:{port}");
            if !host.is_empty() && !addresses.contains(&address) {
                addresses.push(address);
            }
        }
    }
    addresses
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    #[test]
    fn every_node_of_cluster_slots_once() {
        let node = |host: &str, port| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let slots = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("10.0.0.2", 7001),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16383),
                node("10.0.0.1", 7000),
            ]),
        ]);
        assert_eq!(
            node_addresses(&slots),
            ["10.0.0.1:7000", "10.0.0.4:7003", "10.0.0.2:7001"]
        );
        assert!(node_addresses(&Value::Nil).is_empty());
    }
}
