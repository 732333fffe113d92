//! Errors of the endpoint, RPC and snapshot paths.

use std::path::PathBuf;
use std::time::Duration;

use crate::certs::CertError;
use crate::frame::FrameError;
use crate::identity::IdentityError;
use crate::tls::TlsConfigError;
use crate::wire::{RemoteError, SnapshotRefusal};

/// Errors setting up an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("binding UDP socket {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("own certificate: {0}")]
    Identity(#[from] IdentityError),
    #[error("own certificate is for {found}, but the endpoint is configured as store {expected}")]
    WrongCertificate {
        expected: u64,
        found: crate::Identity,
    },
    #[error("snapshot directory {path}: {source}")]
    SnapshotDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why a connection to a store could not be established.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("no address known for store {0}")]
    NoAddress(u64),
    #[error("connecting to {addr}: {reason}")]
    Unreachable {
        addr: std::net::SocketAddr,
        reason: String,
    },
    #[error("connecting to {addr}: timed out after {after:?}")]
    Timeout {
        addr: std::net::SocketAddr,
        after: Duration,
    },
    #[error("TLS refused by or of {addr}: {reason}")]
    TlsRefused {
        addr: std::net::SocketAddr,
        reason: String,
    },
    #[error("hello to {addr} refused: {reason}")]
    HelloRefused {
        addr: std::net::SocketAddr,
        reason: String,
    },
    #[error("endpoint is shut down")]
    Closed,
}

/// Errors of an RPC call. Map to CLI exit codes with [`RpcError::is_unreachable`] (3) and
/// [`RpcError::is_tls_refused`] (4).
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("connection lost during the call: {0}")]
    ConnectionLost(String),
    #[error("remote error: {0}")]
    Remote(#[from] RemoteError),
    #[error("malformed reply: {0}")]
    Frame(#[from] FrameError),
    #[error("client setup: {0}")]
    Setup(String),
}

impl RpcError {
    /// The server could not be reached or did not answer in time.
    pub fn is_unreachable(&self) -> bool {
        match self {
            RpcError::Connect(c) => !matches!(
                c,
                ConnectError::TlsRefused { .. } | ConnectError::HelloRefused { .. }
            ),
            RpcError::Timeout(_) | RpcError::ConnectionLost(_) => true,
            _ => false,
        }
    }

    /// One side refused the other's certificate.
    pub fn is_tls_refused(&self) -> bool {
        matches!(
            self,
            RpcError::Connect(ConnectError::TlsRefused { .. } | ConnectError::HelloRefused { .. })
        )
    }
}

/// Errors sending a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot file {path} changed while being sent ({detail})")]
    FileChanged { path: PathBuf, detail: String },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("stream to store {store} failed: {reason}")]
    Stream { store: u64, reason: String },
    #[error("receiver rejected the snapshot: {0}")]
    Rejected(SnapshotRefusal),
    #[error("no acknowledgement within {0:?}")]
    AckTimeout(Duration),
    #[error("malformed acknowledgement: {0}")]
    Frame(#[from] FrameError),
    #[error("blocked by the fault-injection filter")]
    Blocked,
    #[error("dropped by the fault-injection filter")]
    Dropped,
}

impl SnapshotError {
    /// Whether trying the same snapshot again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SnapshotError::Rejected(r) => r.is_retryable(),
            SnapshotError::File { .. } | SnapshotError::FileChanged { .. } => false,
            _ => true,
        }
    }
}
