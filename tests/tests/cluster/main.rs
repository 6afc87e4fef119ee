//! lock-runtime on a Redis Cluster of real `redis-server` processes: one
//! cluster per test function (its nodes are stopped when the test ends, also
//! when it fails), shared by the scenarios that do not disturb it.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lock_runtime::{ClusterMode, LockClient, LockError, LockOptions, Wait};
use tests::{RedisCluster, RedisServer};
use tokio::time::Instant;

mod auth;
mod failover;

/// Runs `scenario`, reporting its name if it fails.
async fn scenario(name: &str, scenario: impl Future<Output = ()>) {
    let started = Instant::now();
    scenario.await;
    eprintln!("cluster scenario `{name}`: ok in {:?}", started.elapsed());
}

/// 16 lock names whose keys land on all three primaries, some with braces.
fn spread_names(cluster: &RedisCluster, locks: &LockClient) -> Vec<String> {
    let mut names: Vec<String> = (0..13).map(|i| format!("spread:{i}")).collect();
    names.extend(["}brace".to_owned(), "a{b}c".to_owned(), "{}".to_owned()]);
    let slots = names.iter().map(|name| cluster.slot(&locks.key_for(name)));
    assert_eq!(
        cluster.primaries_of(slots).len(),
        3,
        "names on every primary"
    );
    names
}

/// A task that waits up to `wait` for lock `name`, then releases it at once:
/// it ends with when it got the lock, and the fencing token it got.
fn wait_then_release(
    client: &LockClient,
    name: &str,
    options: &LockOptions,
    wait: Duration,
) -> tokio::task::JoinHandle<Result<(Instant, Option<u64>), LockError>> {
    let (client, name, options) = (client.clone(), name.to_owned(), options.clone());
    tokio::spawn(async move {
        let guard = client
            .acquire(&name, &options.wait(Wait::For(wait)))
            .await?;
        let acquired = Instant::now();
        let fence = guard.fencing_token();
        guard.release().await?;
        Ok((acquired, fence))
    })
}

/// Every notice channel subscribed on any node of the cluster.
fn notice_channels(cluster: &RedisCluster) -> usize {
    cluster
        .nodes()
        .iter()
        .map(|node| {
            let channels: Vec<String> = redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .arg("lock:notices:*")
                .query(&mut node.connection())
                .unwrap();
            channels.len()
        })
        .sum()
}

/// One cluster, scenarios that leave it as they found it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let counters = RedisServer::start();
    scenario("detected from one node", detected_from_one_node(&cluster)).await;
    scenario("seed list and modes", seed_list_and_modes(&cluster)).await;
    scenario(
        "braces keep a lock in one slot",
        braces_keep_a_lock_in_one_slot(&cluster),
    )
    .await;
    scenario(
        "woken across nodes",
        a_waiter_is_woken_by_a_release_on_another_node(&cluster),
    )
    .await;
    scenario(
        "re-sent scripts leave nothing behind",
        resent_scripts_leave_nothing_behind(&cluster),
    )
    .await;
    scenario(
        "shapes and sets over every primary",
        shapes_and_sets_over_every_primary(&cluster),
    )
    .await;
    scenario(
        "list and lockctl see every primary",
        list_sees_every_primary(&cluster),
    )
    .await;
    scenario(
        "exclusion over 4 processes",
        exclusion_over_four_processes(&cluster, &counters),
    )
    .await;
    // Last: it changes which primary serves a slot.
    scenario(
        "a lock whose slot migrates",
        a_lock_whose_slot_migrates(&cluster, &counters),
    )
    .await;
}

