//! Membership changes on real stores: what happens to writes, votes and peers when a region's
//! members change under faults.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TestCluster, eventually};
use tinykv_client::{Client, ClientConfig, ClientError};
use tinykv_node::{JoinAs, Node};
use tinykv_proto::api::{
    AdminRequest, AdminResponse, ConfChangeRefusal, KvError, KvOp, KvResponse, LogEntryInfo,
    PeerStatus, ReadMode,
};
use tinykv_storage::{Engines, OpenOptions, PeerState};
use tinykv_transport::{Direction, Rule};
use tokio::time::Instant;

async fn raft_log(cluster: &TestCluster, store: u64) -> Vec<LogEntryInfo> {
    match cluster
        .node(store)
        .admin(AdminRequest::RaftLog {
            region_id: 1,
            from: 0,
            to: 0,
        })
        .await
    {
        Ok(AdminResponse::RaftLog(entries)) => entries,
        other => panic!("store {store}: raft log: {other:?}"),
    }
}

async fn leads(cluster: &TestCluster, store: u64) -> bool {
    matches!(
        cluster.node(store).admin(AdminRequest::StoreStatus).await,
        Ok(AdminResponse::StoreStatus(s)) if s.leader_of.contains(&1)
    )
}

async fn hosts_region(cluster: &TestCluster, store: u64) -> bool {
    matches!(
        cluster.node(store).admin(AdminRequest::StoreStatus).await,
        Ok(AdminResponse::StoreStatus(s)) if s.peers.iter().any(|p| p.state.region == 1)
    )
}

fn client_of(cluster: &TestCluster, stores: &[u64]) -> ClientConfig {
    ClientConfig {
        endpoints: stores
            .iter()
            .map(|s| cluster.configs[(*s - 1) as usize].listen_addr)
            .collect::<Vec<SocketAddr>>(),
        tls: cluster.client_tls.clone(),
        timeout: Duration::from_secs(15),
    }
}

