//! Snapshot streams: verified transfer, rejection of broken streams, rate limiting.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tinykv_transport::frame;
use tinykv_transport::wire::{HelloReply, SnapshotAck, StreamHead};
use tinykv_transport::*;
use tokio::sync::watch;

const MIB: u64 = 1024 * 1024;

fn write_file(dir: &Path, name: &str, len: usize, seed: u64) -> (std::path::PathBuf, Vec<u8>) {
    let data = seeded_bytes(seed, len);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

fn meta(region_id: u64) -> SnapshotMeta {
    SnapshotMeta {
        region_id,
        index: 42,
        term: 7,
        crc32: None,
        context: "raft message".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_arrives_verified_with_progress() {
    let pki = Pki::new();
    let a = start_with(&pki, 1, |c| c.snapshot.chunk_size = 256 * 1024);
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);
    let src = tempfile::tempdir().unwrap();
    let (path, data) = write_file(src.path(), "snap", 3 * MIB as usize + 12_345, 1);

    let (progress_tx, progress_rx) = watch::channel(SnapshotProgress::default());
    within(
        a.endpoint
            .send_snapshot(2, meta(5), &path, Some(&progress_tx)),
    )
    .await
    .unwrap();
    assert_eq!(
        *progress_rx.borrow(),
        SnapshotProgress {
            sent: data.len() as u64,
            total: data.len() as u64
        }
    );

    let got = within(b.events.snapshots.recv()).await.unwrap();
    assert_eq!(got.from_store, 1);
    assert_eq!(
        (got.header.region_id, got.header.index, got.header.term),
        (5, 42, 7)
    );
    assert_eq!(got.header.size, data.len() as u64);
    assert_eq!(got.header.crc32, crc32fast::hash(&data));
    assert_eq!(got.header.context, "raft message");
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    assert_eq!(
        files_in(b.snap_dir.path()).len(),
        1,
        "no partial files left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_checksum_is_rejected_and_leaves_no_file() {
    let pki = Pki::new();
    let a = start(&pki, 1);
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);
    let src = tempfile::tempdir().unwrap();
    let (path, data) = write_file(src.path(), "snap", MIB as usize, 2);
    let mut bad = meta(1);
    bad.crc32 = Some(crc32fast::hash(&data) ^ 1);
    let err = within(a.endpoint.send_snapshot(2, bad, &path, None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SnapshotError::Rejected(SnapshotRefusal::ChecksumMismatch { .. })
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    within(b.endpoint.wait_stats(|s| s.snapshots_rejected == 1)).await;
    assert!(files_in(b.snap_dir.path()).is_empty());
    assert!(b.events.snapshots.try_recv().is_err());
}

async fn hello(conn: &quinn::Connection, store: u64) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    frame::write_frame(&mut send, &StreamHead::Hello { store_id: store }, 1024)
        .await
        .unwrap();
    send.finish().unwrap();
    assert_eq!(
        frame::read_required::<_, HelloReply>(&mut recv, 1024)
            .await
            .unwrap(),
        HelloReply::Accepted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_overlong_stream_is_rejected_and_leaves_no_file() {
    let pki = Pki::new();
    let mut b = start(&pki, 2);
    let conn = raw_connect(&pki.node(9), b.addr, 2).await;
    hello(&conn, 9).await;
    let data = seeded_bytes(3, 300_000);
    let header = |size| SnapshotHeader {
        region_id: 1,
        index: 1,
        term: 1,
        size,
        crc32: crc32fast::hash(&data),
        context: Default::default(),
    };
    let cases = [(header(1_000_000), "short"), (header(100_000), "long")];
    for (i, (header, name)) in cases.into_iter().enumerate() {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        frame::write_frame(&mut send, &StreamHead::Snapshot(header), 1024)
            .await
            .unwrap();
        let _ = send.write_all(&data).await;
        let _ = send.finish();
        let ack: SnapshotAck = within(frame::read_required(&mut recv, 1024)).await.unwrap();
        assert!(
            matches!(
                ack,
                SnapshotAck::Rejected(SnapshotRefusal::SizeMismatch { .. })
            ),
            "{name}: {ack:?}"
        );
        within(
            b.endpoint
                .wait_stats(|s| s.snapshots_rejected == i as u64 + 1),
        )
        .await;
        assert!(files_in(b.snap_dir.path()).is_empty(), "{name}");
    }
    assert!(b.events.snapshots.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_cannot_send_snapshots() {
    let pki = Pki::new();
    let b = start(&pki, 2);
    let conn = raw_connect(&pki.client("c"), b.addr, 2).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let header = SnapshotHeader {
        region_id: 1,
        index: 1,
        term: 1,
        size: 3,
        crc32: crc32fast::hash(b"abc"),
        context: Default::default(),
    };
    frame::write_frame(&mut send, &StreamHead::Snapshot(header), 1024)
        .await
        .unwrap();
    let _ = send.write_all(b"abc").await;
    let _ = send.finish();
    let ack: SnapshotAck = within(frame::read_required(&mut recv, 1024)).await.unwrap();
    assert_eq!(ack, SnapshotAck::Rejected(SnapshotRefusal::NotAStore));
    assert!(files_in(b.snap_dir.path()).is_empty());
}

/// Sends `path` to store 2 and returns how long it took until the acknowledgement.
async fn timed_send(a: &Endpoint<Msg>, path: &Path) -> Duration {
    let started = Instant::now();
    within(a.send_snapshot(2, meta(1), path, None))
        .await
        .unwrap();
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_respected_alone_and_shared() {
    let pki = Pki::new();
    let limit = 16 * MIB;
    let a = start_with(&pki, 1, |c| c.snapshot.max_bytes_per_sec = limit);
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);
    let src = tempfile::tempdir().unwrap();
    let (big, _) = write_file(src.path(), "big", 64 * MIB as usize, 4);
    let (half1, _) = write_file(src.path(), "half1", 32 * MIB as usize, 5);
    let (half2, _) = write_file(src.path(), "half2", 32 * MIB as usize, 6);
    // Connect first so the handshake is not part of the timing.
    within(a.endpoint.call(2, Service::Admin, Default::default(), WAIT))
        .await
        .unwrap_err();

    let alone = timed_send(&a.endpoint, &big).await;
    let rate = 64.0 / alone.as_secs_f64();
    println!("64 MiB at a 16 MiB/s limit: {alone:?} = {rate:.2} MiB/s");
    assert!(
        (3.0..5.0).contains(&alone.as_secs_f64()),
        "expected about 4 s, took {alone:?}"
    );

    let started = Instant::now();
    let (r1, r2) = tokio::join!(
        timed_send(&a.endpoint, &half1),
        timed_send(&a.endpoint, &half2),
    );
    let both = started.elapsed();
    println!("2 x 32 MiB concurrently at 16 MiB/s: {r1:?} and {r2:?}, together {both:?}");
    assert!(
        (3.0..5.0).contains(&both.as_secs_f64()),
        "expected about 4 s for 64 MiB combined, took {both:?}"
    );
    // Fair sharing: neither finished in about half the time while the other waited.
    assert!(
        r1.min(r2).as_secs_f64() > 2.5,
        "limit not shared: {r1:?} {r2:?}"
    );
    for _ in 0..3 {
        let got = within(b.events.snapshots.recv()).await.unwrap();
        std::fs::remove_file(got.path).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_rate_is_reported() {
    let pki = Pki::new();
    let a = start(&pki, 1);
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);
    let src = tempfile::tempdir().unwrap();
    let (path, _) = write_file(src.path(), "snap", 64 * MIB as usize, 7);
    within(a.endpoint.call(2, Service::Admin, Default::default(), WAIT))
        .await
        .unwrap_err();
    let took = timed_send(&a.endpoint, &path).await;
    println!(
        "64 MiB unlimited (debug build): {took:?} = {:.1} MiB/s",
        64.0 / took.as_secs_f64()
    );
    within(b.events.snapshots.recv()).await.unwrap();
}
