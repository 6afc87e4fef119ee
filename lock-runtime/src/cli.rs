//! `lockctl`: see and free locks from a shell (the `cli` feature).
//!
//! ```text
//! cargo install --path lock-runtime --features cli --bin lockctl
//! lockctl list 'invoice:*'        # a table of held locks; --json for scripts
//! lockctl show invoice:42         # one lock, its holder and its queue
//! lockctl release invoice:42      # frees a stuck lock (asks first; --yes)
//! lockctl watch invoice:42        # acquire/release/handoff events until Ctrl-C
//! ```
//!
//! Exit codes: 0 done; 1 an error (unreachable server, wrong password, a
//! denied command, bad input); 2 bad usage; 3 the lock is not held; 4 not
//! released: the lease shown no longer holds the lock, and nothing changed;
//! 5 not released: not confirmed.

#![allow(clippy::print_stdout)]

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::{DEFAULT_PREFIX, DEFAULT_REDIS_URL, Holder, LockClient, LockError, LockState, Waiter};

/// See and free the locks of lock-runtime on a Redis server.
#[derive(Debug, Parser)]
#[command(
    name = "lockctl",
    version,
    after_help = "Exit codes: 0 done; 1 error (unreachable server, wrong password, denied command, bad input); 2 bad usage; 3 lock not held; 4 not released, the lease shown no longer holds the lock (nothing changed); 5 not released, not confirmed."
)]
struct Cli {
    /// The Redis URL, as the services use it (a Cluster seed list, a
    /// redis-sentinel:// or redlock:// URL work too).
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS_URL, global = true)]
    url: String,
    /// The key prefix the services use.
    #[arg(long, default_value = DEFAULT_PREFIX, global = true)]
    prefix: String,
    /// Print JSON (one document; `watch`: one per line) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// How long connecting and each request may take, in seconds.
    #[arg(long, default_value_t = 5.0, global = true)]
    timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the locks held or waited for whose names match PATTERN (a glob).
    List {
        #[arg(default_value = "*")]
        pattern: String,
    },
    /// Show one lock: its holders and its queue.
    Show { name: String },
    /// Free a stuck lock: shows its holder, asks, and deletes only the lease
    /// it showed (a newer holder is never touched). Waiters are woken as by a
    /// normal release; the old holder finds its lease lost.
    Release {
        name: String,
        /// Do not ask.
        #[arg(long, short)]
        yes: bool,
        /// The lease to free, when several hold the lock (a semaphore, readers).
        #[arg(long)]
        token: Option<String>,
    },
    /// Print the lock's acquire, release and handoff events as they happen,
    /// until Ctrl-C (polls the lock).
    Watch {
        name: String,
        /// How often to look, in ms.
        #[arg(long, default_value_t = 50)]
        interval_ms: u64,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// Why `lockctl` stopped, and its exit code.
enum Failure {
    Error(LockError),
    Usage(String),
    NotHeld(String),
    Refused(String),
    NotConfirmed,
}

impl From<LockError> for Failure {
    fn from(error: LockError) -> Self {
        Failure::Error(error)
    }
}

/// Runs `lockctl` with the process's arguments; what `main` returns.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lockctl: cannot start: {error}");
            return ExitCode::from(1);
        }
    };
    let (message, code) = match runtime.block_on(run(&cli)) {
        Ok(()) => return ExitCode::SUCCESS,
        Err(Failure::Error(error)) => (error.to_string(), 1),
        Err(Failure::Usage(message)) => (message, 2),
        Err(Failure::NotHeld(name)) => (format!("lock `{name}` is not held"), 3),
        Err(Failure::Refused(name)) => (
            format!(
                "lock `{name}` not released: the lease shown no longer holds it (released, expired, or taken by a new holder); nothing changed"
            ),
            4,
        ),
        Err(Failure::NotConfirmed) => ("not released".to_owned(), 5),
    };
    eprintln!("lockctl: {message}");
    ExitCode::from(code)
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    if !(cli.timeout.is_finite() && cli.timeout > 0.0 && cli.timeout < 3_600.0) {
        return Err(Failure::Usage(format!(
            "--timeout {} is not a number of seconds between 0 and 3600",
            cli.timeout
        )));
    }
    let timeout = Duration::from_secs_f64(cli.timeout);
    // Only `release` changes a lock: the others need only read access.
    let writes = matches!(cli.command, Command::Release { .. });
    let client = LockClient::builder(cli.url.clone())
        .prefix(cli.prefix.clone())
        .connect_timeout(timeout)
        .response_timeout(timeout)
        .check_permissions(writes)
        .connect()
        .await?;
    match &cli.command {
        Command::List { pattern } => {
            let locks = client.list(pattern).await?;
            if cli.json {
                println!("{}", Value::Array(locks.iter().map(lock_json).collect()));
            } else {
                print_table(&locks);
            }
            Ok(())
        }
        Command::Show { name } => {
            let state = client.inspect(name).await?;
            if cli.json {
                println!("{}", lock_json(&state));
            } else {
                print_detail(&state);
            }
            if state.is_held() {
                Ok(())
            } else {
                Err(Failure::NotHeld(name.clone()))
            }
        }
        Command::Release { name, yes, token } => {
            release(&client, name, *yes, token.as_deref(), cli.json).await
        }
        Command::Watch {
            name,
            interval_ms,
            count,
        } => watch(&client, name, *interval_ms, *count, cli.json).await,
    }
}

