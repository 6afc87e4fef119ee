//! Lock benchmarks: the raw round trip, uncontended and contended locking for
//! lock-runtime and for `rslock` (Redlock on the same redis client stack), and the
//! cost of many held locks and many waiters. Prints one table of medians.
//!
//! ```text
//! cargo bench -p tests --bench locks                  # own redis-server, 5 reps
//! BENCH_PIN=1 cargo bench -p tests --bench locks      # server on core 0, clients on core 1
//! BENCH_QUICK=1 cargo bench -p tests --bench locks    # fewer, shorter reps
//! BENCH_REPS=15 cargo bench ...                        # more repetitions (each part)
//! BENCH_ONLY=contended cargo bench ...                 # parts: uncontended, contended, scale, cluster, quorum
//! BENCH_REDIS_URL=redis://host:6379 cargo bench ...   # an existing server (keys bench:*)
//! BENCH_ONLY=none BENCH_SOLO=ours:16 cargo bench ...   # one contender alone, to profile
//! BENCH_FLOOR_BURN=18:18 ...                          # extra server work in the floor's scripts
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lock_runtime::{LockClient, LockError, LockOptions, redis_locked};
use tokio::time::Instant;

/// Times `ops` runs of an async block, in µs per run.
macro_rules! per_op {
    ($ops:expr, $body:expr) => {{
        let started = Instant::now();
        for _ in 0..$ops {
            $body;
        }
        started.elapsed().as_secs_f64() * 1e6 / $ops as f64
    }};
}

/// Counts live heap bytes, to state the memory one held lock costs.
struct CountingAllocator;

static LIVE_BYTES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter
// is only bookkeeping.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn live_bytes() -> f64 {
    LIVE_BYTES.load(Ordering::Relaxed) as f64
}

struct Config {
    url: String,
    /// `BENCH_QUICK`: fewer held locks and waiters in the scale part too.
    quick: bool,
    reps: usize,
    ops: usize,
    contended_for: Duration,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A plain connection on the same client stack, with TCP_NODELAY as lock-runtime's.
async fn data_connection(url: &str) -> redis::aio::MultiplexedConnection {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info().unwrap();
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    redis::Client::open(info.set_tcp_settings(tcp))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[redis_locked(name = "bench:annotated", ttl = 30, client = locks)]
async fn annotated(locks: &LockClient) -> Result<(), LockError> {
    Ok(())
}

/// One contended run's figures.
#[derive(Default, Clone)]
struct Contended {
    per_second: f64,
    lost_updates: i64,
    fairness: f64,
    handoff_p50_ms: f64,
    handoff_p99_ms: f64,
    /// CPU time per acquisition, µs: this process (all clients) and the server.
    client_cpu_us: f64,
    server_cpu_us: f64,
    /// Lua script runs and notices published per acquisition.
    scripts: f64,
    notices: f64,
}

impl Contended {
    /// The figures as the contended table's cells, after its name and workers.
    fn cells(&self) -> String {
        format!(
            "{:.0} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2}",
            self.per_second,
            self.lost_updates,
            self.fairness,
            self.handoff_p50_ms,
            self.handoff_p99_ms,
            self.client_cpu_us,
            self.server_cpu_us,
            self.scripts,
            self.notices
        )
    }
}

/// `workers` tasks take one lock in a loop; the critical section is GET then SET+1.
/// `take` acquires (returning an opaque release future maker).
async fn contended<L, T, R>(config: &Config, workers: usize, name: &str, make: L) -> Contended
where
    L: Fn(String) -> T,
    T: std::future::Future<Output = R>,
    R: Locker + Send + 'static,
{
    let mut data = data_connection(&config.url).await;
    let counter = format!("bench:counter:{name}");
    let _: () = redis::cmd("SET")
        .arg(&counter)
        .arg(0)
        .query_async(&mut data)
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server_before = server_cpu_seconds(&mut data).await;
    let scripts_before = calls_of(&mut data, &SCRIPTS).await;
    let notices_before = calls_of(&mut data, &NOTICES).await;
    let client_before = cpu_seconds();
    let base = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let locker = make(config.url.clone()).await;
        let stop = Arc::clone(&stop);
        let counter = counter.clone();
        let name = name.to_owned();
        let mut data = data_connection(&config.url).await;
        tasks.push(tokio::spawn(async move {
            let mut holds = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let held = locker.take(&name).await;
                let acquired = base.elapsed();
                let value: i64 = redis::cmd("GET")
                    .arg(&counter)
                    .query_async(&mut data)
                    .await
                    .unwrap();
                let () = redis::cmd("SET")
                    .arg(&counter)
                    .arg(value + 1)
                    .query_async(&mut data)
                    .await
                    .unwrap();
                let released = base.elapsed();
                locker.give_back(held).await;
                holds.push((acquired, released));
            }
            holds
        }));
    }
    tokio::time::sleep(config.contended_for).await;
    stop.store(true, Ordering::Relaxed);
    let client_cpu = cpu_seconds() - client_before;
    let server_cpu = server_cpu_seconds(&mut data).await - server_before;
    let scripts = calls_of(&mut data, &SCRIPTS).await - scripts_before;
    let notices = calls_of(&mut data, &NOTICES).await - notices_before;
    let window = config.contended_for;
    let mut all = Vec::new();
    let mut per_worker = Vec::new();
    let mut total = 0i64;
    for (worker, task) in tasks.into_iter().enumerate() {
        let holds = task.await.unwrap();
        total += holds.len() as i64;
        per_worker.push(
            holds
                .iter()
                .filter(|(acquired, _)| *acquired < window)
                .count() as f64,
        );
        all.extend(holds.into_iter().map(|(a, r)| (a, r, worker)));
    }
    let value: i64 = redis::cmd("GET")
        .arg(&counter)
        .query_async(&mut data)
        .await
        .unwrap();
    all.sort_by_key(|(acquired, _, _)| *acquired);
    let mut handoffs: Vec<f64> = all
        .windows(2)
        .filter(|pair| pair[0].2 != pair[1].2 && pair[1].0 < window)
        .map(|pair| pair[1].0.saturating_sub(pair[0].1).as_secs_f64() * 1e3)
        .collect();
    handoffs.sort_by(f64::total_cmp);
    let in_window: f64 = per_worker.iter().sum();
    let min = per_worker.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per_worker.iter().copied().fold(0.0, f64::max);
    Contended {
        per_second: in_window / window.as_secs_f64(),
        lost_updates: total - value,
        fairness: if max > 0.0 { min / max } else { 0.0 },
        handoff_p50_ms: percentile(&handoffs, 0.50),
        handoff_p99_ms: percentile(&handoffs, 0.99),
        client_cpu_us: client_cpu * 1e6 / in_window,
        server_cpu_us: server_cpu * 1e6 / in_window,
        scripts: scripts / in_window,
        notices: notices / in_window,
    }
}

