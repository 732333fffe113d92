//! `tinykv-transport`: the network layer of tinykv. QUIC (quinn) with mutual TLS (rustls, ring)
//! against a private cluster CA, carrying Raft messages between stores, client/admin RPCs and
//! snapshot streams, all over one UDP socket per node.
//!
//! It is not Raft-aware: messages are any serde type `M` chosen by the node (an envelope with
//! region and peer ids), RPC bodies are opaque bytes, and snapshot headers carry an opaque
//! context. It depends on no other tinykv crate's runtime types.
//!
//! # Modules
//! - [`certs`]: cluster CA, node and client certificates, PEM files (keys 0600).
//! - [`identity`]: [`Identity`] (`Store(id)` or `Client { name, role }`) derived from the peer
//!   certificate, and the [`Role`] a client certificate grants.
//! - [`tls`]: rustls/quinn configs (TLS 1.3, ring, client certificates required).
//! - [`frame`]: `[version][u32 length][postcard]` frames with typed errors.
//! - [`wire`]: stream heads and replies, i.e. the protocol.
//! - [`endpoint`]: [`Endpoint`]: bind, accept, dial, dispatch; links, RPC and snapshots hang off it.
//! - [`filter`]: fault injection (drop, delay, block) for tests.
//! - `link`, `rpc`, `snapshot`: Raft message links, RPC (and [`RpcClient`]), snapshot streams.
//!
//! # Wiring a node
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use tinykv_transport::*;
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Envelope { region_id: u64, payload: Vec<u8> }
//!
//! let files = TlsFiles { ca: "ca.pem".into(), cert: "store-1.pem".into(), key: "store-1-key.pem".into() };
//! let config = EndpointConfig::new(1, "0.0.0.0:20160".parse()?, "data/snap".into());
//! let (endpoint, mut events) = Endpoint::<Envelope>::bind(config, TlsIdentity::load(&files)?)?;
//! endpoint.set_rpc_handler(Arc::new(|from: Identity, service: Service, body: bytes::Bytes| async move {
//!     Ok::<_, String>(body) // decode with postcard, serve, encode the reply
//! }));
//! endpoint.set_peer_addr(2, "10.0.0.2:20160".parse()?);
//! endpoint.send(2, &Envelope { region_id: 1, payload: vec![] })?; // never blocks
//! while let Some(Received { from_store, message }) = events.messages.recv().await { /* step */ }
//! // events.unreachable -> report_unreachable; events.snapshots -> apply the verified file
//! # Ok(()) }
//! ```
//! Snapshots: `endpoint.send_snapshot(store, SnapshotMeta { .. }, path, Some(&progress_tx))`.
//! Clients: `RpcClient::new(&identity, addr, RpcClientOptions::default())?.call(Service::Client, body)`.

pub mod certs;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod filter;
pub mod frame;
pub mod identity;
mod link;
mod rpc;
mod snapshot;
mod socket;
mod stats;
pub mod tls;
pub mod wire;

pub use certs::{CertError, ClusterCa, IssuedCert, TlsFiles, TlsIdentity, Validity};
pub use config::{EndpointConfig, SnapshotConfig};
pub use endpoint::{ConnectionInfo, Endpoint, Events, Inbox, Received};
pub use error::{ConnectError, EndpointError, RpcError, SnapshotError};
pub use filter::{Action, Direction, Filter, Rule, Traffic, Verdict};
pub use frame::FrameError;
pub use identity::{Identity, IdentityError, Role, UnknownRole};
pub use link::SendError;
pub use rpc::{RpcClient, RpcClientOptions, RpcFuture, RpcHandler};
pub use snapshot::{IncomingSnapshot, ReceivedSnapshot, SnapshotMeta, SnapshotProgress};
pub use stats::Stats;
pub use tls::ConnectionTuning;
pub use wire::{RemoteError, Service, SnapshotHeader, SnapshotRefusal};

/// The QUIC library the configs in [`tls`] are built for, so that a test can open raw streams
/// (garbage frames, foreign certificates) with exactly the version the endpoint speaks.
#[doc(hidden)]
pub use quinn;
