//! Region split on real stores: the ranges a split leaves, routing to them, the new regions'
//! elections, a store that missed the split, and requests that straddle it.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestCluster, eventually};
use tinykv_client::{Client, ClientError};
use tinykv_proto::api::{
    AdminRequest, AdminResponse, KvError, KvOp, KvResponse, NewRegionIds, ReadMode,
};
use tinykv_proto::fault::{FaultSpec, MAX_SNAPSHOT_DELAY};
use tinykv_storage::Region;

fn key(i: u32) -> Bytes {
    Bytes::from(format!("k{i:03}"))
}

/// The initialized regions store `store` hosts, in key order.
async fn regions_on(cluster: &TestCluster, store: u64) -> Vec<Region> {
    match cluster.node(store).admin(AdminRequest::Cluster).await {
        Ok(AdminResponse::Cluster(info)) => {
            let mut regions: Vec<Region> = info.regions.into_iter().map(|r| r.region).collect();
            regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
            regions
        }
        other => panic!("store {store}: cluster: {other:?}"),
    }
}

/// Whether `regions` cover every key exactly once, in order.
fn tiles(regions: &[Region]) -> bool {
    let Some(first) = regions.first() else {
        return false;
    };
    first.start_key.is_empty()
        && regions.last().is_some_and(|r| r.end_key.is_empty())
        && regions.windows(2).all(|w| w[0].end_key == w[1].start_key)
}

