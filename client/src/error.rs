//! Why a client operation failed, and what a transport error means for the caller: each error
//! says whether the operation may have taken effect.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tinykv_proto::api::KvError;
use tinykv_transport::{CertError, RpcError};

/// Why an operation failed. Each says whether the operation may have taken effect.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no endpoint given: pass -e HOST:PORT or set TINYKV_ENDPOINTS")]
    NoEndpoints,
    #[error(transparent)]
    Tls(#[from] CertError),
    #[error("cannot reach {}: {detail}", nodes(addrs))]
    Unreachable { addrs: String, detail: String },
    #[error("the node at {addr} refused the TLS handshake: {detail}")]
    TlsRefused { addr: SocketAddr, detail: String },
    #[error("no answer within {0:?}; a write may or may not have taken effect")]
    Timeout(Duration),
    #[error(
        "the connection to {addr} was lost after the write was sent; it may or may not have taken effect"
    )]
    Ambiguous { addr: SocketAddr },
    #[error("{0}")]
    Kv(KvError),
    #[error("bad answer from {addr}: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
    #[error(transparent)]
    Backup(#[from] crate::backup_file::BackupError),
}

/// `addrs` (comma separated) as the message names them.
fn nodes(addrs: &str) -> String {
    if addrs.contains(',') {
        format!("any of the nodes {addrs}")
    } else {
        format!("the node at {addrs}")
    }
}

impl ClientError {
    /// True when no node could be reached or none answered in time (exit code 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::Timeout(_) | ClientError::NoEndpoints
        ) || matches!(self, ClientError::Kv(KvError::Timeout))
    }

    /// True when a certificate was refused (exit code 4).
    pub fn is_tls_refused(&self) -> bool {
        matches!(self, ClientError::TlsRefused { .. } | ClientError::Tls(_))
    }

    /// True when the node refused the request for the client certificate's role (exit code 4).
    /// Never retried: another attempt, at any node, would be refused the same way.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, ClientError::Kv(KvError::PermissionDenied { .. }))
    }
}

/// What a failed call to `addr` means for the caller. A `write` whose connection was lost after
/// it was sent is `Ambiguous`: the node may have applied it before the answer was lost.
pub(crate) fn rpc_error(addr: SocketAddr, e: RpcError, write: bool) -> ClientError {
    if e.is_tls_refused() {
        return ClientError::TlsRefused {
            addr,
            detail: e.to_string(),
        };
    }
    match e {
        RpcError::Timeout(d) => ClientError::Timeout(d),
        RpcError::ConnectionLost(_) if write => ClientError::Ambiguous { addr },
        RpcError::Remote(r) => ClientError::Protocol {
            addr,
            detail: r.to_string(),
        },
        RpcError::Frame(f) => ClientError::Protocol {
            addr,
            detail: f.to_string(),
        },
        other => ClientError::Unreachable {
            addrs: addr.to_string(),
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_node_is_named_as_one_or_as_many() {
        let one = ClientError::Unreachable {
            addrs: "10.0.0.1:20160".into(),
            detail: "timed out".into(),
        };
        assert_eq!(
            one.to_string(),
            "cannot reach the node at 10.0.0.1:20160: timed out"
        );
        let many = ClientError::Unreachable {
            addrs: "10.0.0.1:20160, 10.0.0.2:20160".into(),
            detail: "timed out".into(),
        };
        assert_eq!(
            many.to_string(),
            "cannot reach any of the nodes 10.0.0.1:20160, 10.0.0.2:20160: timed out"
        );
    }
}
