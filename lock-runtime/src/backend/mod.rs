//! The seam between the lock engine and Redis: the lock operations (try to
//! acquire, extend, release) and the notices that wake waiters, on whatever
//! topology the client was connected to.
//!
//! The engine (`crate::engine`) knows only [`Backend`]. Every topology runs the
//! same scripts (`scripts.rs`, their formats typed in `protocol.rs`) and differs
//! only in how a command reaches the node that owns its key ([`Commands`]) and
//! where notices come from (`notices.rs`): one server (`single.rs`), a
//! Redis Cluster (`cluster.rs`) or a Sentinel-watched primary (`sentinel.rs`),
//! told apart at connect. A quorum of independent servers (`quorum.rs`,
//! Redlock) runs scripts of its own on all of them at once.

mod cluster;
mod connect;
mod contention;
mod notices;
mod permissions;
mod protocol;
mod quorum;
mod scripts;
mod sentinel;
mod single;
mod survey;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use cluster::Cluster;
use connect::Endpoints;
pub use connect::redact_url;
use contention::Contention;
pub(crate) use notices::{NoticeNodes, Notices, Subscription};
pub use permissions::acl_rule;
pub(crate) use protocol::{Attempt, AttemptRequest, Handoff, NextTask, Released, Shape, Snapshot};
use quorum::Quorum;
use sentinel::{SentinelCommands, SentinelGroup, SentinelUrl};
use single::SingleServer;

use crate::error::LockError;
use crate::keys::{cluster_lease_key, hash_tag, lease_key};
use crate::options::LockOptions;
use crate::token::{Identity, new_token};

/// Whether a client talks to a Redis Cluster (see
/// [`LockClientBuilder::cluster`](crate::LockClientBuilder::cluster)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterMode {
    /// A seed list (`redis://h1:p1,h2:p2`) is a cluster; one address is a
    /// cluster if the server says so (`INFO cluster`) when the client connects.
    #[default]
    Detect,
    /// The server must be a cluster node: connecting to a plain server fails.
    Require,
    /// Treat the server as a single server even if it is a cluster node (e.g.
    /// behind a proxy that routes by key itself).
    Forbid,
}

/// How to reach Redis: what a [`LockClientBuilder`](crate::LockClientBuilder) collects.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) tls_root_certificate: Option<Vec<u8>>,
    pub(crate) cluster: ClusterMode,
    /// A quorum client's servers, one full URL each (from
    /// [`LockClient::quorum`](crate::LockClient::quorum)).
    pub(crate) quorum: Option<Vec<String>>,
    /// What the holder record of every lease names the application as.
    pub(crate) holder_label: Option<String>,
    /// Label metrics by lock name too (see `observe.rs`).
    pub(crate) metrics_by_name: bool,
    /// Check the user's permissions at connect (see `permissions.rs`).
    pub(crate) check_permissions: bool,
}

impl Settings {
    fn config_error(&self, subject: &str, reason: impl Into<String>) -> LockError {
        LockError::Config {
            subject: subject.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The command connection of one topology: each command goes to the node that
/// owns its key. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub(crate) enum Commands {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelCommands),
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Commands::Single(connection) => connection.req_packed_command(cmd),
            Commands::Cluster(connection) => connection.req_packed_command(cmd),
            Commands::Sentinel(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Commands::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Commands::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Commands::Sentinel(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Commands::Single(connection) => connection.get_db(),
            Commands::Cluster(connection) => connection.get_db(),
            Commands::Sentinel(connection) => connection.get_db(),
        }
    }
}

/// How a client reaches its locks: the node that owns each key, or a quorum.
enum Topology {
    Nodes(Commands),
    Quorum(Quorum),
}

/// Where a client's locks live, and the lock operations on them. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Backend {
    inner: Arc<Inner>,
}

struct Inner {
    topology: Topology,
    /// A Redis Cluster: keys are laid out so each lock's share a slot.
    cluster: bool,
    /// On a cluster, how long a release's receipt lasts (the cluster connection
    /// may send a release twice; see `protocol::release`).
    receipt_lifetime: Option<Duration>,
    server: String,
    prefix: String,
    notices: Arc<Notices>,
    contention: Contention,
    /// The runtime the connections live on, where background work is spawned.
    runtime: tokio::runtime::Handle,
    response_timeout: Duration,
    /// Who this client's leases say holds them.
    identity: Identity,
    metrics_by_name: bool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("server", &self.inner.server)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Connects as `settings` say, on the current tokio runtime, and checks
    /// that the Redis user may run every command a lock needs (see
    /// `permissions.rs`); fails with a clear [`LockError`] within the connect
    /// timeout.
    pub(crate) async fn connect(settings: &Settings) -> Result<Backend, LockError> {
        let deadline = tokio::time::Instant::now() + settings.connect_timeout;
        let backend = Backend::connect_topology(settings).await?;
        if settings.check_permissions {
            // Within what is left of the connect timeout (at least one
            // response timeout): a server too slow to answer now is reported
            // by the first request.
            let until = deadline.max(tokio::time::Instant::now() + settings.response_timeout);
            if let Ok(checked) = tokio::time::timeout_at(until, backend.check_permissions()).await {
                checked?;
            }
        }
        Ok(backend)
    }