async fn fill(client: &Client, keys: std::ops::Range<u32>) {
    for i in keys {
        client.put(key(i), format!("v{i}")).await.expect("put");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_tiles_the_range_and_every_key_routes_to_its_new_region() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    fill(&client, 0..100).await;

    let regions = client
        .split_region(1, vec![key(30), key(60)])
        .await
        .expect("split");
    assert_eq!(regions.len(), 3, "{regions:?}");
    assert_eq!(
        regions[0].id, 1,
        "the split region keeps the leftmost range"
    );
    assert!(tiles(&regions), "{regions:?}");
    assert_eq!(regions[0].end_key, key(30).to_vec());
    assert_eq!(regions[1].start_key, key(30).to_vec());
    assert_eq!(regions[2].start_key, key(60).to_vec());
    for r in &regions {
        assert_eq!(
            r.epoch.version, 3,
            "two new regions move the version by two"
        );
        assert_eq!(r.peers.len(), 3);
        let stores: Vec<u64> = r.peers.iter().map(|p| p.store_id).collect();
        assert_eq!(
            stores,
            vec![1, 2, 3],
            "new regions live on the split region's stores"
        );
    }
    let mut peer_ids: Vec<u64> = regions
        .iter()
        .flat_map(|r| r.peers.iter().map(|p| p.id))
        .collect();
    peer_ids.sort_unstable();
    peer_ids.dedup();
    assert_eq!(peer_ids.len(), 9, "peer ids are never shared");
    assert!(regions[1].id != regions[2].id && regions[1].id > 3);

    // Every store applies the split and every new region elects a leader.
    for store in 1..=3 {
        eventually("every store holds the three regions", async || {
            regions_on(&cluster, store).await.len() == 3
        })
        .await;
        assert!(tiles(&regions_on(&cluster, store).await));
    }
    for r in &regions {
        cluster.leader(r.id).await;
    }

    // A right-half key sent to the left region is refused with the regions that hold it.
    let leader = cluster.leader(1).await;
    let addr = cluster.node(leader).addr();
    let get = KvOp::Get {
        key: key(70),
        read: ReadMode::Linearizable,
    };
    match cluster.direct_to(addr, 1, get).await.expect("answer") {
        Err(KvError::KeyNotInRegion {
            region_id, regions, ..
        }) => {
            assert_eq!(region_id, 1);
            assert!(
                regions.iter().any(|r| r.contains(b"k070")),
                "the answer names the region holding the key: {regions:?}"
            );
        }
        other => panic!("expected KeyNotInRegion, got {other:?}"),
    }

    // A client that knew only the old region follows the answers to the new ones.
    let stale = cluster.client().await;
    fill(&stale, 100..120).await;
    fill(&client, 120..140).await;
    for i in 0..140 {
        assert_eq!(
            stale.get(key(i)).await.expect("get"),
            Some(Bytes::from(format!("v{i}"))),
            "key {i}"
        );
    }
    // A scan across the three regions stitches them in key order and honours its limit.
    let all = client
        .scan(Bytes::new(), Bytes::new(), 1000, ReadMode::Linearizable)
        .await
        .expect("scan");
    let got: Vec<Bytes> = all.iter().map(|(k, _)| k.clone()).collect();
    let want: Vec<Bytes> = (0..140).map(key).collect();
    assert_eq!(got, want);
    let some = client
        .scan(key(25), Bytes::new(), 40, ReadMode::Linearizable)
        .await
        .expect("scan");
    let got: Vec<Bytes> = some.iter().map(|(k, _)| k.clone()).collect();
    let want: Vec<Bytes> = (25..65).map(key).collect();
    assert_eq!(got, want);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_split_keys_are_refused_and_change_nothing() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    fill(&client, 0..10).await;
    client.split_region(1, vec![key(5)]).await.expect("split");
    for bad in [
        vec![key(7)],
        vec![Bytes::new()],
        vec![key(3), key(2)],
        vec![],
    ] {
        match client.split_region(1, bad.clone()).await {
            Err(ClientError::Kv(KvError::BadRequest(_))) => {}
            other => panic!("split at {bad:?}: expected BadRequest, got {other:?}"),
        }
    }
    let regions = client.regions().await.expect("regions");
    assert_eq!(regions.len(), 2, "{regions:?}");
    cluster.shutdown().await;
}

/// TinyKV's one-split case, with the split made by hand: a store cut off during the split
/// catches up after the partition heals and holds both halves with their data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_partitioned_during_the_split_has_both_halves_after_it_heals() {
    common::init_logs();
    let cluster = TestCluster::start(5).await;
    let client = cluster.client().await;
    fill(&client, 0..50).await;
    let leader = cluster.leader(1).await;
    let cut = if leader == 5 { 4 } else { 5 };
    let rest: Vec<u64> = (1..=5).filter(|s| *s != cut).collect();
    cluster.partition(&[rest, vec![cut]]);

    let regions = client.split_region(1, vec![key(25)]).await.expect("split");
    assert_eq!(regions.len(), 2);
    let right = regions[1].id;
    fill(&client, 50..80).await;
    assert_eq!(
        regions_on(&cluster, cut).await.len(),
        1,
        "the cut store missed the split"
    );

    cluster.heal();
    eventually("the healed store holds both regions", async || {
        let regions = regions_on(&cluster, cut).await;
        regions.len() == 2 && tiles(&regions)
    })
    .await;
    let addr = cluster.node(cut).addr();
    eventually("the healed store has the right half's data", async || {
        let get = KvOp::Get {
            key: key(79),
            read: ReadMode::Stale,
        };
        matches!(
            cluster.direct_to(addr, right, get).await,
            Ok(Ok(KvResponse::Value(Some(v)))) if v == "v79"
        )
    })
    .await;
    let get = KvOp::Get {
        key: key(10),
        read: ReadMode::Stale,
    };
    assert_eq!(
        cluster.direct_to(addr, 1, get).await.expect("answer"),
        Ok(KvResponse::Value(Some(Bytes::from("v10"))))
    );
    cluster.shutdown().await;
}

