//! The load loop both systems are measured with: `clients` tasks, each with its own seeded
//! key and operation sequence, each timing every request it sends from just before the call to
//! just after the answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use crate::args::{Op, RunArgs};
use crate::backend::{Backend, Session};
use crate::latency::Summary;
use crate::procstat::{self, RssSampler};

/// Share of puts in the mixed workload.
const MIXED_PUT_SHARE: f64 = 0.1;
/// Concurrent writers while pre-populating the key space (not measured).
const FILL_CONCURRENCY: u64 = 16;
/// How often server RSS is sampled during a run.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// One result line. The first twelve fields are the fixed interface of the comparison script.
#[derive(Debug, Serialize)]
pub struct Report {
    pub target: &'static str,
    pub op: &'static str,
    pub clients: usize,
    pub value_size: usize,
    pub ops: u64,
    pub errors: u64,
    pub qps: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    pub conns: usize,
    pub seconds: f64,
    /// CPU seconds the watched server processes used during the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_s_per_1k_ops: Option<f64>,
    /// Peak of the summed RSS of the watched server processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_kib_peak: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

struct LoopResult {
    latencies: Vec<Duration>,
    /// When each request of `latencies` was sent, if the run keeps a latency log.
    sent_at: Vec<Instant>,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run(args: &RunArgs) -> Result<Report> {
    if args.clients == 0 || args.keys == 0 {
        bail!("--clients and --keys must be at least 1");
    }
    if args.total.is_none() && (args.duration.is_nan() || args.duration <= 0.0) {
        bail!("--duration must be positive (or give --total)");
    }
    let backend = Backend::connect(
        args.target,
        &args.endpoints,
        &args.tls,
        args.conns,
        args.timeout,
    )
    .await?;
    let value = Bytes::from(vec![b'x'; args.value_size]);
    if args.op != Op::Put {
        fill(&backend, args.keys, &value, args.clients).await?;
    }

    let cpu_before = server_cpu(&args.pids)?;
    let sampler =
        (!args.pids.is_empty()).then(|| RssSampler::start(args.pids.clone(), RSS_SAMPLE_EVERY));
    let started = Instant::now();
    let stop = Stop::new(args, started);
    let mut tasks = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let session = backend.session(index);
        let stop = stop.clone();
        let value = value.clone();
        let (op, keys, timeout) = (args.op, args.keys, args.timeout);
        let log_sent = args.latency_log.is_some();
        // Distinct, reproducible sequences per loop.
        let mut rng =
            StdRng::seed_from_u64(args.seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
        tasks.push(tokio::spawn(async move {
            let plan = LoopPlan {
                op,
                keys,
                value,
                timeout,
                log_sent,
            };
            request_loop(session, &stop, plan, &mut rng).await
        }));
    }
    let mut latencies = Vec::new();
    let mut log = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let result = task.await.context("a request loop panicked")?;
        log.extend(
            result
                .sent_at
                .iter()
                .copied()
                .zip(result.latencies.iter().copied()),
        );
        latencies.extend(result.latencies);
        errors += result.errors;
        first_error = first_error.or(result.first_error);
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &args.latency_log {
        write_latency_log(path, started, &mut log)
            .with_context(|| format!("writing the latency log {}", path.display()))?;
    }
    let rss_peak = match sampler {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    let server_cpu_s = match (cpu_before, server_cpu(&args.pids)?) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };

    let ops = latencies.len() as u64;
    let summary = Summary::of(&mut latencies);
    Ok(Report {
        target: args.target.name(),
        op: args.op.name(),
        clients: args.clients,
        value_size: args.value_size,
        ops,
        errors,
        qps: ops as f64 / seconds,
        p50_ms: summary.map(|s| s.p50_ms),
        p90_ms: summary.map(|s| s.p90_ms),
        p99_ms: summary.map(|s| s.p99_ms),
        p999_ms: summary.map(|s| s.p999_ms),
        max_ms: summary.map(|s| s.max_ms),
        workload: args.label.clone(),
        conns: match backend {
            Backend::Etcd(ref kvs) => kvs.len(),
            Backend::Tinykv(_) => 1,
        },
        seconds,
        server_cpu_s,
        server_cpu_s_per_1k_ops: server_cpu_s
            .filter(|_| ops > 0)
            .map(|c| c * 1000.0 / ops as f64),
        server_rss_kib_peak: rss_peak,
        first_error,
    })
}

/// When the loops stop: after a number of requests in all, or at a deadline.
#[derive(Clone)]
enum Stop {
    Total { issued: Arc<AtomicU64>, total: u64 },
    Deadline(Instant),
}

impl Stop {
    fn new(args: &RunArgs, started: Instant) -> Stop {
        match args.total {
            Some(total) => Stop::Total {
                issued: Arc::new(AtomicU64::new(0)),
                total,
            },
            None => Stop::Deadline(started + Duration::from_secs_f64(args.duration)),
        }
    }