async fn release(
    client: &LockClient,
    name: &str,
    yes: bool,
    token: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let state = client.inspect(name).await?;
    let holder = match token {
        Some(token) => state.holders.iter().find(|holder| holder.token == token),
        None if state.holders.len() > 1 => {
            if !json {
                print_detail(&state);
            }
            return Err(Failure::Usage(format!(
                "lock `{name}` has {} holders: say which lease to free with --token",
                state.holders.len()
            )));
        }
        None => state.holders.first(),
    };
    let Some(holder) = holder else {
        return Err(match token {
            Some(_) if state.is_held() => Failure::Refused(name.to_owned()),
            _ => Failure::NotHeld(name.to_owned()),
        });
    };
    eprintln!(
        "lock `{name}` is held by {} ({}; held for {}, ttl left {}); {} waiting",
        who(holder.identity.as_ref()),
        holder.token,
        duration(holder.held_for),
        duration(holder.ttl_left),
        state.waiters.len()
    );
    if !yes {
        eprint!("Release it? Its holder may still be running. [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let read = std::io::stdin().lock().read_line(&mut answer);
        if read.is_err() || !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Failure::NotConfirmed);
        }
    }
    if !client.force_release(name, &holder.token).await? {
        return Err(Failure::Refused(name.to_owned()));
    }
    if json {
        println!(
            "{}",
            json!({"released": name, "token": holder.token, "waiters": state.waiters.len()})
        );
    } else {
        println!(
            "released lock `{name}` ({} waiting were told)",
            state.waiters.len()
        );
    }
    Ok(())
}

/// One change seen between two looks at a lock.
fn events(before: &LockState, now: &LockState) -> Vec<Value> {
    let gone: Vec<&Holder> = before
        .holders
        .iter()
        .filter(|held| !now.holders.iter().any(|h| h.token == held.token))
        .collect();
    let came: Vec<&Holder> = now
        .holders
        .iter()
        .filter(|holder| !before.holders.iter().any(|h| h.token == holder.token))
        .collect();
    let mut events = Vec::new();
    let mut gone = gone.into_iter();
    for holder in came {
        // One holder replaced by another between two looks: a handoff (or a
        // release and an acquire too quick to tell apart).
        let previous = if holder.share == crate::Share::Exclusive {
            gone.next()
        } else {
            None
        };
        match previous {
            Some(previous) => events.push(json!({
                "event": "handoff",
                "from": who(previous.identity.as_ref()),
                "to": who(holder.identity.as_ref()),
                "token": holder.token,
                "fence": holder.fence,
            })),
            None => events.push(json!({
                "event": "acquire",
                "by": who(holder.identity.as_ref()),
                "share": holder.share.to_string(),
                "token": holder.token,
                "fence": holder.fence,
            })),
        }
    }
    for previous in gone {
        events.push(json!({
            "event": "release",
            "by": who(previous.identity.as_ref()),
            "token": previous.token,
        }));
    }
    events
}

async fn watch(
    client: &LockClient,
    name: &str,
    interval_ms: u64,
    count: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    let interval = Duration::from_millis(interval_ms.max(1));
    let mut seen = client.inspect(name).await?;
    eprintln!(
        "watching lock `{name}` on {} every {} ms (Ctrl-C to stop)",
        client.server(),
        interval.as_millis()
    );
    if !json {
        print_detail(&seen);
    }
    let mut printed = 0u64;
    loop {
        if count.is_some_and(|count| printed >= count) {
            return Ok(());
        }
        tokio::time::sleep(interval).await;
        let now = client.inspect(name).await?;
        for mut event in events(&seen, &now) {
            if count.is_some_and(|count| printed >= count) {
                break;
            }
            printed += 1;
            if json {
                event["at"] = json!(clock());
                println!("{event}");
            } else {
                println!("{} {}", clock(), describe(&event));
            }
        }
        let _ = std::io::stdout().flush();
        seen = now;
    }
}

/// An event as a line of text.
fn describe(event: &Value) -> String {
    let field = |name: &str| event[name].as_str().unwrap_or("?").to_owned();
    let fence = event["fence"]
        .as_u64()
        .map(|fence| format!(" (fence {fence})"))
        .unwrap_or_default();
    match event["event"].as_str() {
        Some("handoff") => format!("handoff {} -> {}{fence}", field("from"), field("to")),
        Some("acquire") => format!("acquire by {} ({}){fence}", field("by"), field("share")),
        _ => format!("release by {}", field("by")),
    }
}

