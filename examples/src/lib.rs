//! Shared plumbing for the examples: seed-style logging and finding (or starting) a
//! Redis to run against; and the services the examples run, as library modules so
//! the tests drive exactly the code the examples ship.

pub mod bank;
pub mod jobs;

use std::fmt;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lock_runtime::{LockClient, LockError};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Logs as the seed experiment did: `2017-08-21 12:10:19,045 - INFO - message`.
#[derive(Debug, Clone, Copy)]
pub struct SeedStyle;

impl<S, N> FormatEvent<S, N> for SeedStyle
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f");
        let level = match *event.metadata().level() {
            tracing::Level::WARN => "WARNING".to_owned(),
            level => level.to_string(),
        };
        write!(writer, "{now} - {level} - ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Seed-style logs on stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(SeedStyle)
        .init();
}

/// A Redis for an example to use: `REDIS_URL` if set; else the local server on
/// 127.0.0.1:6379 if it answers; else a private `redis-server` started from `PATH`
/// for this run (stopped when the returned value is dropped).
#[derive(Debug)]
pub struct DemoRedis {
    /// The URL to connect to.
    pub url: String,
    private: Option<(Child, tempfile::TempDir)>,
}

impl Drop for DemoRedis {
    fn drop(&mut self) {
        if let Some((child, _dir)) = self.private.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl DemoRedis {
    /// Finds or starts a Redis; the error says what to do when there is none.
    pub async fn find_or_start() -> Result<DemoRedis, String> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return DemoRedis::given(url).await;
        }
        DemoRedis::find_or_start_at(lock_runtime::DEFAULT_REDIS_URL, "redis-server").await
    }

    /// The server at `url` (from `REDIS_URL`), checked: a wrong or unreachable
    /// one fails here, before the demo starts, with the password redacted.
    pub async fn given(url: String) -> Result<DemoRedis, String> {
        LockClient::builder(url.as_str())
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|error| format!("REDIS_URL does not lead to a Redis: {error}"))?;
        Ok(DemoRedis { url, private: None })
    }

    /// Uses the server at `url` if it answers, else starts `binary` on a free port.
    pub async fn find_or_start_at(url: &str, binary: &str) -> Result<DemoRedis, String> {
        let url = url.to_owned();
        let probe = LockClient::builder(url.as_str())
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await;
        match probe {
            Ok(_) => return Ok(DemoRedis { url, private: None }),
            Err(error @ LockError::Connection { .. })
                if error.to_string().contains("authentication") =>
            {
                return Err(format!("{error}; set REDIS_URL with the credentials"));
            }
            Err(_) => {}
        }
        let private = start_private_redis(&url, binary)?;
        tracing::info!(
            "nothing answers at {url} and REDIS_URL is unset: started a private redis-server at {} for this run",
            private.url
        );
        Ok(private)
    }
}

fn start_private_redis(url: &str, binary: &str) -> Result<DemoRedis, String> {
    // A free port can be taken between finding it and the server binding it
    // (tests start servers side by side): then the server exits, and another
    // port is tried.
    let mut last = String::new();
    for _ in 0..5 {
        match start_private_redis_once(url, binary)? {
            Some(server) => return Ok(server),
            None => last = "exited at start (its port was taken meanwhile?)".to_owned(),
        }
    }
    Err(format!("the private redis-server {last}; tried 5 ports"))
}

/// `Ok(None)`: the server exited before it answered.
fn start_private_redis_once(url: &str, binary: &str) -> Result<Option<DemoRedis>, String> {
    let no_binary = |error: std::io::Error| {
        format!(
            "no Redis answers at {url} and REDIS_URL is unset, and `{binary}` cannot be run ({error}). \
             Install it (Debian/Ubuntu: `apt-get install -y redis-server`, macOS: `brew install redis`) \
             or set REDIS_URL=redis://host:port"
        )
    };
    let dir = tempfile::tempdir().map_err(|error| format!("cannot make a temp dir: {error}"))?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|error| format!("cannot find a free port: {error}"))?;
    let child = Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(no_binary)?;
    let url = format!("redis://127.0.0.1:{port}");
    let mut server = DemoRedis {
        url: url.clone(),
        private: Some((child, dir)),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some((child, _)) = server.private.as_mut()
            && !matches!(child.try_wait(), Ok(None))
        {
            return Ok(None);
        }
        // Answers PING as a Redis server: not some other process that took the port.
        let answers = redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(500)))
            .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection));
        if answers.is_ok() {
            return Ok(Some(server));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "the private redis-server on port {port} did not start within 10 s"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unused_url() -> String {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        format!("redis://127.0.0.1:{port}")
    }

    #[tokio::test]
    async fn starts_a_private_server_when_nothing_answers() {
        let redis = DemoRedis::find_or_start_at(&unused_url(), "redis-server").await;
        let redis = match redis {
            Ok(redis) => redis,
            Err(problem) => panic!("{problem}"),
        };
        assert!(redis.private.is_some());
        let connected = LockClient::connect(&redis.url).await;
        assert!(connected.is_ok(), "{:?}", connected.err());
    }

    #[tokio::test]
    async fn a_given_url_is_checked_before_the_demo_starts() {
        let url = unused_url().replace("redis://", "redis://app:s3cret@");
        let problem = DemoRedis::given(url).await.err().unwrap_or_default();
        assert!(problem.contains("REDIS_URL"), "{problem}");
        assert!(
            !problem.contains("s3cret"),
            "the password leaked: {problem}"
        );
        let malformed = DemoRedis::given("redis://:::".to_owned())
            .await
            .err()
            .unwrap_or_default();
        assert!(malformed.contains("REDIS_URL"), "{malformed}");
    }

    #[tokio::test]
    async fn without_a_binary_the_error_says_how_to_get_one() {
        let problem = DemoRedis::find_or_start_at(&unused_url(), "no-such-redis-server-binary")
            .await
            .err()
            .unwrap_or_default();
        assert!(
            problem.contains("apt-get install -y redis-server"),
            "{problem}"
        );
        assert!(problem.contains("REDIS_URL"), "{problem}");
    }
}
