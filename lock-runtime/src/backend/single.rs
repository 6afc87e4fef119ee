//! One Redis server: the check at connect (it answers, accepts the
//! credentials, and whether it is a cluster node), then the command connection
//! (multiplexed, reconnecting).

use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::Settings;
use super::cluster::is_cluster_node;
use super::connect::unreachable;
use crate::error::LockError;

/// A connected single server.
pub(crate) struct SingleServer {
    pub(crate) commands: ConnectionManager,
}

/// Checks that the server behind `redis` answers and accepts the credentials,
/// on a plain connection (its error says exactly what is wrong: refused, bad
/// password, ..., where a reconnecting connection would only retry), and
/// whether it is a cluster node. Fails within the connect timeout.
pub(crate) async fn probe(
    redis: &redis::Client,
    server: &str,
    settings: &Settings,
) -> Result<bool, LockError> {
    let failed = |error| unreachable(server, settings.connect_timeout, error);
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.response_timeout));
    let probe = async {
        let mut connection = redis
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await?;
        is_cluster_node(&mut connection).await
    };
    match tokio::time::timeout(settings.connect_timeout, probe).await {
        Err(_) => Err(failed(None)),
        Ok(Err(error)) => Err(failed(Some(error))),
        Ok(Ok(cluster)) => Ok(cluster),
    }
}

impl SingleServer {
    /// The reconnecting command connection to the server behind `redis` (which
    /// [`probe`] found answering).
    pub(crate) async fn connect(
        redis: &redis::Client,
        server: &str,
        settings: &Settings,
    ) -> Result<SingleServer, LockError> {
        let failed = |error| unreachable(server, settings.connect_timeout, error);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout));
        match tokio::time::timeout(
            settings.connect_timeout,
            ConnectionManager::new_with_config(redis.clone(), config),
        )
        .await
        {
            Err(_) => Err(failed(None)),
            Ok(Err(error)) => Err(failed(Some(error))),
            Ok(Ok(commands)) => Ok(SingleServer { commands }),
        }
    }
}