/// Given one node's address, the client finds the cluster and takes locks
/// whose keys live on every primary, not only on the node it was given.
async fn detected_from_one_node(cluster: &RedisCluster) {
    let locks = LockClient::connect(&cluster.url())
        .await
        .expect("connect to one node");
    let options = LockOptions::new(Duration::from_secs(5)).fencing(true);
    for name in spread_names(cluster, &locks) {
        let guard = locks
            .acquire(&name, &options)
            .await
            .expect("acquire on any primary");
        assert!(guard.fencing_token().is_some());
        let key = locks.key_for(&name);
        let primary = cluster.primary_of(cluster.slot(&key));
        let held: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query(&mut primary.connection())
            .unwrap();
        assert!(held.is_some(), "{name}: the lease is on its slot's primary");
        guard.release().await.expect("release");
        let held: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query(&mut primary.connection())
            .unwrap();
        assert_eq!(held, None, "{name}: released");
    }
}

async fn seed_list_and_modes(cluster: &RedisCluster) {
    let locks = LockClient::connect(&cluster.seed_list_url())
        .await
        .expect("connect with a seed list");
    locks
        .run("seeded", &LockOptions::new(Duration::from_secs(5)), async {
        })
        .await
        .expect("a lock through the seed list");
    let error = LockClient::builder(cluster.seed_list_url())
        .cluster(ClusterMode::Forbid)
        .connect()
        .await
        .expect_err("a seed list is a cluster");
    assert!(matches!(error, LockError::Config { .. }), "{error}");
    let plain = RedisServer::start();
    let error = LockClient::builder(plain.url())
        .cluster(ClusterMode::Require)
        .connect()
        .await
        .expect_err("a plain server is not a cluster");
    assert!(
        error.to_string().contains("not a Redis Cluster node"),
        "{error}"
    );
}

/// A name starting with `}` would give its lease key an empty hash tag (and
/// its fence and queue keys other slots): on a cluster it gets a tag of its
/// own, and fencing and queueing, whose scripts touch all the lock's keys, work.
async fn braces_keep_a_lock_in_one_slot(cluster: &RedisCluster) {
    let holder = LockClient::connect(&cluster.url()).await.unwrap();
    let waiter = LockClient::connect(&cluster.url()).await.unwrap();
    for name in ["}", "}x{y}", "{}", "a}"] {
        let key = holder.key_for(name);
        let slot = cluster.slot(&key);
        for suffix in [":fence", ":queue", ":waiters"] {
            assert_eq!(
                cluster.slot(&format!("{key}{suffix}")),
                slot,
                "{name:?}{suffix}"
            );
        }
        let options = LockOptions::new(Duration::from_secs(5)).fencing(true);
        let first = holder
            .acquire(name, &options)
            .await
            .expect("fenced acquire");
        let waiting = wait_then_release(&waiter, name, &options, Duration::from_secs(10));
        let fence = first.fencing_token();
        first.release().await.unwrap();
        let (_, next) = waiting
            .await
            .unwrap()
            .expect("the waiter is handed the lock");
        assert!(
            next > fence,
            "{name:?}: fencing tokens rise ({next:?} > {fence:?})"
        );
    }
}

