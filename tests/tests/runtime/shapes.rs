//! Locks with many holders: semaphores (`permits`) and read/write locks
//! (`mode`). Holds are timed by the holders themselves, across processes.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_runtime::{LockError, LockOptions, Mode, Wait};
use tests::RedisServer;
use tokio::time::timeout;

use crate::{client, hold_in_child, ttl};

/// Runs `processes` `shared_holds` children; returns every hold as
/// `(kind, start µs, end µs)`.
fn holds_across(
    server: &RedisServer,
    processes: usize,
    tasks: usize,
    rounds: usize,
    how: &str,
) -> Vec<(char, u128, u128)> {
    let children: Vec<Child> = (0..processes)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_shared_holds"))
                .args([
                    server.url(),
                    tasks.to_string(),
                    rounds.to_string(),
                    how.to_owned(),
                    "shared".to_owned(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start shared_holds")
        })
        .collect();
    let mut holds = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("DONE"),
            "shared_holds failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        holds.extend(stdout.lines().filter_map(|line| {
            let mut fields = line.strip_prefix("HOLD ")?.split(' ');
            let kind = fields.next()?.chars().next()?;
            Some((
                kind,
                fields.next()?.parse().ok()?,
                fields.next()?.parse().ok()?,
            ))
        }));
    }
    assert_eq!(holds.len(), processes * tasks * rounds);
    holds
}

/// The most holds of the kinds `counted` in progress at once (an end at the
/// same µs as a start counts as before it).
fn most_at_once(holds: &[(char, u128, u128)], counted: &[char]) -> usize {
    let mut events: Vec<(u128, i32)> = holds
        .iter()
        .filter(|(kind, _, _)| counted.contains(kind))
        .flat_map(|&(_, start, end)| [(start, 1), (end, -1)])
        .collect();
    events.sort_unstable();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in events {
        now += step;
        most = most.max(now);
    }
    most as usize
}

/// 4 processes × 25 tasks × 100 holds of a semaphore of 3: never more than 3
/// at once, and more than one at once (the semaphore is not a mutex).
#[test]
fn never_more_than_n_hold_a_semaphore_over_ten_thousand_acquisitions() {
    let server = RedisServer::start();
    let holds = holds_across(&server, 4, 25, 100, "permits=3");
    let most = most_at_once(&holds, &['s']);
    assert!(most <= 3, "{most} held a semaphore of 3 at once");
    assert!(
        most > 1,
        "never more than one holder: the permits were not shared"
    );
}

/// Read/write across processes: no writer overlaps any other hold, and
/// readers do overlap.
#[test]
fn readers_share_and_a_writer_holds_alone_across_processes() {
    let server = RedisServer::start();
    let holds = holds_across(&server, 4, 16, 40, "rw");
    let writes: Vec<_> = holds.iter().filter(|(kind, _, _)| *kind == 'w').collect();
    assert!(!writes.is_empty());
    for &&(_, start, end) in &writes {
        let overlapping = holds
            .iter()
            .filter(|&&(_, s, e)| (s, e) != (start, end) && s < end && start < e)
            .count();
        assert_eq!(
            overlapping, 0,
            "a write hold {start}..{end} overlapped {overlapping} others"
        );
    }
    assert!(most_at_once(&holds, &['r']) > 1, "readers never overlapped");
}

/// Within one client too: N permits are held at once (tasks of one client are
/// not lined up as for a mutex), the next is busy.
#[tokio::test]
async fn one_client_holds_every_permit_at_once() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = ttl(30_000).permits(3).wait(Wait::TryOnce);
    let held =
        futures_util::future::join_all((0..3).map(|_| locks.acquire("pool", &options))).await;
    let held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    let fourth = locks.acquire("pool", &options).await;
    assert!(matches!(fourth, Err(LockError::Busy { .. })), "{fourth:?}");
    for guard in held {
        guard.release().await.unwrap();
    }
    locks
        .acquire("pool", &options)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

