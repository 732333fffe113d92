//! `bench`: N concurrent tasks on one shared client for a fixed time, every latency recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tinykv_client::Client;

use crate::args::{BenchArgs, BenchOp, GlobalArgs, Output};
use crate::connect;
use crate::exit::{CliError, CliResult};
use crate::output::{Table, print_json};

/// Concurrent writes while pre-populating keys for a `get` load.
const FILL_CONCURRENCY: usize = 32;

pub async fn run(global: &GlobalArgs, args: BenchArgs) -> CliResult {
    if args.clients == 0 || args.keys == 0 {
        return Err(CliError::usage("--clients and --keys must be at least 1"));
    }
    let client = connect::client(global).await?;
    let value: Arc<Vec<u8>> = Arc::new(vec![b'v'; args.value_size]);
    if args.op == BenchOp::Fill {
        let started = Instant::now();
        let mut latencies = fill(&client, args.keys, args.clients, &value).await?;
        latencies.sort_unstable();
        report(global.output, &args, &latencies, 0, started.elapsed());
        return Ok(());
    }
    if args.op != BenchOp::Put {
        fill(&client, args.keys, FILL_CONCURRENCY, &value).await?;
    }
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::new();
    for task in 0..args.clients {
        let client = client.clone();
        let value = value.clone();
        let (op, keys) = (args.op, args.keys);
        tasks.push(tokio::spawn(async move {
            // Seeded per task: a run's key sequence can be repeated.
            let mut rng = StdRng::seed_from_u64(task as u64);
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let key = bench_key(rng.random_range(0..keys));
                let write = match op {
                    // Fill returned above.
                    BenchOp::Put | BenchOp::Fill => true,
                    BenchOp::Get => false,
                    BenchOp::Mixed => rng.random_bool(0.5),
                };
                let t = Instant::now();
                let ok = if write {
                    client.put(key, value.as_ref().clone()).await.is_ok()
                } else {
                    client.get(key).await.is_ok()
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task
            .await
            .map_err(|e| CliError::failed(format!("a bench task failed: {e}")))?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    report(global.output, &args, &latencies, errors, elapsed);
    Ok(())
}

fn bench_key(i: u64) -> Vec<u8> {
    format!("bench/{i:010}").into_bytes()
}

/// Writes keys `0..keys` once each with `concurrency` writers; the latency of every put.
async fn fill(
    client: &Client,
    keys: u64,
    concurrency: usize,
    value: &Arc<Vec<u8>>,
) -> Result<Vec<Duration>, CliError> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.min(keys as usize) {
        let (client, value, next) = (client.clone(), value.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= keys {
                    return Ok(latencies);
                }
                let t = Instant::now();
                client.put(bench_key(i), value.as_ref().clone()).await?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(
            task.await
                .map_err(|e| CliError::failed(format!("a fill task failed: {e}")))?
                .map_err(|e: tinykv_client::ClientError| CliError::from(e))?,
        );
    }
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn report(output: Output, args: &BenchArgs, sorted: &[Duration], errors: u64, elapsed: Duration) {
    let ops = sorted.len() as u64;
    let qps = ops as f64 / elapsed.as_secs_f64().max(1e-9);
    let op = format!("{:?}", args.op).to_lowercase();
    let points = [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)];
    let max = sorted.last().copied().unwrap_or_default();
    match output {
        Output::Json => {
            let mut latency = serde_json::Map::new();
            for (name, p) in points {
                latency.insert(name.to_string(), json!(ms(percentile(sorted, p))));
            }
            latency.insert("max".to_string(), json!(ms(max)));
            print_json(&json!({
                "op": op,
                "clients": args.clients,
                "value_size": args.value_size,
                "keys": args.keys,
                "seconds": elapsed.as_secs_f64(),
                "ops": ops,
                "errors": errors,
                "qps": (qps * 10.0).round() / 10.0,
                "latency_ms": latency,
            }));
        }
        Output::Table => {
            let mut t = Table::new(&[
                "OP", "CLIENTS", "OPS", "ERRORS", "QPS", "P50", "P90", "P99", "P999", "MAX",
            ]);
            let mut row = vec![
                op,
                args.clients.to_string(),
                ops.to_string(),
                errors.to_string(),
                format!("{qps:.1}"),
            ];
            for (_, p) in points {
                row.push(format!("{:.3}ms", ms(percentile(sorted, p))));
            }
            row.push(format!("{:.3}ms", ms(max)));
            t.row(row);
            t.print();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 99.9), Duration::from_millis(100));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
