//! Raft message links between real endpoints on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use tinykv_transport::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_and_reply_between_two_nodes() {
    let pki = Pki::new();
    let mut a = start(&pki, 1);
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);

    a.endpoint.send(2, &msg(1)).unwrap();
    let got = within(b.events.messages.recv()).await.unwrap();
    assert_eq!(
        got,
        Received {
            from_store: 1,
            message: msg(1)
        }
    );

    b.endpoint.send(1, &msg(2)).unwrap();
    let got = within(a.events.messages.recv()).await.unwrap();
    assert_eq!(
        got,
        Received {
            from_store: 2,
            message: msg(2)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_arrive_in_order_in_batches() {
    let pki = Pki::new();
    const N: u64 = 5_000;
    // All N are queued before the link has even dialed: the queue must hold them, since what
    // is tested here is order and batching, not the queue bound (tested below).
    let a = start_with(&pki, 1, |c| c.peer_queue_capacity = N as usize);
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);
    for seq in 0..N {
        a.endpoint.send(2, &msg(seq)).unwrap();
    }
    for seq in 0..N {
        let got = within(b.events.messages.recv()).await.unwrap();
        assert_eq!(got.message.seq, seq);
    }
    let stats = a.endpoint.stats();
    assert_eq!(stats.messages_sent, N);
    assert!(stats.batches_sent < N, "no batching happened: {stats:?}");
    assert_eq!(
        stats.connections_dialed, 1,
        "one long-lived connection per store"
    );
}

#[tokio::test]
async fn full_queue_drops_and_counts_without_blocking() {
    let pki = Pki::new();
    let a = start_with(&pki, 1, |c| c.peer_queue_capacity = 2);
    a.endpoint.set_peer_addr(2, "127.0.0.1:9".parse().unwrap());
    // On a current-thread runtime the writer cannot run between these sends, so exactly the
    // queue's capacity is accepted.
    let results: Vec<_> = (0..10).map(|seq| a.endpoint.send(2, &msg(seq))).collect();
    assert!(results[..2].iter().all(Result::is_ok));
    assert!(
        results[2..]
            .iter()
            .all(|r| matches!(r, Err(SendError::QueueFull)))
    );
    assert_eq!(a.endpoint.stats().dropped_queue_full, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_dead_peer_is_reported_unreachable() {
    let pki = Pki::new();
    let mut a = start_with(&pki, 1, |c| c.connect_timeout = Duration::from_millis(500));
    a.endpoint.send(7, &msg(1)).unwrap();
    assert_eq!(within(a.events.unreachable.recv()).await, Some(7));

    // A UDP socket that never answers: the dial times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    a.endpoint.set_peer_addr(8, silent.local_addr().unwrap());
    a.endpoint.send(8, &msg(1)).unwrap();
    assert_eq!(within(a.events.unreachable.recv()).await, Some(8));
    assert!(a.endpoint.stats().dropped_unreachable >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialer_verifies_the_server_is_the_store_it_dialed() {
    let pki = Pki::new();
    let mut a = start(&pki, 1);
    let mut c = start(&pki, 3);
    // The address book wrongly says store 2 lives where store 3 does.
    a.endpoint.set_peer_addr(2, c.addr);
    a.endpoint.send(2, &msg(1)).unwrap();
    assert_eq!(within(a.events.unreachable.recv()).await, Some(2));
    assert!(c.events.messages.try_recv_batch().is_none());
    // The TLS server-name check refused store 3's certificate.
    within(c.endpoint.wait_stats(|s| s.handshakes_refused == 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_survives_the_peer_restarting_on_the_same_port() {
    let pki = Pki::new();
    let a = start_with(&pki, 1, |c| {
        c.reconnect_backoff_min = Duration::from_millis(20);
        c.reconnect_backoff_max = Duration::from_millis(200);
    });
    let mut b = start(&pki, 2);
    introduce(&[&a, &b]);
    a.endpoint.send(2, &msg(0)).unwrap();
    assert_eq!(
        within(b.events.messages.recv()).await.unwrap().message.seq,
        0
    );

    let port_addr = b.addr;
    let snap_dir = b.snap_dir;
    b.endpoint.shutdown().await;
    drop(b.events);

    // Rebind the same port. The old socket is released when quinn's driver task finishes,
    // which has no completion signal of its own, so the bind is retried briefly.
    let mut rebound = None;
    for _ in 0..200 {
        match Endpoint::<Msg>::bind(config(2, port_addr, &snap_dir), pki.node(2)) {
            Ok(bound) => {
                rebound = Some(bound);
                break;
            }
            Err(EndpointError::Bind { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(other) => panic!("{other}"),
        }
    }
    let (b2, mut b2_events) = rebound.expect("port was not released");
    assert_eq!(b2.local_addr().unwrap(), port_addr);

    // Raft retransmits; here the test does, until the restarted peer hears from the link again.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seq = 1;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "link never recovered"
        );
        let _ = a.endpoint.send(2, &msg(seq));
        match tokio::time::timeout(Duration::from_millis(250), b2_events.messages.recv()).await {
            Ok(Some(got)) => {
                assert_eq!(got.from_store, 1);
                break;
            }
            Ok(None) => panic!("events closed"),
            Err(_) => seq += 1,
        }
    }
    assert!(a.endpoint.stats().connections_dialed >= 2);
}

/// Both ways a node can learn, with nothing to send, that a store went away: the connection it
/// dialed ends, or the one the store dialed ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_reported_though_nothing_is_sent() {
    for dialer_is_a in [true, false] {
        let pki = Pki::new();
        let mut a = start(&pki, 1);
        let mut b = start(&pki, 2);
        introduce(&[&a, &b]);
        if dialer_is_a {
            a.endpoint.send(2, &msg(0)).unwrap();
            assert!(within(b.events.messages.recv()).await.is_some());
        } else {
            b.endpoint.send(1, &msg(0)).unwrap();
            assert!(within(a.events.messages.recv()).await.is_some());
        }
        assert!(a.events.unreachable.try_recv().is_err(), "nothing lost yet");
        b.endpoint.shutdown().await;
        assert_eq!(
            within(a.events.unreachable.recv()).await,
            Some(2),
            "dialer is a: {dialer_is_a}"
        );
    }
}

/// Closing waits for connections to be told, and a connection still in its handshake is told
/// by waiting out three probe timeouts counted from the assumed round trip. A store stopping
/// while a peer is down must not spend seconds on the handshake it had started towards it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_with_a_handshake_to_a_silent_peer_waits_only_its_probe_timeouts() {
    let pki = Pki::new();
    let a = start_with(&pki, 1, |c| {
        c.tuning.initial_rtt = Duration::from_millis(50)
    });
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    a.endpoint.set_peer_addr(8, silent.local_addr().unwrap());
    a.endpoint.send(8, &msg(1)).unwrap();
    // The handshake is under way once its first packet arrives.
    let mut buf = [0u8; 2048];
    within(silent.recv_from(&mut buf)).await.unwrap();
    let started = std::time::Instant::now();
    a.endpoint.close().await;
    // Three probe timeouts of 3 × 50 ms; with RFC 9002's 333 ms it is about 3 s, cut at
    // close's own 2 s bound.
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "close took {took:?}");
}