    /// Runs the permission probe on every server that keeps locks: the
    /// server, every primary of a cluster, every server of a quorum.
    async fn check_permissions(&self) -> Result<(), LockError> {
        let (server, prefix) = (self.server(), self.prefix());
        let results = match &self.inner.topology {
            Topology::Nodes(Commands::Cluster(cluster)) => {
                let Ok(primaries) = survey::primaries(&mut cluster.clone()).await else {
                    return Ok(());
                };
                join_all(primaries.into_iter().map(|(host, port)| {
                    let mut node = survey::Routed {
                        cluster: cluster.clone(),
                        host,
                        port,
                    };
                    async move { permissions::check(&mut node, server, prefix).await }
                }))
                .await
            }
            Topology::Nodes(commands) => {
                vec![permissions::check(&mut commands.clone(), server, prefix).await]
            }
            Topology::Quorum(quorum) => {
                join_all(quorum.connections().into_iter().map(|mut node| async move {
                    permissions::check(&mut node, server, prefix).await
                }))
                .await
            }
        };
        results.into_iter().collect()
    }

    async fn connect_topology(settings: &Settings) -> Result<Backend, LockError> {
        let quorum = match settings.quorum.clone() {
            Some(urls) => Some(Ok(urls)),
            None => quorum::parse_url(&settings.url),
        };
        if let Some(urls) = quorum {
            let urls = urls.map_err(|reason| {
                settings.config_error(
                    &format!("Redis URL `{}`", redact_url(&settings.url)),
                    format!(
                        "{reason}; a quorum URL is redlock://[user:password@]h1:p1,h2:p2,h3:p3[/db]"
                    ),
                )
            })?;
            if settings.cluster == ClusterMode::Require {
                return Err(settings.config_error(
                    "quorum client",
                    "a quorum is of independent servers, not a Redis Cluster",
                ));
            }
            let quorum = Quorum::connect(&urls, settings).await?;
            let server = quorum.shown();
            let runtime = runtime_for(&server, settings)?;
            let clients = quorum.clients();
            return Backend::made(
                Topology::Quorum(quorum),
                Box::new(move || clients.clone()),
                server,
                settings,
                runtime,
            );
        }
        if let Some(sentinel) = SentinelUrl::parse(&settings.url) {
            let sentinel = sentinel.map_err(|reason| {
                settings.config_error(
                    &format!("Redis URL `{}`", redact_url(&settings.url)),
                    reason,
                )
            })?;
            let server = sentinel.shown();
            if settings.cluster == ClusterMode::Require {
                return Err(settings.config_error(
                    &format!("client for {server}"),
                    "a redis-sentinel:// URL names a primary watched by Sentinel, not a Redis Cluster",
                ));
            }
            let runtime = runtime_for(&server, settings)?;
            let commands = SentinelGroup::connect(&sentinel, settings, runtime.clone()).await?;
            let primary = commands.clone();
            return Backend::made(
                Topology::Nodes(Commands::Sentinel(commands)),
                Box::new(move || vec![primary.primary_client()]),
                server,
                settings,
                runtime,
            );
        }
        let endpoints = Endpoints::parse(&settings.url);
        if let Some(seeds) = endpoints.as_ref().filter(|seeds| seeds.is_seed_list()) {
            let server = seeds.shown();
            if settings.cluster == ClusterMode::Forbid {
                return Err(settings.config_error(
                    &format!("Redis URL `{}`", redact_url(&settings.url)),
                    "a list of servers is a Redis Cluster's seed list, but the client was told it is not a cluster; give one server's address",
                ));
            }
            let runtime = runtime_for(&server, settings)?;
            return Backend::connect_cluster(seeds, server, settings, runtime).await;
        }
        let redis = connect::open_client(&settings.url, settings.tls_root_certificate.clone())?;
        let server = redis.get_connection_info().addr().to_string();
        let runtime = runtime_for(&server, settings)?;
        let cluster_node = single::probe(&redis, &server, settings).await?;
        match (settings.cluster, cluster_node, endpoints) {
            (ClusterMode::Require, false, _) => {
                return Err(settings.config_error(
                    &format!("client for {server}"),
                    "the server is not a Redis Cluster node (INFO cluster: cluster_enabled:0), and the client was told to require one",
                ));
            }
            (ClusterMode::Detect | ClusterMode::Require, true, Some(seed)) => {
                tracing::debug!(%server, "the server is a cluster node: connecting to the cluster");
                return Backend::connect_cluster(&seed, server, settings, runtime).await;
            }
            (ClusterMode::Detect | ClusterMode::Require, true, None) => {
                return Err(settings.config_error(
                    &format!("client for {server}"),
                    "the server is a Redis Cluster node, which is reached over TCP (redis:// or rediss://), not a unix socket",
                ));
            }
            _ => {}
        }
        let single = SingleServer::connect(&redis, &server, settings).await?;
        Backend::made(
            Topology::Nodes(Commands::Single(single.commands)),
            Box::new(move || vec![redis.clone()]),
            server,
            settings,
            runtime,
        )
    }

