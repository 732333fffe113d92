//! The placement driver over real node processes, with a writer per region running throughout:
//!
//! 1. three stores, the key space split into `TINYKV_REBALANCE_REGIONS` regions (30 here, 100
//!    for the full run); two empty stores join and the driver evens out regions and leaders
//!    to within ±20% of the mean;
//! 2. a store is killed (`kill -9`) and kept down: once it is Down (`max-store-down-time`
//!    20 s) every region it held gets a replica elsewhere;
//! 3. it comes back, and while the driver moves replicas onto it again the driver's own store
//!    is killed: a new driver takes over and finishes the job;
//! 4. `store delete` drains a store to no regions and tombstones it.
//!
//! All along no region is seen with fewer than three voters (the driver adds before it
//! removes and never removes a replica twice), no acknowledged write is lost, and the command
//! line shows the stores, operators, schedulers and the driver. Figures go to stderr
//! (`--nocapture`).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::nemesis::Cluster;
use support::tinykv;
use tinykv_client::Client;
use tinykv_node::config::{NodeConfig, ReadableDuration};
use tinykv_proto::api::RegionInfo;
use tinykv_proto::placement::{PlacementAnswer, PlacementRequest, StoreDesc, StoreState};

const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tweak(c: &mut NodeConfig) {
    c.placement.enabled = true;
    c.placement.store_heartbeat_interval = ReadableDuration::millis(1_000);
    c.placement.region_heartbeat_interval = ReadableDuration::millis(10_000);
    c.placement.max_store_down_time = ReadableDuration::millis(20_000);
    c.region.split_check_interval = ReadableDuration::millis(2_000);
    c.raft.base_tick_interval = ReadableDuration::millis(100);
    c.raft.election_timeout_ticks = 10;
}

/// What the writers saw, one writer per region.
#[derive(Default)]
struct Writes {
    /// Key → the last value acknowledged.
    acked: BTreeMap<String, String>,
    failed: u64,
    /// The longest a write waited, retries included.
    slowest: Duration,
    /// The longest time between two acknowledged writes of one key (a writer writes its key
    /// again `WRITE_EVERY` after each answer), the key, and when that stretch ended (from the
    /// writers' start).
    longest_gap: Duration,
    gap_key: String,
    gap_ended: Duration,
    /// Stretches without an acknowledged write longer than two election timeouts, over all keys.
    gaps_over_two_elections: u64,
    errors: Vec<String>,
}

impl Writes {
    fn merge(&mut self, other: Writes) {
        self.acked.extend(other.acked);
        self.failed += other.failed;
        self.slowest = self.slowest.max(other.slowest);
        if other.longest_gap > self.longest_gap {
            self.longest_gap = other.longest_gap;
            self.gap_key = other.gap_key;
            self.gap_ended = other.gap_ended;
        }
        self.gaps_over_two_elections += other.gaps_over_two_elections;
        self.errors.extend(other.errors);
    }
}

/// The pause between a writer's writes.
const WRITE_EVERY: Duration = Duration::from_millis(100);

/// Writes `key` over and over until `stop`, from `began`.
async fn writer(client: Client, key: String, stop: Arc<AtomicBool>, began: Instant) -> Writes {
    let mut w = Writes::default();
    let mut last_ok = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let value = format!("v{n}");
        let started = Instant::now();
        match client.put(key.clone(), value.clone()).await {
            Ok(()) => {
                w.slowest = w.slowest.max(started.elapsed());
                let gap = last_ok.elapsed();
                if gap > 2 * ELECTION_TIMEOUT {
                    w.gaps_over_two_elections += 1;
                }
                if gap > w.longest_gap {
                    w.longest_gap = gap;
                    w.gap_key = key.clone();
                    w.gap_ended = began.elapsed();
                }
                last_ok = Instant::now();
                w.acked.insert(key.clone(), value);
            }
            // An unknown outcome leaves the key's last value open: it is not checked.
            Err(e) => {
                w.errors.push(format!("{:.1?} {key}: {e}", began.elapsed()));
                w.failed += 1;
                w.acked.remove(&key);
            }
        }
        n += 1;
        tokio::time::sleep(WRITE_EVERY).await;
    }
    w
}

/// One writer per region's first key, all running until `stop`.
async fn writers(client: Client, regions: u64, stop: Arc<AtomicBool>) -> Writes {
    let began = Instant::now();
    let tasks: Vec<_> = (0..regions)
        .map(|i| {
            tokio::spawn(writer(
                client.clone(),
                format!("k{i:04}"),
                stop.clone(),
                began,
            ))
        })
        .collect();
    let mut all = Writes::default();
    for t in tasks {
        all.merge(t.await.expect("writer"));
    }
    all
}

async fn stores(client: &Client) -> Vec<StoreDesc> {
    match client.placement(PlacementRequest::Stores).await {
        Ok(PlacementAnswer::Stores(s)) => s,
        _ => Vec::new(),
    }
}