/// A leader that applies its own removal (proposed by the leader before it) has writes waiting
/// that were replicated but not committed. They may still commit under the next leader, so
/// their callers must hear "outcome unknown", and the client must not send them again: before
/// this was fixed they were answered `RegionNotFound`, the client resent them, and the write
/// stood twice in the committed log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_pending_on_a_removed_leader_are_not_applied_twice() {
    common::init_logs();
    // Elections take 1-2 s, so that answers held back 500 ms do not stop one.
    let mut cluster = TestCluster::start_with(3, |c| c.raft.election_timeout_ticks = 50).await;
    let old = cluster.leader(1).await;
    let others: Vec<u64> = (1..=3).filter(|s| *s != old).collect();
    let (doomed, witness) = (others[0], others[1]);
    // The removal below is refused unless the leader has heard from both others lately.
    eventually("the leader hears from every store", async || {
        peer_status(&cluster, old).await.down_peers.is_empty()
    })
    .await;

    // The removal of `doomed` reaches `doomed` alone and is acknowledged to nobody. The leader
    // refuses it (LosesQuorum) if the filters cut it off from the witness for two election
    // timeouts before the request arrives, which a loaded machine can make happen: then the
    // links are healed and it is asked again.
    let admin = Client::connect(client_of(&cluster, &[old]))
        .await
        .expect("admin client");
    let old_addr = cluster.configs[(old - 1) as usize].listen_addr;
    let removes_doomed = format!("RemoveNode peer {doomed}");
    let mut attempts = 0;
    let removal = loop {
        attempts += 1;
        cluster
            .node(doomed)
            .filter()
            .set(vec![Rule::block(&[old]).only(Direction::Outgoing)]);
        cluster
            .node(witness)
            .filter()
            .set(vec![Rule::block(&[old, doomed])]);
        let admin = admin.clone();
        let removal = tokio::spawn(async move {
            admin
                .admin(
                    old_addr,
                    AdminRequest::RemovePeer {
                        region_id: 1,
                        store_id: doomed,
                    },
                )
                .await
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut logged = false;
        while !logged && Instant::now() < deadline && !removal.is_finished() {
            logged = raft_log(&cluster, doomed)
                .await
                .iter()
                .any(|e| e.summary.contains(&removes_doomed));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        logged = logged
            || raft_log(&cluster, doomed)
                .await
                .iter()
                .any(|e| e.summary.contains(&removes_doomed));
        if logged {
            break removal;
        }
        assert!(attempts < 5, "the removal never reached the doomed store");
        removal.abort();
        cluster.node(doomed).filter().clear();
        cluster.node(witness).filter().clear();
        eventually("the leader hears from every store again", async || {
            peer_status(&cluster, old).await.down_peers.is_empty()
        })
        .await;
    };
    removal.abort();
    cluster.stop(old).await;

    // Only `doomed` can win now (its log is longer than the witness's). The witness's answers
    // are held back, which keeps the new leader's no-op, and with it the removal, from
    // committing for a while: a write sent in that window is replicated but still waits when
    // `doomed` applies its removal.
    cluster.node(witness).filter().set(vec![
        Rule::delay(&[doomed], Duration::from_millis(500)).only(Direction::Outgoing),
    ]);
    cluster.node(doomed).filter().clear();
    eventually("the doomed store leads", async || {
        leads(&cluster, doomed).await
    })
    .await;
    let noop = cluster.raft_state(doomed, 1).await.last_index;
    eventually("the witness has the new leader's no-op", async || {
        cluster.raft_state(witness, 1).await.last_index >= noop
    })
    .await;
    let client = Client::connect(client_of(&cluster, &[doomed, witness]))
        .await
        .expect("client");
    let write = tokio::spawn(async move { client.put("w", "once").await });
    eventually("the doomed store applied its removal", async || {
        !hosts_region(&cluster, doomed).await
    })
    .await;
    cluster.node(witness).filter().clear();
    cluster.restart(old).await;
    let outcome = write.await.expect("write task");

    // The write commits under the next leader (the witness has it) at most once.
    let survivor = cluster.leader(1).await;
    let after = Client::connect(client_of(&cluster, &[old, witness]))
        .await
        .expect("client");
    after.put("after", "1").await.expect("a later write");
    let log = raft_log(&cluster, survivor).await;
    let copies = log
        .iter()
        .filter(|e| e.summary.starts_with("put \"w\""))
        .count();
    assert!(copies <= 1, "the write stands {copies} times in {log:#?}");
    assert!(
        matches!(
            outcome,
            Err(ClientError::Kv(KvError::OutcomeUnknown { .. }))
        ),
        "the caller must hear that the outcome is unknown, got {outcome:?}"
    );
    cluster.shutdown().await;
}

async fn peer_status(cluster: &TestCluster, store: u64) -> PeerStatus {
    match cluster
        .node(store)
        .admin(AdminRequest::RaftState { region_id: 1 })
        .await
    {
        Ok(AdminResponse::RaftState(p)) => p,
        other => panic!("store {store}: raft state: {other:?}"),
    }
}

/// Reads `key` from what `store` itself has applied.
async fn local_value(cluster: &TestCluster, store: u64, key: &str) -> Option<Vec<u8>> {
    let addr = cluster.configs[(store - 1) as usize].listen_addr;
    let op = KvOp::Get {
        key: key.as_bytes().to_vec().into(),
        read: ReadMode::Stale,
    };
    match cluster.direct(addr, op).await {
        Ok(Ok(KvResponse::Value(v))) => v.map(|v| v.to_vec()),
        _ => None,
    }
}

async fn caught_up(cluster: &TestCluster, store: u64) -> bool {
    if !hosts_region(cluster, store).await {
        return false;
    }
    let leader = cluster.leader(1).await;
    cluster.raft_state(store, 1).await.applied >= cluster.raft_state(leader, 1).await.applied
}

/// Joins a store whose previous node was just stopped: the endpoint frees the port when its
/// task ends, so a bind error is tried again for a while.
async fn join(config: tinykv_node::config::NodeConfig, seed: SocketAddr) -> Node {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Node::join(config.clone(), seed, JoinAs::Voter).await {
            Ok(node) => return node,
            Err(tinykv_node::NodeError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("join: {e}"),
        }
    }
}

fn addr_of(cluster: &TestCluster, store: u64) -> String {
    cluster.configs[(store - 1) as usize]
        .listen_addr
        .to_string()
}

/// Three stores with one write applied: the cluster, region 1's leader, one of its followers
/// and a client of all three stores.
async fn three_stores_with_a_write() -> (TestCluster, u64, u64, Client) {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader(1).await;
    let follower = (1..=3).find(|s| *s != leader).unwrap();
    let client = Client::connect(client_of(&cluster, &[1, 2, 3]))
        .await
        .expect("client");
    client.put("before", "1").await.unwrap();
    (cluster, leader, follower, client)
}

/// How long a test waits for a learner to catch up before promoting it.
const PROMOTE_WAIT: Duration = Duration::from_secs(30);

/// etcd's strict reconfiguration check: with one of three voters down, removing another live
/// one would leave a configuration that cannot commit. Before the check the removal committed
/// (two of the old three acknowledged it) and the region was wedged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_that_leaves_no_live_quorum_is_refused() {
    common::init_logs();
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader(1).await;
    let others: Vec<u64> = (1..=3).filter(|s| *s != leader).collect();
    let (down, live) = (others[0], others[1]);
    cluster.stop(down).await;
    eventually("the leader sees the stopped store down", async || {
        !peer_status(&cluster, leader).await.down_peers.is_empty()
    })
    .await;
    let result = cluster
        .node(leader)
        .admin(AdminRequest::RemovePeer {
            region_id: 1,
            store_id: live,
        })
        .await;
    match &result {
        Err(KvError::ConfChangeRefused {
            refusal:
                ConfChangeRefusal::LosesQuorum {
                    voters: 2,
                    live: 1,
                    quorum: 2,
                    ..
                },
            ..
        }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let client = Client::connect(client_of(&cluster, &[leader, live]))
        .await
        .expect("client");
    client
        .put("still", "writable")
        .await
        .expect("a write after the refusal");
    // Removing the store that is down leaves two live voters of two: allowed.
    client
        .remove_peer(1, down)
        .await
        .expect("remove the down store");
    client
        .put("after", "removal")
        .await
        .expect("a write after the removal");
    cluster.shutdown().await;
}

/// TinyKV's re-add case: a store removed from its region deletes the region's data and keeps a
/// tombstone; added back under a new peer id it must come back and catch up by snapshot.
/// Before the tombstone yielded to a newer peer id, the store ignored its region for good while
/// the region listed it as a voter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_left_is_added_back_under_a_new_peer_id() {
    let (mut cluster, _, gone, client) = three_stores_with_a_write().await;
    eventually("the store applied the write", async || {
        local_value(&cluster, gone, "before").await.is_some()
    })
    .await;
    let old_peer = peer_status(&cluster, gone).await.state.peer;
    client.remove_peer(1, gone).await.expect("remove");
    eventually("the removed store drops its peer", async || {
        !hosts_region(&cluster, gone).await
    })
    .await;

    // The removed store holds no data of the region, only its tombstone.
    cluster.stop(gone).await;
    let data_dir = cluster.configs[(gone - 1) as usize].data_dir.clone();
    {
        let (engines, _) = Engines::open(&data_dir, OpenOptions::default()).expect("open");
        assert!(engines.scan(b"", b"", 10).unwrap().is_empty());
        let state = engines.region_state(1).unwrap().expect("region state");
        assert_eq!(state.state, PeerState::Tombstone);
        assert!(engines.raft_state(1).unwrap().is_none());
        assert!(engines.apply_state(1).unwrap().is_none());
    }
    cluster.restart(gone).await;
    client.put("while-away", "2").await.unwrap();

    client
        .add_peer(1, gone, &addr_of(&cluster, gone), PROMOTE_WAIT)
        .await
        .expect("add back");
    eventually("the re-added store catches up", async || {
        caught_up(&cluster, gone).await
    })
    .await;
    let status = peer_status(&cluster, gone).await;
    assert!(status.state.peer > old_peer, "{status:?}");
    assert_eq!(
        local_value(&cluster, gone, "while-away").await.as_deref(),
        Some(&b"2"[..])
    );
    let info = client.cluster().await.unwrap();
    let region = info.regions.iter().find(|r| r.region.id == 1).unwrap();
    assert!(region.region.epoch.conf_ver >= 3, "{region:?}");
    cluster.shutdown().await;
}

/// A store removed and added back while it was stopped restarts with its old peer: messages
/// for its new peer id, from a newer membership, make the old peer give way. Before, they were
/// dropped as meant for another peer and the store never came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_readded_while_down_replaces_its_old_peer() {
    let (mut cluster, _, away, client) = three_stores_with_a_write().await;
    let old_peer = peer_status(&cluster, away).await.state.peer;
    cluster.stop(away).await;
    client.remove_peer(1, away).await.expect("remove");
    client
        .add_learner(1, away, &addr_of(&cluster, away))
        .await
        .expect("add back");
    client.put("while-away", "2").await.unwrap();
    cluster.restart(away).await;
    client
        .promote_learner(1, away, PROMOTE_WAIT)
        .await
        .expect("promote");
    eventually("the store comes back under its new peer", async || {
        caught_up(&cluster, away).await
    })
    .await;
    assert!(peer_status(&cluster, away).await.state.peer > old_peer);
    assert_eq!(
        local_value(&cluster, away, "while-away").await.as_deref(),
        Some(&b"2"[..])
    );
    cluster.shutdown().await;
}

/// The rebuild flow of a store whose data is lost: joining again while the region still lists
/// it is refused with the steps (before, it was told "already a member" and came back as its
/// old peer with an empty log); after `node leave` the same join works and the store catches
/// up under a new peer id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_store_is_rebuilt_by_leave_then_join() {
    let (mut cluster, leader, lost, client) = three_stores_with_a_write().await;
    let old_peer = peer_status(&cluster, lost).await.state.peer;
    cluster.stop(lost).await;
    let config = cluster.configs[(lost - 1) as usize].clone();
    std::fs::remove_dir_all(&config.data_dir).expect("wipe the data dir");
    let seed = cluster.configs[(leader - 1) as usize].listen_addr;

    let refused = Node::join(config.clone(), seed, JoinAs::Voter).await;
    match refused {
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("node leave"), "{text}");
        }
        Ok(_) => panic!("a wiped store rejoined under its old peer"),
    }
    // Refused before the node started: nothing was written.
    assert!(!config.data_dir.exists());
    rebuild(&mut cluster, &client, lost, old_peer, seed).await;
    cluster.shutdown().await;
}