    /// Claims the next request, or says the run is over.
    fn next(&self) -> bool {
        match self {
            Stop::Total { issued, total } => issued.fetch_add(1, Ordering::Relaxed) < *total,
            Stop::Deadline(at) => Instant::now() < *at,
        }
    }
}

/// What one request loop sends.
struct LoopPlan {
    op: Op,
    keys: u64,
    value: Bytes,
    timeout: Duration,
    log_sent: bool,
}

async fn request_loop(
    mut session: Session,
    stop: &Stop,
    plan: LoopPlan,
    rng: &mut StdRng,
) -> LoopResult {
    let LoopPlan {
        op,
        keys,
        value,
        timeout,
        log_sent,
    } = plan;
    let mut result = LoopResult {
        latencies: Vec::new(),
        sent_at: Vec::new(),
        errors: 0,
        first_error: None,
    };
    // Both clients enforce `timeout` themselves; this guard only catches one that does not.
    let guard = timeout + Duration::from_secs(1);
    while stop.next() {
        let key = key_of(rng.random_range(0..keys));
        let write = match op {
            Op::Put => true,
            Op::Get => false,
            Op::Mixed => rng.random_bool(MIXED_PUT_SHARE),
        };
        let sent = Instant::now();
        let answer = if write {
            tokio::time::timeout(guard, session.put(key, value.clone())).await
        } else {
            tokio::time::timeout(guard, session.get(key)).await
        };
        match answer {
            Ok(Ok(())) => {
                result.latencies.push(sent.elapsed());
                if log_sent {
                    result.sent_at.push(sent);
                }
            }
            Ok(Err(e)) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(_) => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert_with(|| format!("no answer within {guard:?}"));
            }
        }
    }
    result
}

/// One line per request, in the order they were sent: Unix seconds at send, latency in ms.
/// Wall-clock times let logs of drivers that ran side by side be lined up.
fn write_latency_log(
    path: &std::path::Path,
    started: Instant,
    log: &mut [(Instant, Duration)],
) -> Result<()> {
    use std::io::Write;
    let epoch_at_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64()
        - started.elapsed().as_secs_f64();
    log.sort_by_key(|&(sent, _)| sent);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for &(sent, latency) in log.iter() {
        let at = epoch_at_start + (sent - started).as_secs_f64();
        writeln!(out, "{at:.6} {:.3}", latency.as_secs_f64() * 1e3)?;
    }
    out.flush()?;
    Ok(())
}

/// Writes every key once, so that reads always find a value.
async fn fill(backend: &Backend, keys: u64, value: &Bytes, clients: usize) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for index in 0..FILL_CONCURRENCY.min(keys) as usize {
        // Spread the writers over the connections the measured loops will use.
        let mut session = backend.session(index % clients.max(1));
        let next = next.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= keys {
                    return Ok::<(), anyhow::Error>(());
                }
                session
                    .put(key_of(k), value.clone())
                    .await
                    .with_context(|| format!("pre-populating key {k}"))?;
            }
        }));
    }
    for task in tasks {
        task.await.context("a fill task panicked")??;
    }
    Ok(())
}

/// Fixed-width keys, so both systems see the same key sizes (12 bytes).
pub fn key_of(n: u64) -> Bytes {
    Bytes::from(format!("key-{n:08}"))
}

fn server_cpu(pids: &[i32]) -> Result<Option<f64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0.0;
    for &pid in pids {
        total += procstat::cpu_seconds(pid)?;
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_one_width() {
        assert_eq!(key_of(7).len(), key_of(99_999_999).len());
        assert_eq!(&key_of(42)[..], b"key-00000042");
    }

    #[test]
    fn total_stop_hands_out_exactly_total_requests() {
        let stop = Stop::Total {
            issued: Arc::new(AtomicU64::new(0)),
            total: 3,
        };
        let granted = (0..10).filter(|_| stop.next()).count();
        assert_eq!(granted, 3);
    }
}