/// A holder killed with its permit (or read share) gives it back only when
/// its lease runs out: until then the lock stays taken, then a waiter gets it.
#[tokio::test]
async fn a_killed_holders_share_comes_back_after_its_ttl() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    for (how, mine) in [
        ("permits=1", ttl(30_000).permits(1)),
        ("read", ttl(30_000).mode(Mode::Write)),
    ] {
        let name = format!("killed-{how}");
        let mut holder = hold_in_child(&server, &name, 1_000, how, None);
        holder.kill().unwrap();
        holder.wait().unwrap();
        let busy = locks
            .acquire(&name, &mine.clone().wait(Wait::TryOnce))
            .await;
        assert!(
            matches!(busy, Err(LockError::Busy { .. })),
            "{how}: {busy:?}"
        );
        let guard = locks
            .acquire(
                &name,
                &mine.clone().wait(Wait::For(Duration::from_secs(10))),
            )
            .await
            .unwrap_or_else(|error| panic!("{how}: the share never came back: {error}"));
        guard.release().await.unwrap();
    }
}

/// Readers keep arriving: each takes its next share before it lets go of the
/// last, so without writer preference the lock would never be free of
/// readers. A writer asking meanwhile is served anyway (a waiting writer
/// blocks new readers), and readers go on after it.
#[tokio::test]
async fn a_waiting_writer_is_not_starved_by_arriving_readers() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let read = ttl(30_000).mode(Mode::Read);
    let stop = Arc::new(AtomicBool::new(false));
    let wrote = Arc::new(AtomicBool::new(false));
    let reads_after_write = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (locks, read, stop) = (locks.clone(), read.clone(), stop.clone());
            let (after, wrote) = (reads_after_write.clone(), wrote.clone());
            tokio::spawn(async move {
                let mut current = locks.acquire("catalog", &read).await.unwrap();
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    current = match locks
                        .acquire("catalog", &read.clone().wait(Wait::TryOnce))
                        .await
                    {
                        Ok(next) => {
                            current.release().await.unwrap();
                            next
                        }
                        // A writer waits: let go, then queue behind it.
                        Err(LockError::Busy { .. }) => {
                            current.release().await.unwrap();
                            locks.acquire("catalog", &read).await.unwrap()
                        }
                        Err(error) => panic!("{error}"),
                    };
                    if wrote.load(Ordering::SeqCst) {
                        after.fetch_add(1, Ordering::SeqCst);
                    }
                }
                current.release().await.unwrap();
            })
        })
        .collect();
    // The readers are in: the lock is shared from here on.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let write = ttl(30_000)
        .mode(Mode::Write)
        .wait(Wait::For(Duration::from_secs(10)));
    let served = locks
        .run("catalog", &write, async {
            wrote.store(true, Ordering::SeqCst)
        })
        .await;
    assert!(served.is_ok(), "the writer was starved: {served:?}");
    // Readers are let in again after the writer.
    timeout(Duration::from_secs(10), async {
        while reads_after_write.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("no reader got in after the writer");
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
}

/// A writer's release wakes every waiting reader, and they hold together.
#[tokio::test]
async fn a_writers_release_lets_every_waiting_reader_in_together() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let writer = locks
        .acquire("doc", &ttl(30_000).mode(Mode::Write))
        .await
        .unwrap();
    let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (locks, inside, barrier) = (locks.clone(), inside.clone(), barrier.clone());
            let read = ttl(30_000)
                .mode(Mode::Read)
                .wait(Wait::For(Duration::from_secs(10)));
            tokio::spawn(async move {
                locks
                    .run("doc", &read, async {
                        inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // All four inside at once, or this never returns.
                        barrier.wait().await;
                    })
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        inside.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a reader got in past the writer"
    );
    writer.release().await.unwrap();
    for reader in readers {
        timeout(Duration::from_secs(10), reader)
            .await
            .expect("the readers were not all in at once")
            .unwrap()
            .unwrap();
    }
}

/// `fair`: permits go to waiters in arrival order.
#[tokio::test]
async fn a_fair_semaphore_serves_waiters_in_arrival_order() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let options = ttl(30_000).permits(1).fair(true);
    let first = locks.acquire("turns", &options).await.unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let key = locks.key_for("turns");
    let mut waiters = Vec::new();
    for who in 0..3 {
        let (locks, options, served) =
            (client(&server.url()).await, options.clone(), served.clone());
        waiters.push(tokio::spawn(async move {
            locks
                .run("turns", &options, async {
                    served.lock().unwrap().push(who)
                })
                .await
                .unwrap();
        }));
        // Queued before the next one asks.
        timeout(Duration::from_secs(5), async {
            loop {
                let queued: usize = redis::cmd("ZCARD")
                    .arg(format!("{key}:wait"))
                    .query(&mut server.connection())
                    .unwrap();
                if queued > who {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the waiter did not queue");
    }
    first.release().await.unwrap();
    for waiter in waiters {
        timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(*served.lock().unwrap(), [0, 1, 2]);
}

/// Options that do not go together are errors naming the fix, before any request.
#[tokio::test]
async fn shapes_refuse_options_that_do_not_fit() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let base = LockOptions::default();
    for (options, says) in [
        (base.clone().permits(0), "permits must be at least 1"),
        (base.clone().permits(2).mode(Mode::Read), "not both"),
        (base.clone().permits(2).fencing(true), "fencing"),
        (base.clone().mode(Mode::Write).fencing(true), "fencing"),
        (base.clone().mode(Mode::Read).fair(true), "`fair`"),
        (base.clone().permits(2).reentrant(true), "re-entrant"),
    ] {
        match locks.acquire("shaped", &options).await {
            Err(LockError::Config { reason, .. }) => assert!(reason.contains(says), "{reason}"),
            other => panic!("{options:?}: {other:?}"),
        }
    }
    // Upgrading a read hold inside its body is refused, not a self-wait.
    let read = ttl(30_000).mode(Mode::Read).reentrant(true);
    let upgrade = locks
        .run("shaped", &read, async {
            locks
                .run(
                    "shaped",
                    &ttl(30_000).mode(Mode::Write).reentrant(true),
                    async {},
                )
                .await
        })
        .await
        .unwrap();
    match upgrade {
        Err(LockError::Config { reason, .. }) => assert!(reason.contains("upgraded"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// Two clients asking for one name as different shapes (a semaphore of
/// another size, read/write against a semaphore, an exclusive lock against
/// a set of holders) would break both shapes' counts: the second is refused
/// at once with a clear error, whatever its wait, and the holder is left as
/// it was, nobody queued.
#[tokio::test]
async fn a_name_held_as_one_shape_refuses_another() {
    let server = RedisServer::start();
    let holder = client(&server.url()).await;
    let other = client(&server.url()).await;
    let long_wait = |options: LockOptions| options.wait(Wait::For(Duration::from_secs(30)));
    let cases = [
        (
            ttl(30_000).permits(3),
            ttl(30_000).permits(5),
            "a semaphore of 3",
        ),
        (
            ttl(30_000).permits(3),
            ttl(30_000).mode(Mode::Read),
            "a semaphore of 3",
        ),
        (
            ttl(30_000).mode(Mode::Read),
            ttl(30_000).permits(2),
            "a read/write lock",
        ),
        (
            ttl(30_000),
            ttl(30_000).mode(Mode::Write),
            "an exclusive lock",
        ),
        (
            ttl(30_000).mode(Mode::Read),
            ttl(30_000),
            "a semaphore or a read/write lock",
        ),
        (
            ttl(30_000).permits(2),
            ttl(30_000).fencing(true),
            "a semaphore or a read/write lock",
        ),
    ];
    for (index, (held_as, asked_as, says)) in cases.into_iter().enumerate() {
        let name = format!("mixed:{index}");
        let guard = holder.acquire(&name, &held_as).await.unwrap();
        let before = holder.inspect(&name).await.unwrap();
        let asked = timeout(
            Duration::from_secs(5),
            other.acquire(&name, &long_wait(asked_as.clone())),
        )
        .await
        .expect("refused at once, not after the wait");
        match asked {
            Err(LockError::Config { reason, .. }) => {
                assert!(
                    reason.contains(says),
                    "{held_as:?} / {asked_as:?}: {reason}"
                );
                assert!(reason.contains("same shape"), "{reason}");
            }
            other => panic!("{held_as:?} then {asked_as:?}: {other:?}"),
        }
        let after = holder.inspect(&name).await.unwrap();
        assert_eq!(after.holders.len(), before.holders.len(), "{after:?}");
        assert_eq!(after.holders[0].token, before.holders[0].token);
        assert!(after.waiters.is_empty(), "{after:?}");
        assert!(guard.is_held());
        guard.release().await.unwrap();
    }
}
