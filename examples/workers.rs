//! The seed experiment, in Rust: `WORKERS_COUNT` workers contend for one resource
//! for `EXPERIMENT_TIME_SECS`; each winner holds it for a random whole number of
//! seconds, in random "atomic" steps, under a lease whose ttl is
//! `MAX_LOCK_TIME_WITHOUT_CONFIRMATION` (kept alive by the heartbeat).
//!
//! At the end it prints who held the resource when, and checks, from times the
//! workers recorded themselves (not from the lock), that no two holds overlapped.
//! It exits non-zero if any did.
//!
//! The workers hold the resource through a `#[redis_locked]` function; with
//! `--hand-written` they take and release a `LockGuard` by hand instead.
//!
//! ```text
//! cargo run -p examples --example workers                  # 10 workers, 30 s
//! cargo run -p examples --example workers -- --processes 3 # the same, across 3 OS processes
//! cargo run -p examples --example workers -- --hand-written
//! ```

#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use examples::DemoRedis;
use lock_runtime::{LockClient, LockError, LockHandle, LockOptions, Wait, redis_locked};
use rand::Rng;

/// The seed experiment: workers contend for one resource through a Redis lock.
///
/// Each winner holds the resource for a random number of whole seconds, in random
/// "atomic" steps, under a lease that its heartbeat keeps alive; the others wait
/// for it. At the end the demo prints every hold, which workers (and processes)
/// never got a turn, and checks from times the workers recorded themselves that no
/// two holds overlapped (exit status 1 if any did). Uses `REDIS_URL`, or a private
/// `redis-server` it starts when no URL is given and nothing answers on
/// 127.0.0.1:6379.
#[derive(Debug, Clone, Parser)]
#[command(version)]
struct Args {
    /// How many workers contend for the resource.
    #[arg(long, env = "WORKERS_COUNT", default_value_t = 10)]
    workers_count: usize,
    /// How long workers keep trying to take the resource (a hold in progress then
    /// still finishes).
    #[arg(long, env = "EXPERIMENT_TIME_SECS", default_value_t = 30)]
    experiment_time_secs: u64,
    /// Shortest hold, whole seconds.
    #[arg(long, env = "WORK_LOCK_MIN_SECS", default_value_t = 3)]
    work_lock_min_secs: u64,
    /// Longest hold, whole seconds.
    #[arg(long, env = "WORK_LOCK_MAX_SECS", default_value_t = 7)]
    work_lock_max_secs: u64,
    /// Shortest atomic step inside a hold, seconds.
    #[arg(long, env = "ATOMIC_LOCK_TIME_MIN_SEC", default_value_t = 1.0)]
    atomic_lock_time_min_sec: f64,
    /// Longest atomic step inside a hold, seconds (must be < the lease ttl).
    #[arg(long, env = "ATOMIC_LOCK_TIME_MAX_SEC", default_value_t = 4.5)]
    atomic_lock_time_max_sec: f64,
    /// The lease's ttl, seconds: a holder that stops confirming (its heartbeat
    /// stops) loses the resource this long after its last confirmation.
    #[arg(long, env = "MAX_LOCK_TIME_WITHOUT_CONFIRMATION", default_value_t = 5)]
    max_lock_time_without_confirmation: u64,
    /// Run the workers in this many OS processes (to show the lock across processes).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Take and release the lock by hand (`acquire` / `LockGuard::release`) instead
    /// of through the `#[redis_locked]` function.
    #[arg(long)]
    hand_written: bool,
    /// Internal: run as a child process that ends its experiment at this Unix time
    /// (ms) and runs workers `first_worker..first_worker + workers_count`.
    #[arg(long, hide = true, requires = "first_worker")]
    child_until_ms: Option<u64>,
    /// Internal: the first worker number of a child process.
    #[arg(long, hide = true)]
    first_worker: Option<usize>,
    /// Internal: the lock name the parent chose.
    #[arg(long, hide = true)]
    target: Option<String>,
}

/// One OS process of the experiment and the workers it ran.
#[derive(Debug, Clone)]
struct Process {
    id: u32,
    workers: std::ops::Range<usize>,
}