async fn driver_store(client: &Client) -> Option<u64> {
    match client.placement(PlacementRequest::Status).await {
        Ok(PlacementAnswer::Status(s)) if s.scheduling => Some(s.driver.store_id),
        _ => None,
    }
}

/// Whether every store in `live` holds within ±20% of the mean of regions and of leaders.
fn balanced(regions: &[RegionInfo], live: &[u64]) -> bool {
    let mut replicas: BTreeMap<u64, u64> = live.iter().map(|s| (*s, 0)).collect();
    let mut leaders = replicas.clone();
    for r in regions {
        for p in &r.region.peers {
            *replicas.entry(p.store_id).or_default() += 1;
        }
        if let Some(l) = r.leader_store {
            *leaders.entry(l).or_default() += 1;
        }
    }
    let within = |counts: &BTreeMap<u64, u64>| {
        let total: u64 = counts.values().sum();
        let mean = total as f64 / live.len() as f64;
        counts.len() == live.len()
            && counts
                .values()
                .all(|c| (*c as f64 - mean).abs() <= 0.2 * mean)
    };
    within(&replicas) && within(&leaders)
}

/// Every region with three voters, all on `live` stores, and no learner.
fn repaired(regions: &[RegionInfo], live: &[u64], expected: u64) -> bool {
    regions.len() as u64 == expected
        && regions.iter().all(|r| {
            r.region.peers.len() == 3
                && r.region
                    .peers
                    .iter()
                    .all(|p| !p.is_learner() && live.contains(&p.store_id))
        })
}

/// Regions seen with fewer than three voters.
fn short(regions: &[RegionInfo]) -> Vec<String> {
    regions
        .iter()
        .filter(|r| r.region.peers.iter().filter(|p| !p.is_learner()).count() < 3)
        .map(|r| format!("{:?}", r.region))
        .collect()
}

struct Phase {
    started: Instant,
    violations: Vec<String>,
}

impl Phase {
    fn new() -> Phase {
        Phase {
            started: Instant::now(),
            violations: Vec::new(),
        }
    }

