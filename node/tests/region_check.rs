//! `region check`: regions short of or over the replica count, with peers down, or with peers
//! that can no longer catch up from the leader's log, as the leaders report them.

mod common;

use common::{TestCluster, eventually};
use tinykv_client::{Client, RegionCheck, RegionProblem};
use tinykv_proto::api::{AdminRequest, AdminResponse};

async fn check(client: &Client, what: RegionCheck, max_replicas: usize) -> Vec<RegionProblem> {
    client.region_check(what, max_replicas).await.unwrap()
}

fn stores(found: &[RegionProblem]) -> Vec<Vec<u64>> {
    found
        .iter()
        .map(|f| f.peers.iter().map(|p| p.store_id).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_check_finds_missing_extra_down_and_pending_peers() {
    common::init_logs();
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    client.put("k", "v").await.unwrap();

    // A healthy region: nothing to report once every follower has answered the leader.
    eventually("no peer pending", async || {
        check(&client, RegionCheck::Pending, 3).await.is_empty()
    })
    .await;
    assert!(check(&client, RegionCheck::Missing, 3).await.is_empty());
    assert!(check(&client, RegionCheck::Extra, 3).await.is_empty());
    assert!(check(&client, RegionCheck::Down, 3).await.is_empty());
    // Against another replica count, the same region is short or over.
    let short = check(&client, RegionCheck::Missing, 5).await;
    assert_eq!(short.len(), 1);
    assert_eq!(short[0].region.region.id, 1);
    let over = check(&client, RegionCheck::Extra, 2).await;
    assert_eq!(stores(&over), vec![vec![1, 2, 3]]);

    // A follower stops: its peer is down, and once the log is compacted past it, pending (it
    // can only catch up by a snapshot).
    let leader = cluster.leader(1).await;
    let gone = (1..=3).find(|s| *s != leader).expect("a follower");
    cluster.stop(gone).await;
    for i in 0..20 {
        client.put(format!("k{i}"), "v").await.unwrap();
    }
    assert_eq!(
        stores(&check(&client, RegionCheck::Down, 3).await),
        vec![vec![gone]]
    );
    match cluster
        .node(leader)
        .admin(AdminRequest::CompactLog { region_id: 1 })
        .await
    {
        Ok(AdminResponse::Done) => {}
        other => panic!("compact log: {other:?}"),
    }
    eventually("the stopped follower shows as pending", async || {
        stores(&check(&client, RegionCheck::Pending, 3).await) == vec![vec![gone]]
    })
    .await;

    // Back, it catches up by a snapshot and neither is reported any more.
    cluster.restart(gone).await;
    eventually("the follower caught up", async || {
        check(&client, RegionCheck::Pending, 3).await.is_empty()
            && check(&client, RegionCheck::Down, 3).await.is_empty()
    })
    .await;
    cluster.shutdown().await;
}
