//! A backup that takes longer than a view may stay idle: the views it has not read yet are
//! renewed while it reads the others, so the regions it reaches last are still there.

mod common;

use std::io::Cursor;
use std::time::Duration;

use bytes::Bytes;
use common::TestCluster;
use tinykv_client::backup_file::{BackupReader, Block};
use tinykv_client::{Client, ClientConfig};
use tinykv_proto::api::VIEW_IDLE_SECS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_slower_than_the_view_idle_time_still_reads_every_region() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    let client = cluster.client().await;
    for i in 0..20u32 {
        client.put(format!("k{i:02}"), "v").await.unwrap();
    }
    let regions = client
        .split_region(1, vec![Bytes::from_static(b"k10")])
        .await
        .unwrap();
    assert_eq!(regions.len(), 2);

    // The backup runs on a runtime of its own, whose progress callback stalls past the idle
    // time after the first chunk (a slow disk under the backup file, say).
    let config = ClientConfig {
        endpoints: cluster.endpoints(),
        tls: cluster.client_tls.clone(),
        timeout: Duration::from_secs(10),
    };
    let stall = Duration::from_secs(VIEW_IDLE_SECS + 5);
    let written = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let client = Client::connect(config).await.unwrap();
            let mut stalled = false;
            let (header, out) = client
                .backup(Cursor::new(Vec::new()), "test", |_| {
                    if !stalled {
                        stalled = true;
                        // The stall is the subject of the test: time has to pass.
                        std::thread::sleep(stall);
                    }
                })
                .await
                .expect("the backup outlives the idle time");
            (header, out.into_inner())
        })
    })
    .join()
    .unwrap();
    let (header, bytes) = written;
    assert_eq!((header.regions, header.keys), (2, 20));
    let mut reader = BackupReader::open(Cursor::new(bytes)).unwrap();
    let mut keys = 0;
    while let Some(block) = reader.next_block().unwrap() {
        if let Block::Pairs(pairs) = block {
            keys += pairs.len();
        }
    }
    assert_eq!(keys, 20);
    cluster.shutdown().await;
}
