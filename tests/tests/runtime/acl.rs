//! Least privilege: the ACL rule the README documents is enough for every
//! lock operation and `lockctl`, and a narrower one fails at connect, naming
//! what is denied, before the client can take a lock it could not release.

use std::process::Command;
use std::time::Duration;

use lock_runtime::{LockClient, LockError, Mode, Wait};
use tests::RedisServer;

use super::ttl;

/// A server with user `locks` (password `pw`) allowed `rule`.
fn server_with_user(rule: &str) -> (RedisServer, String) {
    let server = RedisServer::start();
    let mut acl = redis::cmd("ACL");
    acl.arg("SETUSER").arg("locks").arg("on").arg(">pw");
    acl.arg(rule.split(' ').collect::<Vec<_>>());
    let () = acl.query(&mut server.connection()).unwrap();
    let url = format!("redis://locks:pw@127.0.0.1:{}", server.port());
    (server, url)
}

#[test]
fn the_readme_documents_the_rule_the_client_checks() {
    let readme = include_str!("../../../README.md");
    let rule = lock_runtime::acl_rule("lock:");
    assert!(readme.contains(&rule), "README lacks `{rule}`");
}

#[tokio::test]
async fn the_documented_rule_is_enough_for_every_operation_and_lockctl() {
    let (server, url) = server_with_user(&lock_runtime::acl_rule("lock:"));
    let locks = LockClient::connect(&url).await.unwrap();
    let rival = LockClient::connect(&url).await.unwrap();
    // Held past its ttl (extended), then handed to a waiter.
    let guard = locks.acquire("acl", &ttl(600).fencing(true)).await.unwrap();
    let waiter = tokio::spawn({
        let rival = rival.clone();
        async move {
            rival
                .acquire("acl", &ttl(5_000).wait(Wait::For(Duration::from_secs(10))))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(guard.is_held(), "extended past its ttl");
    guard.release().await.unwrap();
    let handed = waiter.await.unwrap().unwrap();
    handed.release().await.unwrap();
    // The shapes, and a set taken and released together.
    for options in [
        ttl(5_000).permits(2),
        ttl(5_000).mode(Mode::Read),
        ttl(5_000).mode(Mode::Write),
    ] {
        locks
            .acquire("acl-shape", &options)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    locks
        .acquire_all(["acl-a", "acl-b"], &ttl(5_000))
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    // lockctl as that user: list, show, release.
    let held = locks.acquire("acl-ops", &ttl(30_000)).await.unwrap();
    let lockctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lockctl_cli"))
            .args(["--url", url.as_str()])
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["list"][..],
        &["show", "acl-ops"],
        &["release", "acl-ops", "--yes"],
    ] {
        let output = lockctl(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(!locks.inspect("acl-ops").await.unwrap().is_held());
    drop(held);
    // Nothing left behind by the probes.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("lock:{probe:*")
        .query(&mut server.connection())
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test]
async fn a_narrower_rule_fails_at_connect_naming_what_is_denied() {
    let rule = lock_runtime::acl_rule("lock:");
    for (narrower, named) in [
        (rule.replace(" +zrange", ""), "ZRANGE"),
        (rule.replace(" +hmget", ""), "HMGET"),
        (rule.replace("&lock:*", "&other:*"), "PUBLISH"),
        (rule.replace("~lock:*", "~lock:{invoice*"), "SET"),
        (rule.replace(" +evalsha", ""), "EVALSHA"),
        (rule.replace(" +script|load", ""), "SCRIPT LOAD"),
    ] {
        let (_server, url) = server_with_user(&narrower);
        let error = LockClient::connect(&url).await.err();
        let Some(LockError::Config { reason, .. }) = &error else {
            panic!("{named}: {error:?}");
        };
        assert!(reason.contains(named), "{named}: {reason}");
        assert!(reason.contains("ACL SETUSER"), "{reason}");
    }
}

/// A user allowed only some lock names fails the check (it asks about keys
/// of its own), and works with the check turned off; a read-only account
/// can `lockctl list`/`show`, but `release` is refused at connect.
#[tokio::test]
async fn the_check_can_be_turned_off_and_lockctl_reads_with_read_only_rights() {
    let rule = lock_runtime::acl_rule("lock:").replace("~lock:*", "~lock:{billing:*");
    let (server, url) = server_with_user(&rule);
    assert!(LockClient::connect(&url).await.is_err());
    let locks = LockClient::builder(url.clone())
        .check_permissions(false)
        .connect()
        .await
        .unwrap();
    let guard = locks.acquire("billing:1", &ttl(30_000)).await.unwrap();

    let reader = "resetkeys ~lock:* resetchannels -@all +ping +info +scan +evalsha +script|load +time +type +get +pttl +zrange +hmget";
    let mut acl = redis::cmd("ACL");
    acl.arg("SETUSER").arg("reader").arg("on").arg(">pw");
    acl.arg(reader.split(' ').collect::<Vec<_>>());
    let () = acl.query(&mut server.connection()).unwrap();
    let reader_url = format!("redis://reader:pw@127.0.0.1:{}", server.port());
    let lockctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lockctl_cli"))
            .args(["--url", reader_url.as_str()])
            .args(args)
            .output()
            .unwrap()
    };
    let listed = lockctl(&["list"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("billing:1"));
    let release = lockctl(&["release", "billing:1", "--yes"]);
    assert_eq!(release.status.code(), Some(1));
    let text = String::from_utf8_lossy(&release.stderr);
    assert!(text.contains("may not run"), "{text}");
    assert!(guard.is_held());
    guard.release().await.unwrap();
}
