//! The line in which tasks of one client wait for a lock (default mode): one task
//! at a time asks Redis; each release takes the lock for the next task in line in
//! the same request, unless another process's waiter is queued in Redis.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use lock_runtime::{LockClient, LockError, LockGuard, LockOptions, Wait};
use tests::RedisServer;

use crate::{client, get, until};

fn options() -> LockOptions {
    LockOptions::new(Duration::from_secs(30)).wait(Wait::For(Duration::from_secs(10)))
}

/// How many waiters are queued on `name` in Redis.
fn queued(server: &RedisServer, locks: &LockClient, name: &str) -> i64 {
    redis::cmd("ZCARD")
        .arg(format!("{}:queue", locks.key_for(name)))
        .query(&mut server.connection())
        .unwrap()
}

/// Starts an acquire of `name` in a task, and returns once it waits in line as
/// the `place`-th task (1: first behind the task whose turn it is).
async fn in_line(
    locks: &LockClient,
    name: &'static str,
    options: &LockOptions,
    place: usize,
) -> tokio::task::JoinHandle<Result<LockGuard, LockError>> {
    let (task_locks, options) = (locks.clone(), options.clone());
    let task = tokio::spawn(async move { task_locks.acquire(name, &options).await });
    until("the task waits in line", || {
        locks.tasks_in_line(name) == place
    })
    .await;
    task
}

/// Tasks are served in the order they came, each with a larger fencing token, and
/// each costs Redis one request (the release before it, which took the lock for
/// it); none of them is queued in Redis while it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_served_in_arrival_order_for_one_request_each() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let fenced = options().fencing(true);
    let holder = locks.acquire("line", &fenced).await.unwrap();
    let first_fence = holder.fencing_token().unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for index in 0..5 {
        let (task_locks, fenced, served) = (locks.clone(), fenced.clone(), Arc::clone(&served));
        tasks.push(tokio::spawn(async move {
            let guard = task_locks.acquire("line", &fenced).await.unwrap();
            served
                .lock()
                .unwrap()
                .push((index, guard.fencing_token().unwrap()));
            guard.release().await.unwrap();
        }));
        until("the task waits in line", || {
            locks.tasks_in_line("line") == index + 1
        })
        .await;
    }
    assert_eq!(queued(&server, &locks, "line"), 0, "nobody queued in Redis");
    let (scripts_before, publishes_before) =
        (server.script_calls(), server.command_calls("publish"));
    holder.release().await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let served = served.lock().unwrap().clone();
    let order: Vec<usize> = served.iter().map(|(index, _)| *index).collect();
    assert_eq!(order, [0, 1, 2, 3, 4], "served in arrival order");
    let mut last = first_fence;
    for (_, fence) in &served {
        assert!(*fence > last, "fence {fence} after {last}");
        last = *fence;
    }
    // Six releases: five took the lock for the next task, the last freed it.
    assert_eq!(server.script_calls() - scripts_before, 6);
    assert_eq!(server.command_calls("publish") - publishes_before, 0);
    assert_eq!(
        get(&server, &locks.key_for("line")),
        None,
        "freed at the end"
    );
}

