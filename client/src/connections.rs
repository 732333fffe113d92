//! The client's connections to nodes: one RPC client per node, opened on first use and dropped
//! when a call through it fails, and the nodes that failed lately, which routing avoids for a
//! while.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tinykv_transport::{
    ConnectionTuning, RpcClient, RpcClientOptions, RpcError, Service, TlsIdentity,
};
use tokio::time::Instant;

use crate::error::ClientError;
use crate::sync::lock;

/// How long a node that failed a call is avoided while others are available.
const SUSPECT_FOR: Duration = Duration::from_secs(3);
/// A request in flight to a node that died gets no answer and no error: only the connection's
/// idle timeout ends it. QUIC takes the smaller of both sides' idle timeouts, so the client
/// alone can shorten it; with pings this frequent a live node, even a busy one, answers well
/// within it, and a killed leader costs its clients about this long, not the whole request
/// timeout, before they move on to the next leader.
const DEAD_NODE_AFTER: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_millis(250);

/// The connections of one `Client`, shared by its clones.
pub(crate) struct Connections {
    identity: TlsIdentity,
    /// The RPC clients' own timeout: the client's timeout for a whole operation.
    timeout: Duration,
    conns: Mutex<HashMap<SocketAddr, Arc<RpcClient>>>,
    /// Nodes that recently timed out or could not be reached, and since when: routing avoids
    /// them for `SUSPECT_FOR` while others remain, so a dead leader whose connection has not
    /// been declared dead yet does not swallow every request.
    suspects: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Connections {
    pub(crate) fn new(identity: TlsIdentity, timeout: Duration) -> Connections {
        Connections {
            identity,
            timeout,
            conns: Mutex::new(HashMap::new()),
            suspects: Mutex::new(HashMap::new()),
        }
    }

    fn rpc(&self, addr: SocketAddr) -> Result<Arc<RpcClient>, ClientError> {
        let mut conns = lock(&self.conns);
        if let Some(c) = conns.get(&addr) {
            return Ok(c.clone());
        }
        let options = RpcClientOptions {
            timeout: self.timeout,
            tuning: ConnectionTuning {
                keep_alive: KEEP_ALIVE,
                idle_timeout: DEAD_NODE_AFTER,
                ..ConnectionTuning::default()
            },
            ..RpcClientOptions::default()
        };
        let c = Arc::new(RpcClient::new(&self.identity, addr, options).map_err(|e| {
            ClientError::Unreachable {
                addrs: addr.to_string(),
                detail: e.to_string(),
            }
        })?);
        conns.insert(addr, c.clone());
        Ok(c)
    }

    /// Calls `service` on the node at `addr`, connecting first if needed.
    pub(crate) async fn call(
        &self,
        addr: SocketAddr,
        service: Service,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let rpc = self.rpc(addr).map_err(|e| RpcError::Setup(e.to_string()))?;
        rpc.call_with_timeout(service, body, timeout).await
    }

    /// Forgets `addr`'s connection and avoids it for a while.
    pub(crate) fn suspect(&self, addr: SocketAddr) {
        lock(&self.suspects).insert(addr, Instant::now());
        lock(&self.conns).remove(&addr);
    }

    pub(crate) fn is_suspect(&self, addr: &SocketAddr) -> bool {
        let mut suspects = lock(&self.suspects);
        suspects.retain(|_, since| since.elapsed() < SUSPECT_FOR);
        suspects.contains_key(addr)
    }
}
