//! The placement driver inside the nodes: it runs on region 1's leader, brings every region to
//! `max-replicas` voters, replaces the replicas of a store that stays down, drains a store
//! `store delete` retires, moves to a new leader of region 1 with its record, and keeps its
//! hands off while paused.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestCluster, init_logs};
use tinykv_client::Client;
use tinykv_node::config::{NodeConfig, ReadableDuration};
use tinykv_proto::api::RegionInfo;
use tinykv_proto::placement::{
    OperatorSpec, PlacementAnswer, PlacementRequest, StoreDesc, StoreState,
};

fn placement_on(c: &mut NodeConfig) {
    c.placement.enabled = true;
    c.placement.store_heartbeat_interval = ReadableDuration::millis(300);
    c.placement.region_heartbeat_interval = ReadableDuration::millis(2_000);
    c.placement.max_store_down_time = ReadableDuration::millis(3_000);
}

/// Polls `cond` for up to `secs`.
async fn within(secs: u64, what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn regions(client: &Client) -> Vec<RegionInfo> {
    client.regions().await.unwrap_or_default()
}

/// Voters of each region, by region id.
fn voters(regions: &[RegionInfo]) -> BTreeMap<u64, Vec<u64>> {
    regions
        .iter()
        .map(|r| {
            let mut stores: Vec<u64> = r
                .region
                .peers
                .iter()
                .filter(|p| !p.is_learner())
                .map(|p| p.store_id)
                .collect();
            stores.sort();
            (r.region.id, stores)
        })
        .collect()
}

fn every_region_has_three_voters_off(regions: &[RegionInfo], gone: &[u64]) -> bool {
    !regions.is_empty()
        && regions.iter().all(|r| {
            r.region.peers.len() == 3
                && r.region
                    .peers
                    .iter()
                    .all(|p| !p.is_learner() && !gone.contains(&p.store_id))
        })
}

async fn stores(client: &Client) -> Vec<StoreDesc> {
    match client.placement(PlacementRequest::Stores).await {
        Ok(PlacementAnswer::Stores(s)) => s,
        _ => Vec::new(),
    }
}

async fn store_state(client: &Client, store_id: u64) -> Option<StoreState> {
    stores(client)
        .await
        .into_iter()
        .find(|s| s.id == store_id)
        .map(|s| s.state)
}

async fn driver_store(client: &Client) -> Option<u64> {
    match client.placement(PlacementRequest::Status).await {
        Ok(PlacementAnswer::Status(s)) => Some(s.driver.store_id),
        _ => None,
    }
}

async fn split_into(client: &Client, keys: &[&str]) {
    for k in keys {
        let region = client
            .regions()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.region.contains(k.as_bytes()))
            .expect("a region holds every key");
        client
            .split_region(region.region.id, vec![bytes::Bytes::from(k.to_string())])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_get_their_replicas_and_a_down_store_is_replaced() {
    init_logs();
    let mut cluster = TestCluster::start_with(5, placement_on).await;
    let client = cluster.client().await;
    for i in 0..50 {
        client.put(format!("k{i:02}"), "v").await.unwrap();
    }
    split_into(&client, &["k10", "k20", "k30", "k40"]).await;
    // Founded on five stores, every region has five voters: the extra two go.
    within(60, "every region at three voters", async || {
        every_region_has_three_voters_off(&regions(&client).await, &[])
    })
    .await;

    // The store that runs the driver goes down and stays down: a new driver takes over and
    // replaces every replica the store held, writes going on all the while.
    let driver = driver_store(&client).await.expect("a driver runs");
    cluster.stop(driver).await;
    within(30, "a new driver", async || {
        driver_store(&client).await.is_some_and(|s| s != driver)
    })
    .await;
    within(30, "the stopped store is Down", async || {
        store_state(&client, driver).await == Some(StoreState::Down)
    })
    .await;
    let mut written = 50;
    within(90, "every replica off the down store", async || {
        client.put(format!("k{written:02}"), "v").await.unwrap();
        written += 1;
        every_region_has_three_voters_off(&regions(&client).await, &[driver])
    })
    .await;
    for i in 0..written {
        assert_eq!(
            client.get(format!("k{i:02}")).await.unwrap().as_deref(),
            Some(&b"v"[..]),
            "k{i:02}"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_delete_drains_the_store_and_tombstones_it() {
    init_logs();
    let cluster = TestCluster::start_with(4, placement_on).await;
    let client = cluster.client().await;
    split_into(&client, &["b", "c", "d"]).await;
    within(60, "every region at three voters", async || {
        every_region_has_three_voters_off(&regions(&client).await, &[])
    })
    .await;
    let counts = voters(&regions(&client).await);
    // A store that holds replicas, and not the driver's (that one leaves last).
    let driver = driver_store(&client).await.expect("a driver runs");
    let victim = (1..=4)
        .filter(|s| *s != driver)
        .max_by_key(|s| counts.values().filter(|v| v.contains(s)).count())
        .unwrap();
    match client
        .placement(PlacementRequest::DeleteStore { store_id: victim })
        .await
    {
        Ok(PlacementAnswer::Recorded) => {}
        other => panic!("store delete: {other:?}"),
    }
    assert_eq!(
        store_state(&client, victim).await,
        Some(StoreState::Offline)
    );
    let mut written = 0;
    within(90, "the store tombstoned", async || {
        client.put(format!("w{written}"), "v").await.unwrap();
        written += 1;
        store_state(&client, victim).await == Some(StoreState::Tombstone)
    })
    .await;
    assert!(every_region_has_three_voters_off(
        &regions(&client).await,
        &[victim]
    ));
    // A tombstone stays one, and cannot be deleted again.
    let again = client
        .placement(PlacementRequest::DeleteStore { store_id: victim })
        .await;
    assert!(
        again
            .as_ref()
            .is_err_and(|e| e.to_string().contains("tombstone")),
        "{again:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_scheduler_stays_paused_under_a_new_driver() {
    init_logs();
    let mut cluster = TestCluster::start_with(4, placement_on).await;
    let client = cluster.client().await;
    within(30, "a driver", async || {
        driver_store(&client).await.is_some()
    })
    .await;
    let paused = client
        .placement(PlacementRequest::PauseScheduler {
            name: "replica-checker".into(),
        })
        .await;
    assert_eq!(paused.ok(), Some(PlacementAnswer::Recorded));
    let unknown = client
        .placement(PlacementRequest::PauseScheduler {
            name: "balance-everything".into(),
        })
        .await;
    assert!(
        unknown
            .as_ref()
            .is_err_and(|e| e.to_string().contains("replica-checker")),
        "{unknown:?}"
    );
    // Region 1 keeps its four voters while the replica checker is paused, under this driver
    // and the next one.
    let driver = driver_store(&client).await.unwrap();
    cluster.stop(driver).await;
    within(30, "a new driver", async || {
        driver_store(&client).await.is_some_and(|s| s != driver)
    })
    .await;
    match client.placement(PlacementRequest::Schedulers).await {
        Ok(PlacementAnswer::Schedulers(list)) => {
            let checker = list.iter().find(|s| s.name == "replica-checker").unwrap();
            assert!(checker.paused, "{list:?}");
        }
        other => panic!("{other:?}"),
    }
    cluster.restart(driver).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        voters(&regions(&client).await).get(&1).map(Vec::len),
        Some(4),
        "the paused checker left region 1 alone"
    );
    let resumed = client
        .placement(PlacementRequest::ResumeScheduler {
            name: "replica-checker".into(),
        })
        .await;
    assert_eq!(resumed.ok(), Some(PlacementAnswer::Recorded));
    within(60, "region 1 at three voters once resumed", async || {
        every_region_has_three_voters_off(&regions(&client).await, &[])
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_built_by_hand_move_a_replica_and_a_leader() {
    init_logs();
    let cluster = TestCluster::start_with(4, placement_on).await;
    let client = cluster.client().await;
    within(60, "region 1 at three voters", async || {
        every_region_has_three_voters_off(&regions(&client).await, &[])
    })
    .await;
    let region = regions(&client).await.remove(0);
    let holders: Vec<u64> = region.region.peers.iter().map(|p| p.store_id).collect();
    let spare = (1..=4).find(|s| !holders.contains(s)).unwrap();
    let from = *holders
        .iter()
        .find(|s| Some(**s) != region.leader_store)
        .unwrap();
    // The driver hears of the region's last change with the leader's next report.
    within(30, "the driver sees the spare store empty", async || {
        stores(&client)
            .await
            .iter()
            .any(|s| s.id == spare && s.region_count == 0)
    })
    .await;
    let added = client
        .placement(PlacementRequest::AddOperator(OperatorSpec::MovePeer {
            region_id: 1,
            from_store: from,
            to_store: spare,
        }))
        .await;
    assert!(
        matches!(added, Ok(PlacementAnswer::OperatorAdded { .. })),
        "{added:?}"
    );
    // A second operator for the same region is refused while the first runs.
    let busy = client
        .placement(PlacementRequest::AddOperator(
            OperatorSpec::TransferLeader {
                region_id: 1,
                to_store: from,
            },
        ))
        .await;
    assert!(
        busy.as_ref()
            .is_err_and(|e| e.to_string().contains("already has operator")),
        "{busy:?}"
    );
    within(60, "the replica moved", async || {
        every_region_has_three_voters_off(&regions(&client).await, &[from])
    })
    .await;
    within(30, "the operator finished", async || {
        matches!(
            client.placement(PlacementRequest::Operators).await,
            Ok(PlacementAnswer::Operators(list)) if list.is_empty()
        )
    })
    .await;

    // Leadership to a follower on the store the replica moved to.
    let added = client
        .placement(PlacementRequest::AddOperator(
            OperatorSpec::TransferLeader {
                region_id: 1,
                to_store: spare,
            },
        ))
        .await;
    assert!(
        matches!(added, Ok(PlacementAnswer::OperatorAdded { .. })),
        "{added:?}"
    );
    within(30, "the leader moved", async || {
        regions(&client)
            .await
            .first()
            .is_some_and(|r| r.leader_store == Some(spare))
    })
    .await;
    // Region 1's leader runs the driver: it moved with the leadership, and the new one
    // learns the region from its leader's next report.
    within(
        30,
        "the driver on the new leader's store knows region 1",
        async || {
            matches!(
                client.placement(PlacementRequest::Status).await,
                Ok(PlacementAnswer::Status(s)) if s.driver.store_id == spare && s.regions >= 1
            )
        },
    )
    .await;
    // Nonsense is refused with what is wrong.
    let no_voter = client
        .placement(PlacementRequest::AddOperator(
            OperatorSpec::TransferLeader {
                region_id: 1,
                to_store: from,
            },
        ))
        .await;
    assert!(
        no_voter
            .as_ref()
            .is_err_and(|e| e.to_string().contains("no voter on store")),
        "{no_voter:?}"
    );
    let none = client
        .placement(PlacementRequest::RemoveOperator { region_id: 77 })
        .await;
    assert!(
        none.as_ref()
            .is_err_and(|e| e.to_string().contains("no operator running")),
        "{none:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_locates_keys_and_checks_regions() {
    init_logs();
    let mut cluster = TestCluster::start_with(5, placement_on).await;
    let client = cluster.client().await;
    split_into(&client, &["k10", "k20", "k30", "k40"]).await;
    within(60, "every region at three voters", async || {
        every_region_has_three_voters_off(&regions(&client).await, &[])
    })
    .await;
    let known: BTreeMap<u64, RegionInfo> = regions(&client)
        .await
        .into_iter()
        .map(|r| (r.region.id, r))
        .collect();
    // The driver hears of each region's last change (the replicas it removed) from its leader.
    within(
        30,
        "the driver knows every region as the stores do",
        async || {
            let Ok(PlacementAnswer::Regions(listed)) =
                client.placement(PlacementRequest::Regions).await
            else {
                return false;
            };
            listed.len() == known.len()
                && listed.iter().all(|d| {
                    known
                        .get(&d.region.id)
                        .is_some_and(|r| r.region == d.region)
                })
        },
    )
    .await;
    let Ok(PlacementAnswer::Regions(listed)) = client.placement(PlacementRequest::Regions).await
    else {
        panic!("no region list");
    };
    // In key order, tiling the key space.
    assert!(listed[0].region.start_key.is_empty());
    assert!(listed.last().unwrap().region.end_key.is_empty());
    for pair in listed.windows(2) {
        assert_eq!(pair[0].region.end_key, pair[1].region.start_key);
    }
    assert!(listed.iter().all(|d| d.leader_store.is_some()));

    // A key's region, and the addresses of its stores.
    let Ok(PlacementAnswer::Located(Some(route))) = client
        .placement(PlacementRequest::Locate {
            key: b"k25".to_vec(),
        })
        .await
    else {
        panic!("k25 not located");
    };
    assert_eq!(route.region.region.start_key, b"k20");
    assert_eq!(route.region.region.end_key, b"k30");
    let mut on: Vec<u64> = route.stores.iter().map(|s| s.store_id).collect();
    on.sort_unstable();
    let mut hosts: Vec<u64> = route
        .region
        .region
        .peers
        .iter()
        .map(|p| p.store_id)
        .collect();
    hosts.sort_unstable();
    assert_eq!(on, hosts);
    for s in &route.stores {
        assert_eq!(s.addr, cluster.node(s.store_id).addr().to_string());
    }

    // A client that knows one store and nothing else routes every key (through the driver for
    // the regions that store does not host).
    let config = tinykv_client::ClientConfig {
        endpoints: vec![cluster.node(1).addr()],
        tls: cluster.client_tls.clone(),
        timeout: Duration::from_secs(10),
    };
    let lone = Client::connect(config).await.unwrap();
    for k in ["k05", "k15", "k25", "k35", "k45"] {
        lone.put(k, "v").await.unwrap();
        assert_eq!(client.get(k).await.unwrap().as_deref(), Some(&b"v"[..]));
    }

    // `region check` from the driver: every region short of five voters, none of three.
    use tinykv_client::RegionCheck;
    let short = client.region_check(RegionCheck::Missing, 5).await.unwrap();
    assert_eq!(short.len(), 5);
    assert!(
        client
            .region_check(RegionCheck::Missing, 3)
            .await
            .unwrap()
            .is_empty()
    );
    // A stopped store's peers are down, as the leaders report them, while the replica checker
    // is paused and leaves them be.
    client
        .placement(PlacementRequest::PauseScheduler {
            name: "replica-checker".into(),
        })
        .await
        .unwrap();
    let driver = driver_store(&client).await.expect("a driver");
    let victim = (1..=5).rev().find(|s| *s != driver).unwrap();
    let mut expected: Vec<u64> = known
        .values()
        .filter(|r| r.region.peer_on_store(victim).is_some())
        .map(|r| r.region.id)
        .collect();
    expected.sort_unstable();
    cluster.stop(victim).await;
    within(30, "the stopped store's peers reported down", async || {
        let Ok(found) = client.region_check(RegionCheck::Down, 3).await else {
            return false;
        };
        let mut ids: Vec<u64> = found.iter().map(|f| f.region.region.id).collect();
        ids.sort_unstable();
        ids == expected
            && found
                .iter()
                .all(|f| f.peers.iter().all(|p| p.store_id == victim))
    })
    .await;
    cluster.shutdown().await;
}