/// A waiter of another process, queued in Redis, gets the lock after at most
/// eight handoffs in a row between the tasks of this one (short holds; each
/// costs one request, where a handoff to another process costs two and a
/// notice); the task after the streak then queues in Redis behind it: a busy
/// process does not keep the lock to itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_s_waiter_gets_the_lock_after_at_most_eight_local_handoffs() {
    let server = Arc::new(RedisServer::start());
    let here = client(&server.url()).await;
    let there = client(&server.url()).await;
    let blocker = client(&server.url()).await;
    // The second time, the first release here is cut short (sent to a paused
    // server, its answer never awaited): the lock it took for the next task
    // still counts in the streak, or cut releases could keep the lock in the
    // process.
    for (name, cut_short) in [("shared", false), ("shared-cut", true)] {
        let blocking = blocker.acquire(name, &options()).await.unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        // How long each task held the lock before its release was sent.
        let holds = Arc::new(Mutex::new(Vec::new()));
        let serve = |locks: &LockClient, who: &'static str, cut: bool| {
            let (locks, served, server) = (locks.clone(), Arc::clone(&served), Arc::clone(&server));
            let holds = Arc::clone(&holds);
            tokio::spawn(async move {
                let guard = locks.acquire(name, &options()).await.unwrap();
                let held = Instant::now();
                served.lock().unwrap().push(who);
                holds.lock().unwrap().push(held.elapsed());
                if cut {
                    server.pause();
                    let cut =
                        tokio::time::timeout(Duration::from_millis(200), guard.release()).await;
                    server.resume();
                    assert!(cut.is_err(), "the release cannot finish on a paused server");
                } else {
                    guard.release().await.unwrap();
                }
            })
        };
        // Queued in Redis in this order: this process's first task, the other
        // process's waiter; then ten more tasks here wait in line.
        let mut local = vec![serve(&here, "here", cut_short)];
        until("this process's first task queued", || {
            queued(&server, &here, name) == 1
        })
        .await;
        let remote = serve(&there, "there", false);
        until("the other process's waiter queued", || {
            queued(&server, &there, name) == 2
        })
        .await;
        for place in 1..=10 {
            local.push(serve(&here, "here", false));
            until("the task waits in line", || {
                here.tasks_in_line(name) == place
            })
            .await;
        }
        blocking.release().await.unwrap();
        remote.await.unwrap();
        for task in local {
            task.await.unwrap();
        }
        let order = served.lock().unwrap().clone();
        // Never more than the first task here (handed the lock through the
        // queue) and eight handoffs in the process before the other process.
        let there_at = order.iter().position(|who| *who == "there");
        assert!(
            there_at.is_some_and(|at| at <= 9),
            "cut short: {cut_short}: {order:?}"
        );
        // Exactly that when every hold was short (under 5 ms, so the release
        // could keep the lock here); a task paused by a loaded machine holds
        // longer, and then the other process's waiter rightly goes sooner.
        let longest = holds.lock().unwrap().iter().max().copied();
        if longest.is_some_and(|held| held < Duration::from_millis(4)) {
            let mut expected = vec!["here"; 9];
            expected.push("there");
            expected.extend(["here"; 2]);
            assert_eq!(order, expected, "cut short: {cut_short}");
        }
        until("freed at the end", || {
            get(&server, &here.key_for(name)).is_none()
        })
        .await;
    }
}

/// After a hold of 5 ms or more, another process's waiter queued in Redis gets
/// the lock before the next task of this one: long holds alternate between
/// processes (keeping the lock in the process would save little), where a
/// streak of eight would make the other process wait for eight of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_long_hold_another_process_s_waiter_goes_first() {
    let server = RedisServer::start();
    let here = client(&server.url()).await;
    let there = client(&server.url()).await;
    let holder = here.acquire("long", &options()).await.unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let serve = |locks: &LockClient, who: &'static str| {
        let (locks, served) = (locks.clone(), Arc::clone(&served));
        tokio::spawn(async move {
            let guard = locks.acquire("long", &options()).await.unwrap();
            served.lock().unwrap().push(who);
            guard.release().await.unwrap();
        })
    };
    let remote = serve(&there, "there");
    until("the other process's waiter queued", || {
        queued(&server, &there, "long") == 1
    })
    .await;
    let mut local = Vec::new();
    for place in 1..=2 {
        local.push(serve(&here, "here"));
        until("the task waits in line", || {
            here.tasks_in_line("long") == place
        })
        .await;
    }
    // A hold well past 5 ms, whatever the machine's speed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    holder.release().await.unwrap();
    remote.await.unwrap();
    for task in local {
        task.await.unwrap();
    }
    assert_eq!(*served.lock().unwrap(), ["there", "here", "here"]);
}