/// The time of day (UTC) with ms.
fn clock() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60,
        now.subsec_millis()
    )
}

fn who(identity: Option<&crate::HolderIdentity>) -> String {
    identity.map_or_else(|| "(unknown)".to_owned(), ToString::to_string)
}

/// `850ms`, `12.3s`, `5m12s`, `2h03m`; `-` for none.
fn duration(duration: Option<Duration>) -> String {
    let Some(duration) = duration else {
        return "-".to_owned();
    };
    let secs = duration.as_secs();
    if secs == 0 {
        format!("{}ms", duration.as_millis())
    } else if secs < 60 {
        format!("{:.1}s", duration.as_secs_f64())
    } else if secs < 3_600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3_600, secs / 60 % 60)
    }
}

fn print_table(locks: &[LockState]) {
    let mut rows = vec![[
        "NAME".to_owned(),
        "SHARE".to_owned(),
        "HOLDER".to_owned(),
        "HELD FOR".to_owned(),
        "TTL LEFT".to_owned(),
        "WAITERS".to_owned(),
        "FENCE".to_owned(),
    ]];
    for lock in locks {
        let first = lock.holders.first();
        let mut holder = first.map_or_else(|| "(free)".to_owned(), |h| who(h.identity.as_ref()));
        if lock.holders.len() > 1 {
            holder.push_str(&format!(" +{}", lock.holders.len() - 1));
        }
        rows.push([
            lock.name.clone(),
            first.map_or_else(|| "-".to_owned(), |h| h.share.to_string()),
            holder,
            duration(first.and_then(|h| h.held_for)),
            duration(first.and_then(|h| h.ttl_left)),
            lock.waiters.len().to_string(),
            first
                .and_then(|h| h.fence)
                .map_or_else(|| "-".to_owned(), |fence| fence.to_string()),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn print_detail(state: &LockState) {
    println!("lock      {}", state.name);
    println!("key       {}", state.key);
    if let Some(fence) = state.last_fence {
        println!("last fence {fence}");
    }
    if state.holders.is_empty() {
        println!("holder    (free)");
    }
    for holder in &state.holders {
        println!(
            "holder    {} ({})",
            who(holder.identity.as_ref()),
            holder.share
        );
        println!("  token     {}", holder.token);
        println!("  held for  {}", duration(holder.held_for));
        println!("  ttl left  {}", duration(holder.ttl_left));
        if let Some(fence) = holder.fence {
            println!("  fence     {fence}");
        }
    }
    println!("waiters   {}", state.waiters.len());
    for (place, waiter) in state.waiters.iter().enumerate() {
        println!(
            "  {}. {} ({}), waiting {}",
            place + 1,
            who(waiter.identity.as_ref()),
            waiter.share,
            duration(waiter.waiting_for)
        );
    }
}

fn identity_json(identity: Option<&crate::HolderIdentity>) -> Value {
    identity.map_or(Value::Null, |identity| {
        json!({
            "host": identity.host,
            "pid": identity.pid,
            "label": identity.label,
            "since_ms": identity.since.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64),
        })
    })
}

fn millis(duration: Option<Duration>) -> Value {
    duration.map_or(Value::Null, |duration| json!(duration.as_millis() as u64))
}

fn holder_json(holder: &Holder) -> Value {
    json!({
        "token": holder.token,
        "share": holder.share.to_string(),
        "holder": identity_json(holder.identity.as_ref()),
        "held_for_ms": millis(holder.held_for),
        "ttl_left_ms": millis(holder.ttl_left),
        "fence": holder.fence,
    })
}

fn waiter_json(waiter: &Waiter) -> Value {
    json!({
        "token": waiter.token,
        "share": waiter.share.to_string(),
        "waiter": identity_json(waiter.identity.as_ref()),
        "waiting_for_ms": millis(waiter.waiting_for),
    })
}

fn lock_json(state: &LockState) -> Value {
    json!({
        "name": state.name,
        "key": state.key,
        "held": state.is_held(),
        "holders": state.holders.iter().map(holder_json).collect::<Vec<_>>(),
        "waiters": state.waiters.iter().map(waiter_json).collect::<Vec<_>>(),
        "last_fence": state.last_fence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(Duration::from_millis(850))), "850ms");
        assert_eq!(duration(Some(Duration::from_millis(12_340))), "12.3s");
        assert_eq!(duration(Some(Duration::from_secs(312))), "5m12s");
        assert_eq!(duration(Some(Duration::from_secs(7_380))), "2h03m");
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["lockctl", "--url", "redis://h:1", "release", "x", "--yes"]);
        assert!(matches!(
            cli.map(|cli| cli.command),
            Ok(Command::Release { yes: true, .. })
        ));
    }
}
