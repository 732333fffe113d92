//! Failover time of a tinykv playground: kill -9 the leader of the first region while put loops
//! run, and time from the kill to the first acknowledged put that was sent after it. The killed
//! node is restarted (`tinykv cluster up --detach` restarts missing nodes) and the cluster is let
//! settle before the next trial.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tinykv_client::{Client, ClientConfig};
use tinykv_proto::CLUSTER_REGION_ID;
use tinykv_proto::api::{AdminRequest, AdminResponse};
use tinykv_transport::TlsFiles;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::args::FailoverArgs;
use crate::latency::ms;
use crate::load::key_of;

/// Puts acknowledged before a kill, so the client has learned the current leader.
const WARM_UP_PUTS: usize = 50;
/// How long a restarted node may take to catch up before the next trial.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// Poll period of the playground's status while it settles.
const SETTLE_POLL: Duration = Duration::from_millis(200);
/// How far behind the leader's applied index a node may be and still count as caught up.
const CAUGHT_UP_SLACK: u64 = 5;
/// Poll period of the survivors' view of the leader (the elected-leader time has this error).
const LEADER_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Serialize)]
pub struct FailoverReport {
    pub trials: usize,
    /// Trials in which no put was acknowledged within the give-up time.
    pub failed: usize,
    /// Kill to the first acknowledged put sent after the kill.
    pub put_ms_median: Option<f64>,
    pub put_ms_min: Option<f64>,
    pub put_ms_max: Option<f64>,
    pub put_ms: Vec<f64>,
    /// Kill to the first moment a surviving node reports a new leader.
    pub elected_ms_median: Option<f64>,
    pub elected_ms: Vec<f64>,
}

/// `cluster status -o json`, the fields used here.
#[derive(Debug, Deserialize)]
struct Status {
    nodes: Vec<NodeStatus>,
}

#[derive(Debug, Deserialize)]
struct NodeStatus {
    id: u64,
    addr: String,
    pid: Option<i32>,
    up: bool,
    #[serde(default)]
    leader_of: Vec<u64>,
    #[serde(default)]
    applied: u64,
}

/// Endpoints and TLS files from the playground's `env` file.
struct Playground {
    endpoints: Vec<SocketAddr>,
    tls: TlsFiles,
}

pub async fn run(args: &FailoverArgs) -> Result<FailoverReport> {
    let playground = read_env(&args.dir.join("env"))?;
    let mut put_ms = Vec::new();
    let mut elected_ms = Vec::new();
    let mut failed = 0;
    for trial in 1..=args.trials {
        restart_missing(args).await?;
        let leader = settle(args).await?;
        let pid = leader
            .pid
            .ok_or_else(|| anyhow!("store {} has no pid in cluster status", leader.id))?;
        let survivors: Vec<SocketAddr> = playground
            .endpoints
            .iter()
            .copied()
            .filter(|a| a.to_string() != leader.addr)
            .collect();
        let outcome = trial_once(args, &playground, pid, &survivors, trial).await?;
        match outcome.put {
            Some(d) => put_ms.push(ms(d)),
            None => failed += 1,
        }
        if let Some(d) = outcome.elected {
            elected_ms.push(ms(d));
        }
        eprintln!(
            "failover trial {trial}: killed store {} (pid {pid}); first put after {}, leader seen after {}",
            leader.id,
            outcome
                .put
                .map_or("none".to_string(), |d| format!("{:.0} ms", ms(d))),
            outcome
                .elected
                .map_or("none".to_string(), |d| format!("{:.0} ms", ms(d))),
        );
    }
    restart_missing(args).await?;
    Ok(FailoverReport {
        trials: args.trials,
        failed,
        put_ms_median: median(&put_ms),
        put_ms_min: put_ms.iter().copied().reduce(f64::min),
        put_ms_max: put_ms.iter().copied().reduce(f64::max),
        put_ms,
        elected_ms_median: median(&elected_ms),
        elected_ms,
    })
}

struct Outcome {
    put: Option<Duration>,
    elected: Option<Duration>,
}