/// TinyKV's one-split case: regions split on their own once they pass `max-size` (800 B,
/// split at 500 B), while a store is cut off; the ranges tile the old one, a key of the right
/// half sent to the left region is refused, and the cut-off store has all the data once healed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_over_its_max_size_splits_on_its_own() {
    common::init_logs();
    let cluster = TestCluster::start_with(5, |c| {
        c.region.max_size = tinykv_node::config::ByteSize(800);
        c.region.split_size = tinykv_node::config::ByteSize(500);
        c.region.split_check_interval = tinykv_node::config::ReadableDuration::millis(100);
    })
    .await;
    let client = cluster.client().await;
    let leader = cluster.leader(1).await;
    let cut = if leader == 5 { 4 } else { 5 };
    let rest: Vec<u64> = (1..=5).filter(|s| *s != cut).collect();
    cluster.partition(&[rest, vec![cut]]);

    // 20 keys of about 50 bytes: 1,000 bytes, over the 800 B limit.
    for i in 0..20u32 {
        client
            .put(key(i), format!("value-{i:040}"))
            .await
            .expect("put");
    }
    eventually("region 1 splits", async || {
        regions_on(&cluster, leader).await.len() >= 2
    })
    .await;
    let regions = regions_on(&cluster, leader).await;
    assert!(tiles(&regions), "{regions:?}");
    let left = &regions[0];
    assert_eq!(left.id, 1);
    assert!(left.epoch.version >= 2);
    let right_key = regions[1].start_key.clone();
    assert!(!right_key.is_empty() && right_key.as_slice() < b"k019".as_slice());

    let addr = cluster.node(leader).addr();
    let get = KvOp::Get {
        key: Bytes::from(right_key.clone()),
        read: ReadMode::Linearizable,
    };
    assert!(
        matches!(
            cluster.direct_to(addr, 1, get).await.expect("answer"),
            Err(KvError::KeyNotInRegion { region_id: 1, .. })
        ),
        "a key of the right half is not served by the left region"
    );
    for i in 0..20u32 {
        assert_eq!(
            client.get(key(i)).await.expect("get"),
            Some(Bytes::from(format!("value-{i:040}")))
        );
    }

    cluster.heal();
    let cut_addr = cluster.node(cut).addr();
    eventually("the healed store holds every region", async || {
        let theirs = regions_on(&cluster, cut).await;
        tiles(&theirs) && theirs.len() >= regions.len()
    })
    .await;
    for i in 0..20u32 {
        let theirs = regions_on(&cluster, cut).await;
        let region = theirs
            .iter()
            .find(|r| r.contains(key(i).as_ref()))
            .expect("a region holds the key")
            .id;
        eventually("the healed store has the key", async || {
            let get = KvOp::Get {
                key: key(i),
                read: ReadMode::Stale,
            };
            matches!(
                cluster.direct_to(cut_addr, region, get).await,
                Ok(Ok(KvResponse::Value(Some(_))))
            )
        })
        .await;
    }
    cluster.shutdown().await;
}

/// A store that missed a split while its log was compacted away is filled by snapshots: the
/// new region's snapshot is refused while the store's stale parent still holds its range, and
/// taken once the parent's own snapshot shrank it. No two regions of the store ever overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_overlapping_a_stale_parent_waits_until_the_parent_caught_up() {
    common::init_logs();
    let cluster = TestCluster::start_with(3, |c| {
        c.raft.log_gc_count_limit = 10;
        c.raft.log_gc_threshold = 5;
    })
    .await;
    let client = cluster.client().await;
    fill(&client, 0..20).await;
    let leader = cluster.leader(1).await;
    let cut = (1..=3).find(|s| *s != leader).unwrap();
    let rest: Vec<u64> = (1..=3).filter(|s| *s != cut).collect();
    cluster.partition(&[rest, vec![cut]]);
    let regions = client.split_region(1, vec![key(10)]).await.expect("split");
    let right = regions[1].id;
    // Enough writes to both halves that their logs are compacted past what the cut store has.
    fill(&client, 20..120).await;
    let raft = async |store: u64, region_id: u64| match cluster
        .node(store)
        .admin(AdminRequest::RaftState { region_id })
        .await
    {
        Ok(AdminResponse::RaftState(p)) => p.state,
        other => panic!("store {store}: raft state of region {region_id}: {other:?}"),
    };
    let cut_last = raft(cut, 1).await.last_index;
    eventually(
        "region 1's leader compacts past the cut store's log",
        async || {
            fill(&client, 0..10).await;
            let leader = cluster.leader(1).await;
            raft(leader, 1).await.truncated_index > cut_last
        },
    )
    .await;
    let received_before = cluster.snapshots_received(cut).await;

    cluster.heal();
    let addr = cluster.node(cut).addr();
    eventually(
        "the cut store holds both halves, without overlap",
        async || {
            let theirs = regions_on(&cluster, cut).await;
            assert!(
                theirs
                    .windows(2)
                    .all(|w| !w[0].end_key.is_empty() && w[0].end_key <= w[1].start_key),
                "regions of one store overlap: {theirs:?}"
            );
            theirs.len() == 2 && tiles(&theirs)
        },
    )
    .await;
    eventually("the cut store has the new region's data", async || {
        let get = KvOp::Get {
            key: key(119),
            read: ReadMode::Stale,
        };
        matches!(
            cluster.direct_to(addr, right, get).await,
            Ok(Ok(KvResponse::Value(Some(_))))
        )
    })
    .await;
    assert!(
        cluster.snapshots_received(cut).await >= received_before + 2,
        "both regions were filled by snapshot"
    );
    cluster.shutdown().await;
}