/// One hold, timed by the worker itself (not by the lock).
#[derive(Debug, Clone)]
struct Hold {
    worker: usize,
    process: u32,
    /// Microseconds since the Unix epoch, taken right after `acquire` returned.
    start_us: u64,
    /// Taken right before `release` was sent.
    end_us: u64,
    lost: bool,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[tokio::main]
async fn main() -> ExitCode {
    examples::init_logging();
    let args = Args::parse();
    if let Err(problem) = check(&args) {
        tracing::error!("{problem}");
        return ExitCode::from(2);
    }
    match args.child_until_ms {
        Some(until_ms) => run_child(args, until_ms).await,
        None => run_parent(args).await,
    }
}

fn check(args: &Args) -> Result<(), String> {
    if args.workers_count == 0 || args.processes == 0 {
        return Err("WORKERS_COUNT and --processes must be at least 1".into());
    }
    if args.work_lock_min_secs > args.work_lock_max_secs || args.work_lock_min_secs == 0 {
        return Err("need 0 < WORK_LOCK_MIN_SECS <= WORK_LOCK_MAX_SECS".into());
    }
    if !(args.atomic_lock_time_min_sec > 0.0
        && args.atomic_lock_time_min_sec < args.atomic_lock_time_max_sec)
    {
        return Err("need 0 < ATOMIC_LOCK_TIME_MIN_SEC < ATOMIC_LOCK_TIME_MAX_SEC".into());
    }
    if args.atomic_lock_time_max_sec >= args.max_lock_time_without_confirmation as f64 {
        return Err(
            "ATOMIC_LOCK_TIME_MAX_SEC must be less than MAX_LOCK_TIME_WITHOUT_CONFIRMATION".into(),
        );
    }
    Ok(())
}

async fn run_parent(args: Args) -> ExitCode {
    let redis = match DemoRedis::find_or_start().await {
        Ok(redis) => redis,
        Err(problem) => {
            tracing::error!("{problem}");
            return ExitCode::from(2);
        }
    };
    let target = format!("target:{:032x}", rand::rng().random::<u128>());
    tracing::info!(
        "app started, target = {target}, redis = {}",
        lock_runtime::redact_url(&redis.url)
    );
    let until_ms = now_us() / 1_000 + args.experiment_time_secs * 1_000;
    tracing::info!(
        "starting experiment for {} seconds with {} workers in {} process(es)",
        args.experiment_time_secs,
        args.workers_count,
        args.processes
    );
    let (holds, processes) = if args.processes == 1 {
        let process = Process {
            id: std::process::id(),
            workers: 0..args.workers_count,
        };
        match run_workers(&args, &redis.url, &target, 0, args.workers_count, until_ms).await {
            Ok(holds) => (holds, vec![process]),
            Err(error) => {
                tracing::error!("{error}");
                return ExitCode::from(2);
            }
        }
    } else {
        match run_processes(&args, &redis.url, &target, until_ms).await {
            Ok(holds) => holds,
            Err(problem) => {
                tracing::error!("{problem}");
                return ExitCode::from(2);
            }
        }
    };
    tracing::info!("app finished");
    report(holds, &processes, &args)
}

/// Splits the workers over child processes of this same program; collects the
/// holds they print as `HOLD worker pid start_us end_us lost` lines.
async fn run_processes(
    args: &Args,
    url: &str,
    target: &str,
    until_ms: u64,
) -> Result<(Vec<Hold>, Vec<Process>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut children = Vec::new();
    let mut processes = Vec::new();
    let mut first = 0;
    for index in 0..args.processes {
        let count = args.workers_count / args.processes
            + usize::from(index < args.workers_count % args.processes);
        if count == 0 {
            continue;
        }
        let child = std::process::Command::new(&exe)
            .env("REDIS_URL", url)
            .args([
                "--workers-count",
                &count.to_string(),
                "--first-worker",
                &first.to_string(),
                "--child-until-ms",
                &until_ms.to_string(),
                "--target",
                target,
                "--work-lock-min-secs",
                &args.work_lock_min_secs.to_string(),
                "--work-lock-max-secs",
                &args.work_lock_max_secs.to_string(),
                "--atomic-lock-time-min-sec",
                &args.atomic_lock_time_min_sec.to_string(),
                "--atomic-lock-time-max-sec",
                &args.atomic_lock_time_max_sec.to_string(),
                "--max-lock-time-without-confirmation",
                &args.max_lock_time_without_confirmation.to_string(),
            ])
            .args(args.hand_written.then_some("--hand-written"))
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a worker process: {e}"))?;
        processes.push(Process {
            id: child.id(),
            workers: first..first + count,
        });
        first += count;
        children.push(child);
    }
    let collected = tokio::task::spawn_blocking(move || {
        let mut holds = Vec::new();
        let mut failures = Vec::new();
        for mut child in children {
            if let Some(stdout) = child.stdout.take() {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    holds.extend(parse_hold(&line));
                }
            }
            match child.wait() {
                Ok(status) if status.success() => {}
                Ok(status) => failures.push(format!("worker process {} {status}", child.id())),
                Err(e) => failures.push(format!("worker process {}: {e}", child.id())),
            }
        }
        (holds, failures)
    })
    .await
    .map_err(|e| format!("collecting worker processes failed: {e}"))?;
    let (holds, failures) = collected;
    if failures.is_empty() {
        Ok((holds, processes))
    } else {
        Err(failures.join("; "))
    }
}

