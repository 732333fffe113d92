//! Regions at rest hibernate (no ticks, no heartbeats) and wake for what needs them: a write,
//! a restarted follower, a leader that is gone.

mod common;

use std::time::Duration;

use common::{TestCluster, eventually};
use tinykv_proto::api::{AdminRequest, AdminResponse, PeerStatus};

/// Store `store`'s peer of region 1, if the store answers.
async fn region1(cluster: &TestCluster, store: u64) -> Option<PeerStatus> {
    match cluster.node(store).admin(AdminRequest::StoreStatus).await {
        Ok(AdminResponse::StoreStatus(s)) => s.peers.into_iter().find(|p| p.state.region == 1),
        _ => None,
    }
}

/// Waits until every peer of region 1 on `stores` hibernates; returns the term they rest in.
async fn all_asleep(cluster: &TestCluster, stores: &[u64]) -> u64 {
    let mut term = 0;
    eventually("region 1 hibernates on every store", async || {
        let mut terms = Vec::new();
        for &s in stores {
            match region1(cluster, s).await {
                Some(p) if p.hibernating => terms.push(p.state.term),
                _ => return false,
            }
        }
        term = terms[0];
        terms.iter().all(|t| *t == term)
    })
    .await;
    term
}

/// A store other than `not` that leads region 1 in a term above `above`.
async fn new_leader(cluster: &TestCluster, stores: &[u64], not: u64, above: u64) -> u64 {
    let mut found = 0;
    eventually("another store leads region 1", async || {
        for &s in stores.iter().filter(|s| **s != not) {
            if let Some(p) = region1(cluster, s).await
                && p.role == "leader"
                && p.state.term > above
            {
                found = s;
                return true;
            }
        }
        false
    })
    .await;
    found
}

/// A 3-store cluster whose region 1 holds `k` = `v1` and hibernates on every store: the client,
/// the term it rests in, its leader and the other stores.
async fn hibernating_cluster() -> (TestCluster, tinykv_client::Client, u64, u64, Vec<u64>) {
    common::init_logs();
    let cluster = TestCluster::start_with(3, |c| c.raft.hibernate_regions = true).await;
    let client = cluster.client().await;
    client.put("k", "v1").await.unwrap();
    let term = all_asleep(&cluster, &[1, 2, 3]).await;
    let leader = cluster.leader(1).await;
    let others: Vec<u64> = (1..=3).filter(|s| *s != leader).collect();
    (cluster, client, term, leader, others)
}

/// Puts `k` = `value` until a put succeeds: the client may first reach the old leader, whose
/// proposal is then overwritten (the same value put again is harmless).
async fn put_until_done(client: &tinykv_client::Client, value: &'static str) {
    eventually("a put succeeds", async || {
        client.put("k", value).await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_region_hibernates_and_a_write_wakes_it_without_an_election() {
    let (cluster, client, term, leader, _) = hibernating_cluster().await;
    let asleep = region1(&cluster, leader).await.unwrap();
    assert!(
        asleep.down_peers.is_empty(),
        "a hibernating leader counts its followers alive: {asleep:?}"
    );
    // Nothing ticks: a second later nothing moved.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for s in 1..=3 {
        let p = region1(&cluster, s).await.unwrap();
        assert!(p.hibernating, "store {s} still asleep");
        assert_eq!(p.state.term, term);
    }

    client.put("k", "v2").await.unwrap();
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    // Every follower applied it (woken by the append), and the region rests again in the same
    // term: waking did not start an election.
    let again = all_asleep(&cluster, &[1, 2, 3]).await;
    assert_eq!(again, term);
    let applied: Vec<u64> = {
        let mut v = Vec::new();
        for s in 1..=3 {
            v.push(region1(&cluster, s).await.unwrap().state.applied);
        }
        v
    };
    assert!(applied.iter().all(|a| *a == applied[0]), "{applied:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_rejoins_a_hibernating_region_without_an_election() {
    let (mut cluster, _client, term, leader, others) = hibernating_cluster().await;
    cluster.restart(others[0]).await;
    // The restarted follower ticks and, hearing no one, asks for votes; the leader wakes
    // and heartbeats, and the follower follows it. Pre-vote keeps the term.
    let again = all_asleep(&cluster, &[1, 2, 3]).await;
    assert_eq!(again, term);
    assert_eq!(cluster.leader(1).await, leader);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_of_a_hibernating_leader_that_is_cut_off_elect_another() {
    let (cluster, client, term, leader, others) = hibernating_cluster().await;
    cluster.partition(&[vec![leader], others.clone()]);
    // Nothing is sent in a hibernating region: only the lost connection to the leader's
    // store can wake the followers.
    let elected = new_leader(&cluster, &[1, 2, 3], leader, term).await;
    assert!(others.contains(&elected));
    put_until_done(&client, "v2").await;
    cluster.heal();
    eventually("the old leader follows and catches up", async || {
        region1(&cluster, leader)
            .await
            .is_some_and(|p| p.role == "follower" && p.state.term > term)
    })
    .await;
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_of_a_hibernating_leader_that_stops_elect_another() {
    let (mut cluster, client, term, leader, others) = hibernating_cluster().await;
    cluster.stop(leader).await;
    new_leader(&cluster, &others, leader, term).await;
    put_until_done(&client, "v2").await;
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
    cluster.shutdown().await;
}
