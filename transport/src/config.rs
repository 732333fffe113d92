//! Settings of an endpoint; every field has a production default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::frame::DEFAULT_MAX_FRAME;
use crate::tls::ConnectionTuning;

/// How an endpoint behaves. Build with [`EndpointConfig::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// This node's store id; must match the `store-<id>.tinykv` SAN of its certificate.
    pub store_id: u64,
    /// The UDP address to bind; port 0 picks a free one.
    pub listen_addr: SocketAddr,
    pub tuning: ConnectionTuning,
    /// Largest frame accepted or sent (Raft batches, RPC requests and replies).
    pub max_frame_size: usize,
    /// Outgoing Raft messages buffered per remote store before `send` starts dropping.
    pub peer_queue_capacity: usize,
    /// Received Raft frames buffered for the node; a full inbox applies backpressure to peers.
    pub inbox_capacity: usize,
    /// Dial plus hello must complete within this.
    pub connect_timeout: Duration,
    /// First delay after a failed connection attempt; doubles up to `reconnect_backoff_max`.
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    pub snapshot: SnapshotConfig,
}

impl EndpointConfig {
    pub fn new(store_id: u64, listen_addr: SocketAddr, snapshot_dir: PathBuf) -> Self {
        Self {
            store_id,
            listen_addr,
            tuning: ConnectionTuning::default(),
            max_frame_size: DEFAULT_MAX_FRAME,
            peer_queue_capacity: 4096,
            inbox_capacity: 4096,
            connect_timeout: Duration::from_secs(3),
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
            snapshot: SnapshotConfig::new(snapshot_dir),
        }
    }
}

/// Snapshot streaming limits.
#[derive(Clone, Debug)]
pub struct SnapshotConfig {
    /// Where received snapshots are written.
    pub dir: PathBuf,
    /// Bytes read from the file and written to the stream at a time.
    pub chunk_size: usize,
    /// Shared by all outgoing snapshots of the endpoint; 0 = unlimited.
    pub max_bytes_per_sec: u64,
    /// Further sends wait for a slot.
    pub max_concurrent_sends: usize,
    /// Further receives are refused with a retryable [`crate::SnapshotRefusal::Busy`].
    pub max_concurrent_receives: usize,
    /// How long the sender waits for the receiver's acknowledgement after the last byte.
    pub ack_timeout: Duration,
}

impl SnapshotConfig {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            chunk_size: 1024 * 1024,
            max_bytes_per_sec: 100 * 1024 * 1024,
            max_concurrent_sends: 2,
            max_concurrent_receives: 2,
            ack_timeout: Duration::from_secs(60),
        }
    }
}