/// The documented rebuild of store `lost` (stopped, data dir empty): leave, then join through
/// `seed`. It catches up under a newer peer id than `old_peer` and has the write "before".
async fn rebuild(
    cluster: &mut TestCluster,
    client: &Client,
    lost: u64,
    old_peer: u64,
    seed: SocketAddr,
) {
    client.remove_peer(1, lost).await.expect("leave");
    let config = cluster.configs[(lost - 1) as usize].clone();
    cluster.nodes[(lost - 1) as usize] = Some(join(config, seed).await);
    eventually("the rebuilt store catches up", async || {
        caught_up(cluster, lost).await
    })
    .await;
    assert!(peer_status(cluster, lost).await.state.peer > old_peer);
    assert_eq!(
        local_value(cluster, lost, "before").await.as_deref(),
        Some(&b"1"[..])
    );
}

/// A founding store whose data dir was wiped, started again with its founding config, used to
/// bootstrap region 1 afresh: the same peer with an empty log and no vote. The cluster records
/// every store it has seen run, and such a start is refused with the rebuild steps; the
/// documented rebuild (leave, then join) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_founding_store_is_refused_at_start_and_rebuilt_by_join() {
    let (mut cluster, leader, lost, client) = three_stores_with_a_write().await;
    let old_peer = peer_status(&cluster, lost).await.state.peer;
    eventually("every store is recorded as started", async || {
        let info = cluster.node(lost).admin(AdminRequest::Cluster).await;
        matches!(info, Ok(AdminResponse::Cluster(i)) if i.started_stores == vec![1, 2, 3])
    })
    .await;
    cluster.stop(lost).await;
    let config = cluster.configs[(lost - 1) as usize].clone();
    std::fs::remove_dir_all(&config.data_dir).expect("wipe the data dir");

    match Node::start(config.clone()).await {
        Err(e @ tinykv_node::NodeError::LostData { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("node leave") && text.contains("node join"),
                "{text}"
            );
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a wiped founding store bootstrapped again"),
    }
    assert!(!config.data_dir.exists(), "the refusal wrote nothing");

    let seed = cluster.configs[(leader - 1) as usize].listen_addr;
    rebuild(&mut cluster, &client, lost, old_peer, seed).await;
    cluster.shutdown().await;
}

