//! The status server of real nodes: `/metrics` parsed as Prometheus parses it, its counters and
//! histograms moving under load, and `/health` turning 503 when a node's region has no leader
//! it can reach.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::{TestCluster, eventually};
use prometheus_parse::{Scrape, Value};
use tinykv_proto::api::{AdminRequest, AdminResponse};

/// `GET path` on a node's status server: (status code, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut resp = agent.get(&url).call().expect("status server answers");
        let code = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().expect("body");
        (code, body)
    })
    .await
    .expect("request task")
}

/// The parsed samples of one scrape, keyed by metric name and sorted labels.
struct Metrics(HashMap<(String, String), f64>);

impl Metrics {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = (name.to_string(), label_key(labels.iter().copied()));
        *self.0.get(&key).unwrap_or(&0.0)
    }

    /// The sum over every label set of `name`.
    fn total(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }
}

fn label_key<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut l: Vec<String> = labels.map(|(k, v)| format!("{k}={v}")).collect();
    l.sort();
    l.join(",")
}

async fn scrape(cluster: &TestCluster, store: u64) -> Metrics {
    let addr = cluster.node(store).status_addr().expect("a status server");
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = Scrape::parse(lines).expect("Prometheus text");
    // Every line that is not a comment is a sample the parser took (a histogram's buckets fold
    // into one sample, its _sum and _count are samples of their own).
    let sample_lines = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| !l.contains("_bucket{"))
        .count();
    let buckets = parsed
        .samples
        .iter()
        .filter(|s| matches!(s.value, Value::Histogram(_)))
        .count();
    assert_eq!(
        parsed.samples.len(),
        sample_lines + buckets,
        "the parser skipped lines of:\n{body}"
    );
    let mut out = HashMap::new();
    for s in parsed.samples {
        let v = match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            // A histogram's +Inf bucket: how many observations it has.
            Value::Histogram(b) => b.iter().map(|c| c.count).fold(0.0, f64::max),
            Value::Summary(_) => continue,
        };
        let labels = label_key(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        out.insert((s.metric, labels), v);
    }
    Metrics(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_under_load_and_parse_as_prometheus_text() {
    common::init_logs();
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader(1).await;
    let behind = (1..=3).find(|s| *s != leader).expect("a follower");
    let client = cluster.client().await;
    client.put("warm", "up").await.unwrap();
    let before: Vec<Metrics> = {
        let mut v = Vec::new();
        for s in 1..=3 {
            v.push(scrape(&cluster, s).await);
        }
        v
    };

    // Load, and a follower that catches up by snapshot: stopped, the log compacted past it.
    cluster.stop(behind).await;
    for i in 0..60u32 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
        assert!(client.get(format!("k{i}")).await.unwrap().is_some());
    }
    match cluster
        .node(leader)
        .admin(AdminRequest::CompactLog { region_id: 1 })
        .await
    {
        Ok(AdminResponse::Done) => {}
        other => panic!("compact log: {other:?}"),
    }
    client.put("after", "compaction").await.unwrap();
    cluster.restart(behind).await;
    eventually("the follower installs a snapshot", async || {
        cluster.snapshots_received(behind).await >= 1
    })
    .await;
    client.put("last", "write").await.unwrap();

    let on = |store: u64| (store - 1) as usize;
    let l = scrape(&cluster, leader).await;
    let l0 = &before[on(leader)];
    let moved = |name: &str, labels: &[(&str, &str)]| {
        let (a, b) = (l0.value(name, labels), l.value(name, labels));
        assert!(
            b > a,
            "{name}{labels:?} did not move on the leader: {a} -> {b}"
        );
    };
    moved("tinykv_raft_proposals_total", &[]);
    moved("tinykv_raft_proposal_duration_seconds", &[]);
    moved("tinykv_raft_committed_entries_total", &[]);
    moved("tinykv_raft_applied_entries_total", &[]);
    moved("tinykv_raft_apply_duration_seconds", &[]);
    moved("tinykv_storage_fsync_duration_seconds", &[]);
    moved("tinykv_storage_log_written_bytes_total", &[]);
    moved("tinykv_storage_data_written_bytes_total", &[]);
    moved("tinykv_raft_messages_sent_total", &[("type", "append")]);
    moved(
        "tinykv_raft_messages_received_total",
        &[("type", "append_response")],
    );
    moved("tinykv_requests_total", &[("op", "put"), ("outcome", "ok")]);
    moved("tinykv_requests_total", &[("op", "get"), ("outcome", "ok")]);
    moved("tinykv_request_duration_seconds", &[("op", "put")]);
    moved("tinykv_snapshots_generated_total", &[]);
    moved("tinykv_snapshots_sent_total", &[]);
    moved("tinykv_snapshot_sent_bytes_total", &[]);
    moved("tinykv_transport_frames_sent_total", &[]);
    assert_eq!(l.value("tinykv_regions", &[]), 1.0);
    assert_eq!(l.value("tinykv_region_leaders", &[]), 1.0);
    assert_eq!(l.value("tinykv_regions_without_leader", &[]), 0.0);
    assert!(l.value("tinykv_quic_connections", &[]) >= 1.0);
    assert!(l.total("tinykv_quic_rtt_seconds") > 0.0, "no RTT figures");
    assert!(l.total("tinykv_quic_sent_packets_total") > 0.0);
    assert!(l.value("tinykv_disk_used_bytes", &[]) > 0.0);
    assert!(l.value("tinykv_disk_available_bytes", &[]) > 0.0);

    // The follower that caught up: it installed the snapshot and received its bytes (its
    // metrics start again with the process).
    // The write after the snapshot committed on the leader and the other follower; the
    // append that carries it here may still be on its way.
    let mut f = scrape(&cluster, behind).await;
    eventually("the follower receives an append", async || {
        f = scrape(&cluster, behind).await;
        f.value("tinykv_raft_messages_received_total", &[("type", "append")]) > 0.0
    })
    .await;
    assert!(f.value("tinykv_snapshots_applied_total", &[]) >= 1.0);
    assert!(f.value("tinykv_snapshots_received_total", &[]) >= 1.0);
    assert!(f.value("tinykv_snapshot_received_bytes_total", &[]) > 0.0);
    assert_eq!(f.value("tinykv_region_leaders", &[]), 0.0);

    // The example dashboard draws only metrics the node serves.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/monitoring/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let served: std::collections::BTreeSet<&str> = l.0.keys().map(|(n, _)| n.as_str()).collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    for target in panels
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets"))
    {
        let expr = target["expr"].as_str().expect("expr");
        for name in metric_names(expr) {
            let base = name.strip_suffix("_bucket").unwrap_or(&name);
            assert!(
                served.contains(base),
                "the dashboard's `{expr}` uses {name}, not served"
            );
        }
    }
    cluster.shutdown().await;
}

