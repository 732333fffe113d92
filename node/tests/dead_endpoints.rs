//! A client given nodes that never answer (stopped, or an address where nothing runs) pays
//! for them once and briefly: it does not wait out a connect timeout for each in turn.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::TestCluster;
use tinykv_client::{Client, ClientConfig, ClientError};
use tinykv_proto::api::{AdminRequest, AdminResponse};

/// Addresses that take packets and never answer: a dialer there waits for its timeout.
fn silent(n: usize) -> (Vec<UdpSocket>, Vec<SocketAddr>) {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let addrs = sockets
        .iter()
        .map(|s| s.local_addr().expect("addr"))
        .collect();
    (sockets, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_endpoints_ahead_of_live_ones_are_passed_over() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    cluster.leader(1).await;
    let (_sockets, mut endpoints) = silent(4);
    endpoints.extend(cluster.endpoints());
    let config = ClientConfig {
        endpoints,
        tls: cluster.client_tls.clone(),
        timeout: Duration::from_secs(10),
    };
    // Asked one after another, four silent endpoints would cost four connect timeouts (1 s
    // each) before a node answers; asked a quarter second apart, about one.
    let started = Instant::now();
    let client = Client::connect(config).await.expect("connects");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "connect took {took:?}");
    // Later refreshes ask the node that answered first.
    let started = Instant::now();
    for _ in 0..4 {
        client.cluster().await.expect("cluster");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "4 refreshes took {took:?}"
    );
    client.put("k", "v").await.expect("put");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_asked_together_answer_in_order_and_the_silent_ones_fail() {
    common::init_logs();
    let cluster = TestCluster::start(3).await;
    cluster.leader(1).await;
    let client = cluster.client().await;
    let (_sockets, silent) = silent(3);
    let live = cluster.endpoints()[0];
    let addrs = vec![silent[0], silent[1], live, silent[2]];
    let started = Instant::now();
    let answers = client.admin_each(&addrs, AdminRequest::StoreStatus).await;
    let took = started.elapsed();
    // Together: one connect timeout (1 s) for the three, not three.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let got: Vec<SocketAddr> = answers.iter().map(|(a, _)| *a).collect();
    assert_eq!(got, addrs);
    for (addr, answer) in &answers {
        if *addr == live {
            assert!(
                matches!(answer, Ok(AdminResponse::StoreStatus(_))),
                "{answer:?}"
            );
        } else {
            assert!(
                matches!(answer, Err(ClientError::Unreachable { .. })),
                "{addr}: {answer:?}"
            );
        }
    }
    cluster.shutdown().await;
}
