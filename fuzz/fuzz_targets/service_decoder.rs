//! The node's service messages as they arrive from the network: client and admin requests, their
//! answers (which a client decodes), the Raft envelope between stores, and the commands the node
//! reads back out of committed log entries. Decoding is an error or a value that encodes back to
//! the same value; what the node prints about a decoded value (errors, command summaries) must
//! not panic either.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tinykv_node::cmd::{ChangePeer, RaftCmd};
use tinykv_node::message::RaftMessage;
use tinykv_proto::api::{self, AdminRequest, AdminResult, KvRequest, KvResult};
use tinykv_raft::ConfChange;

fn check<T>(what: &'static str, bytes: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match api::decode::<T>(what, bytes) {
        Ok(value) => {
            let again: T = api::decode(what, &api::encode(&value)).expect("encoded value decodes");
            assert_eq!(again, value);
            Some(value)
        }
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains(what),
                "error does not say what was read: {text}"
            );
            None
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else {
        return;
    };
    match selector % 8 {
        0 => {
            let _ = check::<KvRequest>("kv request", bytes);
        }
        1 => {
            let _ = check::<AdminRequest>("admin request", bytes);
        }
        2 => {
            let _ = check::<RaftMessage>("snapshot context", bytes);
        }
        3 => {
            if let Some(Err(e)) = check::<KvResult>("kv answer", bytes) {
                let _ = e.to_string();
            }
        }
        4 => {
            if let Some(Err(e)) = check::<AdminResult>("admin answer", bytes) {
                let _ = e.to_string();
            }
        }
        5 => {
            if let Ok(cmd) = RaftCmd::decode(bytes) {
                assert_eq!(
                    RaftCmd::decode(&cmd.encode()).expect("encoded command"),
                    cmd
                );
                let _ = cmd.summary();
            }
        }
        6 => {
            if let Ok(change) = ChangePeer::decode(bytes) {
                assert_eq!(
                    ChangePeer::decode(&change.encode()).expect("encoded change"),
                    change
                );
            }
        }
        _ => {
            let data = Bytes::copy_from_slice(bytes);
            if let Some(cc) = ConfChange::decode(&data) {
                // This format is fixed-width with no slack, so the bytes come back exactly.
                assert_eq!(cc.encode(), data);
            }
        }
    }
});
