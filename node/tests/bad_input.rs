//! Input from a file or the network gets an error, never a panic: arbitrary YAML and bytes for
//! the config parser, the service messages and the Raft envelope.

use proptest::prelude::*;
use tinykv_node::cmd::{ChangePeer, RaftCmd};
use tinykv_node::config::NodeConfig;
use tinykv_node::message::RaftMessage;
use tinykv_proto::api::{self, AdminRequest, KvRequest, KvResult};

/// Text that looks like our YAML: known and unknown keys, indentation, values of every shape.
fn yamlish() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "store-id",
        "listen-addr",
        "data-dir",
        "initial-cluster",
        "raft",
        "  base-tick-interval",
        "  heartbeat-ticks",
        "  max-size-per-msg",
        "snapshot",
        "  chunk-size",
        "tls",
        "  ca",
        "typo",
        "request-timeout",
        "- ",
    ]);
    let value = prop::sample::select(vec![
        "",
        "1",
        "0",
        "-1",
        "18446744073709551616",
        "100MiB",
        "1s",
        "soon",
        "[",
        "]",
        "{a: 1}",
        "127.0.0.1:1",
        "1=127.0.0.1:2",
        "~",
        "null",
        "'x'",
        "\"\\u0000\"",
        "&a",
        "*a",
        "!!binary AA",
    ]);
    prop::collection::vec((key, value), 0..12).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6261_645f),
        ..ProptestConfig::default()
    })]

    #[test]
    fn config_text_never_panics(text in yamlish()) {
        if let Ok(c) = NodeConfig::parse(&text) {
            let _ = c.validate();
        }
    }

    #[test]
    fn arbitrary_config_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = NodeConfig::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_service_bytes_are_errors_not_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = api::decode::<KvRequest>("kv request", &bytes);
        let _ = api::decode::<KvResult>("kv answer", &bytes);
        let _ = api::decode::<AdminRequest>("admin request", &bytes);
        let _ = api::decode::<RaftMessage>("raft message", &bytes);
        let _ = RaftCmd::decode(&bytes);
        let _ = ChangePeer::decode(&bytes);
    }
}

#[test]
fn a_truncated_request_is_an_error_naming_what_it_was() {
    let req = KvRequest {
        region_id: 7,
        epoch: None,
        op: api::KvOp::Put {
            key: "k".into(),
            value: vec![b'v'; 64].into(),
        },
    };
    let bytes = api::encode(&req);
    for cut in 0..bytes.len() {
        let err = api::decode::<KvRequest>("kv request", &bytes[..cut]).unwrap_err();
        assert!(err.to_string().contains("kv request"), "{err}");
    }
}
