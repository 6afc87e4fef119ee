//! A process that drops a guard and exits leaves the lock free, not held
//! until its ttl.

use std::process::Command;

use tests::RedisServer;

/// Runs `drop_and_exit` in `mode` on lock `name`, and returns the lease key's
/// PTTL once the process is gone (-2: no key, the lock is free).
fn pttl_after_exit(server: &RedisServer, name: &str, mode: &str) -> i64 {
    let output = Command::new(env!("CARGO_BIN_EXE_drop_and_exit"))
        .args([&server.url(), name, mode])
        .output()
        .expect("run drop_and_exit");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("DROPPED"),
        "drop_and_exit {mode}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    redis::cmd("PTTL")
        .arg(format!("lock:{{{name}}}"))
        .query(&mut server.connection())
        .expect("PTTL")
}

#[test]
fn a_guard_dropped_in_sync_code_is_released_before_exit() {
    let server = RedisServer::start();
    assert_eq!(pttl_after_exit(&server, "exit-sync", "sync"), -2);
}

#[test]
fn flush_releases_finishes_a_dropped_guards_release_before_exit() {
    let server = RedisServer::start();
    assert_eq!(pttl_after_exit(&server, "exit-flush", "async-flush"), -2);
}
