//! Independent `redis-server`s for quorum (Redlock) clients.

use crate::RedisServer;

/// `n` independent servers, each on its own free port; all stopped on drop.
#[derive(Debug)]
pub struct RedisQuorum {
    servers: Vec<RedisServer>,
}

impl RedisQuorum {
    /// Starts `n` servers.
    pub fn start(n: usize) -> RedisQuorum {
        RedisQuorum {
            servers: (0..n).map(|_| RedisServer::start()).collect(),
        }
    }

    /// `redlock://127.0.0.1:p1,127.0.0.1:p2,…`: a quorum client of all of them.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .servers
            .iter()
            .map(|server| format!("127.0.0.1:{}", server.port()))
            .collect();
        format!("redlock://{}", hosts.join(","))
    }

    /// The servers, in the order of [`url`](Self::url).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// One server, to kill, pause or restart.
    pub fn server(&mut self, index: usize) -> &mut RedisServer {
        &mut self.servers[index]
    }

    /// The value at `key` on each server that is running (`None`: absent, or
    /// the server is down).
    pub fn values(&self, key: &str) -> Vec<Option<String>> {
        self.servers
            .iter()
            .map(|server| {
                if !server.is_running() {
                    return None;
                }
                redis::cmd("GET")
                    .arg(key)
                    .query(&mut server.connection())
                    .ok()
                    .flatten()
            })
            .collect()
    }
}
