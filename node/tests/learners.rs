//! Learners and the id allocator on real stores: a store joins as a learner under an allocated
//! peer id, counts toward no quorum until promoted, and is promoted only once it caught up;
//! ids come from region 1's replicated allocator and are never handed out twice, across leader
//! changes, restarts and replicas filled by snapshot.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TestCluster, eventually};
use tinykv_client::{Client, ClientError};
use tinykv_node::{JoinAs, Node};
use tinykv_proto::api::{AdminRequest, AdminResponse, ConfChangeRefusal, KvError, RegionInfo};
use tinykv_storage::PeerRole;
use tokio::time::Instant;

async fn region_one(client: &Client) -> RegionInfo {
    let info = client.cluster().await.expect("cluster");
    info.regions
        .into_iter()
        .find(|r| r.region.id == 1)
        .expect("region 1")
}

/// Where nothing listens: a store that was added but never started.
fn dead_addr() -> String {
    SocketAddr::from(([127, 0, 0, 1], common::free_port())).to_string()
}

/// A joiner that never comes up must not cost the cluster its quorum. Added as a voter (as
/// before learners existed), it made a one-store cluster a two-voter one with one voter dead:
/// no write could commit. As a learner it counts toward nothing, and promoting it is refused
/// until it has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_that_never_comes_up_leaves_the_cluster_writable() {
    common::init_logs();
    let cluster = TestCluster::start(1).await;
    cluster.leader(1).await;
    let client = cluster.client().await;
    client.put("before", "1").await.expect("write before");
    client
        .add_learner(1, 2, &dead_addr())
        .await
        .expect("add learner");
    client
        .put("after", "2")
        .await
        .expect("a write with a dead learner");
    let region = region_one(&client).await;
    let learner = region.region.peer_on_store(2).expect("store 2 listed");
    assert_eq!(learner.role, PeerRole::Learner);
    assert_eq!(region.region.epoch.conf_ver, 2);
    assert_eq!(
        client.get("after").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );

    let promoted = client.promote_learner(1, 2, Duration::ZERO).await;
    assert!(
        matches!(
            promoted,
            Err(ClientError::Kv(KvError::ConfChangeRefused {
                refusal: ConfChangeRefusal::LearnerBehind { matched: 0, .. },
                ..
            }))
        ),
        "{promoted:?}"
    );
    let region = region_one(&client).await;
    assert_eq!(
        region.region.peer_on_store(2).unwrap().role,
        PeerRole::Learner
    );
    // A learner cannot be handed the leadership either.
    let transfer = client
        .admin_leader(
            1,
            AdminRequest::TransferLeader {
                region_id: 1,
                to_store: 2,
            },
        )
        .await;
    assert!(
        matches!(&transfer, Err(ClientError::Kv(KvError::BadRequest(m))) if m.contains("learner")),
        "{transfer:?}"
    );
    // The learner is removed like any peer, and writes go on.
    client.remove_peer(1, 2).await.expect("remove the learner");
    client.put("end", "3").await.expect("a write after");
    cluster.shutdown().await;
}

/// The learner stage of a join: the new store is filled while it does not vote, and is made a
/// voter only once within `raft.learner-max-lag` of the leader; then it counts in the quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_is_promoted_once_it_has_caught_up_and_then_votes() {
    common::init_logs();
    let mut cluster = TestCluster::start_with(3, |c| {
        c.raft.log_gc_count_limit = 20;
        c.raft.learner_max_lag = 10;
    })
    .await;
    let leader = cluster.leader(1).await;
    let client = cluster.client().await;
    for i in 0..100 {
        client.put(format!("k{i:03}"), "v").await.unwrap();
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let config = cluster.node_config(4, addr, Vec::new());
    let seed = cluster.configs[(leader - 1) as usize].listen_addr;
    // Added (and allocated an id) before its node runs: not caught up, not promotable.
    client
        .add_learner(1, 4, &addr.to_string())
        .await
        .expect("add learner");
    let before = region_one(&client).await;
    let learner = before.region.peer_on_store(4).expect("learner listed");
    assert!(learner.is_learner());
    assert!(
        learner.id > 3,
        "a new peer id is allocated above the founders': {learner:?}"
    );
    assert!(client.promote_learner(1, 4, Duration::ZERO).await.is_err());

    // The store starts; joining again finds its learner there and waits for the promotion.
    let node = Node::join(config.clone(), seed, JoinAs::Voter)
        .await
        .expect("join");
    cluster.configs.push(config);
    cluster.nodes.push(Some(node));
    let after = region_one(&client).await;
    let voter = after.region.peer_on_store(4).expect("store 4 listed");
    assert_eq!(voter.id, learner.id, "promotion keeps the peer id");
    assert_eq!(voter.role, PeerRole::Voter);
    assert_eq!(
        after.region.epoch.conf_ver,
        before.region.epoch.conf_ver + 1
    );
    assert!(client.get("k099").await.unwrap().is_some());

    // Four voters need three: with two founders stopped, nothing commits; with one, the new
    // voter's acknowledgement makes the quorum.
    let others: Vec<u64> = (1..=3).filter(|s| *s != leader).collect();
    cluster.stop(others[0]).await;
    client
        .put("three-of-four", "ok")
        .await
        .expect("commit with the new voter");
    cluster.shutdown().await;
}

