//! The bank example's router, served on a free port against a test Redis, driven
//! over HTTP the way production traffic would drive it.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use examples::bank::{
    AppState, Receipt, TransferRequest, balance_key, prometheus, router, with_metrics,
};
use lock_runtime::{LockClient, LockOptions};
use reqwest::StatusCode;
use tests::RedisServer;
use tokio::time::Instant;

struct Bank {
    server: RedisServer,
    address: SocketAddr,
    http: reqwest::Client,
}

async fn start_bank() -> Bank {
    let server = RedisServer::start();
    let locks = LockClient::connect(&server.url()).await.unwrap();
    let redis = redis::Client::open(server.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = with_metrics(router(AppState { locks, redis }), prometheus().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
    Bank {
        server,
        address,
        http: reqwest::Client::new(),
    }
}

impl Bank {
    fn set_balance(&self, id: u64, balance: i64) {
        let () = redis::cmd("SET")
            .arg(balance_key(id))
            .arg(balance)
            .query(&mut self.server.connection())
            .unwrap();
    }

    fn balance(&self, id: u64) -> i64 {
        redis::cmd("GET")
            .arg(balance_key(id))
            .query::<Option<i64>>(&mut self.server.connection())
            .unwrap()
            .unwrap_or(0)
    }

    async fn transfer(&self, from: u64, to: u64, amount: i64, work_ms: u64) -> reqwest::Response {
        self.http
            .post(format!("http://{}/accounts/{from}/transfer", self.address))
            .json(&TransferRequest {
                to,
                amount,
                simulate_work_ms: work_ms,
            })
            .send()
            .await
            .unwrap()
    }
}

/// 200 concurrent transfers out of one account, and 50 out of another: every
/// successful transfer is accounted for exactly (no lost update).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_lose_no_update() {
    let bank = std::sync::Arc::new(start_bank().await);
    bank.set_balance(1, 10_000);
    bank.set_balance(3, 10_000);
    let mut requests = Vec::new();
    for (from, to, count) in [(1, 2, 200), (3, 4, 50)] {
        for _ in 0..count {
            let bank = std::sync::Arc::clone(&bank);
            requests.push(tokio::spawn(async move {
                let response = bank.transfer(from, to, 1, 0).await;
                (from, response.status())
            }));
        }
    }
    let mut succeeded = std::collections::HashMap::<u64, i64>::new();
    for request in requests {
        let (from, status) = request.await.unwrap();
        match status {
            StatusCode::OK => *succeeded.entry(from).or_default() += 1,
            StatusCode::LOCKED => {} // waited 2 s without a turn: documented, not a failure
            other => panic!("unexpected status {other}"),
        }
    }
    let (done_1, done_3) = (succeeded[&1], succeeded[&3]);
    assert!(
        done_1 >= 100 && done_3 >= 25,
        "most transfers should get a turn: {succeeded:?}"
    );
    assert_eq!(bank.balance(1), 10_000 - done_1);
    assert_eq!(bank.balance(2), done_1);
    assert_eq!(bank.balance(3), 10_000 - done_3);
    assert_eq!(bank.balance(4), done_3);
}

/// Transfers out of different accounts hold different locks and run side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_on_different_accounts_run_concurrently() {
    let bank = start_bank().await;
    bank.set_balance(5, 100);
    bank.set_balance(6, 100);
    let started = Instant::now();
    let (a, b) = tokio::join!(bank.transfer(5, 9, 1, 600), bank.transfer(6, 9, 1, 600));
    let took = started.elapsed();
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    // One after the other would take at least 1.2 s.
    assert!(took < Duration::from_millis(1_100), "took {took:?}");
    let receipt: Receipt = a.json().await.unwrap();
    assert_eq!(receipt.balance, 99);
}

/// A request that cannot get the account within its 2 s wait gets 423 Locked with a
/// Retry-After from the holder's remaining lease.
#[tokio::test]
async fn a_request_that_waits_too_long_gets_423_with_retry_after() {
    let bank = start_bank().await;
    bank.set_balance(7, 100);
    let holder = LockClient::connect(&bank.server.url()).await.unwrap();
    let held = holder
        .acquire("account:7", &LockOptions::new(Duration::from_secs(10)))
        .await
        .unwrap();
    let started = Instant::now();
    let response = bank.transfer(7, 8, 1, 0).await;
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::LOCKED);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    let body = response.text().await.unwrap();
    assert!(body.contains("account:7"), "{body}");
    assert_eq!(bank.balance(7), 100, "nothing moved");
    held.release().await.unwrap();
}

/// A client that disconnects mid-request: the handler future is dropped, and the
/// account's lock is free long before its 10 s ttl.
#[tokio::test]
async fn a_client_that_disconnects_frees_the_lock_promptly() {
    let bank = start_bank().await;
    bank.set_balance(8, 100);
    let body = r#"{"to": 9, "amount": 1, "simulate_work_ms": 30000}"#;
    let request = format!(
        "POST /accounts/8/transfer HTTP/1.1\r\nhost: bank\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut connection = std::net::TcpStream::connect(bank.address).unwrap();
    connection.write_all(request.as_bytes()).unwrap();
    let key = "lock:{account:8}";
    let exists = |server: &RedisServer| -> bool {
        redis::cmd("EXISTS")
            .arg(key)
            .query::<i64>(&mut server.connection())
            .unwrap()
            == 1
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !exists(&bank.server) {
        assert!(Instant::now() < deadline, "the handler never took the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(connection);
    let disconnected = Instant::now();
    while exists(&bank.server) {
        assert!(
            disconnected.elapsed() < Duration::from_secs(2),
            "the lock outlived the disconnected request"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        bank.balance(8),
        100,
        "the transfer was abandoned before writing"
    );
}

/// `/metrics` shows the lock metrics in Prometheus's text format once a
/// transfer ran (the scrape the README shows).
#[tokio::test]
async fn metrics_are_scraped_at_metrics() {
    let bank = start_bank().await;
    bank.set_balance(9, 100);
    assert_eq!(bank.transfer(9, 10, 5, 0).await.status(), StatusCode::OK);
    let scrape = bank
        .http
        .get(format!("http://{}/metrics", bank.address))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = scrape.text().await.unwrap();
    for series in [
        "lock_acquire_total{outcome=\"acquired\"}",
        "lock_acquire_duration_seconds",
        "lock_hold_duration_seconds",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
}
