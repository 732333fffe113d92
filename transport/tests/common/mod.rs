//! Shared fixtures: a throwaway PKI and endpoints bound to 127.0.0.1 on free ports.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tempfile::TempDir;
use time::{Duration as TimeDuration, OffsetDateTime};
use tinykv_transport::certs::store_dns_name;
use tinykv_transport::tls::{self, ConnectionTuning};
use tinykv_transport::*;

/// Generous bound on anything awaited in a test.
pub const WAIT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Msg {
    pub seq: u64,
    pub text: String,
}

pub fn msg(seq: u64) -> Msg {
    Msg {
        seq,
        text: format!("message {seq}"),
    }
}

pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("timed out waiting")
}

pub struct Pki {
    pub ca: ClusterCa,
}

impl Pki {
    pub fn new() -> Self {
        Self {
            ca: ClusterCa::generate("tinykv test CA", Validity::days(1)).unwrap(),
        }
    }

    pub fn node(&self, store: u64) -> TlsIdentity {
        let cert = self
            .ca
            .issue_node(
                store,
                &["127.0.0.1".into(), "localhost".into()],
                Validity::days(1),
            )
            .unwrap();
        TlsIdentity::from_issued(&self.ca, &cert)
    }

    pub fn client(&self, name: &str) -> TlsIdentity {
        let cert = self
            .ca
            .issue_client(name, Role::ReadWrite, Validity::days(1))
            .unwrap();
        TlsIdentity::from_issued(&self.ca, &cert)
    }

    pub fn expired_client(&self, name: &str) -> TlsIdentity {
        let now = OffsetDateTime::now_utc();
        let validity = Validity::between(now - TimeDuration::days(10), now - TimeDuration::days(1));
        let cert = self
            .ca
            .issue_client(name, Role::ReadWrite, validity)
            .unwrap();
        TlsIdentity::from_issued(&self.ca, &cert)
    }
}

pub struct Node {
    pub endpoint: Endpoint<Msg>,
    pub events: Events<Msg>,
    pub addr: SocketAddr,
    pub snap_dir: TempDir,
}

pub fn config(store: u64, addr: SocketAddr, snap_dir: &TempDir) -> EndpointConfig {
    let mut config = EndpointConfig::new(store, addr, snap_dir.path().to_path_buf());
    config.snapshot.max_bytes_per_sec = 0;
    config
}

pub fn start(pki: &Pki, store: u64) -> Node {
    start_with(pki, store, |_| {})
}

pub fn start_with(pki: &Pki, store: u64, adjust: impl FnOnce(&mut EndpointConfig)) -> Node {
    let snap_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(store, "127.0.0.1:0".parse().unwrap(), &snap_dir);
    adjust(&mut cfg);
    let (endpoint, events) = Endpoint::bind(cfg, pki.node(store)).unwrap();
    let addr = endpoint.local_addr().unwrap();
    Node {
        endpoint,
        events,
        addr,
        snap_dir,
    }
}

/// Makes every node know every other node's address.
pub fn introduce(nodes: &[&Node]) {
    for a in nodes {
        for b in nodes {
            if a.endpoint.store_id() != b.endpoint.store_id() {
                a.endpoint.set_peer_addr(b.endpoint.store_id(), b.addr);
            }
        }
    }
}

/// An echo handler that reports who called which service.
pub fn echo_handler() -> Arc<dyn RpcHandler> {
    Arc::new(
        |from: Identity, service: Service, body: bytes::Bytes| async move {
            Ok::<_, String>(bytes::Bytes::from(format!(
                "{from}|{service:?}|{}",
                String::from_utf8_lossy(&body)
            )))
        },
    )
}

/// A bare quinn client using the crate's TLS configuration, for speaking the protocol by hand.
pub fn raw_client(identity: &TlsIdentity) -> quinn::Endpoint {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(
        tls::client_config(identity, &ConnectionTuning::default()).unwrap(),
    );
    ep
}

pub async fn raw_connect(
    identity: &TlsIdentity,
    addr: SocketAddr,
    store: u64,
) -> quinn::Connection {
    let ep = raw_client(identity);
    within(ep.connect(addr, &store_dns_name(store)).unwrap())
        .await
        .unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG dependency and replay.
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
