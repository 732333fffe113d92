//! Certificate roles on real stores, through the client library: what readonly, readwrite and
//! admin certificates may do, that a refusal names both roles, changes nothing and is not
//! retried by the client.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{TestCluster, eventually};
use tinykv_client::{Client, ClientError};
use tinykv_proto::api::{AdminRequest, KvError, ReadMode};
use tinykv_transport::Role;

/// `GET /metrics` of a running store.
async fn metrics(cluster: &TestCluster, store: u64) -> String {
    let addr: SocketAddr = cluster.node(store).status_addr().expect("a status server");
    let url = format!("http://{addr}/metrics");
    tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .call()
            .expect("status server answers")
            .body_mut()
            .read_to_string()
            .expect("body")
    })
    .await
    .expect("request task")
}

/// The value of the sample `series` (name and labels exactly as served), summed over stores.
async fn counted(cluster: &TestCluster, series: &str) -> f64 {
    let mut total = 0.0;
    for store in cluster.running() {
        for line in metrics(cluster, store).await.lines() {
            if let Some(v) = line.strip_prefix(series).and_then(|r| r.strip_prefix(' ')) {
                total += v.trim().parse::<f64>().expect("a sample value");
            }
        }
    }
    total
}

/// Asserts `result` is a refusal of `request` that needed `needed` and found `had`.
fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    request: &str,
    needed: Role,
    had: Role,
) {
    let err = result.expect_err("the request should be refused");
    assert!(err.is_permission_denied(), "{err:?}");
    match &err {
        ClientError::Kv(KvError::PermissionDenied {
            request: r,
            needed: n,
            had: h,
            ..
        }) => {
            assert_eq!(
                (r.as_str(), n.as_str(), h.as_str()),
                (request, needed.as_str(), had.as_str()),
                "{err}"
            );
        }
        other => panic!("not a permission refusal: {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!("needs a certificate with role {needed}"))
            && text.contains(&format!("has role {had}")),
        "{text}"
    );
}

async fn value(client: &Client, key: &str) -> Option<Bytes> {
    client.get(key.to_string()).await.expect("get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_role_may_do_what_it_allows_and_is_refused_the_rest() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    let admin = cluster.client().await;
    let reader = cluster
        .client_with(cluster.issue_client("dashboard", Role::ReadOnly))
        .await;
    let app = cluster
        .client_with(cluster.issue_client("app", Role::ReadWrite))
        .await;
    let leader = cluster.leader(1).await;
    let other = if leader == 1 { 2 } else { 1 };

    // readonly: reads keys and the cluster's state; every kind of write is refused, once.
    admin.put("k", "v").await.expect("admin put");
    assert_eq!(value(&reader, "k").await, Some(Bytes::from_static(b"v")));
    let scanned = reader
        .scan("", "", 10, ReadMode::Linearizable)
        .await
        .expect("readonly scan");
    assert_eq!(scanned.len(), 1);
    reader.cluster().await.expect("readonly cluster info");
    reader
        .admin_leader(1, AdminRequest::RaftState { region_id: 1 })
        .await
        .expect("readonly raft state");
    assert_refused(
        reader.put("k", "changed").await,
        "put",
        Role::ReadWrite,
        Role::ReadOnly,
    );
    assert_refused(
        reader.delete("k").await,
        "delete",
        Role::ReadWrite,
        Role::ReadOnly,
    );
    assert_refused(
        reader.delete_range("", "").await,
        "delete_range",
        Role::ReadWrite,
        Role::ReadOnly,
    );
    assert_eq!(value(&admin, "k").await, Some(Bytes::from_static(b"v")));
    // One refusal per request: the client gave up at the first answer rather than retrying
    // at other stores.
    let put_refused = r#"tinykv_requests_total{op="put",outcome="permission_denied"}"#;
    assert_eq!(counted(&cluster, put_refused).await, 1.0);

    // readwrite: writes keys; membership, leadership and the log are refused.
    app.put("k", "app").await.expect("readwrite put");
    assert_eq!(value(&app, "k").await, Some(Bytes::from_static(b"app")));
    app.delete("k").await.expect("readwrite delete");
    assert_refused(
        app.remove_peer(1, other).await,
        "remove_peer",
        Role::Admin,
        Role::ReadWrite,
    );
    assert_refused(
        app.admin_leader(
            1,
            AdminRequest::TransferLeader {
                region_id: 1,
                to_store: other,
            },
        )
        .await,
        "transfer_leader",
        Role::Admin,
        Role::ReadWrite,
    );
    assert_refused(
        app.admin_leader(1, AdminRequest::CompactLog { region_id: 1 })
            .await,
        "compact_log",
        Role::Admin,
        Role::ReadWrite,
    );
    assert_refused(
        app.alloc_ids(1).await,
        "alloc_ids",
        Role::Admin,
        Role::ReadWrite,
    );
    let remove_refused = r#"tinykv_admin_requests_refused_total{request="remove_peer"}"#;
    assert_eq!(counted(&cluster, remove_refused).await, 1.0);
    assert_eq!(
        cluster.leader(1).await,
        leader,
        "a refused transfer moved the leader"
    );
    let info = admin.cluster().await.expect("cluster");
    let region = info
        .regions
        .iter()
        .find(|r| r.region.id == 1)
        .expect("region 1");
    assert_eq!(
        region.region.peers.len(),
        3,
        "a refused removal changed membership"
    );

    // admin: all of it.
    admin
        .admin_leader(1, AdminRequest::CompactLog { region_id: 1 })
        .await
        .expect("admin compacts the log");
    // A target not heard from within an election timeout (a loaded machine) is refused for
    // now, not for good: asked again.
    eventually("admin transfers leadership", async || {
        match admin
            .admin_leader(
                1,
                AdminRequest::TransferLeader {
                    region_id: 1,
                    to_store: other,
                },
            )
            .await
        {
            Ok(_) => true,
            Err(ClientError::Kv(KvError::BadRequest(m))) if m.contains("not been heard from") => {
                false
            }
            Err(e) => panic!("admin transfers leadership: {e}"),
        }
    })
    .await;
    eventually("leadership to move", async || {
        cluster.leader(1).await == other
    })
    .await;
    let third = (1..=3)
        .find(|s| *s != leader && *s != other)
        .expect("a third store");
    admin
        .remove_peer(1, third)
        .await
        .expect("admin removes a peer");
    // The store that answers may apply the removal a moment after the leader did.
    eventually("every store to see the peer removed", async || {
        let info = admin.cluster().await.expect("cluster");
        info.regions
            .iter()
            .find(|r| r.region.id == 1)
            .is_some_and(|r| r.region.peers.iter().all(|p| p.store_id != third))
    })
    .await;
    cluster.shutdown().await;
}