/// TinyKV's basic conf change case on real stores: a five-store region shrinks to one voter
/// (the leader removed among them, after leadership moved), keeps taking writes, and grows
/// back; each store re-added comes back under a new peer id and catches up by snapshot (the log
/// was compacted meanwhile), a removed store holds none of the region's data, and `conf_ver`
/// counts every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_shrinks_to_one_voter_and_grows_back() {
    common::init_logs();
    let cluster = TestCluster::start_with(5, |c| c.raft.log_gc_count_limit = 10).await;
    let first_leader = cluster.leader(1).await;
    let client = Client::connect(client_of(&cluster, &[1, 2, 3, 4, 5]))
        .await
        .expect("client");
    client.put("k0", "v0").await.unwrap();
    let keep = (1..=5).find(|s| *s != first_leader).unwrap();
    let mut old_peers = std::collections::BTreeMap::new();
    let mut changes = 0;
    for store in (1..=5).filter(|s| *s != keep) {
        old_peers.insert(store, peer_status(&cluster, store).await.state.peer);
        client.remove_peer(1, store).await.expect("remove");
        changes += 1;
        client.put(format!("k{store}"), "v").await.unwrap();
    }
    let info = client.cluster().await.unwrap();
    let region = info.regions.iter().find(|r| r.region.id == 1).unwrap();
    assert_eq!(
        region
            .region
            .peers
            .iter()
            .map(|p| p.store_id)
            .collect::<Vec<_>>(),
        vec![keep]
    );
    for store in (1..=5).filter(|s| *s != keep) {
        eventually("a removed store drops the region", async || {
            !hosts_region(&cluster, store).await
        })
        .await;
        assert_eq!(local_value(&cluster, store, "k0").await, None);
    }
    // One voter commits alone; the log moves far past where the removed stores left it.
    for i in 0..50 {
        client.put(format!("alone{i}"), "v").await.unwrap();
    }
    for store in (1..=5).filter(|s| *s != keep) {
        let before = cluster.snapshots_received(store).await;
        client
            .add_peer(1, store, &addr_of(&cluster, store), PROMOTE_WAIT)
            .await
            .expect("add back");
        changes += 2;
        eventually("the re-added store catches up", async || {
            caught_up(&cluster, store).await
        })
        .await;
        let now = peer_status(&cluster, store).await.state.peer;
        assert!(now > old_peers[&store], "store {store}: peer {now}");
        assert!(cluster.snapshots_received(store).await > before);
        assert_eq!(
            local_value(&cluster, store, "alone49").await.as_deref(),
            Some(&b"v"[..])
        );
    }
    let info = client.cluster().await.unwrap();
    let region = info.regions.iter().find(|r| r.region.id == 1).unwrap();
    assert_eq!(region.region.peers.len(), 5);
    assert!(region.region.peers.iter().all(|p| !p.is_learner()));
    assert_eq!(region.region.epoch.conf_ver, 1 + changes);
    client.put("grown", "yes").await.unwrap();
    cluster.shutdown().await;
}