/// One section of the server's `INFO`.
async fn info(data: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(data)
        .await
        .unwrap()
}

/// CPU seconds the server has used (`INFO cpu`), to say where the time goes.
async fn server_cpu_seconds(data: &mut redis::aio::MultiplexedConnection) -> f64 {
    info(data, "cpu")
        .await
        .lines()
        .filter(|line| line.starts_with("used_cpu_sys:") || line.starts_with("used_cpu_user:"))
        .filter_map(|line| line.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// Something that takes and gives back one named lock.
trait Locker {
    type Held: Send;
    fn take(&self, name: &str) -> impl std::future::Future<Output = Self::Held> + Send;
    fn give_back(&self, held: Self::Held) -> impl std::future::Future<Output = ()> + Send;
}

struct Ours(LockClient, LockOptions);

impl Locker for Ours {
    type Held = lock_runtime::LockGuard;
    async fn take(&self, name: &str) -> Self::Held {
        self.0.acquire(name, &self.1).await.unwrap()
    }
    async fn give_back(&self, held: Self::Held) {
        held.release().await.unwrap();
    }
}

struct Peer(rslock::LockManager);

impl Locker for Peer {
    type Held = rslock::Lock;
    async fn take(&self, name: &str) -> Self::Held {
        self.0
            .acquire_no_guard(name.as_bytes(), Duration::from_secs(30))
            .await
            .unwrap()
    }
    async fn give_back(&self, held: Self::Held) {
        self.0.unlock(&held).await;
    }
}

/// The least a lock with a wait queue and direct handoff can cost on Redis 7, by
/// hand: an attempt either takes the key (`SET NX PX`) or queues the worker
/// (`RPUSH`), and a release pops the next worker, sets the key to it and
/// `PUBLISH`es to it; the worker learns it holds the lock from that notice. No
/// leases are checked, no dead waiter is skipped, no fencing: the floor for
/// handoff, as the uncontended floor is for a single acquire+release.
struct HandoffFloor {
    data: redis::aio::MultiplexedConnection,
    /// This worker's token, which is also its notice channel.
    token: String,
    notices: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>>,
    /// The subscribed connection, kept open.
    _subscribed: redis::aio::MultiplexedConnection,
}

static FLOOR_ACQUIRE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(&format!(
        "{}if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end \
         redis.call('RPUSH', KEYS[2], ARGV[1]) return 0",
        floor_burn(0)
    ))
});

static FLOOR_RELEASE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(&format!(
        "{}if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
         local next = redis.call('LPOP', KEYS[2]) \
         if next then redis.call('SET', KEYS[1], next, 'PX', ARGV[2]) \
           redis.call('PUBLISH', next, '1') return 2 end \
         redis.call('DEL', KEYS[1]) return 1",
        floor_burn(1)
    ))
});

/// Extra server work for the floor's scripts, to measure how much the server's
/// script time weighs on throughput: `BENCH_FLOOR_BURN=<attempt>:<release>`
/// makes the attempt and the release run that many `PTTL`s first (each about
/// 1 µs of server time, 6k instructions). Unset: none.
fn floor_burn(which: usize) -> String {
    let counts = std::env::var("BENCH_FLOOR_BURN").unwrap_or_default();
    let count: u32 = counts
        .split(':')
        .nth(which)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if count == 0 {
        return String::new();
    }
    format!("for _ = 1, {count} do redis.call('PTTL', KEYS[1]) end ")
}