/// A task that gives up (its wait times out) leaves the line, and the task behind
/// it is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_gives_up_leaves_the_line() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let holder = locks.acquire("impatient", &options()).await.unwrap();
    let brief = options().wait(Wait::For(Duration::from_millis(200)));
    let impatient = in_line(&locks, "impatient", &brief, 1).await;
    let patient = in_line(&locks, "impatient", &options(), 2).await;
    let timed_out = impatient.await.unwrap();
    assert!(
        matches!(timed_out, Err(LockError::Timeout { .. })),
        "{timed_out:?}"
    );
    assert_eq!(locks.tasks_in_line("impatient"), 1, "it left the line");
    holder.release().await.unwrap();
    let guard = patient.await.unwrap().unwrap();
    assert!(guard.is_held());
    guard.release().await.unwrap();
    assert_eq!(locks.tasks_in_line("impatient"), 0);
}

/// A task that is gone (its acquire dropped) after the release took the lock for
/// it but before it woke: the lock is released for it and the next task gets it
/// at once, not after the ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_taken_for_a_task_that_is_gone_goes_to_the_next() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let holder = locks.acquire("vanishing", &options()).await.unwrap();
    // Polled once, by hand: it enters the line, and is never polled again.
    let vanishing_options = options();
    let mut vanishing = Box::pin(locks.acquire("vanishing", &vanishing_options));
    let mut context = Context::from_waker(Waker::noop());
    assert!(matches!(
        vanishing.as_mut().poll(&mut context),
        Poll::Pending
    ));
    assert_eq!(locks.tasks_in_line("vanishing"), 1);
    // Waits 10 s at most, where the lock left to its 30 s ttl would take 30.
    let next = in_line(&locks, "vanishing", &options(), 2).await;
    holder.release().await.unwrap();
    drop(vanishing);
    let guard = next.await.unwrap().unwrap();
    assert!(guard.is_held());
    assert!(
        get(&server, &locks.key_for("vanishing")).is_some(),
        "held by the next task"
    );
    guard.release().await.unwrap();
    assert_eq!(get(&server, &locks.key_for("vanishing")), None);
}

/// A holder whose lease is lost passes its turn on at once, before its guard is
/// dropped: the next task asks Redis and gets the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_holds_up_no_task_in_line() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let short =
        LockOptions::new(Duration::from_millis(900)).wait(Wait::For(Duration::from_secs(10)));
    let holder = locks.acquire("lost", &short).await.unwrap();
    let next = in_line(&locks, "lost", &short, 1).await;
    // The key vanishes; the holder's next heartbeat (within 300 ms) is refused.
    let _: i64 = redis::cmd("DEL")
        .arg(locks.key_for("lost"))
        .query(&mut server.connection())
        .unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), holder.lost())
        .await
        .expect("the holder learns its lease is lost");
    assert!(matches!(lost, LockError::Lost { .. }), "{lost}");
    let guard = next.await.unwrap().unwrap();
    assert!(guard.is_held());
    assert!(!holder.is_held());
    guard.release().await.unwrap();
    drop(holder);
}

/// A release that gets no answer (cut short while the server is paused; the
/// server runs it afterwards, taking the lock for the next task), where that
/// task has given up meanwhile: its token, armed before the release was sent, is
/// released, and the task after it gets the lock at once, not after the ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_taken_by_a_release_cut_short_for_a_task_that_gave_up_goes_to_the_next() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    crate::load_scripts(&locks).await;
    let holder = locks.acquire("cut-short", &options()).await.unwrap();
    let brief = options().wait(Wait::For(Duration::from_millis(100)));
    let gives_up = in_line(&locks, "cut-short", &brief, 1).await;
    let next = in_line(&locks, "cut-short", &options(), 2).await;
    server.pause();
    let cut = tokio::time::timeout(Duration::from_millis(300), holder.release()).await;
    assert!(cut.is_err(), "the release cannot finish on a paused server");
    let gave_up = gives_up.await.unwrap();
    assert!(
        matches!(gave_up, Err(LockError::Timeout { .. })),
        "{gave_up:?}"
    );
    server.resume();
    // Waits 10 s at most, where the lock left to its 30 s ttl would take 30.
    let guard = next.await.unwrap().unwrap();
    assert!(guard.is_held());
    guard.release().await.unwrap();
    assert_eq!(get(&server, &locks.key_for("cut-short")), None);
}