/// A client whose cached leader's store has since left the region is answered `RegionNotFound`
/// there; the request never reached a log, so the client finds the region's leader and asks it.
/// Before, the answer went back to the caller, and a caller that retried (the nemesis adding
/// stores back) kept asking the store that left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_request_finds_the_leader_after_the_cached_one_left() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader(1).await;
    let stale = Client::connect(client_of(&cluster, &[1, 2, 3]))
        .await
        .expect("client");
    // Learns that `leader` leads region 1.
    stale.put("k", "v").await.unwrap();
    let other = Client::connect(client_of(&cluster, &[1, 2, 3]))
        .await
        .expect("client");
    other
        .remove_peer(1, leader)
        .await
        .expect("remove the leader's store");
    eventually("the removed store drops its peer", async || {
        !hosts_region(&cluster, leader).await
    })
    .await;
    let compact = AdminRequest::CompactLog { region_id: 1 };
    assert!(
        matches!(
            stale.admin_leader(1, compact).await,
            Ok(AdminResponse::Done)
        ),
        "the request reaches the new leader"
    );
    cluster.shutdown().await;
}

/// A store cut off while it was removed from region 1 keeps its old copy of the region, with
/// the old membership. A wiped store that has since left, joining through that store as its
/// seed, is judged by the newest membership any store holds, not by the seed's stale copy.
/// Before, the seed's copy still listed it as a voter and the join was refused for good (the
/// nemesis' rebuild of a wiped store gave up this way, seed 20261204). Once healed, the cut-off
/// store learns from a member that it was removed and drops its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_store_cut_off_from_its_region_misleads_no_join_and_cleans_up() {
    common::init_logs();
    let mut cluster = TestCluster::start(4).await;
    let client = Client::connect(client_of(&cluster, &[1, 2, 3, 4]))
        .await
        .expect("client");
    client.put("before", "1").await.unwrap();
    let leader = cluster.leader(1).await;
    let others: Vec<u64> = (1..=4).filter(|s| *s != leader).collect();
    let (stale, lost) = (others[0], others[1]);
    for s in [stale, lost] {
        eventually("the store has the write", async || {
            local_value(&cluster, s, "before").await.is_some()
        })
        .await;
    }
    let rest: Vec<u64> = (1..=4).filter(|s| *s != stale).collect();
    cluster.partition(&[vec![stale], rest]);
    client
        .remove_peer(1, stale)
        .await
        .expect("remove the cut-off store");

    let old_peer = peer_status(&cluster, lost).await.state.peer;
    cluster.stop(lost).await;
    let config = cluster.configs[(lost - 1) as usize].clone();
    std::fs::remove_dir_all(&config.data_dir).expect("wipe the data dir");
    client.remove_peer(1, lost).await.expect("leave");
    // The cut-off store never heard of either removal.
    match cluster.node(stale).admin(AdminRequest::Cluster).await {
        Ok(AdminResponse::Cluster(info)) => {
            let r = info
                .regions
                .iter()
                .find(|r| r.region.id == 1)
                .expect("region 1");
            assert!(r.region.peer_on_store(lost).is_some(), "{r:?}");
        }
        other => panic!("cluster info: {other:?}"),
    }

    let seed = cluster.configs[(stale - 1) as usize].listen_addr;
    cluster.nodes[(lost - 1) as usize] = Some(join(config, seed).await);
    eventually("the rebuilt store catches up", async || {
        caught_up(&cluster, lost).await
    })
    .await;
    assert!(peer_status(&cluster, lost).await.state.peer > old_peer);
    assert_eq!(
        local_value(&cluster, lost, "before").await.as_deref(),
        Some(&b"1"[..])
    );

    // Healed, the cut-off store's peer campaigns with its old membership; a member answers
    // that it was removed, and it drops its copy of the region (before, it kept campaigning
    // and holding the range for good).
    cluster.heal();
    eventually(
        "the removed store drops its stale copy of region 1",
        async || !hosts_region(&cluster, stale).await,
    )
    .await;
    assert_eq!(local_value(&cluster, stale, "before").await, None);
    client
        .put("after", "2")
        .await
        .expect("a write after the cleanup");
    cluster.shutdown().await;
}

