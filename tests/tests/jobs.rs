//! The scheduled-job example: three nodes with independent clients and skewed
//! clocks fire on the same 1 s schedule; each tick runs exactly once across them,
//! and the others skip it with a `tracing` event, not an error.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use examples::jobs::{Node, run_schedule, runs_key};
use lock_runtime::LockClient;
use tests::RedisServer;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Counts `tracing` events whose message says a tick was skipped.
struct CountSkips(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountSkips {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Message(bool);
        impl Visit for Message {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" && format!("{value:?}").starts_with("skipped") {
                    self.0 = true;
                }
            }
        }
        let mut message = Message(false);
        event.record(&mut message);
        if message.0 && *event.metadata().level() == tracing::Level::INFO {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_runs_exactly_once_across_skewed_nodes() {
    let skips = Arc::new(AtomicUsize::new(0));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(CountSkips(Arc::clone(&skips))),
    )
    .unwrap();

    let server = RedisServer::start();
    let storage = redis::Client::open(server.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    const TICKS: u64 = 10;
    // Start the nodes early in a second, so all of them pick the same next tick
    // however their spawns are spread.
    let into_second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1_100 - into_second))).await;
    let mut nodes = Vec::new();
    for (index, lag_ms) in [0, 150, 300].into_iter().enumerate() {
        let node = Node {
            name: format!("node-{index}"),
            locks: LockClient::connect(&server.url()).await.unwrap(),
            redis: storage.clone(),
            lag: Duration::from_millis(lag_ms),
        };
        nodes.push(tokio::spawn(async move {
            run_schedule(&node, "report", Duration::from_secs(1), TICKS).await;
        }));
    }
    for node in nodes {
        node.await.unwrap();
    }

    let runs: Vec<String> = redis::cmd("LRANGE")
        .arg(runs_key("report"))
        .arg(0)
        .arg(-1)
        .query(&mut server.connection())
        .unwrap();
    let mut per_tick = BTreeMap::<u64, Vec<String>>::new();
    for run in &runs {
        let (tick, node) = run.split_once(' ').unwrap();
        per_tick
            .entry(tick.parse().unwrap())
            .or_default()
            .push(node.to_owned());
    }
    assert!(
        per_tick.values().all(|nodes| nodes.len() == 1),
        "a tick ran more than once: {per_tick:?}"
    );
    // All nodes started together, so they share the same ten ticks.
    assert_eq!(per_tick.len() as u64, TICKS, "{per_tick:?}");
    let ticks: Vec<u64> = per_tick.keys().copied().collect();
    assert!(
        ticks.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{ticks:?}"
    );
    assert_eq!(
        skips.load(Ordering::SeqCst) as u64,
        2 * TICKS,
        "two nodes skip each tick"
    );
}