async fn trial_once(
    args: &FailoverArgs,
    playground: &Playground,
    pid: i32,
    survivors: &[SocketAddr],
    trial: usize,
) -> Result<Outcome> {
    let client = Client::connect(ClientConfig {
        endpoints: playground.endpoints.clone(),
        tls: playground.tls.clone(),
        timeout: args.timeout,
    })
    .await
    .context("cannot connect to the playground")?;

    let stop = Arc::new(AtomicBool::new(false));
    let (acks, mut acked) = mpsc::unbounded_channel::<(Instant, Instant)>();
    let mut writers = Vec::new();
    for w in 0..args.writers {
        let client = client.clone();
        let stop = stop.clone();
        let acks = acks.clone();
        writers.push(tokio::spawn(async move {
            let value = Bytes::from_static(b"failover");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = key_of((trial as u64) << 32 | (w as u64) << 24 | n);
                n += 1;
                let sent = Instant::now();
                // Errors are expected while the leader is gone; the next put follows at once.
                if client.put(key, value.clone()).await.is_ok()
                    && acks.send((sent, Instant::now())).is_err()
                {
                    return;
                }
            }
        }));
    }
    drop(acks);

    let warm_up = async {
        for _ in 0..WARM_UP_PUTS {
            if acked.recv().await.is_none() {
                break;
            }
        }
    };
    if tokio::time::timeout(args.give_up, warm_up).await.is_err() {
        stop_writers(&stop, writers).await;
        bail!(
            "trial {trial}: the cluster acknowledged fewer than {WARM_UP_PUTS} puts before the kill"
        );
    }

    let killed_at = kill(pid)?;
    let elected = tokio::spawn(watch_for_leader(
        client.clone(),
        survivors.to_vec(),
        killed_at,
        args.give_up,
    ));
    let first_put = async {
        while let Some((sent, at)) = acked.recv().await {
            if sent >= killed_at {
                return Some(at - killed_at);
            }
        }
        None
    };
    let put = tokio::time::timeout(args.give_up, first_put)
        .await
        .ok()
        .flatten();
    stop_writers(&stop, writers).await;
    let elected = elected.await.context("the leader watch panicked")?;
    Ok(Outcome { put, elected })
}

async fn stop_writers(stop: &AtomicBool, writers: Vec<tokio::task::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        // A writer stuck on the dead node ends when its put times out; no need to wait for it.
        w.abort();
        let _ = w.await;
    }
}

/// SIGKILL, and the instant right after it was sent.
fn kill(pid: i32) -> Result<Instant> {
    // SAFETY: kill(2) with a pid read from the playground's status; it touches no memory of ours.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    let at = Instant::now();
    if rc != 0 {
        bail!("cannot kill pid {pid}: {}", std::io::Error::last_os_error());
    }
    Ok(at)
}

/// Polls the surviving nodes until one of them reports a leader of the first region among the
/// survivors; `None` if none does within `give_up`.
async fn watch_for_leader(
    client: Client,
    survivors: Vec<SocketAddr>,
    killed_at: Instant,
    give_up: Duration,
) -> Option<Duration> {
    let deadline = killed_at + give_up;
    while Instant::now() < deadline {
        for addr in &survivors {
            if let Ok(AdminResponse::Cluster(info)) =
                client.admin(*addr, AdminRequest::Cluster).await
            {
                let leader_addr = info
                    .regions
                    .iter()
                    .find(|r| r.region.id == CLUSTER_REGION_ID)
                    .and_then(|r| r.leader_store)
                    .and_then(|s| info.stores.iter().find(|st| st.store_id == s))
                    .and_then(|st| st.addr.parse::<SocketAddr>().ok());
                if leader_addr.is_some_and(|a| survivors.contains(&a)) {
                    return Some(killed_at.elapsed());
                }
            }
        }
        tokio::time::sleep(LEADER_POLL).await;
    }
    None
}