    /// Polls the regions until `done` holds, checking the three-voter floor each time.
    async fn until(
        &mut self,
        client: &Client,
        cap: Duration,
        what: &str,
        mut done: impl FnMut(&[RegionInfo]) -> bool,
    ) -> Duration {
        loop {
            let regions = client.regions().await.unwrap_or_default();
            self.violations.extend(short(&regions));
            if done(&regions) {
                return self.started.elapsed();
            }
            assert!(
                self.started.elapsed() < cap,
                "{what}: not within {cap:?}; regions: {:#?}",
                regions
                    .iter()
                    .map(|r| (r.region.id, r.leader_store, &r.region.peers))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[test]
fn the_driver_balances_repairs_and_drains_with_writes_running() {
    let regions = env_u64("TINYKV_REBALANCE_REGIONS", 30);
    let tmp = tempfile::tempdir().expect("temp dir");
    // Kept for reading the nodes' logs after a failure.
    let base = std::env::var_os("TINYKV_REBALANCE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut cluster = Cluster::create(&base.join("cluster"), 3, tweak);
    let config = cluster.client_config(Duration::from_secs(10));
    let client = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Client::connect(config.clone()).await {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("no cluster: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    // The regions: `k0001`, `k0002`, ... each start one.
    rt.block_on(async {
        let keys: Vec<bytes::Bytes> = (1..regions)
            .map(|i| bytes::Bytes::from(format!("k{i:04}")))
            .collect();
        for chunk in keys.chunks(10) {
            let first = std::str::from_utf8(&chunk[0]).unwrap().to_string();
            let region = loop {
                let all = client.regions().await.unwrap_or_default();
                if let Some(r) = all
                    .into_iter()
                    .find(|r| r.region.contains(first.as_bytes()))
                {
                    break r;
                }
            };
            client
                .split_region(region.region.id, chunk.to_vec())
                .await
                .expect("split");
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let writes = rt.spawn(writers(client.clone(), regions, stop.clone()));
    let started = Instant::now();

    // 1. Two empty stores join; regions and leaders even out.
    let seed = cluster.node(1).addr;
    for _ in 0..2 {
        let id = cluster.add_store();
        cluster.start_joining(id, seed);
    }
    let mut live: Vec<u64> = (1..=5).collect();
    let mut phase = Phase::new();
    let took = rt.block_on(phase.until(
        &client,
        Duration::from_secs(300),
        "balanced over five stores",
        |r| r.len() as u64 == regions && balanced(r, &live),
    ));
    eprintln!("balanced over 5 stores after two joined: {took:.1?}");

    // The command line sees what the driver sees.
    let e = config
        .endpoints
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let tls = &config.tls;
    let cli = |args: &[&str]| {
        let mut all = vec![
            "-e",
            &e,
            "--ca",
            tls.ca.to_str().unwrap(),
            "--cert",
            tls.cert.to_str().unwrap(),
            "--key",
            tls.key.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        tinykv(&all)
    };
    let listed = cli(&["store", "list", "-o", "json"]).ok().json();
    let listed = listed["stores"].as_array().expect("stores").clone();
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert!(
        listed.iter().all(|s| s["state"] == json!("Up")),
        "{listed:?}"
    );
    let status = cli(&["cluster", "status", "-o", "json"]).ok().json();
    assert!(
        status["placement"]["leader_store"].as_u64().is_some(),
        "{status}"
    );
    let schedulers = cli(&["scheduler", "pause", "balance-region", "-o", "json"])
        .ok()
        .json();
    assert!(
        schedulers["schedulers"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "balance-region", "paused": true})),
        "{schedulers}"
    );
    cli(&["scheduler", "resume", "balance-region"]).ok();
    cli(&["operator", "list", "-o", "json"]).ok();

    // 2. A store other than the driver's is killed and stays down.
    let driver = rt.block_on(driver_store(&client)).expect("a driver");
    let victim = *live.iter().rev().find(|s| **s != driver).unwrap();
    eprintln!("{:.1?}: kill -9 store {victim}", started.elapsed());
    cluster.kill(victim);
    live.retain(|s| *s != victim);
    let mut phase = Phase::new();
    let took = rt.block_on(phase.until(
        &client,
        Duration::from_secs(120),
        "every region back at three voters on live stores",
        |r| repaired(r, &live, regions),
    ));
    eprintln!("store {victim} killed: every region at 3 live voters after {took:.1?}");
    let mut violations = phase.violations;

    // 3. It comes back; while replicas move onto it, the driver's store is killed.
    cluster.start(victim);
    live.push(victim);
    live.sort();
    let mut phase = Phase::new();
    rt.block_on(phase.until(
        &client,
        Duration::from_secs(120),
        "moves onto the returned store",
        |r| r.iter().any(|r| r.region.peer_on_store(victim).is_some()),
    ));
    let driver = rt.block_on(driver_store(&client)).expect("a driver");
    eprintln!(
        "{:.1?}: kill -9 store {driver}, the driver's",
        started.elapsed()
    );
    cluster.kill(driver);
    live.retain(|s| *s != driver);
    let took = rt.block_on(phase.until(
        &client,
        Duration::from_secs(180),
        "repaired and balanced under a new driver",
        |r| repaired(r, &live, regions) && balanced(r, &live),
    ));
    let new_driver = rt.block_on(driver_store(&client)).expect("a new driver");
    assert_ne!(new_driver, driver);
    eprintln!(
        "driver store {driver} killed mid-rebalance: store {new_driver} took over; repaired and \
         balanced over 4 stores after {took:.1?}"
    );
    violations.extend(phase.violations);

    // 4. `store delete` drains a store while the writer runs.
    let retired = *live.iter().find(|s| **s != new_driver).unwrap();
    eprintln!("{:.1?}: store delete {retired}", started.elapsed());
    cli(&["store", "delete", &retired.to_string()]).ok();
    live.retain(|s| *s != retired);
    let mut phase = Phase::new();
    let took = rt.block_on(phase.until(
        &client,
        Duration::from_secs(180),
        "the retired store drained",
        |r| repaired(r, &live, regions),
    ));
    let tombstoned = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = stores(&client).await;
            if s.iter()
                .any(|s| s.id == retired && s.state == StoreState::Tombstone)
            {
                break Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "store {retired} never tombstoned: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    eprintln!(
        "store {retired} deleted: drained after {took:.1?}, tombstone after {:.1?}",
        tombstoned.duration_since(phase.started)
    );
    violations.extend(phase.violations);

    stop.store(true, Ordering::Relaxed);
    let writes = rt.block_on(writes).expect("writer");
    eprintln!(
        "writers (one per region, a write every {WRITE_EVERY:?} after each answer): {} keys \
         acknowledged last, {} writes failed, slowest write {:.1?}, longest stretch without an \
         acknowledged write of one key {:.1?} ({}, ending {:.1?} in), {} stretches over two \
         election timeouts ({ELECTION_TIMEOUT:?} each); {:.1?} in all; failures: {:?}",
        writes.acked.len(),
        writes.failed,
        writes.slowest,
        writes.longest_gap,
        writes.gap_key,
        writes.gap_ended,
        writes.gaps_over_two_elections,
        started.elapsed(),
        writes.errors
    );
    assert!(
        violations.is_empty(),
        "regions below three voters: {violations:#?}"
    );
    rt.block_on(async {
        for (key, value) in &writes.acked {
            let got = client.get(key.clone()).await.expect("final read");
            assert_eq!(got.as_deref(), Some(value.as_bytes()), "{key}");
        }
    });
}
