//! A cluster whose nodes admit only a named user with a password, allowed the
//! least-privilege rule the README documents: the credentials in the URL
//! reach every node the client finds (commands and notices), the rule is
//! enough, and missing or wrong credentials are clear errors.

use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions, Wait};
use tests::RedisCluster;
use tokio::time::Instant;

use crate::{spread_names, wait_then_release};

const USER: &str = "locker";
const PASSWORD: &str = "s3cret";

/// `redis://locker:s3cret@127.0.0.1:<port>`.
fn url_as_user(port: u16, password: &str) -> String {
    format!("redis://{USER}:{password}@127.0.0.1:{port}")
}

/// Adds the user on every node, allowed only what the README's "Least
/// privilege" gives a Cluster's service, then turns the default
/// (password-less) user off: from here on, only the user's credentials get in.
fn admit_only_the_user(cluster: &RedisCluster) {
    let rule = format!("{} +cluster|slots +asking", lock_runtime::acl_rule("lock:"));
    for node in cluster.nodes() {
        let mut connection = node.connection();
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(USER)
            .arg("on")
            .arg(format!(">{PASSWORD}"))
            .arg(rule.split(' ').collect::<Vec<_>>())
            .query::<()>(&mut connection)
            .expect("ACL SETUSER locker");
        redis::cmd("ACL")
            .arg(&["SETUSER", "default", "off"])
            .query::<()>(&mut connection)
            .expect("ACL SETUSER default off");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_every_node() {
    let cluster = RedisCluster::start(3, 0);
    // Each name with its slot's primary, found while the harness can still
    // ask the nodes without a password.
    let names: Vec<(String, u16)> = {
        let plain = LockClient::connect(&cluster.url()).await.unwrap();
        spread_names(&cluster, &plain)
            .into_iter()
            .map(|name| {
                let primary = cluster.primary_of(cluster.slot(&plain.key_for(&name)));
                (name, primary.port())
            })
            .collect()
    };
    admit_only_the_user(&cluster);
    let port = cluster.nodes()[0].port();

    for url in [cluster.url(), url_as_user(port, "wrong")] {
        let started = Instant::now();
        let error = LockClient::connect(&url)
            .await
            .expect_err("no way in without the user's password");
        assert!(
            error.to_string().contains("authentication failed"),
            "{url}: {error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "within the connect timeout"
        );
    }

    let locks = LockClient::connect(&url_as_user(port, PASSWORD))
        .await
        .expect("connect as the user, given one node");
    let options = LockOptions::new(Duration::from_secs(10)).fencing(true);
    for (name, primary) in &names {
        let guard = locks.acquire(name, &options).await.expect("acquire");
        let key = locks.key_for(name);
        let mut connection = redis::Client::open(url_as_user(*primary, PASSWORD))
            .and_then(|client| client.get_connection())
            .unwrap();
        let held: Option<String> = redis::cmd("GET").arg(&key).query(&mut connection).unwrap();
        assert!(held.is_some(), "{name}: the lease is on its slot's primary");
        guard.release().await.expect("release");
    }

    // A waiter, woken by a release notice on the lock's node: its notice
    // connection authenticated too.
    let waiter = LockClient::connect(&format!(
        "redis://{USER}:{PASSWORD}@{}",
        cluster
            .nodes()
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect::<Vec<_>>()
            .join(",")
    ))
    .await
    .expect("connect as the user with a seed list");
    let name = names.last().unwrap().0.clone();
    let held = locks.acquire(&name, &options).await.unwrap();
    let waiting = wait_then_release(&waiter, &name, &options, Duration::from_secs(20));
    let busy = waiter
        .acquire(&name, &options.clone().wait(Wait::TryOnce))
        .await;
    assert!(matches!(busy, Err(LockError::Busy { .. })), "{busy:?}");
    let released = Instant::now();
    held.release().await.unwrap();
    let (acquired, _) = waiting.await.unwrap().expect("the waiter gets the lock");
    assert!(acquired > released, "the waiter got in after the release");
    // `list` (SCAN on every primary) works under the rule too.
    let listed = locks.list("*").await.expect("list as the user");
    assert!(listed.is_empty(), "{listed:?}");
}
