//! What an operator sees and does: the holder record every lease carries,
//! `inspect`/`list`, and the `lockctl` tool against real servers.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lock_runtime::{LockClient, Share, Wait};
use tests::RedisServer;
use tokio::time::Instant;

use super::{client, get, hold_in_child, ttl, until, until_queued};

/// Runs `lockctl` with `args` against `url`, to its end.
fn lockctl(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockctl_cli"))
        .args(["--url", url, "--timeout", "2"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn list_and_show_see_a_lock_held_by_another_process_with_its_pid_and_label() {
    let server = RedisServer::start();
    let mut holder = hold_in_child(&server, "ops:invoice:7", 30_000, "", Some("billing-worker"));
    let locks = client(&server.url()).await;

    let state = locks.inspect("ops:invoice:7").await.unwrap();
    assert!(state.is_held());
    let held = &state.holders[0];
    let who = held.identity.as_ref().expect("the token names its holder");
    assert_eq!(who.pid, holder.id());
    assert_eq!(who.label.as_deref(), Some("billing-worker"));
    assert_eq!(held.share, Share::Exclusive);
    let left = held.ttl_left.unwrap();
    assert!(left > Duration::from_secs(20) && left <= Duration::from_secs(30));
    assert!(held.held_for.unwrap() < Duration::from_secs(20));
    assert_eq!(
        get(&server, &state.key).as_deref(),
        Some(held.token.as_str())
    );

    // A lock of this process, and one that is free.
    let mine = locks.acquire("ops:invoice:8", &ttl(30_000)).await.unwrap();
    let listed = locks.list("ops:invoice:*").await.unwrap();
    let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["ops:invoice:7", "ops:invoice:8"]);
    assert!(locks.list("other:*").await.unwrap().is_empty());

    let table = lockctl(&server.url(), &["list", "ops:*"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    assert!(text.contains("billing-worker@"), "{text}");
    assert!(text.contains(&format!(":{}", holder.id())), "{text}");
    assert!(text.contains("ops:invoice:8"), "{text}");

    let json = lockctl(&server.url(), &["--json", "list", "ops:*"]);
    let text = stdout(&json);
    assert!(text.starts_with('['), "{text}");
    assert!(text.contains(&format!("\"pid\":{}", holder.id())), "{text}");
    assert!(text.contains("\"label\":\"billing-worker\""), "{text}");

    let shown = lockctl(&server.url(), &["show", "ops:invoice:7"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(stdout(&shown).contains(&held.token), "{}", stdout(&shown));

    // Released, it is gone.
    mine.release().await.unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let freed = lockctl(&server.url(), &["release", "ops:invoice:7", "--yes"]);
    assert!(freed.status.success(), "{}", stderr(&freed));
    assert!(locks.list("ops:*").await.unwrap().is_empty());
    assert!(!locks.inspect("ops:invoice:7").await.unwrap().is_held());
    let gone = lockctl(&server.url(), &["show", "ops:invoice:7"]);
    assert_eq!(gone.status.code(), Some(3), "{}", stderr(&gone));
    assert!(stderr(&gone).contains("is not held"), "{}", stderr(&gone));
}

#[tokio::test]
async fn inspect_shows_the_queue_the_shares_and_the_fence() {
    let server = RedisServer::start();
    let locks = LockClient::builder(server.url())
        .holder_label("ops-test")
        .connect()
        .await
        .unwrap();
    let fenced = locks
        .acquire("ops:fenced", &ttl(30_000).fencing(true))
        .await
        .unwrap();
    let rival = client(&server.url()).await;
    let waiting = tokio::spawn({
        let rival = rival.clone();
        async move {
            rival
                .acquire(
                    "ops:fenced",
                    &ttl(5_000).wait(Wait::For(Duration::from_secs(20))),
                )
                .await
        }
    });
    let state = until_queued(&locks, "ops:fenced").await;
    assert_eq!(state.holders[0].fence, fenced.fencing_token());
    assert_eq!(state.last_fence, fenced.fencing_token());
    let who = state.holders[0].identity.as_ref().unwrap();
    assert_eq!(
        who.to_string(),
        format!("ops-test@{}:{}", who.host, std::process::id())
    );
    assert_eq!(state.waiters.len(), 1);
    assert_eq!(state.waiters[0].identity.as_ref().unwrap().label, None);
    fenced.release().await.unwrap();
    waiting.await.unwrap().unwrap().release().await.unwrap();

    let readers = [
        locks
            .acquire("ops:rw", &ttl(30_000).mode(lock_runtime::Mode::Read))
            .await
            .unwrap(),
        rival
            .acquire("ops:rw", &ttl(30_000).mode(lock_runtime::Mode::Read))
            .await
            .unwrap(),
    ];
    let state = locks.inspect("ops:rw").await.unwrap();
    assert_eq!(state.holders.len(), 2);
    assert!(
        state
            .holders
            .iter()
            .all(|h| h.share == Share::Read && h.fence.is_none())
    );
    for guard in readers {
        guard.release().await.unwrap();
    }
    assert!(!locks.inspect("ops:rw").await.unwrap().is_held());
}

/// `lockctl release` frees a stuck lock: a waiter gets it at once (long
/// before the stuck lease's ttl), and the stuck holder learns it lost it.
#[tokio::test]
async fn lockctl_release_frees_a_stuck_lock_wakes_a_waiter_and_the_holder_finds_it_lost() {
    let server = RedisServer::start();
    let mut stuck = hold_in_child(&server, "ops:stuck", 3_000, "", Some("stuck"));
    let locks = client(&server.url()).await;
    let waiter = tokio::spawn({
        let locks = locks.clone();
        async move {
            let guard = locks
                .acquire(
                    "ops:stuck",
                    &ttl(30_000).wait(Wait::For(Duration::from_secs(60))),
                )
                .await;
            (guard, Instant::now())
        }
    });
    until_queued(&locks, "ops:stuck").await;
    let freed = lockctl(&server.url(), &["release", "ops:stuck", "--yes"]);
    let released_at = Instant::now();
    assert!(freed.status.success(), "{}", stderr(&freed));
    assert!(stderr(&freed).contains("stuck@"), "{}", stderr(&freed));
    let (guard, got_at) = waiter.await.unwrap();
    let guard = guard.expect("the waiter takes the freed lock");
    // The stuck lease had about 2-3 s left: the waiter was told, not timed out.
    assert!(
        got_at.saturating_duration_since(released_at) < Duration::from_secs(1),
        "{:?}",
        got_at.saturating_duration_since(released_at)
    );
    // The stuck holder's next beat (every ttl/3 = 1 s) finds its lease gone.
    let exited = tokio::task::spawn_blocking(move || {
        let status = stuck.wait().unwrap();
        let mut error = String::new();
        stuck
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut error)
            .unwrap();
        (status, error)
    });
    let (status, error) = tokio::time::timeout(Duration::from_secs(10), exited)
        .await
        .expect("the stuck holder notices within its ttl")
        .unwrap();
    assert!(!status.success());
    assert!(error.contains("Lost"), "{error}");
    assert!(guard.is_held());
    guard.release().await.unwrap();
}

/// A lock taken by a new holder after `lockctl release` showed the old one is
/// left alone: it refuses (exit code 4) and changes nothing.
#[tokio::test]
async fn lockctl_release_refuses_when_a_new_holder_took_the_lock_after_it_showed() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let old = locks.acquire("ops:moved", &ttl(30_000)).await.unwrap();
    let mut release = Command::new(env!("CARGO_BIN_EXE_lockctl_cli"))
        .args(["--url", &server.url(), "release", "ops:moved"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut prompt = BufReader::new(release.stderr.take().unwrap());
    let mut shown = String::new();
    prompt.read_line(&mut shown).unwrap();
    let old_token = get(&server, &locks.key_for("ops:moved")).unwrap();
    assert!(shown.contains(&old_token), "{shown}");
    // Between the showing and the answer, the lock moves on.
    old.release().await.unwrap();
    let new = locks.acquire("ops:moved", &ttl(30_000)).await.unwrap();
    let new_token = get(&server, &locks.key_for("ops:moved")).unwrap();
    release.stdin.take().unwrap().write_all(b"y\n").unwrap();
    let status = release.wait().unwrap();
    let mut rest = String::new();
    prompt.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(4), "{rest}");
    assert!(rest.contains("nothing changed"), "{rest}");
    assert_eq!(get(&server, &locks.key_for("ops:moved")), Some(new_token));
    new.check().unwrap();
    new.release().await.unwrap();

    // Not confirmed: exit code 5, the lock still held.
    let held = locks.acquire("ops:moved", &ttl(30_000)).await.unwrap();
    let mut declined = Command::new(env!("CARGO_BIN_EXE_lockctl_cli"))
        .args(["--url", &server.url(), "release", "ops:moved"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    declined.stdin.take().unwrap().write_all(b"n\n").unwrap();
    assert_eq!(declined.wait().unwrap().code(), Some(5));
    held.check().unwrap();
    held.release().await.unwrap();
}

#[tokio::test]
async fn lockctl_fails_clearly_on_an_unreachable_server_and_a_wrong_password() {
    let port = tests::free_port();
    let started = Instant::now();
    let down = lockctl(&format!("redis://127.0.0.1:{port}"), &["list"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr(&down).contains("cannot connect"),
        "{}",
        stderr(&down)
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let server = RedisServer::start_with(&["--requirepass", "right"]);
    let wrong = lockctl(&server.url_with_password("wrong"), &["list"]);
    assert_eq!(wrong.status.code(), Some(1));
    let text = stderr(&wrong).to_lowercase();
    assert!(text.contains("password") || text.contains("auth"), "{text}");
    let right = lockctl(&server.url_with_password("right"), &["list"]);
    assert!(right.status.success(), "{}", stderr(&right));

    let usage = lockctl(&server.url(), &["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// `lockctl watch` prints an acquire and a release as they happen.
#[tokio::test]
async fn lockctl_watch_prints_acquire_and_release_events() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let mut watch = Command::new(env!("CARGO_BIN_EXE_lockctl_cli"))
        .args([
            "--url",
            &server.url(),
            "--json",
            "watch",
            "ops:watched",
            "--count",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut started = String::new();
    BufReader::new(watch.stderr.take().unwrap())
        .read_line(&mut started)
        .unwrap();
    assert!(started.contains("watching"), "{started}");
    let guard = locks.acquire("ops:watched", &ttl(30_000)).await.unwrap();
    let mut events = BufReader::new(watch.stdout.take().unwrap());
    let mut acquired = String::new();
    events.read_line(&mut acquired).unwrap();
    assert!(acquired.contains("\"event\":\"acquire\""), "{acquired}");
    guard.release().await.unwrap();
    let mut released = String::new();
    events.read_line(&mut released).unwrap();
    assert!(released.contains("\"event\":\"release\""), "{released}");
    let status = tokio::task::spawn_blocking(move || watch.wait().unwrap());
    until("lockctl watch stops after two events", || {
        status.is_finished()
    })
    .await;
}

/// A `std::io::Write` into a shared buffer, for a tracing subscriber.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Quiet at INFO on the happy path; at DEBUG, an acquire span with its
/// outcome and a hold span around the body, under the `lock_runtime` target;
/// a lost lease is a WARN.
#[tokio::test]
async fn tracing_is_quiet_at_info_and_spans_acquire_and_hold_at_debug() {
    use tracing_subscriber::fmt::format::FmtSpan;
    let server = RedisServer::start();
    let locks = client(&server.url()).await;

    let info = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer({
            let info = info.clone();
            move || info.clone()
        })
        .finish();
    {
        let _quiet = tracing::subscriber::set_default(subscriber);
        locks
            .run("traced", &ttl(5_000), async { tracing::info!("inside") })
            .await
            .unwrap();
    }
    let text = info.text();
    assert!(text.contains("inside"), "{text}");
    assert!(!text.contains("lock_runtime"), "quiet at INFO: {text}");

    let debug = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer({
            let debug = debug.clone();
            move || debug.clone()
        })
        .finish();
    {
        let _loud = tracing::subscriber::set_default(subscriber);
        locks
            .run("traced", &ttl(5_000).fencing(true), async {
                tracing::info!("inside")
            })
            .await
            .unwrap();
        let guard = locks.acquire("traced-lost", &ttl(600)).await.unwrap();
        let () = redis::cmd("DEL")
            .arg(locks.key_for("traced-lost"))
            .query(&mut server.connection())
            .unwrap();
        let _ = guard.lost().await;
    }
    let text = debug.text();
    let acquire = text
        .lines()
        .find(|line| line.contains("lock.acquire{") && line.contains("close"))
        .unwrap_or_else(|| panic!("no acquire span: {text}"));
    assert!(acquire.contains("lock_runtime"), "{acquire}");
    assert!(acquire.contains("outcome=\"acquired\""), "{acquire}");
    assert!(acquire.contains("attempts=1"), "{acquire}");
    // The hold span around the body is not asserted here: under `cargo test`
    // another thread's test may have cached its callsite as disabled (a
    // thread-local subscriber only), which `nextest`'s process per test avoids.
    let lost = text
        .lines()
        .find(|line| line.contains("lease lost"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        lost.contains("WARN") && lost.contains("traced-lost"),
        "{lost}"
    );
}

/// `force_release` frees only a holder's lease: given a waiter's token it
/// changes nothing (the waiter keeps its place), and on a semaphore it frees
/// that one permit.
#[tokio::test]
async fn force_release_touches_only_the_holder_it_names() {
    let server = RedisServer::start();
    let locks = client(&server.url()).await;
    let held = locks.acquire("ops:force", &ttl(30_000)).await.unwrap();
    let rival = client(&server.url()).await;
    let waiter = tokio::spawn({
        let rival = rival.clone();
        async move {
            rival
                .acquire(
                    "ops:force",
                    &ttl(5_000)
                        .fair(true)
                        .wait(Wait::For(Duration::from_secs(20))),
                )
                .await
        }
    });
    let state = until_queued(&locks, "ops:force").await;
    let waiting = state.waiters[0].token.clone();
    assert!(!locks.force_release("ops:force", &waiting).await.unwrap());
    let after = locks.inspect("ops:force").await.unwrap();
    let tokens = |state: &lock_runtime::LockState| -> Vec<String> {
        state.holders.iter().map(|h| h.token.clone()).collect()
    };
    assert_eq!(tokens(&after), tokens(&state), "the holder untouched");
    assert_eq!(after.waiters.len(), 1, "the waiter keeps its place");
    assert!(held.check().is_ok());
    // The holder's own token frees it, for the waiter.
    assert!(
        locks
            .force_release("ops:force", &state.holders[0].token)
            .await
            .unwrap()
    );
    waiter.await.unwrap().unwrap().release().await.unwrap();

    let options = ttl(30_000).permits(2);
    let first = locks.acquire("ops:sem", &options).await.unwrap();
    let second = rival.acquire("ops:sem", &options).await.unwrap();
    let state = locks.inspect("ops:sem").await.unwrap();
    let token = get_holder_token(&state, std::process::id());
    assert!(locks.force_release("ops:sem", &token).await.unwrap());
    assert!(
        !locks.force_release("ops:sem", &token).await.unwrap(),
        "only once"
    );
    assert_eq!(locks.inspect("ops:sem").await.unwrap().holders.len(), 1);
    drop((first, second));
}

/// The token of one holder of `state` of this process.
fn get_holder_token(state: &lock_runtime::LockState, pid: u32) -> String {
    state
        .holders
        .iter()
        .find(|h| h.identity.as_ref().is_some_and(|who| who.pid == pid))
        .map(|h| h.token.clone())
        .unwrap()
}