fn parse_hold(line: &str) -> Option<Hold> {
    let mut fields = line.strip_prefix("HOLD ")?.split(' ');
    Some(Hold {
        worker: fields.next()?.parse().ok()?,
        process: fields.next()?.parse().ok()?,
        start_us: fields.next()?.parse().ok()?,
        end_us: fields.next()?.parse().ok()?,
        lost: fields.next()? == "1",
    })
}

async fn run_child(args: Args, until_ms: u64) -> ExitCode {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| lock_runtime::DEFAULT_REDIS_URL.into());
    let target = args.target.clone().unwrap_or_else(|| "target".into());
    let first = args.first_worker.unwrap_or(0);
    match run_workers(&args, &url, &target, first, args.workers_count, until_ms).await {
        Ok(holds) => {
            let mut stdout = std::io::stdout().lock();
            for hold in holds {
                let _ = writeln!(
                    stdout,
                    "HOLD {} {} {} {} {}",
                    hold.worker,
                    hold.process,
                    hold.start_us,
                    hold.end_us,
                    u8::from(hold.lost)
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::from(2)
        }
    }
}

async fn run_workers(
    args: &Args,
    url: &str,
    target: &str,
    first: usize,
    count: usize,
    until_ms: u64,
) -> Result<Vec<Hold>, LockError> {
    let client = LockClient::connect(url).await?;
    let holds = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for worker in first..first + count {
        let (client, holds, args, target) = (
            client.clone(),
            Arc::clone(&holds),
            args.clone(),
            target.to_owned(),
        );
        workers.push(tokio::spawn(async move {
            worker_loop(worker, &client, &target, &args, until_ms, &holds).await;
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let holds = holds.lock().map(|h| h.clone()).unwrap_or_default();
    Ok(holds)
}

async fn worker_loop(
    worker: usize,
    client: &LockClient,
    target: &str,
    args: &Args,
    until_ms: u64,
    holds: &Mutex<Vec<Hold>>,
) {
    tracing::info!("[worker-{worker}] - active");
    let ttl = Duration::from_secs(args.max_lock_time_without_confirmation);
    loop {
        let left_ms = until_ms.saturating_sub(now_us() / 1_000);
        if left_ms == 0 {
            break;
        }
        let wait = Duration::from_millis(left_ms);
        let outcome = if args.hand_written {
            hold_by_hand(client, target, ttl, wait, worker, args, holds).await
        } else {
            hold_with_attribute(client, target, ttl, wait, worker, args, holds).await
        };
        match outcome {
            Ok(()) => {}
            Err(LockError::Timeout { .. }) => break,
            Err(error) => {
                tracing::error!("[worker-{worker}] - {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        // A short rest, so the resource visibly changes hands.
        let rest = rand::rng().random_range(0..500);
        tokio::time::sleep(Duration::from_millis(rest)).await;
    }
    tracing::info!("[worker-{worker}] - stopped");
}

/// The lock through the attribute: taken before the body, kept alive while it runs,
/// released after it. `on_lost = "notify"` lets the body record a hold cut short
/// (the call then still returns `LockError::Lost`).
#[redis_locked(
    name = "{target}",
    ttl = ttl,
    wait = wait,
    client = client,
    guard = lock,
    on_lost = "notify"
)]
async fn hold_with_attribute(
    client: &LockClient,
    target: &str,
    ttl: Duration,
    wait: Duration,
    worker: usize,
    args: &Args,
    holds: &Mutex<Vec<Hold>>,
) -> Result<(), LockError> {
    work(worker, &lock, args, holds).await;
    Ok(())
}

/// The same by hand: acquire a guard, work, release.
async fn hold_by_hand(
    client: &LockClient,
    target: &str,
    ttl: Duration,
    wait: Duration,
    worker: usize,
    args: &Args,
    holds: &Mutex<Vec<Hold>>,
) -> Result<(), LockError> {
    let options = LockOptions::new(ttl).wait(Wait::For(wait));
    let guard = client.acquire(target, &options).await?;
    work(worker, &guard.handle(), args, holds).await;
    guard.release().await
}

/// Holds the resource for a random whole number of seconds, in random atomic
/// steps, stopping at once if the lease is lost. Times and records the hold itself.
async fn work(worker: usize, lock: &LockHandle, args: &Args, holds: &Mutex<Vec<Hold>>) {
    let start_us = now_us();
    let hold_secs = rand::rng().random_range(args.work_lock_min_secs..=args.work_lock_max_secs);
    tracing::warn!("[worker-{worker}] - locks target for {hold_secs} seconds");
    let mut left = Duration::from_secs(hold_secs);
    let mut lost = false;
    while !left.is_zero() {
        let step =
            rand::rng().random_range(args.atomic_lock_time_min_sec..args.atomic_lock_time_max_sec);
        let step = Duration::from_secs_f64((step * 10.0).round() / 10.0).min(left);
        tracing::warn!(
            "[worker-{worker}] - atomic sleep for {:.1}",
            step.as_secs_f64()
        );
        tokio::select! {
            error = lock.lost() => {
                tracing::error!("[worker-{worker}] - {error}; abandoning the work");
                lost = true;
                break;
            }
            () = tokio::time::sleep(step) => left -= step,
        }
    }
    let hold = Hold {
        worker,
        process: std::process::id(),
        start_us,
        end_us: now_us(),
        lost,
    };
    if let Ok(mut holds) = holds.lock() {
        holds.push(hold);
    }
}

/// Prints the holds in order, who never got a turn, and checks that no two holds
/// overlapped.
fn report(mut holds: Vec<Hold>, processes: &[Process], args: &Args) -> ExitCode {
    holds.sort_by_key(|hold| hold.start_us);
    let time = |us: u64| {
        chrono::DateTime::from_timestamp_micros(us as i64)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%H:%M:%S%.3f")
                    .to_string()
            })
            .unwrap_or_default()
    };
    println!();
    println!(
        "{:>3}  {:<11} {:>8}  {:<12}  {:<12}  {:>8}",
        "#", "worker", "process", "from", "to", "held"
    );
    for (index, hold) in holds.iter().enumerate() {
        println!(
            "{:>3}  {:<11} {:>8}  {:<12}  {:<12}  {:>6.3} s{}",
            index + 1,
            format!("[worker-{}]", hold.worker),
            hold.process,
            time(hold.start_us),
            time(hold.end_us),
            (hold.end_us - hold.start_us) as f64 / 1e6,
            if hold.lost { "  LEASE LOST" } else { "" }
        );
    }
    let overlaps: Vec<(&Hold, &Hold)> = holds
        .windows(2)
        .filter(|pair| pair[1].start_us < pair[0].end_us)
        .map(|pair| (&pair[0], &pair[1]))
        .collect();
    let smallest_gap = holds
        .windows(2)
        .map(|pair| pair[1].start_us.saturating_sub(pair[0].end_us))
        .min();
    println!();
    for line in no_turn(&holds, processes, args) {
        println!("{line}");
    }
    if holds.is_empty() {
        println!("check: FAILED, nobody held the resource");
        return ExitCode::FAILURE;
    }
    if !overlaps.is_empty() {
        for (a, b) in &overlaps {
            println!(
                "check: OVERLAP, [worker-{}] held it until {} but [worker-{}] took it at {}",
                a.worker,
                time(a.end_us),
                b.worker,
                time(b.start_us)
            );
        }
        return ExitCode::FAILURE;
    }
    let processes: std::collections::BTreeSet<u32> = holds.iter().map(|h| h.process).collect();
    println!(
        "check: ok, {} holds by {} workers in {} process(es), no two overlapped{}",
        holds.len(),
        holds
            .iter()
            .map(|h| h.worker)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        processes.len(),
        smallest_gap.map_or(String::new(), |gap| format!(
            " (smallest gap between holds {:.1} ms)",
            gap as f64 / 1e3
        ))
    );
    ExitCode::SUCCESS
}

/// Lines naming the workers, and with several processes the processes, that never
/// held the resource, and why: holds are serial, so an experiment of `T` seconds
/// with holds of `min..=max` seconds gives at most about `T / min` turns.
fn no_turn(holds: &[Hold], processes: &[Process], args: &Args) -> Vec<String> {
    let held: std::collections::BTreeSet<usize> = holds.iter().map(|hold| hold.worker).collect();
    let waited: Vec<String> = (0..args.workers_count)
        .filter(|worker| !held.contains(worker))
        .map(|worker| format!("[worker-{worker}]"))
        .collect();
    if waited.is_empty() {
        return vec!["every worker held the resource at least once".into()];
    }
    let mut lines = vec![format!(
        "never held it: {} ({} of {}): the experiment ended while they waited (holds are one at a time: \
         {}-{} s each fit at most about {} into {} s)",
        waited.join(", "),
        waited.len(),
        args.workers_count,
        args.work_lock_min_secs,
        args.work_lock_max_secs,
        args.experiment_time_secs / args.work_lock_min_secs.max(1) + 1,
        args.experiment_time_secs,
    )];
    if processes.len() > 1 {
        for process in processes {
            if !process.workers.clone().any(|worker| held.contains(&worker)) {
                lines.push(format!(
                    "process {} (workers {}-{}) got no turn",
                    process.id,
                    process.workers.start,
                    process.workers.end.saturating_sub(1)
                ));
            }
        }
    }
    lines
}
