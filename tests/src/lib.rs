//! Test support: real `redis-server` processes on free loopback ports (or unix
//! sockets), each in its own temporary directory, killed on drop.
//!
//! Tests never touch a server they did not start, so they run in parallel and can
//! pause (`SIGSTOP`), kill and restart their server at will.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

mod cluster;
pub mod holds;
mod quorum;
mod sentinel;
pub use cluster::{RedisCluster, free_cluster_port};
pub use quorum::RedisQuorum;
pub use sentinel::{MASTER_NAME, RedisSentinels};

/// A `redis-server` process owned by one test.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    socket: Option<PathBuf>,
    extra_args: Vec<String>,
    /// The CA certificate (PEM) when the server speaks only TLS.
    tls_ca: Option<Vec<u8>>,
    /// Run the server on this CPU core only (`taskset`), for benchmarks.
    pin_core: Option<u32>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a server pinned to one CPU core with `taskset` (for benchmarks; falls
    /// back to unpinned where `taskset` is missing).
    pub fn start_pinned(core: u32) -> RedisServer {
        let has_taskset = has_taskset();
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut server = RedisServer {
            child: None,
            port: 0,
            socket: None,
            extra_args: Vec::new(),
            tls_ca: None,
            pin_core: has_taskset.then_some(core),
            dir,
        };
        server.spawn_on_a_free_port();
        server
    }

    /// The core the server is pinned to, if it is.
    pub fn pinned_core(&self) -> Option<u32> {
        self.pin_core
    }

    /// Starts a server with extra command-line settings (e.g. `["--requirepass", "pw"]`).
    pub fn start_with(args: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut server = RedisServer {
            child: None,
            port: 0,
            socket: None,
            extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
            tls_ca: None,
            pin_core: None,
            dir,
        };
        server.spawn_on_a_free_port();
        server
    }

    /// Starts a server on `port` with extra command-line settings (on one CPU
    /// core with `pin_core`, where `taskset` exists); panics if it does not
    /// start (e.g. the port was taken meanwhile).
    pub fn start_on(port: u16, args: &[&str], pin_core: Option<u32>) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let mut server = RedisServer {
            child: None,
            port,
            socket: None,
            extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
            tls_ca: None,
            pin_core: pin_core.filter(|_| has_taskset()),
            dir,
        };
        assert!(server.spawn(), "redis-server did not start on port {port}");
        server
    }

    /// The server's TCP port (0 for a unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts a server listening only on a unix socket in its temp dir.
    pub fn start_unix() -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let socket = dir.path().join("redis.sock");
        let mut server = RedisServer {
            child: None,
            port: 0,
            socket: Some(socket),
            extra_args: Vec::new(),
            tls_ca: None,
            pin_core: None,
            dir,
        };
        assert!(
            server.spawn(),
            "redis-server on a unix socket did not start"
        );
        server
    }

    /// Starts a server that speaks only TLS, with a certificate for 127.0.0.1 signed
    /// by a fresh CA (see [`tls_ca`](Self::tls_ca)); needs `openssl` on `PATH`.
    pub fn start_tls() -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis-server");
        let path = |name: &str| dir.path().join(name).display().to_string();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    &path("ca.key"),
                    "-out",
                    &path("ca.crt"),
                    "-days",
                    "2",
                    "-subj",
                    "/CN=lock-runtime test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    &path("server.key"),
                    "-out",
                    &path("server.csr"),
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            path("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write san.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.crt"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-out",
            &path("server.crt"),
            "-days",
            "2",
            "-extfile",
            &path("san.ext"),
        ]);
        let tls_ca = std::fs::read(path("ca.crt")).expect("read the CA certificate");
        let extra_args = [
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        let mut server = RedisServer {
            child: None,
            port: 0,
            socket: None,
            extra_args,
            tls_ca: Some(tls_ca),
            pin_core: None,
            dir,
        };
        server.spawn_on_a_free_port();
        server
    }

    /// The CA certificate (PEM) that signed a TLS server's certificate.
    pub fn tls_ca(&self) -> Option<&[u8]> {
        self.tls_ca.as_deref()
    }

    /// The URL to reach this server.
    pub fn url(&self) -> String {
        match (&self.socket, &self.tls_ca) {
            (Some(socket), _) => format!("redis+unix://{}", socket.display()),
            (None, Some(_)) => format!("rediss://127.0.0.1:{}", self.port),
            (None, None) => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The URL with credentials.
    pub fn url_with_password(&self, password: &str) -> String {
        format!("redis://:{password}@127.0.0.1:{}", self.port)
    }

    /// Whether the server runs (it was not killed, or was restarted).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// Freezes the server (`SIGSTOP`): connections stay open, nothing is answered.
    pub fn pause(&self) {
        signal(rustix::process::Signal::STOP, self.pid());
    }

    /// Thaws a paused server (`SIGCONT`).
    pub fn resume(&self) {
        signal(rustix::process::Signal::CONT, self.pid());
    }

    /// Kills the server (`SIGKILL`) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(rustix::process::Signal::CONT, child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a fresh one (empty data) on the same address.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "redis-server did not restart");
            sleep(Duration::from_millis(50));
        }
    }

    /// A plain synchronous connection for inspecting and poking the server.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("connect to the test server")
    }

    /// Starts the server on a free port, trying another if it was taken meanwhile.
    fn spawn_on_a_free_port(&mut self) {
        for _ in 0..10 {
            self.port = free_port();
            if self.spawn() {
                return;
            }
        }
        panic!("could not start redis-server on a free port after 10 tries");
    }

    /// How many lock scripts (`EVALSHA`/`EVAL` calls: acquire, extend, release)
    /// the server has run.
    pub fn script_calls(&self) -> u64 {
        self.command_calls("evalsha") + self.command_calls("eval")
    }

    /// How many times the server ran `command` (lower case) without an error,
    /// counting the calls made from inside scripts too (Redis's `INFO
    /// commandstats`; a script's first `EVALSHA` after a restart fails with
    /// `NOSCRIPT` and is not counted).
    pub fn command_calls(&self, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.connection())
            .expect("INFO commandstats");
        let prefix = format!("cmdstat_{command}:");
        let field = |stats: &str, name: &str| -> u64 {
            stats
                .split(',')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .and_then(|value| value.parse().ok())
                .unwrap_or(0)
        };
        info.lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .map(|stats| field(stats, "calls").saturating_sub(field(stats, "failed_calls")))
            .sum()
    }

    fn spawn(&mut self) -> bool {
        let mut command = match self.pin_core {
            Some(core) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["-c", &core.to_string(), "redis-server"]);
                taskset
            }
            None => Command::new("redis-server"),
        };
        command
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        match (&self.socket, &self.tls_ca) {
            (Some(socket), _) => {
                command.args(["--port", "0", "--unixsocket"]).arg(socket);
            }
            (None, Some(_)) => {
                command.args(["--port", "0", "--tls-port", &self.port.to_string()]);
            }
            (None, None) => {
                command.args(["--port", &self.port.to_string()]);
            }
        }
        command
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => panic!(
                "cannot run redis-server ({error}); install it (e.g. `apt-get install -y redis-server`)"
            ),
        };
        // Ready when it answers PING; give up if it exits (port taken) or stays silent.
        let deadline = Instant::now() + Duration::from_secs(10);
        let probe_url = self.url();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            let ready = if self.tls_ca.is_some() {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                ping(&probe_url)
            };
            if ready {
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `taskset` (util-linux) is there to pin a server to a core.
fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// True if something answers PING at `url` (an auth error counts: it is up).
fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    match redis::cmd("PING").query::<String>(&mut connection) {
        Ok(_) => true,
        Err(error) => error.code().is_some(),
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port")
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (needed for the TLS test)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn signal(which: rustix::process::Signal, pid: u32) {
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("a server's pid");
    rustix::process::kill_process(target, which)
        .unwrap_or_else(|error| panic!("signal {which:?} to {pid}: {error}"));
}
