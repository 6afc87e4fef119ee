//! Starts a Redis topology of local `redis-server` processes (the test
//! harness's), prints the URL to reach it, and keeps it up until Ctrl-C or
//! stdin closes; every server it started is stopped then.
//!
//! Usage: `topology cluster [MASTERS [REPLICAS]]` (default 3 masters, no
//! replicas), `topology sentinel` (a primary, a replica, three sentinels),
//! `topology quorum [N]` (N independent servers for a quorum client, default
//! 5), or `topology single`.
//!
//! ```sh
//! cargo run -p tests --bin topology -- cluster
//! REDIS_URL=redis://127.0.0.1:<port> cargo run -p examples --example workers
//! ```

#![allow(clippy::print_stdout)]

use std::io::{BufRead, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |index: usize, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(args
            .get(index)
            .map(|n| n.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (url, _keep) = match args.first().map(String::as_str) {
        Some("cluster") => {
            let cluster = tests::RedisCluster::start(number(1, 3)?, number(2, 0)?);
            println!("seed list: {}", cluster.seed_list_url());
            (cluster.url(), Box::new(cluster) as Box<dyn std::fmt::Debug>)
        }
        Some("sentinel") => {
            let group = tests::RedisSentinels::start();
            (group.url(), Box::new(group) as Box<dyn std::fmt::Debug>)
        }
        Some("quorum") => {
            let quorum = tests::RedisQuorum::start(number(1, 5)?);
            (quorum.url(), Box::new(quorum) as Box<dyn std::fmt::Debug>)
        }
        Some("single") => {
            let server = tests::RedisServer::start();
            (server.url(), Box::new(server) as Box<dyn std::fmt::Debug>)
        }
        _ => {
            return Err(
                "usage: topology cluster [MASTERS [REPLICAS]] | topology sentinel | topology quorum [N] | topology single"
                    .into(),
            );
        }
    };
    println!("REDIS_URL={url}");
    println!("(up until Ctrl-C or end of input)");
    std::io::stdout().flush()?;
    // Ctrl-C kills this process; the servers are children of it and get
    // SIGINT with it from the terminal. End of input stops them by drop.
    for line in std::io::stdin().lock().lines() {
        line?;
    }
    Ok(())
}