/// A guard dropped after the runtime it was acquired on shut down (its release
/// can no longer run there), while a `LockHandle` keeps its lease alive: its turn
/// still passes on, and the next task gets the lock once the ttl frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_after_its_runtime_shut_down_passes_its_turn_on() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let short =
        LockOptions::new(Duration::from_millis(1_000)).wait(Wait::For(Duration::from_secs(10)));
    let (acquired_tx, acquired_rx) = tokio::sync::oneshot::channel();
    let (drop_tx, drop_rx) = tokio::sync::oneshot::channel::<()>();
    let elsewhere = {
        let (locks, short) = (locks.clone(), short.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let guard = runtime.block_on(locks.acquire("orphan", &short)).unwrap();
            let handle = guard.handle();
            acquired_tx.send(()).unwrap();
            drop_rx.blocking_recv().unwrap();
            drop(runtime);
            drop(guard);
            handle
        })
    };
    acquired_rx.await.unwrap();
    let next = in_line(&locks, "orphan", &short, 1).await;
    drop_tx.send(()).unwrap();
    let handle = tokio::task::spawn_blocking(move || elsewhere.join().unwrap())
        .await
        .unwrap();
    let guard = next.await.unwrap().unwrap();
    assert!(guard.is_held());
    guard.release().await.unwrap();
    drop(handle);
}

/// A lock taken for the next task by a release whose answer came too late to
/// count on (the server paused for longer than half the task's ttl) is confirmed
/// by the task's first request, which restarts the lease, instead of being
/// taken as held on the release's word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_handed_too_late_to_count_on_is_confirmed_first() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    crate::load_scripts(&locks).await;
    let brief =
        LockOptions::new(Duration::from_millis(200)).wait(Wait::For(Duration::from_secs(10)));
    // The holder's own lease outlasts the pause: its release must find the lock
    // its own and take it for the next task.
    let holder = locks.acquire("late", &options()).await.unwrap();
    let next = in_line(&locks, "late", &brief, 1).await;
    let scripts_before = server.script_calls();
    server.pause();
    let release = tokio::spawn(holder.release());
    // Longer than half the next task's ttl: the release's answer, when it comes,
    // is too old to count the lease from.
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.resume();
    release.await.unwrap().unwrap();
    let guard = next.await.unwrap().unwrap();
    assert!(
        guard.is_held(),
        "the lease was restarted by the confirmation"
    );
    assert!(
        guard.time_left().unwrap() > Duration::from_millis(100),
        "{:?} left",
        guard.time_left()
    );
    // The release, then the confirming attempt.
    assert_eq!(server.script_calls() - scripts_before, 2);
    guard.release().await.unwrap();
}

/// A task that times out in line behind another task of its own client is told
/// when the lock may be free (the holder's remaining lease), as a waiter behind
/// another process is: web handlers map it to `Retry-After`.
#[tokio::test]
async fn a_timeout_in_line_carries_the_holders_remaining_lease() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let ttl = Duration::from_secs(20);
    let holder = locks
        .acquire("in-line-timeout", &LockOptions::new(ttl))
        .await
        .unwrap();
    let timed_out = locks
        .acquire(
            "in-line-timeout",
            &LockOptions::new(ttl).wait(Wait::For(Duration::from_millis(200))),
        )
        .await;
    match timed_out {
        Err(LockError::Timeout {
            retry_after: Some(left),
            ..
        }) => assert!(
            left > Duration::from_secs(10) && left <= ttl,
            "about the holder's lease left: {left:?}"
        ),
        other => panic!("a timeout with retry_after: {other:?}"),
    }
    assert_eq!(locks.tasks_in_line("in-line-timeout"), 0);
    holder.release().await.unwrap();
}