impl HandoffFloor {
    async fn connect(url: &str) -> HandoffFloor {
        use redis::IntoConnectionInfo;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let token = format!("bench:floor:{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let info = url.into_connection_info().unwrap();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        let client =
            redis::Client::open(info.set_redis_settings(settings).set_tcp_settings(tcp)).unwrap();
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let config = redis::AsyncConnectionConfig::new().set_push_sender(sender);
        let mut notices = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap();
        notices.subscribe(&token).await.unwrap();
        HandoffFloor {
            data: data_connection(url).await,
            token,
            notices: tokio::sync::Mutex::new(receiver),
            _subscribed: notices,
        }
    }
}

impl HandoffFloor {
    /// Runs one of the floor's scripts on lock `name` (30 s ttl) for this worker.
    async fn call(&self, script: &redis::Script, name: &str) -> i64 {
        script
            .key(name)
            .key(format!("{name}:queue"))
            .arg(&self.token)
            .arg(30_000)
            .invoke_async(&mut self.data.clone())
            .await
            .unwrap()
    }
}

impl Locker for HandoffFloor {
    type Held = String;
    async fn take(&self, name: &str) -> Self::Held {
        if self.call(&FLOOR_ACQUIRE, name).await == 1 {
            return name.to_owned();
        }
        let mut notices = self.notices.lock().await;
        while let Some(push) = notices.recv().await {
            if push.kind == redis::PushKind::Message {
                return name.to_owned();
            }
        }
        panic!("notice connection closed");
    }
    async fn give_back(&self, name: Self::Held) {
        self.call(&FLOOR_RELEASE, &name).await;
    }
}

/// The median of each figure over repeated runs (lost updates: their sum).
fn summarize(runs: &[Contended]) -> Contended {
    let pick = |f: fn(&Contended) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Contended {
        per_second: pick(|c| c.per_second),
        lost_updates: runs.iter().map(|c| c.lost_updates).sum(),
        fairness: pick(|c| c.fairness),
        handoff_p50_ms: pick(|c| c.handoff_p50_ms),
        handoff_p99_ms: pick(|c| c.handoff_p99_ms),
        client_cpu_us: pick(|c| c.client_cpu_us),
        server_cpu_us: pick(|c| c.server_cpu_us),
        scripts: pick(|c| c.scripts),
        notices: pick(|c| c.notices),
    }
}

/// Runs the default mode, FIFO mode and rslock in turn, `config.reps` times, with
/// `workers` workers each; prints their rows and returns the throughput ratios.
async fn compare<A, B, C, TA, TB, TC, RA, RB, RC>(
    config: &Config,
    workers: usize,
    setting: &str,
    ours: A,
    fifo: B,
    peer: C,
) -> [String; 2]
where
    A: Fn(String) -> TA,
    B: Fn(String) -> TB,
    C: Fn(String) -> TC,
    TA: std::future::Future<Output = RA>,
    TB: std::future::Future<Output = RB>,
    TC: std::future::Future<Output = RC>,
    RA: Locker + Send + 'static,
    RB: Locker + Send + 'static,
    RC: Locker + Send + 'static,
{
    let (mut default_runs, mut fair_runs, mut peer_runs) = (Vec::new(), Vec::new(), Vec::new());
    let mut floor_runs = Vec::new();
    let (mut default_ratios, mut fair_ratios) = (Vec::new(), Vec::new());
    let (mut floor_ratios, mut default_floor_ratios) = (Vec::new(), Vec::new());
    let tag = if setting.is_empty() { "own" } else { "shared" };
    let floor = |url: String| async move { HandoffFloor::connect(&url).await };
    for rep in 0..config.reps {
        let name = |who: &str| format!("bench:{who}:{tag}:{workers}:{rep}");
        let default = contended(config, workers, &name("ours"), &ours).await;
        let fair = contended(config, workers, &name("fair"), &fifo).await;
        let theirs = contended(config, workers, &name("peer"), &peer).await;
        let least = contended(config, workers, &name("floor"), floor).await;
        default_ratios.push(default.per_second / theirs.per_second);
        fair_ratios.push(fair.per_second / theirs.per_second);
        floor_ratios.push(least.per_second / theirs.per_second);
        default_floor_ratios.push(default.per_second / least.per_second);
        default_runs.push(default);
        fair_runs.push(fair);
        peer_runs.push(theirs);
        floor_runs.push(least);
    }
    for (who, runs) in [
        ("lock-runtime", &default_runs),
        ("lock-runtime fair", &fair_runs),
        ("rslock", &peer_runs),
        ("handoff floor by hand", &floor_runs),
    ] {
        let c = summarize(runs);
        // The floor's workers always have their own connections.
        let setting = if std::ptr::eq(runs, &floor_runs) {
            ""
        } else {
            setting
        };
        println!("| {who}{setting} | {workers} | {} |", c.cells());
    }
    let spread = |ratios: &[f64]| {
        let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let high = ratios.iter().copied().fold(0.0, f64::max);
        format!("{low:.2}–{high:.2}")
    };
    [
        format!(
            "throughput ÷ rslock at W = {workers}{setting}: default {:.2} (reps {}), fair {:.2} (reps {})",
            median(&mut default_ratios.clone()),
            spread(&default_ratios),
            median(&mut fair_ratios.clone()),
            spread(&fair_ratios),
        ),
        format!(
            "handoff floor at W = {workers}{setting}: floor ÷ rslock {:.2} (reps {}), default ÷ floor {:.2} (reps {})",
            median(&mut floor_ratios.clone()),
            spread(&floor_ratios),
            median(&mut default_floor_ratios.clone()),
            spread(&default_floor_ratios),
        ),
    ]
}

/// CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

/// How many times the server ran the given commands (`INFO commandstats`, e.g.
/// `evalsha`), counting calls made from inside scripts too.
async fn calls_of(data: &mut redis::aio::MultiplexedConnection, commands: &[&str]) -> f64 {
    info(data, "commandstats")
        .await
        .lines()
        .filter(|line| {
            commands
                .iter()
                .any(|command| line.starts_with(&format!("cmdstat_{command}:")))
        })
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

/// Requests the server has answered for locks: script calls and pub/sub
/// commands, each counted once (not the commands a script runs inside), i.e.
/// round trips. The lock scripts run GET, SET, PEXPIRE, DEL, PTTL, PUBLISH, …,
/// which the benchmark's own traffic (GET, SET) also uses, so those are left out.
async fn requests_served(data: &mut redis::aio::MultiplexedConnection) -> f64 {
    calls_of(
        data,
        &["evalsha", "eval", "subscribe", "unsubscribe", "script|load"],
    )
    .await
}

/// Lua script runs (`EVALSHA`/`EVAL`) and notices published.
const SCRIPTS: [&str; 2] = ["evalsha", "eval"];
const NOTICES: [&str; 1] = ["publish"];

fn main() {
    // Optionally pin this process to core 1 (the server goes on core 0).
    let pin = std::env::var_os("BENCH_PIN").is_some();
    if pin && std::env::var_os("BENCH_PINNED").is_none() {
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new("taskset")
            .arg("-c")
            .arg("1")
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env("BENCH_PINNED", "1")
            .status();
        match status {
            Ok(status) => std::process::exit(status.code().unwrap_or(1)),
            Err(error) => println!("taskset unavailable ({error}); running unpinned"),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(pin));
}

async fn run(pin: bool) {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let server = match std::env::var("BENCH_REDIS_URL") {
        Ok(_) => None,
        Err(_) if pin => Some(tests::RedisServer::start_pinned(0)),
        Err(_) => Some(tests::RedisServer::start()),
    };
    let url = std::env::var("BENCH_REDIS_URL")
        .unwrap_or_else(|_| server.as_ref().map(|s| s.url()).unwrap_or_default());
    let config = Config {
        url,
        quick,
        reps: std::env::var("BENCH_REPS")
            .ok()
            .and_then(|r| r.parse().ok())
            .filter(|&r| r > 0)
            .unwrap_or(if quick { 3 } else { 5 }),
        ops: if quick { 1_000 } else { 5_000 },
        contended_for: Duration::from_secs(if quick { 1 } else { 2 }),
    };
    println!(
        "lock benchmarks: redis {} ({}), {} reps, {} ops/rep, contended runs {:?}\n",
        config.url,
        if pin {
            "server core 0, client core 1"
        } else {
            "unpinned"
        },
        config.reps,
        config.ops,
        config.contended_for
    );

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only.split(',').any(|p| p == name);
    if part("uncontended") {
        uncontended(&config).await;
    }
    if part("contended") {
        contended_tables(&config).await;
    }
    if let Ok(solo) = std::env::var("BENCH_SOLO") {
        solo_run(&config, &solo).await;
        return;
    }
    if part("scale") {
        scale(&config).await;
        crowd(&config, false).await;
        crowd(&config, true).await;
    }
    if part("cluster") {
        cluster(&config, pin).await;
    }
    if part("quorum") {
        quorum(&config, pin).await;
    }
}

/// A quorum of five local servers (on core 0 with `BENCH_PIN`, as the single
/// server): uncontended acquire+release ÷ 2 parallel round trips (a PING to all
/// five at once, awaited together), plain and fenced, against rslock on the
/// same five servers; then one lock contended by `W` workers (each its own
/// client), ours against rslock, alternating within each repetition.
async fn quorum(config: &Config, pin: bool) {
    let servers: Vec<tests::RedisServer> = (0..5)
        .map(|_| {
            if pin {
                tests::RedisServer::start_pinned(0)
            } else {
                tests::RedisServer::start()
            }
        })
        .collect();
    let urls: Vec<String> = servers.iter().map(tests::RedisServer::url).collect();
    let redlock_url = format!(
        "redlock://{}",
        servers
            .iter()
            .map(|server| format!("127.0.0.1:{}", server.port()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let locks = LockClient::connect(&redlock_url).await.unwrap();
    let single = LockClient::connect(&config.url).await.unwrap();
    let peer = rslock::LockManager::new(urls.clone());
    let mut pings = Vec::new();
    for url in &urls {
        pings.push(data_connection(url).await);
    }
    let mut one_ping = data_connection(&config.url).await;
    let options = LockOptions::new(Duration::from_secs(30));
    let fenced = options.clone().fencing(true);
    const ROWS: [&str; 4] = [
        "PING to all 5 at once",
        "lock-runtime quorum, guard by hand",
        "lock-runtime quorum, fencing",
        "rslock lock + unlock, same 5 servers",
    ];
    let mut figures: [Vec<f64>; 4] = Default::default();
    let mut ratios: [Vec<f64>; 4] = Default::default();
    let (mut over_peer, mut over_single, mut fencing_cost) = (Vec::new(), Vec::new(), Vec::new());
    let mut floor_over_one = Vec::new();
    for rep in 0..=config.reps {
        let ops = if rep == 0 {
            config.ops / 10
        } else {
            config.ops / 2
        };
        let each = [
            per_op!(ops, {
                futures_util::future::join_all(pings.iter_mut().map(|ping| async move {
                    redis::cmd("PING").query_async::<String>(ping).await
                }))
                .await;
            }),
            per_op!(ops, {
                let guard = locks.acquire("bench:quorum", &options).await.unwrap();
                guard.release().await.unwrap();
            }),
            per_op!(ops, {
                let guard = locks.acquire("bench:quorum-fenced", &fenced).await.unwrap();
                guard.release().await.unwrap();
            }),
            per_op!(ops, peer_round(&peer, "bench:quorum-peer").await),
        ];
        let one_server = per_op!(ops, {
            let guard = single
                .acquire("bench:quorum-single", &options)
                .await
                .unwrap();
            guard.release().await.unwrap();
        });
        let one_round = per_op!(ops, {
            let _: String = redis::cmd("PING").query_async(&mut one_ping).await.unwrap();
        });
        if rep > 0 {
            floor_over_one.push(each[0] / one_round);
            for (index, value) in each.iter().enumerate() {
                figures[index].push(*value);
                ratios[index].push(value / (2.0 * each[0]));
            }
            over_peer.push(each[1] / each[3]);
            over_single.push(each[1] / one_server);
            fencing_cost.push(each[2] / each[1]);
        }
    }
    print_ratio_table(
        "quorum of 5, uncontended",
        "÷ 2 parallel round trips",
        &ROWS,
        &mut figures,
        &mut ratios,
    );
    println!(
        "\nuncontended, same run: quorum guard ÷ rslock {:.3}; quorum guard ÷ one-server guard {:.3}; fenced ÷ unfenced quorum {:.3}; the floor itself, PING to all 5 at once ÷ PING to the one server, {:.3}\n",
        median(&mut over_peer),
        median(&mut over_single),
        median(&mut fencing_cost),
        median(&mut floor_over_one)
    );

    println!(
        "| quorum of 5, contended (GET, SET+1) | workers | acquisitions/s | lost updates | fairness min/max | handoff p50 ms | handoff p99 ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for workers in [4, 16] {
        let (mut ours_runs, mut peer_runs, mut throughput) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..config.reps {
            let ours = contended(config, workers, "quorum", |_| {
                let (url, options) = (redlock_url.clone(), options.clone());
                async move { Ours(LockClient::connect(&url).await.unwrap(), options) }
            })
            .await;
            let theirs = contended(config, workers, "quorum-peer", |_| {
                let urls = urls.clone();
                async move { Peer(rslock::LockManager::new(urls)) }
            })
            .await;
            throughput.push(ours.per_second / theirs.per_second.max(1.0));
            ours_runs.push(ours);
            peer_runs.push(theirs);
        }
        for (who, runs) in [("lock-runtime quorum", &ours_runs), ("rslock", &peer_runs)] {
            let run = summarize(runs);
            println!(
                "| {who} | {workers} | {:.0} | {} | {:.2} | {:.2} | {:.2} |",
                run.per_second,
                run.lost_updates,
                run.fairness,
                run.handoff_p50_ms,
                run.handoff_p99_ms
            );
        }
        println!(
            "\nthroughput ÷ rslock at W = {workers} on the quorum: {:.2} (reps {})\n",
            median(&mut throughput),
            throughput
                .iter()
                .map(|ratio| format!("{ratio:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// The same lock operations on a local 3-master Redis Cluster and on the single
/// server, within each repetition: uncontended acquire+release ÷ 2 round trips
/// (to the lock's primary, and to the single server), one lock contended by 16
/// workers (each its own client), and 16 tasks of one client on 16 locks spread
/// over the primaries. With `BENCH_PIN`, the three primaries share core 0 with
/// the single server: a cluster's throughput cannot scale past that one core
/// here, so the last table shows what the cluster costs, not what it gains.
async fn cluster(config: &Config, pin: bool) {
    let nodes = tests::RedisCluster::start_pinned(3, 0, pin.then_some(0));
    let cluster_url = nodes.url();
    let single = LockClient::connect(&config.url).await.unwrap();
    let clustered = LockClient::connect(&cluster_url).await.unwrap();
    let options = LockOptions::new(Duration::from_secs(30));
    let name = "bench:cluster";
    let primary = nodes.primary_of(nodes.slot(&clustered.key_for(name)));
    let mut to_primary = data_connection(&primary.url()).await;
    let mut to_single = data_connection(&config.url).await;
    let spread: Vec<String> = (0..16).map(|i| format!("bench:spread:{i}")).collect();
    let on_primaries = nodes
        .primaries_of(
            spread
                .iter()
                .map(|name| nodes.slot(&clustered.key_for(name))),
        )
        .len();
    let (mut ratio_single, mut ratio_cluster, mut over) = (Vec::new(), Vec::new(), Vec::new());
    let (mut contended_single, mut contended_cluster) = (Vec::new(), Vec::new());
    let (mut spread_single, mut spread_cluster) = (Vec::new(), Vec::new());
    for rep in 0..=config.reps {
        let ops = if rep == 0 {
            config.ops / 10
        } else {
            config.ops
        };
        let ping_single = per_op!(ops, {
            let _: String = redis::cmd("PING")
                .query_async(&mut to_single)
                .await
                .unwrap();
        });
        let cycle_single = per_op!(ops, {
            let guard = single.acquire(name, &options).await.unwrap();
            guard.release().await.unwrap();
        });
        let ping_primary = per_op!(ops, {
            let _: String = redis::cmd("PING")
                .query_async(&mut to_primary)
                .await
                .unwrap();
        });
        let cycle_cluster = per_op!(ops, {
            let guard = clustered.acquire(name, &options).await.unwrap();
            guard.release().await.unwrap();
        });
        let contended_on = |url: String| {
            let options = options.clone();
            async move { Ours(LockClient::connect(&url).await.unwrap(), options) }
        };
        let single_run = contended(config, 16, "cluster-single", |_| {
            contended_on(config.url.clone())
        })
        .await;
        let cluster_run =
            contended(config, 16, "cluster", |_| contended_on(cluster_url.clone())).await;
        let spread_single_run = independent(config, &single, &spread).await;
        let spread_cluster_run = independent(config, &clustered, &spread).await;
        if rep > 0 {
            let (single_ratio, cluster_ratio) = (
                cycle_single / (2.0 * ping_single),
                cycle_cluster / (2.0 * ping_primary),
            );
            ratio_single.push(single_ratio);
            ratio_cluster.push(cluster_ratio);
            over.push(cluster_ratio / single_ratio);
            assert_eq!(
                single_run.lost_updates + cluster_run.lost_updates,
                0,
                "lost updates"
            );
            contended_single.push(single_run.per_second);
            contended_cluster.push(cluster_run.per_second);
            spread_single.push(spread_single_run);
            spread_cluster.push(spread_cluster_run);
        }
    }
    let ratios: Vec<f64> = contended_cluster
        .iter()
        .zip(&contended_single)
        .map(|(c, s)| c / s)
        .collect();
    let spread_ratios: Vec<f64> = spread_cluster
        .iter()
        .zip(&spread_single)
        .map(|(c, s)| c / s)
        .collect();
    println!(
        "| Redis Cluster (3 primaries) vs one server | one server | cluster | cluster ÷ one server |"
    );
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| uncontended acquire+release ÷ 2 round trips | {:.3} | {:.3} | {:.3} |",
        median(&mut ratio_single),
        median(&mut ratio_cluster),
        median(&mut over)
    );
    println!(
        "| one lock, 16 workers: acquisitions/s | {:.0} | {:.0} | {:.2} |",
        median(&mut contended_single),
        median(&mut contended_cluster),
        median(&mut ratios.clone())
    );
    println!(
        "| 16 locks ({on_primaries} primaries), 16 tasks of one client: acquisitions/s | {:.0} | {:.0} | {:.2} |\n",
        median(&mut spread_single),
        median(&mut spread_cluster),
        median(&mut spread_ratios.clone())
    );
    notices_on_a_cluster(config, &nodes).await;
}

/// Notices on a cluster, classic against sharded pub/sub, measured raw: the
/// time from a publish on the channel's primary to the message's arrival at a
/// subscriber, and the cluster's server CPU per message (all nodes). Classic:
/// subscribed on another node (the message crosses the cluster bus, and every
/// node gets it). Sharded: `SSUBSCRIBE` on the channel's primary, `SPUBLISH`
/// there (no other node sees it).
async fn notices_on_a_cluster(config: &Config, nodes: &tests::RedisCluster) {
    let channel = "bench:notice:{n}";
    let primary = nodes.primary_of(nodes.slot(channel));
    let other = nodes
        .nodes()
        .iter()
        .find(|node| node.port() != primary.port())
        .expect("another node");
    let cluster_cpu = async || {
        let mut total = 0.0;
        for node in nodes.nodes() {
            total += server_cpu_seconds(&mut data_connection(&node.url()).await).await;
        }
        total
    };
    let mut rows = Vec::new();
    for (kind, subscribe, publish, on) in [
        (
            "classic (PUBLISH, subscriber on another node)",
            "SUBSCRIBE",
            "PUBLISH",
            other,
        ),
        (
            "sharded (SPUBLISH, subscriber on the slot's primary)",
            "SSUBSCRIBE",
            "SPUBLISH",
            primary,
        ),
    ] {
        let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
        let client = redis::Client::open(format!("{}/?protocol=resp3", on.url())).unwrap();
        let mut subscriber = client
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new().set_push_sender(sender),
            )
            .await
            .unwrap();
        let _: redis::Value = redis::cmd(subscribe)
            .arg(channel)
            .query_async(&mut subscriber)
            .await
            .unwrap();
        let mut publisher = data_connection(&primary.url()).await;
        let mut latencies = Vec::new();
        let cpu_before = cluster_cpu().await;
        for _ in 0..config.ops {
            let sent = Instant::now();
            let _: i64 = redis::cmd(publish)
                .arg(channel)
                .arg("t")
                .query_async(&mut publisher)
                .await
                .unwrap();
            loop {
                let push = received.recv().await.expect("the message");
                if matches!(
                    push.kind,
                    redis::PushKind::Message | redis::PushKind::SMessage
                ) {
                    break;
                }
            }
            latencies.push(sent.elapsed().as_secs_f64() * 1e6);
        }
        let cpu = (cluster_cpu().await - cpu_before) * 1e6 / config.ops as f64;
        latencies.sort_by(f64::total_cmp);
        rows.push(format!(
            "| {kind} | {:.0} | {:.0} | {cpu:.1} |",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        ));
    }
    println!(
        "| notice on a cluster | publish to arrival p50 µs | p99 µs | cluster server CPU µs/notice |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for row in rows {
        println!("{row}");
    }
    println!();
}

/// Tasks of one client, each on its own lock, acquiring and releasing in a loop
/// for the contended run's length: acquisitions per second in all.
async fn independent(config: &Config, locks: &LockClient, names: &[String]) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let options = LockOptions::new(Duration::from_secs(30));
    let mut tasks = Vec::new();
    for name in names {
        let (locks, options, name, stop) = (
            locks.clone(),
            options.clone(),
            name.clone(),
            Arc::clone(&stop),
        );
        tasks.push(tokio::spawn(async move {
            let mut count = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let guard = locks.acquire(&name, &options).await.unwrap();
                guard.release().await.unwrap();
                count += 1;
            }
            count
        }));
    }
    tokio::time::sleep(config.contended_for).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / config.contended_for.as_secs_f64()
}

/// The floor (one round trip on the same client stack), the least any
/// compare-and-delete lock can cost on Redis 7 (`SET NX PX`, then a Lua
/// compare-and-delete: Redis has no compare-and-delete command before 8.4), and
/// the uncontended cycles. They are measured in turn within each repetition, so
/// that each ratio compares figures taken moments apart on this noisy machine;
/// medians of the per-repetition values.
async fn uncontended(config: &Config) {
    let mut ping = data_connection(&config.url).await;
    let locks = LockClient::connect(&config.url).await.unwrap();
    let options = LockOptions::new(Duration::from_secs(30));
    let peer = rslock::LockManager::new(vec![config.url.clone()]);
    let compare_and_delete = redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    );
    // The floor again with a value as long as our tokens (which carry the
    // holder's record), to show what the longer value costs by itself.
    let token = {
        let guard = locks.acquire("bench:uncontended", &options).await.unwrap();
        let state = locks.inspect("bench:uncontended").await.unwrap();
        guard.release().await.unwrap();
        state.holders[0].token.clone()
    };
    let long_value = "t".repeat(token.len());
    let long_floor_row = format!(
        "by hand as the floor, the value as long as our token ({} bytes)",
        token.len()
    );
    let rows: [&str; 9] = [
        "PING round trip",
        "by hand: SET NX PX + Lua compare-and-delete (the floor for any such lock)",
        "lock-runtime, guard by hand",
        "lock-runtime, #[redis_locked] fn",
        "rslock lock + unlock",
        "lock-runtime, 2 names at once (acquire_all, one server)",
        "lock-runtime, semaphore of 4 (permits)",
        "lock-runtime, read lock (mode read)",
        &long_floor_row,
    ];
    let mut figures: [Vec<f64>; 9] = Default::default();
    let mut ratios: [Vec<f64>; 9] = Default::default();
    let (mut attribute_over_guard, mut guard_over_floor) = (Vec::new(), Vec::new());
    let mut long_over_floor = Vec::new();
    // The lock shapes ÷ the single lock's guard, in the same rep.
    let mut shapes_over_guard: [Vec<f64>; 3] = Default::default();
    let semaphore = options.clone().permits(4);
    let read = options.clone().mode(lock_runtime::Mode::Read);
    for rep in 0..=config.reps {
        // Rep 0 warms up.
        let ops = if rep == 0 {
            config.ops / 10
        } else {
            config.ops
        };
        let each = [
            per_op!(ops, {
                let _: String = redis::cmd("PING").query_async(&mut ping).await.unwrap();
            }),
            per_op!(
                ops,
                floor_round(&mut ping, &compare_and_delete, "token").await
            ),
            per_op!(ops, {
                let guard = locks.acquire("bench:uncontended", &options).await.unwrap();
                guard.release().await.unwrap();
            }),
            per_op!(ops, annotated(&locks).await.unwrap()),
            per_op!(ops, peer_round(&peer, "bench:peer").await),
            per_op!(ops, {
                let guard = locks
                    .acquire_all(["bench:pair:a", "bench:pair:b"], &options)
                    .await
                    .unwrap();
                guard.release().await.unwrap();
            }),
            per_op!(ops, {
                let guard = locks.acquire("bench:semaphore", &semaphore).await.unwrap();
                guard.release().await.unwrap();
            }),
            per_op!(ops, {
                let guard = locks.acquire("bench:read", &read).await.unwrap();
                guard.release().await.unwrap();
            }),
            per_op!(
                ops,
                floor_round(&mut ping, &compare_and_delete, &long_value).await
            ),
        ];
        if rep > 0 {
            for (shape, over) in shapes_over_guard.iter_mut().enumerate() {
                over.push(each[5 + shape] / each[2]);
            }
            for (index, value) in each.iter().enumerate() {
                figures[index].push(*value);
                ratios[index].push(value / (2.0 * each[0]));
            }
            attribute_over_guard.push(each[3] / each[2]);
            guard_over_floor.push(each[2] / each[1]);
            long_over_floor.push(each[8] / each[1]);
        }
    }
    print_ratio_table(
        "uncontended",
        "÷ 2 round trips",
        &rows,
        &mut figures,
        &mut ratios,
    );
    println!(
        "\nattribute ÷ guard by hand: {:.3}; guard by hand ÷ the floor: {:.3}; \
         the floor with a token-long value ÷ the floor: {:.3}",
        median(&mut attribute_over_guard),
        median(&mut guard_over_floor),
        median(&mut long_over_floor)
    );
    let [pair, permits, reader] = &mut shapes_over_guard;
    println!(
        "÷ the single lock's guard, same rep: 2 names {:.3}, semaphore {:.3}, read lock {:.3}\n",
        median(pair),
        median(permits),
        median(reader)
    );
}

/// One round of the floor: `SET NX PX` of `value`, then compare-and-delete.
async fn floor_round(
    connection: &mut redis::aio::MultiplexedConnection,
    compare_and_delete: &redis::Script,
    value: &str,
) {
    let set: Option<String> = redis::cmd("SET")
        .arg("bench:raw")
        .arg(value)
        .arg("NX")
        .arg("PX")
        .arg(30_000)
        .query_async(connection)
        .await
        .unwrap();
    assert!(set.is_some());
    let deleted: i64 = compare_and_delete
        .key("bench:raw")
        .arg(value)
        .invoke_async(connection)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
}

/// One rslock lock + unlock of `name`.
async fn peer_round(peer: &rslock::LockManager, name: &str) {
    let lock = peer
        .lock(name.as_bytes(), Duration::from_secs(30))
        .await
        .unwrap();
    peer.unlock(&lock).await;
}

/// Prints µs per acquire+release for each row, and (but for the first row,
/// the round trip itself) the median ratio to the round trip.
fn print_ratio_table(
    title: &str,
    ratio_header: &str,
    rows: &[&str],
    figures: &mut [Vec<f64>],
    ratios: &mut [Vec<f64>],
) {
    println!("| {title} | µs per acquire+release | {ratio_header} |");
    println!("| --- | ---: | ---: |");
    for (index, what) in rows.iter().enumerate() {
        if index == 0 {
            println!("| {what} | {:.1} | |", median(&mut figures[0]));
        } else {
            println!(
                "| {what} | {:.1} | {:.3} |",
                median(&mut figures[index]),
                median(&mut ratios[index])
            );
        }
    }
}

/// The contended runs: each worker with its own client, then one shared client.
async fn contended_tables(config: &Config) {
    println!(
        "| contended (GET, SET+1) | workers | acquisitions/s | lost updates | fairness min/max | handoff p50 ms | handoff p99 ms | client CPU µs/acq | server CPU µs/acq | scripts/acq | notices/acq |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    // The three locks take turns within each repetition, and each throughput
    // ratio is the median of the per-repetition ratios: the machine's drift
    // between repetitions cancels out. First each worker with its own client
    // (connections), then all workers of the process sharing one client, as an
    // application would.
    let options = LockOptions::new(Duration::from_secs(30));
    let mut ratio_lines = Vec::new();
    for workers in [4, 16, 64] {
        let line = compare(
            config,
            workers,
            "",
            |url: String| {
                let options = options.clone();
                async move { Ours(LockClient::connect(&url).await.unwrap(), options) }
            },
            |url: String| {
                let options = options.clone().fair(true);
                async move { Ours(LockClient::connect(&url).await.unwrap(), options) }
            },
            |url: String| async move { Peer(rslock::LockManager::new(vec![url])) },
        )
        .await;
        ratio_lines.extend(line);
    }
    let shared = LockClient::connect(&config.url).await.unwrap();
    let shared_peer = rslock::LockManager::new(vec![config.url.clone()]);
    for workers in [16, 64] {
        let line = compare(
            config,
            workers,
            ", one client",
            |_| {
                let (client, options) = (shared.clone(), options.clone());
                async move { Ours(client, options) }
            },
            |_| {
                let (client, options) = (shared.clone(), options.clone().fair(true));
                async move { Ours(client, options) }
            },
            |_| {
                let manager = shared_peer.clone();
                async move { Peer(manager) }
            },
        )
        .await;
        ratio_lines.extend(line);
    }
    // Four clients of 16 workers each, as four processes of an application
    // would be; rslock likewise with four lock managers.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(LockClient::connect(&config.url).await.unwrap());
    }
    let managers: Vec<_> = (0..4)
        .map(|_| rslock::LockManager::new(vec![config.url.clone()]))
        .collect();
    let turns = [(); 3].map(|()| std::sync::atomic::AtomicUsize::new(0));
    let next = |turn: &std::sync::atomic::AtomicUsize| turn.fetch_add(1, Ordering::Relaxed) % 4;
    let line = compare(
        config,
        64,
        ", 4 clients",
        |_| {
            let (client, options) = (clients[next(&turns[0])].clone(), options.clone());
            async move { Ours(client, options) }
        },
        |_| {
            let client = clients[next(&turns[1])].clone();
            let options = options.clone().fair(true);
            async move { Ours(client, options) }
        },
        |_| {
            let manager = managers[next(&turns[2])].clone();
            async move { Peer(manager) }
        },
    )
    .await;
    ratio_lines.extend(line);
    for line in ratio_lines {
        println!("{line}");
    }
}

/// One contender alone for `BENCH_SOLO_SECS` (default 10) s, to profile it
/// (`strace -c`, `perf`): `BENCH_SOLO=<ours|fair|rslock|floor>:<workers>[:shared|:<clients>]`
/// (`shared`: one client for all workers, as `:1`; default: one per worker).
/// The floor's workers always have their own connections.
async fn solo_run(config: &Config, solo: &str) {
    let mut parts = solo.split(':');
    let who = parts.next().unwrap_or_default().to_owned();
    let workers: usize = parts.next().and_then(|w| w.parse().ok()).unwrap_or(16);
    let clients: usize = match parts.next() {
        Some("shared") => 1,
        Some(count) => count.parse().unwrap_or(workers).max(1),
        None => workers,
    };
    let secs: u64 = std::env::var("BENCH_SOLO_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let config = Config {
        url: config.url.clone(),
        quick: config.quick,
        reps: 1,
        ops: 0,
        contended_for: Duration::from_secs(secs),
    };
    let options = LockOptions::new(Duration::from_secs(30)).fair(who == "fair");
    let mut shared = Vec::new();
    let mut managers = Vec::new();
    for _ in 0..clients {
        shared.push(LockClient::connect(&config.url).await.unwrap());
        managers.push(rslock::LockManager::new(vec![config.url.clone()]));
    }
    let turn = std::sync::atomic::AtomicUsize::new(0);
    let next = || turn.fetch_add(1, Ordering::Relaxed) % clients;
    let name = format!("bench:solo:{who}");
    let c = if who == "floor" {
        contended(&config, workers, &name, |url: String| async move {
            HandoffFloor::connect(&url).await
        })
        .await
    } else if who == "rslock" {
        contended(&config, workers, &name, |_| {
            let manager = managers[next()].clone();
            async move { Peer(manager) }
        })
        .await
    } else {
        contended(&config, workers, &name, |_| {
            let (client, options) = (shared[next()].clone(), options.clone());
            async move { Ours(client, options) }
        })
        .await
    };
    println!("| {solo} | {workers} | {} |", c.cells());
}

/// 10,000 locks held at once by one process, heartbeats running.
async fn scale(config: &Config) {
    let count = if config.quick { 2_000 } else { 10_000 };
    let ttl = Duration::from_secs(3); // heartbeat every 1 s
    let locks = LockClient::connect(&config.url).await.unwrap();
    let mut data = data_connection(&config.url).await;
    let options = LockOptions::new(ttl);
    let bytes_before = live_bytes();
    let mut guards = Vec::with_capacity(count);
    for index in 0..count {
        guards.push(
            locks
                .acquire(&format!("bench:held:{index}"), &options)
                .await
                .unwrap(),
        );
    }
    let bytes_after = live_bytes();
    tokio::time::sleep(Duration::from_secs(2)).await; // let the beats spread out
    let window = Duration::from_secs(5);
    let requests_before = requests_served(&mut data).await;
    let cpu_before = cpu_seconds();
    tokio::time::sleep(window).await;
    let cpu_after = cpu_seconds();
    let requests_after = requests_served(&mut data).await;
    let held = guards.iter().filter(|guard| guard.is_held()).count();
    let per_second = (requests_after - requests_before) / window.as_secs_f64();
    let expected = count as f64 / (ttl / 3).as_secs_f64();
    println!(
        "\n{count} locks held (ttl {ttl:?}, heartbeat {:?}): {held} still held after {window:?}; \
         {per_second:.0} lock requests/s to Redis (locks ÷ heartbeat = {expected:.0}, ratio {:.3}); \
         client CPU {:.1}% of a core; {:.2} KiB of heap per held lock",
        ttl / 3,
        per_second / expected,
        (cpu_after - cpu_before) / window.as_secs_f64() * 100.0,
        (bytes_after - bytes_before) / count as f64 / 1024.0,
    );
    for guard in guards {
        guard.release().await.unwrap();
    }
}

/// 1,000 waiters queued on one busy lock: what they cost Redis while they wait,
/// and how long until all are served once it is free.
async fn crowd(config: &Config, fair: bool) {
    let count = if config.quick { 200 } else { 1_000 };
    let holder = LockClient::connect(&config.url).await.unwrap();
    let waiters = LockClient::connect(&config.url).await.unwrap();
    let mut data = data_connection(&config.url).await;
    let options = LockOptions::new(Duration::from_secs(30)).fair(fair);
    let name = if fair {
        "bench:crowd:fair"
    } else {
        "bench:crowd"
    };
    let guard = holder.acquire(name, &options).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..count {
        let waiters = waiters.clone();
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            let guard = waiters.acquire(name, &options).await.unwrap();
            guard.release().await.unwrap();
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // subscriptions settle
    let window = Duration::from_secs(5);
    let before = requests_served(&mut data).await;
    tokio::time::sleep(window).await;
    let after = requests_served(&mut data).await;
    let waiting_per_second = (after - before) / window.as_secs_f64();
    let released = Instant::now();
    let before = requests_served(&mut data).await;
    guard.release().await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let served_in = released.elapsed();
    let after = requests_served(&mut data).await;
    println!(
        "{count} waiters ({}) on one busy lock: {waiting_per_second:.1} lock requests/s to Redis while waiting; \
         all served {served_in:.2?} after the release, with {:.0} lock requests ({:.1} per waiter)",
        if fair { "fair" } else { "default" },
        after - before,
        (after - before) / count as f64
    );
}