/// Starts any node that is not running; returns once the playground has a leader.
async fn restart_missing(args: &FailoverArgs) -> Result<()> {
    let out = Command::new(&args.tinykv)
        .args(["cluster", "up", "--detach", "-o", "json", "--dir"])
        .arg(&args.dir)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", args.tinykv.display()))?;
    if !out.status.success() {
        bail!(
            "`tinykv cluster up --detach --dir {}` failed ({}): {}",
            args.dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Waits until every node is up and caught up with the leader of the first region, and
/// returns that leader.
async fn settle(args: &FailoverArgs) -> Result<NodeStatus> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        // A restarted node replays its log before it answers; until then status fails.
        let status = match status(args).await {
            Ok(s) => s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(SETTLE_POLL).await;
                continue;
            }
            Err(e) => {
                return Err(e.context(format!(
                    "the playground did not settle within {SETTLE_LIMIT:?}"
                )));
            }
        };
        let leader_applied = status
            .nodes
            .iter()
            .find(|n| n.leader_of.contains(&CLUSTER_REGION_ID))
            .map(|n| n.applied);
        if let Some(leader_applied) = leader_applied
            && status
                .nodes
                .iter()
                .all(|n| n.up && n.applied + CAUGHT_UP_SLACK >= leader_applied)
        {
            return status
                .nodes
                .into_iter()
                .find(|n| n.leader_of.contains(&CLUSTER_REGION_ID))
                .ok_or_else(|| anyhow!("the leader vanished from the status"));
        }
        if Instant::now() >= deadline {
            bail!("the playground did not settle within {SETTLE_LIMIT:?}: {status:?}");
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

async fn status(args: &FailoverArgs) -> Result<Status> {
    // Exit code 6 means a node is down; the JSON is printed all the same.
    let out = Command::new(&args.tinykv)
        .args(["cluster", "status", "-o", "json", "--dir"])
        .arg(&args.dir)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", args.tinykv.display()))?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`tinykv cluster status` printed no status ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

fn read_env(path: &Path) -> Result<Playground> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {}; was the cluster started with `tinykv cluster up --dir`?",
            path.display()
        )
    })?;
    parse_env(&text).with_context(|| format!("in {}", path.display()))
}

fn parse_env(text: &str) -> Result<Playground> {
    let var = |name: &str| -> Result<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim_matches(|c| c == '"' || c == '\'').to_string())
            .ok_or_else(|| anyhow!("no {name}"))
    };
    let endpoints = var("TINYKV_ENDPOINTS")?
        .split(',')
        .map(|e| {
            e.parse::<SocketAddr>()
                .with_context(|| format!("endpoint {e:?} is not HOST:PORT"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Playground {
        endpoints,
        tls: TlsFiles {
            ca: PathBuf::from(var("TINYKV_CA")?),
            cert: PathBuf::from(var("TINYKV_CERT")?),
            key: PathBuf::from(var("TINYKV_KEY")?),
        },
    })
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len().is_multiple_of(2) {
        (s[mid - 1] + s[mid]) / 2.0
    } else {
        s[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_gives_endpoints_and_tls() {
        let env = "export TINYKV_ENDPOINTS=127.0.0.1:1,127.0.0.1:2\nexport TINYKV_CA=/d/ca.pem\n\
                   export TINYKV_CERT=/d/client.pem\nexport TINYKV_KEY='/d/client-key.pem'\n";
        let p = parse_env(env).expect("complete env");
        assert_eq!(p.endpoints.len(), 2);
        assert_eq!(p.endpoints[1].port(), 2);
        assert_eq!(p.tls.key, PathBuf::from("/d/client-key.pem"));
    }

    #[test]
    fn env_without_certificates_is_refused() {
        assert!(parse_env("export TINYKV_ENDPOINTS=127.0.0.1:1\n").is_err());
        assert!(parse_env("export TINYKV_ENDPOINTS=nonsense\nexport TINYKV_CA=a\nexport TINYKV_CERT=b\nexport TINYKV_KEY=c\n").is_err());
    }

    #[test]
    fn median_of_even_and_odd_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