/// A store that was down while another joined, and caught up by a snapshot, never applied the
/// entry that carried the joiner's address. Once the joiner leads, the store must still answer
/// it: it asks the stores it knows where the joiner is. Before, its answers had nowhere to go,
/// and the leader, hearing nothing, never sent it more; it stayed behind for good (the nemesis
/// found this after a `join-new-store` and a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_missed_a_join_learns_the_joiners_address() {
    let (mut cluster, leader, away, client) = three_stores_with_a_write().await;
    cluster.stop(away).await;

    let addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let config = cluster.node_config(4, addr, Vec::new());
    let seed = cluster.configs[(leader - 1) as usize].listen_addr;
    cluster.configs.push(config.clone());
    cluster.nodes.push(Some(join(config, seed).await));
    // The away store can only come back by snapshot: the join's entries are compacted.
    let compact = AdminRequest::CompactLog { region_id: 1 };
    assert!(matches!(
        client.admin_leader(1, compact).await,
        Ok(AdminResponse::Done)
    ));
    eventually("the log is compacted past the join", async || {
        cluster.raft_state(leader, 1).await.truncated_index > 3
    })
    .await;
    cluster.restart(away).await;
    eventually("the away store catches up by snapshot", async || {
        caught_up(&cluster, away).await
    })
    .await;

    let transfer = AdminRequest::TransferLeader {
        region_id: 1,
        to_store: 4,
    };
    eventually("store 4 leads region 1", async || {
        let _ = client.admin_leader(1, transfer.clone()).await;
        leads(&cluster, 4).await
    })
    .await;
    client.put("after", "2").await.unwrap();
    eventually("the away store follows the joiner", async || {
        cluster.raft_state(away, 1).await.applied >= cluster.raft_state(4, 1).await.applied
    })
    .await;
    assert_eq!(
        local_value(&cluster, away, "after").await.as_deref(),
        Some(&b"2"[..])
    );
    cluster.shutdown().await;
}
