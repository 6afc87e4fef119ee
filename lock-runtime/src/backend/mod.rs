//! The seam between the lock engine and Redis: the lock operations (try to
//! acquire, extend, release) and the notices that wake waiters, on whatever
//! topology the client was connected to.
//!
//! The engine (`crate::engine`) knows only [`Backend`]. Every topology runs the
//! same scripts (`scripts.rs`, their formats typed in `protocol.rs`) and differs
//! only in how a command reaches the node that owns its key ([`Commands`]) and
//! where notices come from (`notices.rs`): one server today (`single.rs`).

mod connect;
mod contention;
mod notices;
mod protocol;
mod scripts;
mod single;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

pub(crate) use connect::redact_url;
use contention::Contention;
pub(crate) use notices::{Notices, Subscription};
pub(crate) use protocol::{Attempt, AttemptRequest, Handoff, NextTask, Released};
use single::SingleServer;

use crate::error::LockError;
use crate::token::new_token;

/// How to reach Redis: what a [`LockClientBuilder`](crate::LockClientBuilder) collects.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) tls_root_certificate: Option<Vec<u8>>,
}

/// The command connection of one topology: each command goes to the node that
/// owns its key. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub(crate) enum Commands {
    Single(ConnectionManager),
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Commands::Single(connection) => connection.req_packed_command(cmd),
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
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Commands::Single(connection) => connection.get_db(),
        }
    }
}

/// Where a client's locks live, and the lock operations on them. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Backend {
    inner: Arc<Inner>,
}

struct Inner {
    commands: Commands,
    server: String,
    prefix: String,
    notices: Arc<Notices>,
    contention: Contention,
    /// The runtime the connections live on, where background work is spawned.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("server", &self.inner.server)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Connects as `settings` say, on the current tokio runtime; fails with a
    /// clear [`LockError`] within the connect timeout.
    pub(crate) async fn connect(settings: &Settings) -> Result<Backend, LockError> {
        let redis = connect::open_client(&settings.url, settings.tls_root_certificate.clone())?;
        let server = redis.get_connection_info().addr().to_string();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LockError::Config {
            subject: format!("client for {server}"),
            reason: "LockClient must be created inside a tokio runtime".to_owned(),
        })?;
        if settings.connect_timeout.is_zero() || settings.response_timeout.is_zero() {
            return Err(LockError::Config {
                subject: format!("client for {server}"),
                reason: "connect and response timeouts must be > 0".to_owned(),
            });
        }
        let single = SingleServer::connect(&redis, &server, settings).await?;
        tracing::debug!(%server, prefix = %settings.prefix, "lock client connected");
        // Where this client's waiters are told of handoffs: unique per client.
        let channel = format!("{}notices:{}", settings.prefix, new_token("notices")?);
        let notices = Arc::new(Notices::new(
            redis,
            channel,
            settings.connect_timeout,
            runtime.clone(),
        ));
        Ok(Backend {
            inner: Arc::new(Inner {
                commands: Commands::Single(single.commands),
                server,
                prefix: settings.prefix.clone(),
                notices,
                contention: Contention::default(),
                runtime,
            }),
        })
    }

    /// The server (`host:port` or socket path, no credentials).
    pub(crate) fn server(&self) -> &str {
        &self.inner.server
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub(crate) fn notices(&self) -> &Arc<Notices> {
        &self.inner.notices
    }

    /// The runtime the client's connections live on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    /// Whether the lock at `key` was lately found busy or handed on.
    pub(crate) fn recently_contended(&self, key: &str) -> bool {
        self.inner.contention.recent(key)
    }

    pub(crate) fn mark_contended(&self, key: &str) {
        self.inner.contention.mark(key);
    }

    /// One acquire attempt.
    pub(crate) async fn try_acquire(&self, request: &AttemptRequest<'_>) -> RedisResult<Attempt> {
        let mut connection = self.inner.commands.clone();
        // A lock this client has not seen contended lately is most likely free:
        // try a plain SET NX first, which is what the script would do then, at a
        // fraction of the server's cost. Busy, fall through to the script (which
        // queues us and reports the holder's ttl). Fencing and FIFO always need
        // the script.
        let fencing = request.fence_lifetime_ms > 0;
        if request.number == 1 && !request.fair && !fencing && !self.recently_contended(request.key)
        {
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

    /// Compare-and-`PEXPIRE`: `true` if the key still held `token` and now lasts
    /// `ttl` more.
    pub(crate) async fn extend(&self, key: &str, token: &str, ttl: Duration) -> RedisResult<bool> {
        let mut connection = self.inner.commands.clone();
        let cmd = protocol::extend(key, token, ttl);
        let extended: i64 = scripts::run(&scripts::EXTEND, &cmd, &mut connection).await?;
        Ok(extended == 1)
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
        let mut connection = self.inner.commands.clone();
        let notices = &self.inner.notices;
        // Notices for this client's own waiters come back in the reply: if it is
        // lost (an error, or this future dropped mid-request), wake them all, to
        // find out with a request each whether the lock is now theirs.
        let mut reply = ReplyPending {
            notices,
            answered: false,
        };
        let cmd = protocol::release(key, token, notices.channel(), next);
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
