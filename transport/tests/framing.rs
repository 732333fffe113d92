//! Malformed frames close only the stream they arrive on; the endpoint keeps serving.

mod common;

use common::*;
use tinykv_transport::frame::{self, FRAME_VERSION};
use tinykv_transport::wire::{self, HelloReply, StreamHead};
use tinykv_transport::*;

fn rpc_head() -> Vec<u8> {
    frame::encode(
        &StreamHead::Rpc {
            service: Service::Client,
            body: "ok".into(),
        },
        1024,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_heads_reset_their_stream_and_the_endpoint_keeps_serving() {
    let pki = Pki::new();
    let node = start(&pki, 1);
    node.endpoint.set_rpc_handler(echo_handler());
    let conn = raw_connect(&pki.client("fuzzer"), node.addr, 1).await;

    let mut oversized = vec![FRAME_VERSION];
    oversized.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut unknown_version = rpc_head();
    unknown_version[0] = FRAME_VERSION + 1;
    let truncated = rpc_head()[..7].to_vec();
    let mut garbage = vec![FRAME_VERSION, 0, 0, 0, 4];
    garbage.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let cases = [
        ("truncated", truncated),
        ("oversized", oversized),
        ("garbage", garbage),
        ("unknown version", unknown_version),
    ];

    for (i, (name, bytes)) in cases.iter().enumerate() {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        let _ = send.finish();
        let err = within(recv.read_to_end(1024)).await.unwrap_err();
        assert!(
            matches!(err, quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)) if code == quinn::VarInt::from_u32(wire::STREAM_FRAME_ERROR)),
            "{name}: {err:?}"
        );
        within(node.endpoint.wait_stats(|s| s.frame_errors == i as u64 + 1)).await;

        // The same connection still gets answers.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&rpc_head()).await.unwrap();
        send.finish().unwrap();
        let reply: wire::RpcReply = within(frame::read_required(&mut recv, 1024)).await.unwrap();
        assert_eq!(
            reply.unwrap(),
            "client \"fuzzer\" (readwrite)|Client|ok",
            "after {name}"
        );
    }
    assert!(conn.close_reason().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_raft_stream_closes_that_stream_only() {
    let pki = Pki::new();
    let mut node = start(&pki, 1);
    let conn = raw_connect(&pki.node(9), node.addr, 1).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    frame::write_frame(&mut send, &StreamHead::Hello { store_id: 9 }, 1024)
        .await
        .unwrap();
    send.finish().unwrap();
    assert_eq!(
        within(frame::read_required::<_, HelloReply>(&mut recv, 1024))
            .await
            .unwrap(),
        HelloReply::Accepted
    );

    let mut raft = conn.open_uni().await.unwrap();
    frame::write_frame(&mut raft, &StreamHead::Raft, 1024)
        .await
        .unwrap();
    frame::write_frame(&mut raft, &vec![msg(1)], 1024)
        .await
        .unwrap();
    raft.write_all(&[FRAME_VERSION, 0, 0, 0, 2, 0xff, 0xff])
        .await
        .unwrap();
    let got = within(node.events.messages.recv()).await.unwrap();
    assert_eq!(
        got,
        Received {
            from_store: 9,
            message: msg(1)
        }
    );
    assert_eq!(
        within(raft.stopped()).await.unwrap(),
        Some(quinn::VarInt::from_u32(wire::STREAM_FRAME_ERROR))
    );
    assert_eq!(node.endpoint.stats().frame_errors, 1);

    let mut raft = conn.open_uni().await.unwrap();
    frame::write_frame(&mut raft, &StreamHead::Raft, 1024)
        .await
        .unwrap();
    frame::write_frame(&mut raft, &vec![msg(2), msg(3)], 1024)
        .await
        .unwrap();
    for seq in [2, 3] {
        assert_eq!(
            within(node.events.messages.recv())
                .await
                .unwrap()
                .message
                .seq,
            seq
        );
    }
}