/// Proposes a split of region 1 at `at` on its leader `leader` while the leader hears nothing
/// from its followers, so the split stays in flight (they still hear it: nobody campaigns, and
/// with `check-quorum` off it stays leader); returns the task that gets its answer.
async fn split_in_flight(
    cluster: &TestCluster,
    client: &Client,
    leader: u64,
    at: Bytes,
) -> tokio::task::JoinHandle<tinykv_proto::api::AdminResult> {
    let region = client
        .regions()
        .await
        .expect("regions")
        .into_iter()
        .find(|r| r.region.id == 1)
        .expect("region 1")
        .region;
    let first = client.alloc_ids(4).await.expect("ids");
    let others: Vec<u64> = (1..=3).filter(|s| *s != leader).collect();
    let deaf = tinykv_transport::Rule::block(&others).only(tinykv_transport::Direction::Incoming);
    cluster.node(leader).filter().set(vec![deaf]);
    let req = AdminRequest::SplitRegion {
        region_id: 1,
        epoch: region.epoch,
        split_keys: vec![at],
        new_regions: vec![tinykv_proto::api::NewRegionIds {
            region_id: first,
            peer_ids: vec![first + 1, first + 2, first + 3],
        }],
    };
    let addr = cluster.node(leader).addr();
    let admin = client.clone();
    let handle = tokio::spawn(async move {
        admin.admin(addr, req).await.map_err(|e| match e {
            ClientError::Kv(e) => e,
            other => KvError::BadRequest(other.to_string()),
        })
    });
    eventually("the split is in the leader's log", async || {
        match cluster
            .node(leader)
            .admin(AdminRequest::RaftLog {
                region_id: 1,
                from: 0,
                to: 0,
            })
            .await
        {
            Ok(AdminResponse::RaftLog(entries)) => {
                entries.iter().any(|e| e.summary.starts_with("split at"))
            }
            _ => false,
        }
    })
    .await;
    handle
}

/// A leader transfer asked while a split is in flight waits for it (answered busy): a new
/// leader that applied the split as a follower would not campaign for the new regions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_transfer_waits_for_a_split_in_flight() {
    common::init_logs();
    let cluster = TestCluster::start_with(3, |c| c.raft.check_quorum = false).await;
    let client = cluster.client().await;
    fill(&client, 0..10).await;
    let leader = cluster.leader(1).await;
    let split = split_in_flight(&cluster, &client, leader, key(5)).await;
    let to = (1..=3).find(|s| *s != leader).unwrap();
    let transfer = AdminRequest::TransferLeader {
        region_id: 1,
        to_store: to,
    };
    assert_eq!(
        cluster.node(leader).admin(transfer.clone()).await,
        Err(KvError::ServerBusy)
    );
    cluster.heal();
    match split.await.expect("split task") {
        Ok(AdminResponse::Split { regions }) => assert_eq!(regions.len(), 2),
        other => panic!("the split applies once healed: {other:?}"),
    }
    // The split has applied on the leader: the transfer is taken now, and both regions lead.
    eventually("the transfer is taken", async || {
        matches!(
            cluster.node(leader).admin(transfer.clone()).await,
            Ok(AdminResponse::Done) | Err(KvError::NotLeader { .. })
        )
    })
    .await;
    let regions = client.regions().await.expect("regions");
    assert_eq!(regions.len(), 2);
    for r in &regions {
        cluster.leader(r.region.id).await;
    }
    fill(&client, 0..10).await;
    cluster.shutdown().await;
}

