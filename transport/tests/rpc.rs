//! RPC over the client path and between stores.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tinykv_transport::*;
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_without_handler_is_a_remote_error() {
    let pki = Pki::new();
    let node = start(&pki, 1);
    let client = RpcClient::new(&pki.client("c"), node.addr, RpcClientOptions::default()).unwrap();
    let err = within(client.call(Service::Client, "x".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Remote(RemoteError::NoHandler)),
        "{err:?}"
    );
    assert!(!err.is_unreachable() && !err.is_tls_refused());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_and_many_concurrent_calls() {
    let pki = Pki::new();
    let node = start(&pki, 1);
    node.endpoint.set_rpc_handler(Arc::new(
        |_from: Identity, _s: Service, body: bytes::Bytes| async move {
            if body.is_empty() {
                Err("empty request".to_string())
            } else {
                Ok(body)
            }
        },
    ));
    let client =
        Arc::new(RpcClient::new(&pki.client("c"), node.addr, RpcClientOptions::default()).unwrap());
    let err = within(client.call(Service::Client, bytes::Bytes::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Remote(RemoteError::Handler(ref m)) if m == "empty request"),
        "{err:?}"
    );

    calls_answer_in_order(&client, 200).await;
}

/// Makes `n` calls at once, each from its own task, and checks every echoed answer.
async fn calls_answer_in_order(client: &Arc<RpcClient>, n: usize) {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.call(Service::Client, format!("{i}").into()).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(within(call).await.unwrap().unwrap(), format!("{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_times_out_when_the_handler_does_not_answer() {
    let pki = Pki::new();
    let node = start(&pki, 1);
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = Arc::new(Mutex::new(Some(release_rx)));
    node.endpoint.set_rpc_handler(Arc::new(
        move |_f: Identity, _s: Service, body: bytes::Bytes| {
            let gate = release_rx.lock().unwrap().take();
            async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                Ok::<_, String>(body)
            }
        },
    ));
    let client = RpcClient::new(&pki.client("c"), node.addr, RpcClientOptions::default()).unwrap();
    let timeout = Duration::from_millis(300);
    let started = tokio::time::Instant::now();
    let err = client
        .call_with_timeout(Service::Client, "slow".into(), timeout)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Timeout(t) if t == timeout),
        "{err:?}"
    );
    assert!(err.is_unreachable());
    assert!(started.elapsed() >= timeout);
    drop(release_tx);
    // The next call is served normally.
    assert_eq!(
        within(client.call(Service::Client, "fast".into()))
            .await
            .unwrap(),
        "fast"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_reported_as_such() {
    let pki = Pki::new();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = RpcClient::new(
        &pki.client("c"),
        silent.local_addr().unwrap(),
        RpcClientOptions::default(),
    )
    .unwrap();
    let err = client
        .call_with_timeout(Service::Client, "x".into(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    assert!(!err.is_tls_refused());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_call_each_other_over_their_link_connection() {
    let pki = Pki::new();
    let a = start(&pki, 1);
    let b = start(&pki, 2);
    introduce(&[&a, &b]);
    b.endpoint.set_rpc_handler(echo_handler());
    let reply = within(a.endpoint.call(2, Service::Admin, "join".into(), WAIT))
        .await
        .unwrap();
    assert_eq!(reply, "store 1|Admin|join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_the_handshake_is_a_connect_error_not_a_call_timeout() {
    let pki = Pki::new();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let options = RpcClientOptions {
        connect_timeout: Duration::from_millis(200),
        ..RpcClientOptions::default()
    };
    let client = RpcClient::new(&pki.client("c"), silent.local_addr().unwrap(), options).unwrap();
    let started = std::time::Instant::now();
    let err = client
        .call_with_timeout(Service::Client, "x".into(), Duration::from_secs(10))
        .await
        .unwrap_err();
    // Nothing was sent, and the caller learns that long before the call's own timeout.
    assert!(
        matches!(err, RpcError::Connect(ConnectError::Timeout { .. })),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_after_the_request_left_is_not_a_connect_error() {
    // A request that reached the server may have taken effect: losing the connection after
    // that must not look like "never sent", or a client would send a write twice.
    let pki = Pki::new();
    let node = start(&pki, 1);
    let (arrived_tx, arrived_rx) = oneshot::channel::<()>();
    let arrived_tx = Arc::new(Mutex::new(Some(arrived_tx)));
    node.endpoint.set_rpc_handler(Arc::new(
        move |_f: Identity, _s: Service, _body: bytes::Bytes| {
            if let Some(tx) = arrived_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            async move { std::future::pending::<Result<bytes::Bytes, String>>().await }
        },
    ));
    let options = RpcClientOptions {
        tuning: ConnectionTuning {
            keep_alive: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(500),
            ..ConnectionTuning::default()
        },
        ..RpcClientOptions::default()
    };
    let client = RpcClient::new(&pki.client("c"), node.addr, options).unwrap();
    let call = tokio::spawn(async move {
        client
            .call_with_timeout(Service::Client, "write".into(), Duration::from_secs(20))
            .await
    });
    within(arrived_rx).await.unwrap();
    drop(node);
    let err = within(call).await.unwrap().unwrap_err();
    assert!(matches!(err, RpcError::ConnectionLost(_)), "{err:?}");
    assert!(err.is_unreachable());
}

/// A handler that answers only once `n` calls are inside it at the same time: a server or
/// client that served one connection's calls one after another would never get there.
fn rendezvous_handler(n: usize) -> Arc<dyn RpcHandler> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    Arc::new(move |_f: Identity, _s: Service, body: bytes::Bytes| {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            Ok::<_, String>(body)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_are_ready_together_leave_in_shared_packets() {
    const CALLS: usize = 32;
    let pki = Pki::new();
    let node = start(&pki, 1);
    node.endpoint.set_rpc_handler(rendezvous_handler(CALLS));
    let conn = raw_connect(&pki.client("c"), node.addr, 1).await;
    let mut pending = Vec::new();
    for i in 0..CALLS {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        let head = tinykv_transport::wire::StreamHead::Rpc {
            service: Service::Client,
            body: format!("{i}").into(),
        };
        send.write_all(&tinykv_transport::frame::encode(&head, 1024).unwrap())
            .await
            .unwrap();
        send.finish().unwrap();
        pending.push(recv);
    }
    let before = conn.stats().udp_rx.datagrams;
    for (i, mut recv) in pending.into_iter().enumerate() {
        let reply: tinykv_transport::wire::RpcReply =
            within(tinykv_transport::frame::read_required(&mut recv, 1024))
                .await
                .unwrap();
        assert_eq!(reply.unwrap(), format!("{i}"));
    }
    // The answers became ready at once. Written by one task, they share datagrams (3 to 8 in
    // trials; the connection's driver may send between writes on the other worker); written by
    // a task per call, each left in its own (16 to 20 datagrams for 16 answers).
    let datagrams = conn.stats().udp_rx.datagrams - before;
    assert!(
        datagrams < CALLS as u64 / 2,
        "{datagrams} datagrams for {CALLS} answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_connection_carries_concurrent_calls() {
    const CALLS: usize = 32;
    let pki = Pki::new();
    let node = start(&pki, 1);
    node.endpoint.set_rpc_handler(rendezvous_handler(CALLS));
    let client =
        Arc::new(RpcClient::new(&pki.client("c"), node.addr, RpcClientOptions::default()).unwrap());
    calls_answer_in_order(&client, CALLS).await;
}