/// The waiter's notice connection is on one node, the lock's primary another:
/// the release's notice still reaches it, long before its next poll (5 s).
async fn a_waiter_is_woken_by_a_release_on_another_node(cluster: &RedisCluster) {
    let holder = LockClient::connect(&cluster.url()).await.unwrap();
    let waiter = LockClient::connect(&cluster.url()).await.unwrap();
    let names = spread_names(cluster, &holder);
    let options = LockOptions::new(Duration::from_secs(30));
    let mut guards = Vec::new();
    for name in &names[..3] {
        guards.push(holder.acquire(name, &options).await.unwrap());
    }
    let mut waits = Vec::new();
    for name in &names[..3] {
        waits.push(wait_then_release(
            &waiter,
            name,
            &options,
            Duration::from_secs(20),
        ));
    }
    // Every waiter queued, and past its first wake-up: the next can only be
    // a release's notice or a poll seconds away.
    for name in &names[..3] {
        let queue = format!("{}:queue", holder.key_for(name));
        let primary = cluster.primary_of(cluster.slot(&queue));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let queued: usize = redis::cmd("ZCARD")
                .arg(&queue)
                .query(&mut primary.connection())
                .unwrap();
            if queued == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: the waiter never queued");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while notice_channels(cluster) == 0 {
        assert!(
            Instant::now() < deadline,
            "the waiter's notice channel never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (guard, wait) in guards.into_iter().zip(waits) {
        let released = Instant::now();
        guard.release().await.unwrap();
        let (acquired, _) = wait.await.unwrap().expect("the waiter gets the lock");
        assert!(
            acquired - released < Duration::from_millis(2_000),
            "woken by the notice, not a poll: {:?}",
            acquired - released
        );
    }
}

/// Semaphores, read/write locks and sets of names whose keys live on
/// different primaries: each lock's keys stay in its slot, and a set spans
/// slots (one request per name, all or nothing).
async fn shapes_and_sets_over_every_primary(cluster: &RedisCluster) {
    let locks = LockClient::connect(&cluster.url()).await.unwrap();
    let other = LockClient::connect(&cluster.url()).await.unwrap();
    let names = spread_names(cluster, &locks);
    let once = LockOptions::new(Duration::from_secs(30)).wait(Wait::TryOnce);
    for name in &names[..3] {
        let semaphore = once.clone().permits(2);
        let first = locks.acquire(name, &semaphore).await.unwrap();
        let second = other.acquire(name, &semaphore).await.unwrap();
        let third = other.acquire(name, &semaphore).await;
        assert!(
            matches!(third, Err(LockError::Busy { .. })),
            "{name}: {third:?}"
        );
        first.release().await.unwrap();
        second.release().await.unwrap();

        let read = once.clone().mode(lock_runtime::Mode::Read);
        let write = once.clone().mode(lock_runtime::Mode::Write);
        let readers = [
            locks.acquire(name, &read).await.unwrap(),
            other.acquire(name, &read).await.unwrap(),
        ];
        let writer = other.acquire(name, &write).await;
        assert!(
            matches!(writer, Err(LockError::Busy { .. })),
            "{name}: {writer:?}"
        );
        for reader in readers {
            reader.release().await.unwrap();
        }
        other
            .acquire(name, &write)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    let set = locks.acquire_all(&names, &once).await.unwrap();
    assert_eq!(set.names().len(), names.len());
    let overlap = other.acquire_all([&names[2], &names[9]], &once).await;
    assert!(
        matches!(overlap, Err(LockError::Busy { .. })),
        "{overlap:?}"
    );
    set.release().await.unwrap();
    other
        .acquire_all([&names[9], &names[2]], &once)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

/// `list` and `lockctl list` find the locks held on every primary (names
/// with braces included), and `inspect` reads each from its own node.
async fn list_sees_every_primary(cluster: &RedisCluster) {
    let locks = LockClient::builder(cluster.url())
        .holder_label("cluster-ops")
        .connect()
        .await
        .unwrap();
    let names = spread_names(cluster, &locks);
    let once = LockOptions::new(Duration::from_secs(30)).wait(Wait::TryOnce);
    let set = locks.acquire_all(&names, &once).await.unwrap();
    let listed: Vec<String> = locks
        .list("*")
        .await
        .unwrap()
        .into_iter()
        .map(|lock| lock.name)
        .collect();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected);
    let state = locks.inspect("}brace").await.unwrap();
    let who = state.holders[0].identity.as_ref().unwrap();
    assert_eq!(who.label.as_deref(), Some("cluster-ops"));
    let table = Command::new(env!("CARGO_BIN_EXE_lockctl_cli"))
        .args(["--url", &cluster.url(), "--json", "list"])
        .output()
        .unwrap();
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(
        text.matches("\"label\":\"cluster-ops\"").count(),
        names.len(),
        "{text}"
    );
    set.release().await.unwrap();
    assert!(locks.list("*").await.unwrap().is_empty());
}

/// 4 processes of 16 tasks each, given one node's address, do non-atomic
/// increments under 16 locks spread over all primaries: every counter exact.
async fn exclusion_over_four_processes(cluster: &RedisCluster, counters: &RedisServer) {
    let locks = LockClient::connect(&cluster.url()).await.unwrap();
    let names = spread_names(cluster, &locks);
    let rounds = 40;
    let mut children = Vec::new();
    for _ in 0..4 {
        children.push(
            Command::new(env!("CARGO_BIN_EXE_locked_increments"))
                .arg(cluster.url())
                .arg(counters.url())
                .args(["16", &rounds.to_string()])
                .args(&names)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a worker process"),
        );
    }
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|child| child.wait_with_output().expect("worker process"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for output in outputs {
        assert!(
            output.status.success(),
            "a worker failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Each task's rounds walk the names in turn from its own start.
    let mut expected = vec![0i64; names.len()];
    for task in 0..16 {
        for round in 0..rounds {
            expected[(task + round) % names.len()] += 4;
        }
    }
    for (name, expected) in names.iter().zip(expected) {
        let counted: Option<i64> = redis::cmd("GET")
            .arg(format!("counter:{name}"))
            .query(&mut counters.connection())
            .unwrap();
        assert_eq!(counted, Some(expected), "{name}: lost updates");
    }
}

/// The cluster connection sends a command again when its answer does not come
/// in time. Here the lock's primary is paused past the response timeout while
/// an acquire, then a release, are in flight, so each runs twice once it
/// resumes. Whatever each call reports, nothing is left held: the lock is free
/// soon after, and taken again at once.
async fn resent_scripts_leave_nothing_behind(cluster: &RedisCluster) {
    let locks = LockClient::builder(cluster.url())
        .response_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let name = "resent";
    let key = locks.key_for(name);
    let primary = cluster.primary_of(cluster.slot(&key));
    let options = LockOptions::new(Duration::from_secs(30)).wait(Wait::TryOnce);
    let held = || -> Option<String> {
        redis::cmd("GET")
            .arg(&key)
            .query(&mut primary.connection())
            .unwrap()
    };

    let sets = primary.command_calls("set");
    primary.pause();
    let acquire = {
        let (locks, options) = (locks.clone(), options.clone());
        tokio::spawn(async move { locks.acquire(name, &options).await })
    };
    // Past the response timeout, so the connection sends it again (a fault
    // injected by the clock: nothing can be observed while the server sleeps).
    tokio::time::sleep(Duration::from_millis(450)).await;
    primary.resume();
    let acquired = acquire.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    match acquired {
        Ok(guard) => {
            assert!(held().is_some());
            let scripts = primary.script_calls();
            primary.pause();
            let release = tokio::spawn(async move { guard.release().await });
            tokio::time::sleep(Duration::from_millis(450)).await;
            primary.resume();
            let released = release.await.unwrap();
            assert!(
                !matches!(released, Err(LockError::Lost { .. })),
                "a release sent twice is not a lost lease: {released:?}"
            );
            assert!(primary.script_calls() > scripts, "the release ran");
        }
        Err(error) => {
            assert!(matches!(error, LockError::Redis { .. }), "{error}");
            assert!(
                primary.command_calls("set") >= sets + 2,
                "the SET reached the server twice or more"
            );
        }
    }
    // Cut-short requests are cleaned up in the background.
    while held().is_some() {
        assert!(Instant::now() < deadline, "the lock was left held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = locks.acquire(name, &options).await.expect("free again");
    again.release().await.unwrap();
}

/// The slot of a lock moves to another primary (key by key, as `redis-cli
/// --cluster reshard` moves it) while 16 tasks of two clients do non-atomic
/// increments under it: the counter is exact (scripts meet ASK and TRYAGAIN
/// while the lock's keys are split between the two nodes, and are followed or
/// sent again, never run on half the keys). Afterwards a waiter is still woken
/// by the release's notice, now from the new primary.
async fn a_lock_whose_slot_migrates(cluster: &RedisCluster, counters: &RedisServer) {
    let clients = [
        LockClient::connect(&cluster.url()).await.unwrap(),
        LockClient::connect(&cluster.url()).await.unwrap(),
    ];
    let name = "migrating";
    let slot = cluster.slot(&clients[0].key_for(name));
    let from = cluster.primary_of(slot).port();
    let to = *cluster
        .primary_ports()
        .iter()
        .find(|port| **port != from)
        .expect("another primary");
    let options = LockOptions::new(Duration::from_secs(10)).fencing(true);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = "counter:migrating";
    let mut tasks = Vec::new();
    for index in 0..16 {
        let (locks, options, stop) = (
            clients[index % 2].clone(),
            options.clone(),
            Arc::clone(&stop),
        );
        let mut data = redis::Client::open(counters.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut done = 0i64;
            while !stop.load(Ordering::Relaxed) {
                locks
                    .run(name, &options, async {
                        let value: Option<i64> = redis::cmd("GET")
                            .arg(counter)
                            .query_async(&mut data)
                            .await
                            .unwrap();
                        tokio::task::yield_now().await;
                        let () = redis::cmd("SET")
                            .arg(counter)
                            .arg(value.unwrap_or(0) + 1)
                            .query_async(&mut data)
                            .await
                            .unwrap();
                    })
                    .await
                    .expect("a locked increment while the slot migrates");
                done += 1;
            }
            done
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value: Option<i64> = redis::cmd("GET")
            .arg(counter)
            .query(&mut counters.connection())
            .unwrap();
        if value.unwrap_or(0) >= 50 {
            break;
        }
        assert!(Instant::now() < deadline, "the workload never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let destination = cluster.node(to);
    tokio::task::block_in_place(|| {
        cluster.migrate_slot(slot, destination, Duration::from_millis(300))
    });
    // A little more work on the new primary, then stop.
    let moved_at: Option<i64> = redis::cmd("GET")
        .arg(counter)
        .query(&mut counters.connection())
        .unwrap();
    loop {
        let value: Option<i64> = redis::cmd("GET")
            .arg(counter)
            .query(&mut counters.connection())
            .unwrap();
        if value >= moved_at.map(|v| v + 50) {
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "no work after the move"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let counted: Option<i64> = redis::cmd("GET")
        .arg(counter)
        .query(&mut counters.connection())
        .unwrap();
    assert_eq!(counted, Some(total), "lost updates while the slot moved");
    assert_eq!(cluster.primary_of(slot).port(), to, "the slot moved");
    assert!(
        destination.command_calls("asking") > 0,
        "clients met the slot half moved (ASK followed with ASKING)"
    );

    // A waiter on the lock, now on its new primary, is woken by the release.
    let guard = clients[0].acquire(name, &options).await.unwrap();
    let waiting = {
        let (locks, options) = (clients[1].clone(), options.clone());
        tokio::spawn(async move {
            let guard = locks
                .acquire(name, &options.wait(Wait::For(Duration::from_secs(20))))
                .await?;
            let acquired = Instant::now();
            guard.release().await?;
            Ok::<_, LockError>(acquired)
        })
    };
    let queue = format!("{}:queue", clients[0].key_for(name));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let queued: usize = redis::cmd("ZCARD")
            .arg(&queue)
            .query(&mut destination.connection())
            .unwrap();
        if queued == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the waiter never queued on the new primary"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let released = Instant::now();
    guard.release().await.unwrap();
    let acquired = waiting.await.unwrap().expect("the waiter gets the lock");
    assert!(
        acquired - released < Duration::from_millis(2_000),
        "woken by the notice, not a poll: {:?}",
        acquired - released
    );
}