    /// Connects to the cluster `seeds` belong to.
    async fn connect_cluster(
        seeds: &Endpoints,
        server: String,
        settings: &Settings,
        runtime: tokio::runtime::Handle,
    ) -> Result<Backend, LockError> {
        let cluster = Cluster::connect(seeds, settings).await?;
        let nodes = cluster.nodes;
        Backend::made(
            Topology::Nodes(Commands::Cluster(cluster.commands)),
            Box::new(move || nodes.clone()),
            server,
            settings,
            runtime,
        )
    }

    fn made(
        topology: Topology,
        notice_nodes: NoticeNodes,
        server: String,
        settings: &Settings,
        runtime: tokio::runtime::Handle,
    ) -> Result<Backend, LockError> {
        let cluster = matches!(topology, Topology::Nodes(Commands::Cluster(_)));
        // A quorum's notice connection is to any one server: one that does not
        // answer must not hold waiters up for long before the next is tried.
        let notice_connect_timeout = match topology {
            Topology::Quorum(_) => settings.connect_timeout.min(QUORUM_NOTICE_CONNECT_TIMEOUT),
            Topology::Nodes(_) => settings.connect_timeout,
        };
        if cluster && hash_tag(&cluster_lease_key(&settings.prefix, "x")).is_none() {
            return Err(settings.config_error(
                &format!("client for {server}"),
                format!(
                    "the key prefix `{}` leaves lock keys without a hash tag on Redis Cluster (its braces enclose nothing), so a lock's keys would land in different slots; drop the braces",
                    settings.prefix
                ),
            ));
        }
        let identity = Identity::new(settings.holder_label.as_deref())
            .map_err(|reason| settings.config_error(&format!("client for {server}"), reason))?;
        tracing::debug!(%server, prefix = %settings.prefix, cluster, "lock client connected");
        // Where this client's waiters are told of handoffs: unique per client.
        let channel = format!("{}notices:{}", settings.prefix, new_token("notices")?);
        let notices = Arc::new(Notices::new(
            notice_nodes,
            channel,
            notice_connect_timeout,
            runtime.clone(),
        ));
        Ok(Backend {
            inner: Arc::new(Inner {
                topology,
                cluster,
                // Longer than the cluster connection can take to send a release
                // again: each of its re-sends follows at most a response timeout.
                receipt_lifetime: cluster
                    .then(|| settings.response_timeout * (cluster::RETRIES + 2)),
                server,
                prefix: settings.prefix.clone(),
                notices,
                contention: Contention::default(),
                runtime,
                response_timeout: settings.response_timeout,
                identity,
                metrics_by_name: settings.metrics_by_name,
            }),
        })
    }

