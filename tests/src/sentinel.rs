//! A primary, its replica and three sentinels watching them (`mymaster`), from
//! the `redis-server` binary on loopback; everything is stopped on drop.

use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{RedisServer, free_port};

/// The name the sentinels know the primary by.
pub const MASTER_NAME: &str = "mymaster";

/// One `redis-server --sentinel` process.
#[derive(Debug)]
struct Sentinel {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Sentinel-watched primary with one replica.
#[derive(Debug)]
pub struct RedisSentinels {
    /// The primary and the replica, as started (which is primary changes).
    servers: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
}

impl RedisSentinels {
    /// Starts the primary, a replica of it and three sentinels (quorum 2,
    /// down after 1 s), and waits until the sentinels know all of them.
    pub fn start() -> RedisSentinels {
        let primary = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
        let sentinels = (0..3).map(|_| start_sentinel(primary.port())).collect();
        let group = RedisSentinels {
            servers: vec![primary, replica],
            sentinels,
        };
        group.wait_until_watched();
        group
    }

    fn wait_until_watched(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for sentinel in &self.sentinels {
            loop {
                let fields: Vec<String> = redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(MASTER_NAME)
                    .query(&mut sentinel_connection(sentinel.port))
                    .unwrap_or_default();
                let field = |name: &str| {
                    fields
                        .iter()
                        .position(|field| field == name)
                        .and_then(|at| fields.get(at + 1))
                        .cloned()
                        .unwrap_or_default()
                };
                if field("num-slaves") == "1" && field("num-other-sentinels") == "2" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sentinel {} does not see the group yet: {fields:?}",
                    sentinel.port
                );
                sleep(Duration::from_millis(50));
            }
        }
        // And the replica has synced.
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut self.servers[0].connection())
                .expect("INFO replication");
            if info.contains("state=online") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the replica never synced: {info}"
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// `redis-sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3#mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
            .collect();
        format!("redis-sentinel://{}#{MASTER_NAME}", hosts.join(","))
    }

    /// The sentinels' addresses with another master name.
    pub fn url_for_master(&self, name: &str) -> String {
        let url = self.url();
        let base = url.split('#').next().unwrap_or_default().to_owned();
        format!("{base}#{name}")
    }

    /// The port of the primary, as the first running sentinel says.
    pub fn primary_port(&self) -> u16 {
        let (_host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME)
            .query(&mut sentinel_connection(self.sentinels[0].port))
            .expect("SENTINEL get-master-addr-by-name");
        port
    }

    /// The server on `port`.
    pub fn server(&self, port: u16) -> &RedisServer {
        self.servers
            .iter()
            .find(|server| server.port() == port)
            .expect("one of the group's servers")
    }

    /// The server that is not the primary now.
    pub fn replica_port(&self) -> u16 {
        let primary = self.primary_port();
        self.servers
            .iter()
            .map(RedisServer::port)
            .find(|port| *port != primary)
            .expect("a replica")
    }

    /// `SENTINEL FAILOVER`: promotes the replica; waits until it is primary,
    /// then makes the old primary its replica and waits until it has synced.
    /// (Sentinel does that too, but only when it next checks the old primary,
    /// up to 10 s later; until then both say they are primary.)
    pub fn failover(&self) {
        let (old, replica) = (self.primary_port(), self.replica_port());
        let _: redis::Value = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query(&mut sentinel_connection(self.sentinels[0].port))
            .expect("SENTINEL FAILOVER");
        self.wait_for_primary(replica);
        let () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(replica)
            .query(&mut self.server(old).connection())
            .expect("REPLICAOF on the old primary");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut self.server(replica).connection())
                .expect("INFO replication");
            if info.contains("state=online") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the old primary never synced: {info}"
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Kills the primary (SIGKILL); the sentinels promote the replica after
    /// about a second. Returns the replica's port.
    pub fn kill_primary(&mut self) -> u16 {
        let (primary, replica) = (self.primary_port(), self.replica_port());
        if let Some(server) = self
            .servers
            .iter_mut()
            .find(|server| server.port() == primary)
        {
            server.kill();
        }
        replica
    }

    /// Waits (up to 30 s) until the sentinels name the server on `port` the
    /// primary and it says it is one.
    pub fn wait_for_primary(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let role: Vec<redis::Value> = redis::cmd("ROLE")
                .query(&mut self.server(port).connection())
                .unwrap_or_default();
            let is_primary =
                matches!(role.first(), Some(redis::Value::BulkString(role)) if role == b"master");
            if is_primary && self.primary_port() == port {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server on {port} never became primary"
            );
            sleep(Duration::from_millis(50));
        }
    }
}

fn start_sentinel(primary: u16) -> Sentinel {
    for _ in 0..10 {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir for a sentinel");
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\nsentinel down-after-milliseconds {MASTER_NAME} 1000\nsentinel failover-timeout {MASTER_NAME} 4000\nsentinel parallel-syncs {MASTER_NAME} 1\n",
                dir.path().display()
            ),
        )
        .expect("write sentinel.conf");
        let mut child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server --sentinel");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            let answered = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection));
            if answered.is_ok() {
                return Sentinel {
                    child,
                    port,
                    _dir: dir,
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            sleep(Duration::from_millis(10));
        }
    }
    panic!("could not start a sentinel after 10 tries")
}

fn sentinel_connection(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
        .expect("connect to a sentinel")
}
