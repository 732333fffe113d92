//! The TinyKV-style workload on five real stores: every client appends to its own key sequence
//! (key `"<client> <seq>"`, value `"x <client> <seq> y"`); half its operations are puts and half
//! are scans over its own keys, whose values must equal everything it appended so far, each
//! once and in order. Scenarios add message loss, partitions re-drawn every election timeout,
//! whole-cluster restarts between rounds, a small log-GC limit, membership changes of the
//! first region, and regions small enough (1 KiB) to split again and again, so that scans
//! cross regions. Each runs 3 rounds of 5 s.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestCluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tinykv_client::{Client, ClientError};
use tinykv_proto::api::{AdminRequest, AdminResponse, ReadMode};
use tinykv_transport::Rule;
use tokio::time::Instant;

const STORES: u64 = 5;
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_secs(5);
/// Election timeout of the test timing (10 ticks of 20 ms).
const ELECTION: Duration = Duration::from_millis(200);

/// Scenarios share the two cores: run them one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, Default)]
struct Scenario {
    clients: usize,
    unreliable: bool,
    partitions: bool,
    restarts: bool,
    gc_limit: Option<u64>,
    /// Cut one follower off for the whole second round; it must catch up by snapshot.
    cut_off: bool,
    /// Regions of at most 1 KiB (split at 512 B), checked every 100 ms.
    split: bool,
    /// A store removed from the first region and added back, over and over.
    conf_change: bool,
}

/// Removes a random store from the region holding the smallest key and adds it back (learner,
/// then voter) until `until`; refusals and unknown outcomes under the other faults are left
/// for the next turn, and every store is a voter again at the end.
async fn conf_change_nemesis(cluster: &TestCluster, client: &Client, until: Instant, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while Instant::now() < until {
        let store = rng.random_range(1..=STORES);
        let _ = client.remove_peer(1, store).await;
        tokio::time::sleep(2 * ELECTION).await;
        let addr = cluster.configs[(store - 1) as usize]
            .listen_addr
            .to_string();
        let _ = client
            .add_peer(1, store, &addr, Duration::from_secs(2))
            .await;
        tokio::time::sleep(ELECTION).await;
    }
    for store in 1..=STORES {
        let addr = cluster.configs[(store - 1) as usize]
            .listen_addr
            .to_string();
        until_ok("add the store back", || {
            client.add_peer(1, store, &addr, Duration::from_secs(5))
        })
        .await;
    }
}

fn key(client: usize, seq: u64) -> String {
    format!("{client:02} {seq:08}")
}

fn value(client: usize, seq: u64) -> String {
    format!("x {client} {seq} y")
}

/// Retries an operation that is safe to repeat until it succeeds (the workload's puts are
/// idempotent: a key is only ever written with one value).
async fn until_ok<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "{what} did not succeed within 60 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn run_client(
    client: Client,
    id: usize,
    appended: Arc<Mutex<u64>>,
    until: Instant,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ id as u64);
    let prefix = format!("{id:02} ");
    let end = format!("{id:02}~");
    while Instant::now() < until {
        let seq = *appended.lock().unwrap();
        if rng.random_bool(0.5) {
            let (k, v) = (key(id, seq), value(id, seq));
            until_ok("put", || client.put(k.clone(), v.clone())).await;
            *appended.lock().unwrap() = seq + 1;
        } else {
            let pairs = until_ok("scan", || {
                client.scan(
                    prefix.clone(),
                    end.clone(),
                    u32::MAX,
                    ReadMode::Linearizable,
                )
            })
            .await;
            let got: Vec<String> = pairs
                .iter()
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect();
            let want: Vec<String> = (0..seq).map(|s| value(id, s)).collect();
            assert_eq!(
                got, want,
                "client {id}: a scan must return every value appended so far, once each, in order"
            );
        }
    }
}

