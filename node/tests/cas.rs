//! Compare-and-swap: decided where the write applies, so concurrent swaps of one key never
//! both win, and every replica decides the same.

mod common;

use bytes::Bytes;
use common::TestCluster;
use tinykv_proto::api::{KvOp, KvResponse, ReadMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_by_compare_and_swap_lose_no_update() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    let (swapped, previous) = client.compare_and_swap("counter", None, "0").await.unwrap();
    assert!(swapped);
    assert_eq!(previous, None);
    // Absent only once.
    let (swapped, previous) = client.compare_and_swap("counter", None, "9").await.unwrap();
    assert!(!swapped);
    assert_eq!(previous, Some(Bytes::from_static(b"0")));

    const CLIENTS: usize = 4;
    const ROUNDS: usize = 25;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0u64;
            let mut lost = 0u64;
            for _ in 0..ROUNDS {
                let current = client.get("counter").await.unwrap().unwrap();
                let n: u64 = std::str::from_utf8(&current).unwrap().parse().unwrap();
                let (swapped, previous) = client
                    .compare_and_swap("counter", Some(current.clone()), (n + 1).to_string())
                    .await
                    .unwrap();
                if swapped {
                    assert_eq!(previous, Some(current));
                    won += 1;
                } else {
                    assert_ne!(previous, Some(current), "a mismatch reports what it found");
                    lost += 1;
                }
            }
            (won, lost)
        }));
    }
    let mut won = 0;
    let mut lost = 0;
    for t in tasks {
        let (w, l) = t.await.unwrap();
        won += w;
        lost += l;
    }
    assert_eq!(won + lost, (CLIENTS * ROUNDS) as u64);
    assert!(won > 0);
    let end = client.get("counter").await.unwrap().unwrap();
    assert_eq!(
        end,
        Bytes::from(won.to_string()),
        "every won swap counted once"
    );

    // Every replica applied the same decisions.
    for store in 1..=3 {
        let addr = cluster.configs[(store - 1) as usize].listen_addr;
        common::eventually("the store applied every swap", async || {
            let op = KvOp::Get {
                key: Bytes::from_static(b"counter"),
                read: ReadMode::Stale,
            };
            matches!(
                cluster.direct(addr, op).await,
                Ok(Ok(KvResponse::Value(Some(v)))) if v == end
            )
        })
        .await;
    }
    cluster.shutdown().await;
}
