//! Puts per second and latency of a three-store cluster in one process: real stores, real QUIC
//! with mutual TLS on 127.0.0.1, fsync on every Raft batch. 100-byte values.
//!
//! cargo run -p tinykv-node --release --example cluster_bench -- [seconds per case]

use std::time::{Duration, Instant};

use tinykv_node::config::ReadableDuration;
use tinykv_node::testing::TestCluster;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // Default (production) timing: 100 ms ticks.
    let cluster = TestCluster::start_with(3, |c| {
        c.raft.base_tick_interval = ReadableDuration::millis(100);
        c.raft.log_gc_tick_interval = ReadableDuration::millis(10_000);
    })
    .await;
    cluster.leader(1).await;
    let client = cluster.client().await;
    let value = vec![b'x'; 100];
    println!("| clients | puts | puts/s | p50 | p99 | p999 |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for clients in [1usize, 16] {
        let until = Instant::now() + Duration::from_secs(secs);
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let client = client.clone();
                let value = value.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = 0u64;
                    while Instant::now() < until {
                        let t = Instant::now();
                        if let Err(e) = client
                            .put(format!("bench-{c:02}-{i:08}"), value.clone())
                            .await
                        {
                            eprintln!("put failed: {e}");
                            continue;
                        }
                        lat.push(t.elapsed());
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort();
        println!(
            "| {clients} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
            all.len(),
            all.len() as f64 / elapsed,
            percentile(&all, 0.50).as_secs_f64() * 1e3,
            percentile(&all, 0.99).as_secs_f64() * 1e3,
            percentile(&all, 0.999).as_secs_f64() * 1e3,
        );
    }
    cluster.shutdown().await;
}