/// Moves region 1's leadership to `to`, asking again while it has not moved: a transfer to a
/// peer that is not caught up within an election timeout is dropped by Raft.
async fn move_leader(cluster: &TestCluster, client: &Client, to: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req = AdminRequest::TransferLeader {
            region_id: 1,
            to_store: to,
        };
        if let Err(e) = client.admin_leader(1, req).await {
            tracing::debug!(error = %e, "transfer not asked yet");
        }
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(1) {
            if cluster.leader(1).await == to {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(Instant::now() < deadline, "store {to} never took the lead");
    }
}

async fn alloc(client: &Client, count: u32) -> std::ops::Range<u64> {
    let first = client.alloc_ids(count).await.expect("alloc");
    first..first + u64::from(count)
}

/// Ids come from region 1's log: never twice, whoever leads, across a restart of every store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_never_handed_out_twice() {
    common::init_logs();
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let mut given: Vec<std::ops::Range<u64>> =
        vec![alloc(&client, 1).await, alloc(&client, 10).await];
    assert!(given[0].start > 3, "founding peers use 1 to 3: {given:?}");
    for to in 1..=3u64 {
        move_leader(&cluster, &client, to).await;
        given.push(alloc(&client, 7).await);
    }
    cluster.stop_all().await;
    for s in 1..=3 {
        cluster.restart(s).await;
    }
    let client = cluster.client().await;
    given.push(alloc(&client, 1000).await);
    for pair in given.windows(2) {
        assert!(pair[0].end <= pair[1].start, "overlap or reuse: {given:?}");
    }

    // Only region 1's leader allocates, 1 to 1000 ids at a time.
    let leader = cluster.leader(1).await;
    let follower = (1..=3).find(|s| *s != leader).unwrap();
    let asked = cluster
        .node(follower)
        .admin(AdminRequest::AllocIds { count: 1 })
        .await;
    assert!(matches!(asked, Err(KvError::NotLeader { .. })), "{asked:?}");
    for count in [0, 1001] {
        let asked = cluster
            .node(leader)
            .admin(AdminRequest::AllocIds { count })
            .await;
        assert!(matches!(asked, Err(KvError::BadRequest(_))), "{asked:?}");
    }
    cluster.shutdown().await;
}

/// A store that held region 1, left, and came back by snapshot while the allocator moved on
/// must allocate from the snapshot's allocator, not from the record it kept when it left: the
/// allocator is part of region 1's state machine, and its snapshot carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_filled_by_snapshot_allocates_where_the_others_would() {
    common::init_logs();
    let cluster = TestCluster::start_with(3, |c| c.raft.log_gc_count_limit = 20).await;
    let leader = cluster.leader(1).await;
    let client = cluster.client().await;
    let away = (1..=3).find(|s| *s != leader).unwrap();
    let mut given = vec![alloc(&client, 5).await];
    eventually("the store to leave applied the allocation", async || {
        matches!(
            cluster.node(away).admin(AdminRequest::RaftState { region_id: 1 }).await,
            Ok(AdminResponse::RaftState(s)) if s.state.applied
                >= match cluster.node(leader).admin(AdminRequest::RaftState { region_id: 1 }).await {
                    Ok(AdminResponse::RaftState(l)) => l.state.applied,
                    _ => u64::MAX,
                }
        )
    })
    .await;
    client.remove_peer(1, away).await.expect("remove");
    for _ in 0..30 {
        given.push(alloc(&client, 5).await);
    }
    for i in 0..60 {
        client.put(format!("k{i}"), "v").await.unwrap();
    }
    let addr = cluster.configs[(away - 1) as usize].listen_addr.to_string();
    client
        .add_peer(1, away, &addr, Duration::from_secs(30))
        .await
        .expect("add back");
    move_leader(&cluster, &client, away).await;
    given.push(alloc(&client, 5).await);
    for pair in given.windows(2) {
        assert!(pair[0].end <= pair[1].start, "overlap or reuse: {given:?}");
    }
    let snapshots = match cluster.node(away).admin(AdminRequest::StoreStatus).await {
        Ok(AdminResponse::StoreStatus(s)) => s.snapshots_received,
        other => panic!("{other:?}"),
    };
    assert!(snapshots >= 1, "the store came back by snapshot");
    cluster.shutdown().await;
}
