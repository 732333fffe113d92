//! Mutual TLS: who is let in, who is refused, and that refusals are observable.

mod common;

use std::sync::Arc;

use common::*;
use tinykv_transport::certs::store_dns_name;
use tinykv_transport::frame;
use tinykv_transport::wire::{self, StreamHead};
use tinykv_transport::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_may_call_rpc() {
    let pki = Pki::new();
    let node = start(&pki, 1);
    node.endpoint.set_rpc_handler(echo_handler());
    let client =
        RpcClient::new(&pki.client("alice"), node.addr, RpcClientOptions::default()).unwrap();
    let reply = within(client.call(Service::Admin, "hi".into()))
        .await
        .unwrap();
    assert_eq!(reply, "client \"alice\" (readwrite)|Admin|hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused_at_the_handshake() {
    let pki = Pki::new();
    let node = start(&pki, 1);
    node.endpoint.set_rpc_handler(echo_handler());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert_der().clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![tls::ALPN.to_vec()];
    let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic_tls)));

    // In TLS 1.3 the client may finish its side of the handshake before the server refuses.
    let refused = match within(ep.connect(node.addr, &store_dns_name(1)).unwrap()).await {
        Err(err) => err,
        // The refusal may also arrive before (or while) the first stream opens.
        Ok(conn) => match conn.open_bi().await {
            Err(err) => err,
            Ok((mut send, mut recv)) => {
                let _ = send.write_all(b"x").await;
                let _ = recv.read_to_end(10).await;
                within(conn.closed()).await
            }
        },
    };
    assert!(tls::is_tls_refusal(&refused), "{refused:?}");
    within(node.endpoint.wait_stats(|s| s.handshakes_refused == 1)).await;
    assert_eq!(node.endpoint.stats().rpcs_served, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ca_certificate_is_refused() {
    let pki = Pki::new();
    let foreign = Pki::new();
    let node = start(&pki, 1);
    node.endpoint.set_rpc_handler(echo_handler());
    // Trusts the right CA but presents a certificate from another one.
    let mut identity = foreign.client("mallory");
    identity.ca = pki.ca.cert_der().clone();
    let client = RpcClient::new(&identity, node.addr, RpcClientOptions::default()).unwrap();
    let err = within(client.call(Service::Client, "x".into()))
        .await
        .unwrap_err();
    assert!(err.is_tls_refused(), "{err:?}");
    within(node.endpoint.wait_stats(|s| s.handshakes_refused == 1)).await;

    // A client that trusts only a foreign CA refuses the node's certificate itself.
    let client = RpcClient::new(
        &foreign.client("bob"),
        node.addr,
        RpcClientOptions::default(),
    )
    .unwrap();
    let err = within(client.call(Service::Client, "x".into()))
        .await
        .unwrap_err();
    assert!(err.is_tls_refused(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused() {
    let pki = Pki::new();
    let node = start(&pki, 1);
    node.endpoint.set_rpc_handler(echo_handler());
    let client = RpcClient::new(
        &pki.expired_client("old"),
        node.addr,
        RpcClientOptions::default(),
    )
    .unwrap();
    let err = within(client.call(Service::Client, "x".into()))
        .await
        .unwrap_err();
    assert!(err.is_tls_refused(), "{err:?}");
    within(node.endpoint.wait_stats(|s| s.handshakes_refused == 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_impersonating_another_id_is_closed_after_hello() {
    let pki = Pki::new();
    let mut node = start(&pki, 1);
    // Store 3's genuine certificate, claiming to be store 2.
    let conn = raw_connect(&pki.node(3), node.addr, 1).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    frame::write_frame(&mut send, &StreamHead::Hello { store_id: 2 }, 1024)
        .await
        .unwrap();
    send.finish().unwrap();
    let _ = recv.read_to_end(1024).await;
    match within(conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                quinn::VarInt::from_u32(wire::CLOSE_HELLO_MISMATCH)
            );
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            assert!(
                reason.contains("claims store 2") && reason.contains("store 3"),
                "{reason}"
            );
        }
        other => panic!("unexpected close: {other:?}"),
    }
    assert_eq!(node.endpoint.stats().hellos_refused, 1);
    assert!(node.events.messages.try_recv_batch().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_cannot_send_raft_messages() {
    let pki = Pki::new();
    let mut node = start(&pki, 1);
    let conn = raw_connect(&pki.client("eve"), node.addr, 1).await;
    let mut send = conn.open_uni().await.unwrap();
    frame::write_frame(&mut send, &StreamHead::Raft, 1024)
        .await
        .unwrap();
    // The node refuses the stream on reading its head, which can be before this second frame
    // is written: the write then fails with the refusal, which is checked below either way.
    let _ = frame::write_frame(&mut send, &vec![msg(1)], 1024).await;
    let stopped = within(send.stopped()).await.unwrap();
    assert_eq!(stopped, Some(quinn::VarInt::from_u32(wire::STREAM_REFUSED)));
    assert_eq!(node.endpoint.stats().raft_streams_refused, 1);
    assert!(node.events.messages.try_recv_batch().is_none());

    // The same client's hello as a store is refused as well.
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    frame::write_frame(&mut send, &StreamHead::Hello { store_id: 5 }, 1024)
        .await
        .unwrap();
    assert!(matches!(
        within(conn.closed()).await,
        quinn::ConnectionError::ApplicationClosed(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_refuses_to_bind_with_another_stores_certificate() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let err = Endpoint::<Msg>::bind(config(1, "127.0.0.1:0".parse().unwrap(), &dir), pki.node(2))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            EndpointError::WrongCertificate {
                expected: 1,
                found: Identity::Store(2)
            }
        ),
        "{err}"
    );
    let err = Endpoint::<Msg>::bind(
        config(1, "127.0.0.1:0".parse().unwrap(), &dir),
        pki.client("c"),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, EndpointError::WrongCertificate { .. }),
        "{err}"
    );
}