/// Draws a random split of the stores into two sides every election timeout until `until`.
async fn partition_nemesis(cluster: &TestCluster, until: Instant, rng: &mut StdRng) {
    while Instant::now() < until {
        let mut stores: Vec<u64> = (1..=STORES).collect();
        for i in (1..stores.len()).rev() {
            stores.swap(i, rng.random_range(0..=i));
        }
        let cut = rng.random_range(1..STORES as usize);
        cluster.partition(&[stores[..cut].to_vec(), stores[cut..].to_vec()]);
        tokio::time::sleep(ELECTION).await;
    }
    cluster.heal();
}

async fn raft_states(cluster: &TestCluster) -> Vec<(u64, tinykv_proto::api::RaftStateInfo)> {
    let mut out = Vec::new();
    for s in cluster.running() {
        if let Ok(AdminResponse::RaftState(p)) = cluster
            .node(s)
            .admin(AdminRequest::RaftState { region_id: 1 })
            .await
        {
            out.push((s, p.state));
        }
    }
    out
}

async fn run(name: &str, sc: Scenario) {
    let _serial = SERIAL.lock().await;
    common::init_logs();
    let seed: u64 = std::env::var("TINYKV_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    eprintln!("scenario {name}: seed {seed} (replay with TINYKV_TEST_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = TestCluster::start_with(STORES, |c| {
        if let Some(limit) = sc.gc_limit {
            c.raft.log_gc_count_limit = limit;
        }
        if sc.split {
            c.region.max_size = tinykv_node::config::ByteSize(1024);
            c.region.split_size = tinykv_node::config::ByteSize(512);
            c.region.split_check_interval = tinykv_node::config::ReadableDuration::millis(100);
        }
    })
    .await;
    cluster.leader(1).await;
    let appended: Vec<Arc<Mutex<u64>>> = (0..sc.clients).map(|_| Arc::new(Mutex::new(0))).collect();
    for round in 0..ROUNDS {
        let client = cluster.client().await;
        let until = Instant::now() + ROUND;
        if sc.unreliable {
            for s in cluster.running() {
                cluster.node(s).filter().reseed(seed + s + round as u64);
                cluster.node(s).filter().set(vec![Rule::drop_fraction(
                    &(1..=STORES).collect::<Vec<_>>(),
                    0.1,
                )]);
            }
        }
        let cut = if sc.cut_off && round == 1 {
            let leader = cluster.leader(1).await;
            let victim = leader % STORES + 1;
            let others: Vec<u64> = (1..=STORES).filter(|s| *s != victim).collect();
            cluster.partition(&[vec![victim], others]);
            Some(victim)
        } else {
            None
        };
        let tasks: Vec<_> = (0..sc.clients)
            .map(|id| {
                tokio::spawn(run_client(
                    client.clone(),
                    id,
                    appended[id].clone(),
                    until,
                    seed + round as u64,
                ))
            })
            .collect();
        let changes = async {
            if sc.conf_change {
                conf_change_nemesis(&cluster, &client, until, seed + round as u64).await;
            }
        };
        let partitions = async {
            if sc.partitions {
                partition_nemesis(&cluster, until, &mut rng).await;
            }
        };
        tokio::join!(changes, partitions);
        for t in tasks {
            t.await.expect("client task");
        }
        if let Some(victim) = cut {
            // The others compacted past everything the cut-off store has: only a snapshot can
            // bring it back.
            let states = raft_states(&cluster).await;
            let victim_last = states
                .iter()
                .find(|(s, _)| *s == victim)
                .map(|(_, st)| st.last_index)
                .unwrap_or(0);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let states = raft_states(&cluster).await;
                let truncated = states
                    .iter()
                    .filter(|(s, _)| *s != victim)
                    .map(|(_, st)| st.truncated_index)
                    .min()
                    .unwrap_or(0);
                if truncated > victim_last {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the majority never compacted past store {victim}'s log: {states:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        cluster.heal();
        if let Some(limit) = sc.gc_limit {
            // Let every store catch up, then no store keeps more than about twice the limit.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let states = raft_states(&cluster).await;
                let applied: Vec<u64> = states.iter().map(|(_, s)| s.applied).collect();
                let caught_up =
                    states.len() == STORES as usize && applied.iter().all(|a| *a == applied[0]);
                let bounded = states
                    .iter()
                    .all(|(_, s)| s.applied - s.truncated_index <= 2 * limit);
                if caught_up && bounded {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: stores did not converge with bounded logs: {states:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if sc.restarts {
            cluster.stop_all().await;
            for s in 1..=STORES {
                cluster.restart(s).await;
            }
            cluster.leader(1).await;
        }
        let total: u64 = appended.iter().map(|a| *a.lock().unwrap()).sum();
        eprintln!("scenario {name}: round {round} done, {total} values appended so far");
    }
    // Everything acknowledged is there at the end, read by a fresh client.
    let client = cluster.client().await;
    if sc.split {
        let regions = until_ok("list the regions", || client.regions()).await;
        let first = regions
            .iter()
            .find(|r| r.region.id == 1)
            .expect("region 1 is listed");
        eprintln!(
            "scenario {name}: {} regions; region 1 at version {}",
            regions.len(),
            first.region.epoch.version
        );
        assert!(
            first.region.epoch.version >= 4,
            "the first region split again and again: {regions:?}"
        );
    }
    for (id, a) in appended.iter().enumerate() {
        let n = *a.lock().unwrap();
        let pairs = until_ok("final scan", || {
            client.scan(
                format!("{id:02} "),
                format!("{id:02}~"),
                u32::MAX,
                ReadMode::Linearizable,
            )
        })
        .await;
        assert_eq!(
            pairs.len() as u64,
            n,
            "client {id}: every acknowledged value survives"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client() {
    run(
        "one_client",
        Scenario {
            clients: 1,
            ..Scenario::default()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_clients() {
    run(
        "five_clients",
        Scenario {
            clients: 5,
            ..Scenario::default()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_clients_unreliable() {
    run(
        "five_clients_unreliable",
        Scenario {
            clients: 5,
            unreliable: true,
            ..Scenario::default()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_partitions() {
    run(
        "one_client_partitions",
        Scenario {
            clients: 1,
            partitions: true,
            ..Scenario::default()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_clients_partitions() {
    run(
        "five_clients_partitions",
        Scenario {
            clients: 5,
            partitions: true,
            ..Scenario::default()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_restarts() {
    run(
        "one_client_restarts",
        Scenario {
            clients: 1,
            restarts: true,
            ..Scenario::default()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_clients_restarts() {
    run(
        "five_clients_restarts",
        Scenario {
            clients: 5,
            restarts: true,
            ..Scenario::default()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_clients_unreliable_restarts_partitions() {
    let sc = Scenario {
        clients: 5,
        unreliable: true,
        restarts: true,
        partitions: true,
        ..Scenario::default()
    };
    run("five_clients_unreliable_restarts_partitions", sc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_gc_keeps_logs_bounded() {
    let sc = Scenario {
        clients: 5,
        unreliable: true,
        restarts: true,
        gc_limit: Some(100),
        cut_off: true,
        ..Scenario::default()
    };
    run("log_gc_keeps_logs_bounded", sc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_clients_split() {
    let sc = Scenario {
        clients: 5,
        split: true,
        ..Scenario::default()
    };
    run("five_clients_split", sc).await;
}

/// TinyKV's generic test with every fault on: splits, an unreliable network, crash and
/// restart, partitions, log GC and membership changes together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_clients_split_with_every_fault() {
    let sc = Scenario {
        clients: 5,
        unreliable: true,
        restarts: true,
        partitions: true,
        gc_limit: Some(100),
        split: true,
        conf_change: true,
        ..Scenario::default()
    };
    run("five_clients_split_with_every_fault", sc).await;
}