    /// The key that holds the lease of lock `name`.
    pub(crate) fn lease_key(&self, name: &str) -> String {
        if self.inner.cluster {
            cluster_lease_key(&self.inner.prefix, name)
        } else {
            lease_key(&self.inner.prefix, name)
        }
    }

    /// Whether the client talks to a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// The server (`host:port` or socket path, no credentials).
    pub(crate) fn server(&self) -> &str {
        &self.inner.server
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Whether metrics carry the lock's name as a label.
    pub(crate) fn metrics_by_name(&self) -> bool {
        self.inner.metrics_by_name
    }

    /// Who this client's leases say holds them.
    pub(crate) fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    pub(crate) fn notices(&self) -> &Arc<Notices> {
        &self.inner.notices
    }

    /// Whether the connections' runtime runs tasks on threads of its own (a
    /// multi-thread runtime), not only while someone blocks on it.
    pub(crate) fn runtime_has_own_threads(&self) -> bool {
        self.inner.runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
    }

    /// How long one command may wait for its answer.
    pub(crate) fn response_timeout(&self) -> Duration {
        self.inner.response_timeout
    }

    /// Spawns a background release on the runtime the connections live on,
    /// counted for [`flush_releases`](crate::flush_releases); the receiver gets
    /// `()` once it is done.
    pub(crate) fn spawn_release(
        &self,
        release: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::sync::mpsc::Receiver<()> {
        crate::rt::spawn_release(&self.inner.runtime, release)
    }

    /// Whether the lock at `key` was lately found busy or handed on.
    pub(crate) fn recently_contended(&self, key: &str) -> bool {
        self.inner.contention.recent(key)
    }

    pub(crate) fn mark_contended(&self, key: &str) {
        self.inner.contention.mark(key);
    }

    /// The command connection, or the quorum that takes the operation instead.
    fn commands(&self) -> Result<Commands, &Quorum> {
        match &self.inner.topology {
            Topology::Nodes(commands) => Ok(commands.clone()),
            Topology::Quorum(quorum) => Err(quorum),
        }
    }

    /// Checks that `options` can be used on this topology; `acquire` calls it
    /// first. A quorum takes neither FIFO nor `replicas`.
    pub(crate) fn check_options(&self, name: &str, options: &LockOptions) -> Result<(), LockError> {
        if !matches!(self.inner.topology, Topology::Quorum(_)) {
            return Ok(());
        }
        let reason = if Shape::of(options).is_shared() {
            "semaphores (`permits`) and read/write locks (`mode`) are not available on a quorum client yet: use an exclusive lock, or a client of one server, a Sentinel group or a Cluster"
        } else if options.fair {
            "`fair` (strict FIFO) is not available on a quorum client: waiters are handed the lock in arrival order by their own clocks, but one whose attempt reached only some servers before a release may be passed over; leave it off"
        } else if options.replicas.is_some() {
            "`replicas` is not available on a quorum client: its servers are independent primaries (the quorum is the redundancy)"
        } else {
            return Ok(());
        };
        Err(LockError::Config {
            subject: format!("lock `{name}`"),
            reason: reason.to_owned(),
        })
    }

    /// One acquire attempt.
    pub(crate) async fn try_acquire(&self, request: &AttemptRequest<'_>) -> RedisResult<Attempt> {
        if Shape::of_token(request.token).is_shared() {
            // Many holders: always the script (quorum clients refuse these
            // options before any attempt).
            let mut connection = self.commands().map_err(|_| no_quorum_shapes())?;
            let cmd = request.many_script(self.inner.notices.channel());
            let reply = scripts::run(&scripts::MANY_ACQUIRE, &cmd, &mut connection).await?;
            return Ok(Attempt::from_reply(reply, false));
        }
        // A lock this client has not seen contended lately is most likely free:
        // try a plain SET NX first, which is what the script would do then, at a
        // fraction of the server's cost. Busy, fall through to the script (which
        // queues us and reports the holder's ttl). Fencing and FIFO always need
        // the script.
        let fencing = request.fence_lifetime_ms > 0;
        let plain_first = request.number == 1
            && !request.fair
            && !fencing
            && !self.recently_contended(request.key);
        let mut connection = match self.commands() {
            Ok(connection) => connection,
            Err(quorum) => {
                // The same on a quorum: a majority of plain SETs is a lease; the
                // script's attempt that follows otherwise counts the servers
                // already won (they hold our token).
                if plain_first {
                    if quorum.plain_majority(request).await {
                        return Ok(Attempt::Acquired { fence: None });
                    }
                    self.mark_contended(request.key);
                }
                return quorum
                    .try_acquire(request, self.inner.notices.channel())
                    .await;
            }
        };
        if plain_first {
            // Not set: the lock is busy, or already holds this token (this very
            // attempt ran before and its answer was lost, and a cluster
            // connection sent it again; or a release handed it to us). The
            // script tells which, and restarts a lease that is ours, so that
            // it counts from this attempt.
            let set: Option<String> = request.plain_set().query_async(&mut connection).await?;
            if set.is_some() {
                return Ok(Attempt::Acquired { fence: None });
            }
            self.mark_contended(request.key);
        }
        let cmd = request.script(self.inner.notices.channel());
        let reply = scripts::run(&scripts::ACQUIRE, &cmd, &mut connection).await?;
        Ok(Attempt::from_reply(reply, fencing))
    }

    /// Whether one request may take the locks at `keys` together: on one
    /// server or Sentinel primary, always; on a cluster, when they share one
    /// slot; never on a quorum.
    pub(crate) fn can_take_together(&self, keys: &[String]) -> bool {
        match &self.inner.topology {
            Topology::Quorum(_) => false,
            Topology::Nodes(Commands::Cluster(_)) => {
                use redis::cluster_routing::Slot;
                let mut slots = keys.iter().map(Slot::for_key);
                let first = slots.next();
                slots.all(|slot| Some(slot) == first)
            }
            Topology::Nodes(_) => true,
        }
    }

    /// Sets every key of `keys` to its token of `tokens` for `ttl` if all of
    /// them are free, in one script call: `true` if it did, `false` (nothing
    /// set) if one was held. For keys [`can_take_together`](Self::can_take_together).
    pub(crate) async fn take_together(
        &self,
        keys: &[String],
        tokens: &[&str],
        ttl: Duration,
    ) -> RedisResult<bool> {
        let mut connection = self.commands().map_err(|_| no_quorum_shapes())?;
        let cmd = protocol::take_together(keys, tokens, ttl);
        let taken: i64 = scripts::run(&scripts::TAKE_TOGETHER, &cmd, &mut connection).await?;
        Ok(taken == 1)
    }

    /// Compare-and-`PEXPIRE` of each key of `keys` for its token of
    /// `tokens`, in one request: for each, `true` if it held its token and
    /// now lasts `ttl` more. For keys [`can_take_together`](Self::can_take_together).
    pub(crate) async fn extend_together(
        &self,
        keys: &[&str],
        tokens: &[&str],
        ttl: Duration,
    ) -> RedisResult<Vec<bool>> {
        let mut connection = self.commands().map_err(|_| no_quorum_shapes())?;
        let cmd = protocol::extend_together(keys, tokens, ttl);
        let extended: Vec<i64> =
            scripts::run(&scripts::EXTEND_TOGETHER, &cmd, &mut connection).await?;
        Ok(extended.into_iter().map(|extended| extended == 1).collect())
    }

    /// Compare-and-delete of each key of `keys` for its token of `tokens`,
    /// in one request, where nobody is queued for it: `true` for each key
    /// deleted; `false` for one left untouched (not ours, or waiters to hand
    /// it to), which takes a release of its own. All `false`, with no
    /// request, where one request cannot: keys in several cluster slots, a
    /// quorum, or release receipts (a cluster connection re-sends).
    pub(crate) async fn release_together(
        &self,
        keys: &[String],
        tokens: &[&str],
    ) -> RedisResult<Vec<bool>> {
        if self.inner.receipt_lifetime.is_some() || !self.can_take_together(keys) {
            return Ok(vec![false; keys.len()]);
        }
        let mut connection = self.commands().map_err(|_| no_quorum_shapes())?;
        let cmd = protocol::release_together(keys, tokens);
        let deleted: Vec<i64> =
            scripts::run(&scripts::RELEASE_TOGETHER, &cmd, &mut connection).await?;
        for (key, deleted) in keys.iter().zip(&deleted) {
            if *deleted == 1 {
                self.inner.contention.forget(key);
            }
        }
        Ok(deleted.into_iter().map(|deleted| deleted == 1).collect())
    }

    /// How many replicas of `key`'s primary have every write this client made on
    /// that primary so far, waiting up to `timeout` for `count` of them: Redis's
    /// `WAIT`, on the same connection as the writes, to that primary only (since
    /// Redis 7 a `WAIT` inside a script does not block, and a bare `WAIT` on a
    /// cluster connection would go to every primary).
    pub(crate) async fn replicas_acknowledging(
        &self,
        key: &str,
        count: u32,
        timeout: Duration,
    ) -> RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(count).arg(crate::validity::millis(timeout).max(1));
        let Ok(commands) = self.commands() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "a quorum client has no replicas to wait for",
            )));
        };
        match commands {
            Commands::Single(mut connection) => wait.query_async(&mut connection).await,
            Commands::Sentinel(mut connection) => wait.query_async(&mut connection).await,
            Commands::Cluster(mut connection) => {
                use redis::cluster_routing::{Route, SingleNodeRoutingInfo, Slot, SlotAddr};
                // A keyless `WAIT` sent by slot goes wherever the client's slot
                // map says, or, if that node is not connected (a failover),
                // to a replica or any node, whose answer would count some other
                // primary's replicas. Sent after a `PTTL` of the key in one
                // pipeline, a node that does not own the slot answers `MOVED`
                // and the pipeline goes again, whole, to the owner: the count
                // is always the key's primary's.
                let mut pipeline = redis::pipe();
                pipeline.cmd("PTTL").arg(key).add_command(wait);
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                let answers = connection
                    .route_pipeline(pipeline, 0, 2, SingleNodeRoutingInfo::SpecificNode(route))
                    .await?;
                let mut answers = answers.into_iter();
                let (Some(left), Some(acknowledged)) = (answers.next(), answers.next()) else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "WAIT: the cluster answered fewer replies than sent",
                    )));
                };
                let left: i64 = redis::from_redis_value(left).map_err(redis::RedisError::from)?;
                let acknowledged: u32 =
                    redis::from_redis_value(acknowledged).map_err(redis::RedisError::from)?;
                // The key gone from its primary: no replica has the lease.
                Ok(if left == -2 { 0 } else { acknowledged })
            }
        }
    }

    /// How long the lease at `key` has left (`PTTL`): `None` if the key is gone
    /// or has no expiry.
    pub(crate) async fn remaining_lease(&self, key: &str) -> RedisResult<Option<Duration>> {
        let mut connection = match self.commands() {
            Ok(connection) => connection,
            Err(quorum) => return quorum.remaining_lease(key).await,
        };
        let left: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut connection)
            .await?;
        Ok(u64::try_from(left).ok().map(Duration::from_millis))
    }

    /// Compare-and-`PEXPIRE`: `true` if the key still held `token` and now lasts
    /// `ttl` more.
    pub(crate) async fn extend(&self, key: &str, token: &str, ttl: Duration) -> RedisResult<bool> {
        let mut connection = match self.commands() {
            Ok(connection) => connection,
            Err(quorum) => return quorum.extend(key, token, ttl).await,
        };
        let extended: i64 = if Shape::of_token(token).is_shared() {
            let cmd = protocol::many_extend(key, token, ttl);
            scripts::run(&scripts::MANY_EXTEND, &cmd, &mut connection).await?
        } else {
            let cmd = protocol::extend(key, token, ttl);
            scripts::run(&scripts::EXTEND, &cmd, &mut connection).await?
        };
        Ok(extended == 1)
    }

    /// An operator's release of lock `key` (see
    /// [`LockClient::force_release`](crate::LockClient::force_release)):
    /// `token` lets go as at its holder's release (the next waiter handed the
    /// lock or woken) if it holds the lock; else nothing changes (`false`).
    pub(crate) async fn force_release(&self, key: &str, token: &str) -> RedisResult<bool> {
        let mut connection = match self.commands() {
            Ok(connection) => connection,
            Err(quorum) => {
                let released = quorum
                    .release(key, token, &self.inner.runtime, true)
                    .await?;
                return Ok(released != Released::NotOurs);
            }
        };
        if Shape::of_token(token).is_shared() {
            let cmd = protocol::many_force_release(key, token);
            let released: i64 = scripts::run(&scripts::MANY_RELEASE, &cmd, &mut connection).await?;
            return Ok(released == 1);
        }
        let notices = &self.inner.notices;
        let cmd = protocol::force_release(key, token, notices.channel());
        let coded = scripts::run(&scripts::RELEASE, &cmd, &mut connection).await?;
        let (released, own_notices) = Released::from_reply(coded, false);
        for notice in &own_notices {
            notices.deliver_here(notice);
        }
        Ok(released != Released::NotOurs)
    }

    /// Compare-and-delete `token`, handing the lock to the next queued waiter (or,
    /// when none is queued, taking it for `next`, the next task of this client in
    /// line; with `keep`, taking it for that task ahead of the queue), or take a
    /// waiting token out of the queue.
    pub(crate) async fn release(
        &self,
        key: &str,
        token: &str,
        next: Option<(&NextTask, bool)>,
    ) -> RedisResult<Released> {
        let mut connection = match self.commands() {
            Ok(connection) => connection,
            // A quorum hands the lock to its longest-waiting waiter (if any);
            // the next task of this client in line then asks for it.
            Err(quorum) => return quorum.release(key, token, &self.inner.runtime, false).await,
        };
        if Shape::of_token(token).is_shared() {
            // Many holders: no handoffs (and no line of tasks); the waiters
            // that may go now are woken.
            let cmd = protocol::many_release(key, token);
            let released: i64 = scripts::run(&scripts::MANY_RELEASE, &cmd, &mut connection).await?;
            return Ok(if released == 1 {
                Released::Ended
            } else {
                Released::NotOurs
            });
        }
        let notices = &self.inner.notices;
        // Notices for this client's own waiters come back in the reply: if it is
        // lost (an error, or this future dropped mid-request), wake them all, to
        // find out with a request each whether the lock is now theirs.
        let mut reply = ReplyPending {
            notices,
            answered: false,
        };
        let receipt = self.inner.receipt_lifetime;
        let cmd = protocol::release(key, token, notices.channel(), receipt, next);
        let coded = scripts::run(&scripts::RELEASE, &cmd, &mut connection).await?;
        reply.answered = true;
        let fenced_next = next.is_some_and(|(next, _)| next.fence_lifetime_ms > 0);
        let (released, own_notices) = Released::from_reply(coded, fenced_next);
        // Notices for this client's own waiters, handed back instead of published.
        for notice in &own_notices {
            notices.deliver_here(notice);
        }
        match released {
            Released::HandedOn | Released::HandedHere { .. } => self.mark_contended(key),
            Released::Ended => self.inner.contention.forget(key),
            Released::NotOurs => {}
        }
        Ok(released)
    }
}

/// A request a quorum client does not make reached it (`check_options` and
/// `can_take_together` stop that before any request).
fn no_quorum_shapes() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Client,
        "a quorum client takes exclusive locks one name at a time only",
    ))
}

/// The longest a quorum client's notice connection may take to one server
/// before the next is tried.
const QUORUM_NOTICE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The runtime a client is made on, with its settings checked.
fn runtime_for(server: &str, settings: &Settings) -> Result<tokio::runtime::Handle, LockError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        settings.config_error(
            &format!("client for {server}"),
            "LockClient must be created inside a tokio runtime",
        )
    })?;
    if settings.connect_timeout.is_zero() || settings.response_timeout.is_zero() {
        return Err(settings.config_error(
            &format!("client for {server}"),
            "connect and response timeouts must be > 0",
        ));
    }
    Ok(runtime)
}

/// Armed while a release's reply is outstanding; dropped unanswered, wakes the
/// client's waiters (see [`Backend::release`]).
struct ReplyPending<'a> {
    notices: &'a Notices,
    answered: bool,
}

impl Drop for ReplyPending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.notices.wake_all_here();
        }
    }
}
