use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions};
use tests::{RedisServer, free_port};
use tokio::time::Instant;

use crate::{client, ttl};

#[tokio::test]
async fn an_empty_name_is_invalid() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let error = locks.acquire("", &ttl(1_000)).await.unwrap_err();
    assert!(matches!(error, LockError::InvalidName { .. }), "{error}");
    assert!(error.to_string().contains("empty"), "{error}");
    let long = "n".repeat(lock_runtime::MAX_NAME_LEN + 1);
    let error = locks.run(&long, &ttl(1_000), async {}).await.unwrap_err();
    assert!(matches!(error, LockError::InvalidName { .. }), "{error}");
}

#[tokio::test]
async fn inconsistent_options_are_config_errors_naming_the_lock() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let cases = [
        LockOptions::new(Duration::ZERO),
        LockOptions::new(Duration::from_secs(1_000_000_001)),
        LockOptions::new(Duration::MAX),
        ttl(1_000).heartbeat(Duration::from_secs(1)),
        ttl(1_000).heartbeat(Duration::ZERO),
        ttl(1_000)
            .min_hold(Duration::from_secs(5))
            .max_hold(Duration::from_secs(1)),
    ];
    for options in cases {
        let error = locks.acquire("job", &options).await.unwrap_err();
        assert!(matches!(error, LockError::Config { .. }), "{error}");
        assert!(error.to_string().contains("lock `job`"), "{error}");
    }
}

#[tokio::test]
async fn a_malformed_url_is_a_config_error() {
    for (url, said) in [
        ("not a url", "no scheme"),
        ("http://127.0.0.1:6379", "scheme `http`"),
        ("redis://127.0.0.1:99999999", "port `99999999`"),
        ("redis://:6379", "no host"),
    ] {
        let error = LockClient::connect(url).await.unwrap_err();
        assert!(matches!(error, LockError::Config { .. }), "{url}: {error}");
        let message = error.to_string();
        assert!(message.contains("Redis URL"), "{message}");
        assert!(message.contains(said), "{url}: {message}");
        assert!(!message.contains("InvalidClientConfig"), "{message}");
    }
    let error = LockClient::connect("redis://user:hunter2@bad host/")
        .await
        .unwrap_err();
    assert!(
        !error.to_string().contains("hunter2"),
        "password leaked: {error}"
    );
}

#[tokio::test]
async fn nothing_listening_is_a_connection_error_within_the_timeout() {
    let port = free_port();
    let started = Instant::now();
    let error = LockClient::builder(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(error, LockError::Connection { .. }), "{error}");
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}

/// A server that accepts the connection but never answers (paused) must not hang
/// the caller past the connect timeout.
#[tokio::test]
async fn a_silent_server_is_a_connection_error_within_the_timeout() {
    let server = RedisServer::start();
    server.pause();
    let started = Instant::now();
    let error = LockClient::builder(server.url())
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    let took = started.elapsed();
    server.resume();
    assert!(took < Duration::from_millis(1_500), "{took:?}");
    assert!(matches!(error, LockError::Connection { .. }), "{error}");
    assert!(error.to_string().contains("connect timeout"), "{error}");
}

#[tokio::test]
async fn a_wrong_or_missing_password_is_an_authentication_error() {
    let server = RedisServer::start_with(&["--requirepass", "right"]);
    for url in [server.url_with_password("wrong"), server.url()] {
        let error = LockClient::connect(&url).await.unwrap_err();
        assert!(matches!(error, LockError::Connection { .. }), "{error}");
        assert!(
            error.to_string().contains("authentication failed"),
            "{url}: {error}"
        );
        assert!(
            !error.to_string().contains("wrong"),
            "password leaked: {error}"
        );
    }
    let locks = client(&server.url_with_password("right")).await;
    locks.run("authed", &ttl(1_000), async {}).await.unwrap();
}

#[tokio::test]
async fn rediss_with_a_private_ca_works_and_an_untrusted_certificate_is_refused() {
    let server = RedisServer::start_tls();
    let ca = server.tls_ca().unwrap().to_vec();
    let locks = LockClient::builder(server.url())
        .tls_root_certificate(ca)
        .connect()
        .await
        .unwrap();
    let fenced = locks
        .run_with("tls", &ttl(1_000).fencing(true), |lock| async move {
            lock.fencing_token()
        })
        .await
        .unwrap();
    assert!(fenced.is_some());

    // Without the CA the server's certificate is not trusted: a clear error.
    let error = LockClient::builder(server.url())
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(error, LockError::Connection { .. }), "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
}

/// A cluster seed list whose nodes are all down is a clear connection error,
/// naming them, within the connect timeout; the password stays hidden.
#[tokio::test]
async fn a_seed_list_of_servers_that_are_all_down_is_a_connection_error() {
    let ports = [tests::free_port(), tests::free_port(), tests::free_port()];
    let hosts: Vec<String> = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let started = Instant::now();
    let error = LockClient::builder(format!("redis://user:secret@{}", hosts.join(",")))
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, LockError::Connection { .. }), "{error}");
    assert!(error.to_string().contains(&hosts.join(",")), "{error}");
    assert!(
        !error.to_string().contains("secret"),
        "password leaked: {error}"
    );
}
