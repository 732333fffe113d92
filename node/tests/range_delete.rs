//! Range deletes: one log entry per region of the range, each region deleting its part of the
//! range on every replica, with the count of keys deleted.

mod common;

use bytes::Bytes;
use common::{TestCluster, eventually};
use tinykv_proto::api::{KvOp, KvResponse, ReadMode};

fn keys(pairs: &[(Bytes, Bytes)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

fn names(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_delete_covers_each_region_of_its_range_and_counts_the_keys() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    for p in ["a", "b", "c"] {
        for i in 0..10u32 {
            client.put(format!("{p}{i}"), "v").await.unwrap();
        }
    }
    // Three regions: [, b5), [b5, c), [c, ).
    let regions = client
        .split_region(1, vec![Bytes::from_static(b"b5"), Bytes::from_static(b"c")])
        .await
        .unwrap();
    assert_eq!(regions.len(), 3);

    // a5..a9, b0..b9 and c0..c2: parts of all three regions.
    assert_eq!(client.delete_range("a5", "c3").await.unwrap(), 18);
    let left = client
        .scan("", "", 100, ReadMode::Linearizable)
        .await
        .unwrap();
    let mut want = names("a", 0..5);
    want.extend(names("c", 3..10));
    assert_eq!(keys(&left), want);
    // Again: nothing left to delete, and nothing else touched.
    assert_eq!(client.delete_range("a5", "c3").await.unwrap(), 0);

    assert_eq!(client.delete_prefix("c").await.unwrap(), 7);
    assert!(
        client.delete_prefix("").await.is_err(),
        "an empty prefix would delete every key"
    );
    let left = client
        .scan("", "", 100, ReadMode::Linearizable)
        .await
        .unwrap();
    assert_eq!(keys(&left), names("a", 0..5));

    // Every replica of region 1 deleted the same keys.
    let leader = cluster.leader(1).await;
    eventually("every store applied region 1's range delete", async || {
        let want = cluster.raft_state(leader, 1).await.applied;
        let mut all = true;
        for s in 1..=3 {
            all &= cluster.raft_state(s, 1).await.applied >= want;
        }
        all
    })
    .await;
    for s in 1..=3u64 {
        let addr = cluster.configs[(s - 1) as usize].listen_addr;
        let op = KvOp::Scan {
            start: Bytes::new(),
            end: Bytes::from_static(b"b5"),
            limit: 100,
            read: ReadMode::Stale,
        };
        match cluster.direct(addr, op).await {
            Ok(Ok(KvResponse::Pairs { pairs, .. })) => {
                assert_eq!(keys(&pairs), names("a", 0..5), "store {s}")
            }
            other => panic!("store {s}: stale scan: {other:?}"),
        }
    }
    cluster.shutdown().await;
}
