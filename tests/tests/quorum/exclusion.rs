//! Mutual exclusion on a quorum: across processes, with holds timed by the
//! holders themselves, and a failed attempt gives back what it won.

use std::process::{Command, Stdio};

use lock_runtime::{LockError, Wait};
use tests::{RedisQuorum, RedisServer};

use crate::{client, ttl};

/// 4 processes × 16 tasks do deliberately non-atomic increments (GET, yield,
/// SET+1) of a counter on a separate server under one quorum lock: the counter
/// is exact, and no two holds (timed inside the body by each process's clock)
/// overlap.
#[test]
fn four_processes_of_sixteen_tasks_never_overlap() {
    let quorum = RedisQuorum::start(5);
    let counters = RedisServer::start();
    let (processes, tasks, rounds) = (4, 16, 6);
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_locked_increments"))
                .args([
                    quorum.url(),
                    counters.url(),
                    tasks.to_string(),
                    rounds.to_string(),
                    "ledger".to_owned(),
                ])
                .env("PRINT_HOLDS", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start locked_increments")
        })
        .collect();
    let mut holds: Vec<(u128, u128)> = Vec::new();
    for child in children {
        let output = child.wait_with_output().expect("locked_increments runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("DONE"),
            "locked_increments failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        holds.extend(stdout.lines().filter_map(|line| {
            let mut fields = line.strip_prefix("HOLD ledger ")?.split(' ');
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        }));
    }
    let counter: i64 = redis::cmd("GET")
        .arg("counter:ledger")
        .query(&mut counters.connection())
        .unwrap();
    assert_eq!(counter, (processes * tasks * rounds) as i64);
    assert_eq!(holds.len(), processes * tasks * rounds);
    holds.sort_unstable();
    for pair in holds.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two holds overlapped: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Three of five servers hold another token: an attempt wins the other two,
/// finds no majority, and gives both back before it reports the lock busy.
#[tokio::test]
async fn a_minority_won_is_given_back_on_every_server() {
    let quorum = RedisQuorum::start(5);
    let locks = client(&quorum).await;
    let key = locks.key_for("split");
    for server in &quorum.servers()[..3] {
        let () = redis::cmd("SET")
            .arg(&key)
            .arg("someone-else")
            .arg("PX")
            .arg(10_000)
            .query(&mut server.connection())
            .unwrap();
    }
    let error = locks
        .acquire("split", &ttl(5_000).wait(Wait::TryOnce))
        .await
        .unwrap_err();
    assert!(matches!(error, LockError::Busy { .. }), "{error}");
    let values = quorum.values(&key);
    assert_eq!(values[3], None, "given back on the fourth server");
    assert_eq!(values[4], None, "given back on the fifth server");
    assert!(
        values[..3]
            .iter()
            .all(|value| value.as_deref() == Some("someone-else"))
    );

    // With two of the three back, a majority is free again.
    let () = redis::cmd("DEL")
        .arg(&key)
        .query(&mut quorum.servers()[0].connection())
        .unwrap();
    let guard = locks
        .acquire("split", &ttl(5_000).wait(Wait::TryOnce))
        .await
        .unwrap();
    let ours = quorum
        .values(&key)
        .iter()
        .filter(|value| value.as_deref() != Some("someone-else") && value.is_some())
        .count();
    assert_eq!(ours, 3, "held on the three free servers");
    guard.release().await.unwrap();
}
