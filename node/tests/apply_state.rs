//! The apply state of a run of writes is written lazily: a restart applies those writes again
//! over data that already holds them and ends with the same data, and anything that must not be
//! applied twice writes the apply state with it.

mod common;

use std::collections::BTreeMap;

use common::{TestCluster, eventually};
use tinykv_proto::api::{AdminRequest, AdminResponse, KvOp, KvResponse, ReadMode};
use tinykv_storage::{Engines, OpenOptions};

/// Region 1's (applied index written, last index of its log) on `store`, read from its data
/// dir after it stopped.
fn written_state(cluster: &TestCluster, store: u64) -> (u64, u64) {
    let dir = &cluster.configs[(store - 1) as usize].data_dir;
    let (engines, _) = Engines::open(dir, OpenOptions::default()).expect("open");
    let applied = engines.apply_state(1).unwrap().unwrap().applied_index;
    let last = engines.raft_state(1).unwrap().unwrap().last_index;
    (applied, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_applied_again_after_a_restart_leave_the_same_data() {
    common::init_logs();
    let mut cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    // Overwrites and deletes, one round each, so that replaying them out of place would show.
    for i in 0..30u32 {
        client.put("a", format!("a{i}")).await.unwrap();
        if i % 3 == 0 {
            client.delete("b").await.unwrap();
        } else {
            client.put("b", format!("b{i}")).await.unwrap();
        }
    }
    let before = cluster.raft_state(1, 1).await.applied;
    cluster.stop(1).await;
    let (written, last) = written_state(&cluster, 1);
    assert!(
        written < before && last >= before,
        "the run of writes left the written apply state behind: written {written}, applied \
         {before}, last index {last}"
    );

    cluster.restart(1).await;
    eventually("store 1 applies again what it had", async || {
        cluster.raft_state(1, 1).await.applied >= before
    })
    .await;
    let client = cluster.client().await;
    assert_eq!(client.get("a").await.unwrap().as_deref(), Some(&b"a29"[..]));
    assert_eq!(client.get("b").await.unwrap().as_deref(), Some(&b"b29"[..]));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_must_not_apply_twice_writes_the_apply_state() {
    common::init_logs();
    let mut cluster = TestCluster::start(1).await;
    let client = cluster.client().await;
    for i in 0..5u32 {
        client.put("k", format!("v{i}")).await.unwrap();
    }
    // An id allocation is answered with the ids it gave: applied twice it would give others.
    let ids = client.alloc_ids(3).await.unwrap();
    let after = cluster.raft_state(1, 1).await.applied;
    cluster.stop(1).await;
    let (written, _) = written_state(&cluster, 1);
    assert_eq!(written, after, "ids {ids:?}");
    cluster.shutdown().await;
}

/// A snapshot is built from what is on disk, whose apply state may trail the data by a run of
/// writes: it carries that index and data that already holds the writes after it, and the store
/// that installs it applies them again from the leader's log. It must end with the leader's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_built_while_the_apply_state_trails_brings_every_write() {
    common::init_logs();
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader(1).await;
    let behind = (1..=3).find(|s| *s != leader).expect("a follower");
    let client = cluster.client().await;
    client.put("k0", "first").await.unwrap();
    eventually("the follower applied the first write", async || {
        cluster.raft_state(behind, 1).await.applied >= cluster.raft_state(leader, 1).await.applied
    })
    .await;
    cluster.stop(behind).await;

    let mut want = BTreeMap::new();
    for i in 0..40u32 {
        let (k, v) = (format!("k{}", i % 7), format!("v{i}"));
        client.put(k.clone(), v.clone()).await.unwrap();
        want.insert(k, Some(v));
    }
    // The log is compacted past what the stopped follower has, so it can only catch up by a
    // snapshot; the writes after the compaction leave the leader's written apply state behind.
    match cluster
        .node(leader)
        .admin(AdminRequest::CompactLog { region_id: 1 })
        .await
    {
        Ok(AdminResponse::Done) => {}
        other => panic!("compact log: {other:?}"),
    }
    for i in 40..60u32 {
        let k = format!("k{}", i % 7);
        if i % 4 == 0 {
            client.delete(k.clone()).await.unwrap();
            want.insert(k, None);
        } else {
            let v = format!("v{i}");
            client.put(k.clone(), v.clone()).await.unwrap();
            want.insert(k, Some(v));
        }
    }

    cluster.restart(behind).await;
    eventually("the follower catches up by a snapshot", async || {
        cluster.snapshots_received(behind).await >= 1
            && cluster.raft_state(behind, 1).await.applied
                >= cluster.raft_state(leader, 1).await.applied
    })
    .await;
    let addr = cluster.configs[(behind - 1) as usize].listen_addr;
    for (k, v) in &want {
        let op = KvOp::Get {
            key: k.as_bytes().to_vec().into(),
            read: ReadMode::Stale,
        };
        match cluster.direct(addr, op).await {
            Ok(Ok(KvResponse::Value(got))) => {
                assert_eq!(got.as_deref(), v.as_ref().map(|v| v.as_bytes()), "{k}")
            }
            other => panic!("{k}: stale read on store {behind}: {other:?}"),
        }
    }
    cluster.shutdown().await;
}
