//! One Redis server: the command connection (multiplexed, reconnecting) and the
//! client that opens the notice connection.

use redis::AsyncConnectionConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::Settings;
use super::connect::unreachable;
use crate::error::LockError;

/// A connected single server.
pub(crate) struct SingleServer {
    pub(crate) commands: ConnectionManager,
}

impl SingleServer {
    /// Connects to the server behind `redis`, checking first that it answers and
    /// accepts the credentials; fails within the connect timeout.
    pub(crate) async fn connect(
        redis: &redis::Client,
        server: &str,
        settings: &Settings,
    ) -> Result<SingleServer, LockError> {
        let failed = |error| unreachable(server, settings.connect_timeout, error);
        // A plain connection first: its error says exactly what is wrong (refused,
        // bad password, ...), where the reconnecting manager would only retry.
        let probe_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout));
        let probe = async {
            let mut connection = redis
                .get_multiplexed_async_connection_with_config(&probe_config)
                .await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(settings.connect_timeout, probe).await {
            Err(_) => return Err(failed(None)),
            Ok(Err(error)) => return Err(failed(Some(error))),
            Ok(Ok(_)) => {}
        }

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
