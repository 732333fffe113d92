//! A three-store cluster serves writes and reads end to end.

mod common;

use common::TestCluster;
use tinykv_proto::api::ReadMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stores_elect_and_serve() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader(1).await;
    assert!((1..=3).contains(&leader));
    let client = cluster.client().await;
    client.put("hello", "world").await.unwrap();
    assert_eq!(
        client.get("hello").await.unwrap().as_deref(),
        Some(&b"world"[..])
    );
    client.put("hello2", "x").await.unwrap();
    client.delete("hello").await.unwrap();
    assert_eq!(client.get("hello").await.unwrap(), None);
    let pairs = client
        .scan("", "", 10, ReadMode::Linearizable)
        .await
        .unwrap();
    assert_eq!(pairs.len(), 1);
    assert_eq!(&pairs[0].0[..], b"hello2");
    cluster.shutdown().await;
}