/// A linearizable scan routed before a split and answered after it applied is refused with
/// `EpochNotMatch`, never answered from the region's new, shorter range as if it were whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_that_straddles_a_split_is_never_served_from_the_shrunk_range() {
    common::init_logs();
    let cluster = TestCluster::start_with(3, |c| c.raft.check_quorum = false).await;
    let client = cluster.client().await;
    fill(&client, 0..20).await;
    let leader = cluster.leader(1).await;
    let epoch = client
        .regions()
        .await
        .expect("regions")
        .into_iter()
        .find(|r| r.region.id == 1)
        .expect("region 1")
        .region
        .epoch;
    let split = split_in_flight(&cluster, &client, leader, key(10)).await;
    // The read waits for its ReadIndex round, which needs the cut-off followers.
    let addr = cluster.node(leader).addr();
    let req = tinykv_proto::api::KvRequest {
        region_id: 1,
        epoch: Some(epoch),
        op: KvOp::Scan {
            start: Bytes::new(),
            end: Bytes::new(),
            limit: 1000,
            read: ReadMode::Linearizable,
        },
    };
    let read = cluster.send_kv(addr, req.clone(), Duration::from_secs(10));
    let (answer, _) = tokio::join!(read, async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster.heal();
    });
    match answer.expect("answer") {
        Err(KvError::EpochNotMatch { regions }) => {
            assert!(
                regions
                    .iter()
                    .any(|r| r.id == 1 && r.epoch.version > epoch.version)
            );
        }
        Ok(KvResponse::Pairs { pairs, more }) => {
            assert!(!more);
            assert_eq!(pairs.len(), 20, "served before the split: the whole range");
        }
        other => panic!("unexpected answer {other:?}"),
    }
    assert!(split.await.expect("split task").is_ok());
    // Sent again with the old epoch, it is refused at once with the new regions.
    match cluster
        .send_kv(addr, req, Duration::from_secs(10))
        .await
        .expect("answer")
    {
        Err(KvError::EpochNotMatch { regions }) => assert_eq!(regions.len(), 2, "{regions:?}"),
        other => panic!("expected EpochNotMatch, got {other:?}"),
    }
    cluster.shutdown().await;
}

