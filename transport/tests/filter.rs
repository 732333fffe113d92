//! Fault injection on live links: drop, block and delay.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tinykv_transport::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_outgoing_and_incoming() {
    let pki = Pki::new();
    let a = start(&pki, 1);
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);

    a.endpoint.filter().set(vec![Rule::drop_all(&[2])]);
    a.endpoint.send(2, &msg(1)).unwrap();
    a.endpoint.filter().clear();
    a.endpoint.send(2, &msg(2)).unwrap();
    assert_eq!(
        within(b.events.messages.recv()).await.unwrap().message.seq,
        2,
        "message 1 was dropped"
    );

    b.endpoint
        .filter()
        .set(vec![Rule::drop_all(&[1]).only(Direction::Incoming)]);
    a.endpoint.send(2, &msg(3)).unwrap();
    within(b.endpoint.wait_stats(|s| s.dropped_by_filter == 1)).await;
    b.endpoint.filter().clear();
    a.endpoint.send(2, &msg(4)).unwrap();
    assert_eq!(
        within(b.events.messages.recv()).await.unwrap().message.seq,
        4,
        "message 3 was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fractional_drop_replays_exactly() {
    let pki = Pki::new();
    let a = start(&pki, 1);
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);
    let mut runs = Vec::new();
    for run in 0..2u64 {
        a.endpoint.filter().reseed(99);
        a.endpoint
            .filter()
            .set(vec![Rule::drop_fraction(&[2], 0.5)]);
        let base = run * 10_000;
        for seq in 0..1_000 {
            a.endpoint.send(2, &msg(base + seq)).unwrap();
        }
        a.endpoint.filter().clear();
        a.endpoint.send(2, &msg(base + 9_999)).unwrap();
        let mut delivered = Vec::new();
        loop {
            let seq = within(b.events.messages.recv()).await.unwrap().message.seq - base;
            if seq == 9_999 {
                break;
            }
            delivered.push(seq);
        }
        assert!(
            (400..600).contains(&delivered.len()),
            "delivered {}",
            delivered.len()
        );
        runs.push(delivered);
    }
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_reports_unreachable_and_fails_snapshots() {
    let pki = Pki::new();
    let mut a = start(&pki, 1);
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);
    a.endpoint.filter().set(vec![Rule::block(&[2])]);
    assert!(matches!(
        a.endpoint.send(2, &msg(1)),
        Err(SendError::Blocked)
    ));
    assert_eq!(within(a.events.unreachable.recv()).await, Some(2));
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("snap");
    std::fs::write(&path, b"data").unwrap();
    let err = a
        .endpoint
        .send_snapshot(2, SnapshotMeta::default(), &path, None)
        .await
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Blocked));

    // Incoming block on the receiver: messages are discarded, snapshots refused.
    a.endpoint.filter().clear();
    b.endpoint
        .filter()
        .set(vec![Rule::block(&[1]).only(Direction::Incoming)]);
    a.endpoint.send(2, &msg(2)).unwrap();
    within(b.endpoint.wait_stats(|s| s.dropped_by_filter == 1)).await;
    let err = within(
        a.endpoint
            .send_snapshot(2, SnapshotMeta::default(), &path, None),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SnapshotError::Rejected(SnapshotRefusal::Filtered)),
        "{err:?}"
    );
    b.endpoint.filter().clear();
    a.endpoint.send(2, &msg(3)).unwrap();
    assert_eq!(
        within(b.events.messages.recv()).await.unwrap().message.seq,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_holds_messages_back() {
    let pki = Pki::new();
    let a = start(&pki, 1);
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);
    // Establish the connection so the delay is not confused with the handshake.
    a.endpoint.send(2, &msg(0)).unwrap();
    within(b.events.messages.recv()).await.unwrap();

    let delay = Duration::from_millis(300);
    a.endpoint
        .filter()
        .set(vec![Rule::delay(&[2], delay).only(Direction::Outgoing)]);
    let sent = Instant::now();
    a.endpoint.send(2, &msg(1)).unwrap();
    assert_eq!(
        within(b.events.messages.recv()).await.unwrap().message.seq,
        1
    );
    assert!(
        sent.elapsed() >= delay,
        "arrived after {:?}",
        sent.elapsed()
    );

    a.endpoint
        .filter()
        .set(vec![Rule::delay(&[1], delay).only(Direction::Incoming)]);
    b.endpoint
        .filter()
        .set(vec![Rule::delay(&[1], delay).only(Direction::Incoming)]);
    let sent = Instant::now();
    a.endpoint.send(2, &msg(2)).unwrap();
    assert_eq!(
        within(b.events.messages.recv()).await.unwrap().message.seq,
        2
    );
    assert!(
        sent.elapsed() >= delay,
        "arrived after {:?}",
        sent.elapsed()
    );
}

/// A store the filter cuts off is reported as a partition would show it (its connection times
/// out), also while nothing is sent to it: a node whose regions are idle must still notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_store_is_reported_though_nothing_is_sent() {
    let pki = Pki::new();
    let mut a = start(&pki, 1);
    let b = start(&pki, 2);
    let c = start(&pki, 3);
    introduce(&[&a, &b, &c]);
    a.endpoint
        .filter()
        .set(vec![Rule::drop_all(&[2]).only(Direction::Incoming)]);
    assert_eq!(within(a.events.unreachable.recv()).await, Some(2));
    assert_eq!(
        within(a.events.unreachable.recv()).await,
        Some(2),
        "and again"
    );
    // A delay or a partial drop cuts nobody off.
    a.endpoint.filter().set(vec![
        Rule::delay(&[2], Duration::from_millis(10)),
        Rule::drop_fraction(&[3], 0.5),
    ]);
    while a.events.unreachable.try_recv().is_ok() {}
    assert!(!a.endpoint.filter().cuts_off(2) && !a.endpoint.filter().cuts_off(3));
    a.endpoint.filter().set(vec![Rule::block(&[])]);
    assert!(a.endpoint.filter().cuts_off(2) && a.endpoint.filter().cuts_off(3));
}