/// The `tinykv_…` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tinykv_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_unavailable_when_the_region_has_no_reachable_leader() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader(1).await;
    let cut = (1..=3).find(|s| *s != leader).expect("a follower");
    let addr = cluster.node(cut).status_addr().expect("a status server");
    eventually("every store reports healthy", async || {
        let mut ok = true;
        for s in 1..=3 {
            let at = cluster.node(s).status_addr().expect("a status server");
            ok &= get(at, "/health").await.0 == 200;
        }
        ok
    })
    .await;
    let (_, status) = get(addr, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    assert_eq!(status["store_id"], cut);
    assert_eq!(status["regions"], 1);

    // Cut off, the follower stops hearing its leader and starts asking for votes: it knows no
    // leader any more.
    let rest: Vec<u64> = (1..=3).filter(|s| *s != cut).collect();
    cluster.partition(&[vec![cut], rest]);
    eventually("the cut-off store reports 503", async || {
        get(addr, "/health").await.0 == 503
    })
    .await;
    let (_, body) = get(addr, "/health").await;
    assert!(
        body.contains("know no leader") && body.contains("\"regions_without_leader\":[1]"),
        "{body}"
    );
    // `cluster status` reads the same through the admin service.
    match cluster.node(cut).admin(AdminRequest::StoreStatus).await {
        Ok(AdminResponse::StoreStatus(s)) => assert_eq!(s.regions_without_leader, vec![1]),
        other => panic!("no store status: {other:?}"),
    }
    cluster.heal();
    eventually("the store reports healthy again", async || {
        get(addr, "/health").await.0 == 200
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_profile_comes_back_as_a_flame_graph() {
    common::init_logs();
    let cluster = TestCluster::start(1).await;
    let addr = cluster.node(1).status_addr().expect("a status server");
    let client = cluster.client().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = stop.clone();
    let writes = tokio::spawn(async move {
        let mut i = 0u32;
        while !writing.load(std::sync::atomic::Ordering::Relaxed) {
            client.put(format!("k{}", i % 100), "v").await.unwrap();
            i += 1;
        }
    });
    let (code, body) = get(addr, "/debug/pprof/profile?seconds=2").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writes.await.unwrap();
    assert_eq!(code, 200, "{body}");
    // A flame graph of the node at work names its functions.
    assert!(
        body.contains("<svg") && body.contains("tinykv_node"),
        "not a flame graph of the node: {}",
        &body[..body.len().min(300)]
    );
    let (code, body) = get(addr, "/debug/pprof/profile?seconds=0").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("seconds must be between"), "{body}");
    cluster.shutdown().await;
}
