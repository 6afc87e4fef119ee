use std::process::Command;

use tests::{RedisServer, free_port};

fn run_with_redis_url(url: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_default_client"))
        .env("REDIS_URL", url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The default client is made lazily from `REDIS_URL` and keeps working after the
/// runtime that first used it is gone, also for `#[redis_locked]` without `client`.
#[test]
fn the_default_client_comes_from_redis_url_and_outlives_runtimes() {
    let server = RedisServer::start();
    let stdout = run_with_redis_url(&server.url());
    assert_eq!(stdout, "OK 1\nOK 2\nOK 3\nOK 4\n");
}

#[test]
fn an_unreachable_default_redis_is_a_clear_error() {
    let stdout = run_with_redis_url(&format!("redis://127.0.0.1:{}", free_port()));
    assert!(
        stdout.starts_with("ERROR cannot connect to Redis at 127.0.0.1:"),
        "{stdout}"
    );
}