/// A store installing a slow snapshot of one region keeps serving its other regions: the
/// install holds only its own region (which answers `ServerBusy` meanwhile), and the region
/// serves again with the snapshot's data once the install ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_snapshot_install_holds_only_its_own_region() {
    common::init_logs();
    let cluster = TestCluster::start_with(3, |c| {
        c.raft.log_gc_count_limit = 10;
        c.raft.log_gc_threshold = 5;
        c.fault_injection = true;
    })
    .await;
    let client = cluster.client().await;
    fill(&client, 0..20).await;
    let regions = client.split_region(1, vec![key(10)]).await.expect("split");
    let right = regions[1].id;
    let leader = cluster.leader(1).await;
    let cut = (1..=3).find(|s| *s != leader).unwrap();
    let addr = cluster.node(cut).addr();
    let stale_get = |k: u32| KvOp::Get {
        key: key(k),
        read: ReadMode::Stale,
    };
    // The cut store has the right region's data from before the cut.
    eventually("the store to cut has the right region", async || {
        matches!(
            cluster.direct_to(addr, right, stale_get(19)).await,
            Ok(Ok(KvResponse::Value(Some(_))))
        )
    })
    .await;
    let rest: Vec<u64> = (1..=3).filter(|s| *s != cut).collect();
    cluster.partition(&[rest, vec![cut]]);
    // Region 1's log moves past what the cut store has, so it needs a snapshot.
    let truncated = async |store: u64| match cluster
        .node(store)
        .admin(AdminRequest::RaftState { region_id: 1 })
        .await
    {
        Ok(AdminResponse::RaftState(p)) => (p.state.truncated_index, p.state.last_index),
        other => panic!("store {store}: raft state of region 1: {other:?}"),
    };
    let cut_last = truncated(cut).await.1;
    eventually(
        "region 1's leader compacts past the cut store's log",
        async || {
            fill(&client, 0..10).await;
            truncated(cluster.leader(1).await).await.0 > cut_last
        },
    )
    .await;
    let spec = FaultSpec {
        snapshot_delay: MAX_SNAPSHOT_DELAY,
        ..FaultSpec::default()
    };
    client
        .admin(addr, AdminRequest::SetFaults(spec))
        .await
        .expect("set faults");

    cluster.heal();
    eventually("the cut store installs region 1's snapshot", async || {
        matches!(
            cluster.direct_to(addr, 1, stale_get(5)).await,
            Ok(Err(KvError::ServerBusy))
        )
    })
    .await;
    // Meanwhile the right region replicates to it and is served there.
    client.put(key(150), "during").await.expect("put");
    eventually(
        "the right region serves a new write on the cut store",
        async || {
            matches!(
                cluster.direct_to(addr, right, stale_get(150)).await,
                Ok(Ok(KvResponse::Value(Some(v)))) if v == "during"
            )
        },
    )
    .await;
    assert_eq!(
        cluster.direct_to(addr, 1, stale_get(5)).await,
        Ok(Err(KvError::ServerBusy)),
        "region 1 is still installing: only it waits"
    );
    client
        .admin(addr, AdminRequest::ClearFaults)
        .await
        .expect("clear faults");
    eventually("region 1 serves the snapshot's data", async || {
        matches!(
            cluster.direct_to(addr, 1, stale_get(5)).await,
            Ok(Ok(KvResponse::Value(Some(_))))
        )
    })
    .await;
    cluster.shutdown().await;
}

/// No split while a snapshot of the region is being built (the snapshot would mix the region
/// before and after): the leader answers `ServerBusy` until the build is done, and a finished
/// build that no follower took does not hold splits back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_split_while_a_snapshot_of_the_region_is_built() {
    common::init_logs();
    let cluster = TestCluster::start_with(3, |c| c.fault_injection = true).await;
    let client = cluster.client().await;
    fill(&client, 0..20).await;
    let leader = cluster.leader(1).await;
    let addr = cluster.node(leader).addr();
    let spec = FaultSpec {
        snapshot_delay: MAX_SNAPSHOT_DELAY,
        ..FaultSpec::default()
    };
    client
        .admin(addr, AdminRequest::SetFaults(spec))
        .await
        .expect("set faults");
    let trigger = AdminRequest::SnapshotTrigger { region_id: 1 };
    assert_eq!(
        cluster.node(leader).admin(trigger).await,
        Ok(AdminResponse::Done)
    );
    let region = regions_on(&cluster, leader).await.remove(0);
    let first = client.alloc_ids(4).await.expect("ids");
    let split = AdminRequest::SplitRegion {
        region_id: 1,
        epoch: region.epoch,
        split_keys: vec![key(10)],
        new_regions: vec![NewRegionIds {
            region_id: first,
            peer_ids: vec![first + 1, first + 2, first + 3],
        }],
    };
    assert_eq!(
        cluster.node(leader).admin(split).await,
        Err(KvError::ServerBusy),
        "a split while the snapshot is built"
    );
    assert_eq!(regions_on(&cluster, leader).await.len(), 1);

    client
        .admin(addr, AdminRequest::ClearFaults)
        .await
        .expect("clear faults");
    let regions = client.split_region(1, vec![key(10)]).await.expect("split");
    assert_eq!(regions.len(), 2);
    cluster.shutdown().await;
}
