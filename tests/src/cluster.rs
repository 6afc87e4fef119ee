//! A Redis Cluster of real `redis-server` processes on loopback, made with
//! `redis-cli --cluster create`, stopped (every node) on drop.

use std::net::TcpListener;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::RedisServer;

/// A running cluster: `masters` primaries, each with `replicas` replicas.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` primaries (3 at least) with `replicas` replicas each, and
    /// waits until every node reports the cluster ok with all slots served.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        RedisCluster::start_pinned(masters, replicas, None)
    }

    /// As [`start`](Self::start), every node on CPU core `pin_core` if given
    /// (for benchmarks).
    pub fn start_pinned(masters: usize, replicas: usize, pin_core: Option<u32>) -> RedisCluster {
        assert!(masters >= 3, "redis-cli --cluster create needs 3 masters");
        let count = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                RedisServer::start_on(
                    free_cluster_port(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-node-timeout",
                        "2000",
                        // A replica may take over however stale it is: the
                        // failover tests promote replicas on purpose.
                        "--cluster-replica-validity-factor",
                        "0",
                    ],
                    pin_core,
                )
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let output = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli (it comes with redis-server)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok(count);
        cluster.wait_for_replicas(replicas);
        cluster
    }

    /// Waits until every node sees `count` nodes and the cluster ok.
    fn wait_until_ok(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &self.nodes {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut node.connection())
                    .expect("CLUSTER INFO");
                let field = |name: &str| {
                    info.lines()
                        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                        .map(str::trim)
                        .unwrap_or_default()
                        .to_owned()
                };
                if field("cluster_state") == "ok"
                    && field("cluster_known_nodes") == count.to_string()
                    && field("cluster_slots_ok") == "16384"
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster not ok on port {}: {info}",
                    node.port()
                );
                sleep(Duration::from_millis(50));
            }
        }
    }

    /// Waits until every primary has `replicas` replicas online (synced).
    fn wait_for_replicas(&self, replicas: usize) {
        if replicas == 0 {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in self.primary_ports() {
            loop {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut self.node(port).connection())
                    .expect("INFO replication");
                let online = info
                    .lines()
                    .filter(|line| line.starts_with("slave") && line.contains("state=online"))
                    .count();
                if online >= replicas {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replicas of {port} never came online: {info}"
                );
                sleep(Duration::from_millis(50));
            }
        }
    }

    /// Every node, primaries and replicas.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// A node's URL, to hand a client one node only.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// All nodes' addresses as one seed-list URL: `redis://h1:p1,h2:p2,…`.
    pub fn seed_list_url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis://{}", hosts.join(","))
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.running().connection())
            .expect("CLUSTER KEYSLOT")
    }

    /// A node that has not been killed.
    fn running(&self) -> &RedisServer {
        self.nodes
            .iter()
            .find(|node| node.is_running())
            .expect("a running node")
    }

    /// The replica of the primary on `port` (its first, from `INFO replication`).
    pub fn replica_of(&self, port: u16) -> &RedisServer {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut self.node(port).connection())
            .expect("INFO replication");
        // slave0:ip=127.0.0.1,port=7004,state=online,offset=…,lag=0
        let replica = info
            .lines()
            .find_map(|line| line.strip_prefix("slave0:"))
            .and_then(|fields| {
                fields
                    .split(',')
                    .find_map(|field| field.strip_prefix("port="))
            })
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the primary on {port} has no replica: {info}"));
        self.node(replica)
    }

    /// Promotes the replica on `port` with `CLUSTER FAILOVER` (its primary hands
    /// over after the replica has caught up) and waits until it serves `slot`.
    pub fn failover_to(&self, port: u16, slot: u16) {
        let () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut self.node(port).connection())
            .expect("CLUSTER FAILOVER");
        self.wait_for_primary(slot, port);
    }

    /// Kills the node on `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.iter_mut().find(|node| node.port() == port) {
            node.kill();
        }
    }

    /// Waits (up to 30 s) until the node on `port` serves `slot` as primary, as
    /// the running nodes see it.
    pub fn wait_for_primary(&self, slot: u16, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.primary_port_of(slot) != port {
            assert!(
                Instant::now() < deadline,
                "the node on {port} never took over slot {slot}"
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// The node that serves `slot` as primary now.
    pub fn primary_of(&self, slot: u16) -> &RedisServer {
        let port = self.primary_port_of(slot);
        self.nodes
            .iter()
            .find(|node| node.port() == port)
            .expect("the slot's primary is one of ours")
    }

    fn primary_port_of(&self, slot: u16) -> u16 {
        self.slot_ranges()
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, port)| port)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// `CLUSTER SLOTS` as (first slot, last slot, primary's port).
    fn slot_ranges(&self) -> Vec<(u16, u16, u16)> {
        // [[start, end, [host, port, id], replicas…], …]
        let ranges: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.running().connection())
            .expect("CLUSTER SLOTS");
        ranges
            .into_iter()
            .map(|range| {
                let mut items = range.into_iter();
                let mut next = || items.next().expect("a CLUSTER SLOTS field");
                let start: u16 = redis::from_redis_value(next()).expect("slot range start");
                let end: u16 = redis::from_redis_value(next()).expect("slot range end");
                let (_host, port): (String, u16) = {
                    let node: Vec<redis::Value> =
                        redis::from_redis_value(next()).expect("the range's primary");
                    let mut node = node.into_iter();
                    (
                        redis::from_redis_value(node.next().expect("host")).expect("host"),
                        redis::from_redis_value(node.next().expect("port")).expect("port"),
                    )
                };
                (start, end, port)
            })
            .collect()
    }

    /// Moves `slot` to the primary `to` as `redis-cli --cluster reshard` does
    /// (IMPORTING on the target, MIGRATING on the source, `MIGRATE` of each key,
    /// then the new owner announced to every primary), pausing `between` after
    /// each key so that clients meet the slot half moved.
    pub fn migrate_slot(&self, slot: u16, to: &RedisServer, between: Duration) {
        let from = self.primary_of(slot);
        assert_ne!(from.port(), to.port(), "the slot is there already");
        let id = |node: &RedisServer| -> String {
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut node.connection())
                .expect("CLUSTER MYID")
        };
        let (from_id, to_id) = (id(from), id(to));
        let setslot = |node: &RedisServer, state: &str, owner: &str| {
            let () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(owner)
                .query(&mut node.connection())
                .unwrap_or_else(|error| panic!("CLUSTER SETSLOT {slot} {state}: {error}"));
        };
        setslot(to, "IMPORTING", &from_id);
        setslot(from, "MIGRATING", &to_id);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(10)
                .query(&mut from.connection())
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            for key in keys {
                let _: redis::Value = redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(to.port())
                    .arg(&key)
                    .arg(0)
                    .arg(5000)
                    .arg("REPLACE")
                    .query(&mut from.connection())
                    .unwrap_or_else(|error| panic!("MIGRATE {key}: {error}"));
                sleep(between);
            }
        }
        setslot(to, "NODE", &to_id);
        setslot(from, "NODE", &to_id);
        for node in &self.nodes {
            if node.port() != to.port() && node.port() != from.port() {
                // Replicas refuse it; they learn the owner from the bus.
                let _: redis::RedisResult<()> = redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&to_id)
                    .query(&mut node.connection());
            }
        }
    }

    /// The primaries, by port.
    pub fn primary_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .slot_ranges()
            .into_iter()
            .map(|(_, _, port)| port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|node| node.port() == port)
            .expect("a node of this cluster")
    }

    /// The distinct primaries that serve `slots`.
    pub fn primaries_of(&self, slots: impl IntoIterator<Item = u16>) -> Vec<u16> {
        let ranges = self.slot_ranges();
        let mut ports: Vec<u16> = slots
            .into_iter()
            .filter_map(|slot| {
                ranges
                    .iter()
                    .find(|(start, end, _)| (*start..=*end).contains(&slot))
                    .map(|(_, _, port)| *port)
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// A loopback port `p` with `p` and its cluster bus port `p + 10000` both free
/// a moment ago.
pub fn free_cluster_port() -> u16 {
    for _ in 0..1_000 {
        let port = crate::free_port();
        if port > 55_000 {
            // Its bus port would not exist; take one from a lower range instead.
            let lower = 20_000 + port % 30_000;
            if both_free(lower) {
                return lower;
            }
        } else if both_free(port) {
            return port;
        }
    }
    panic!("no port with a free cluster bus port after 1,000 tries")
}

fn both_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
        && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
}
