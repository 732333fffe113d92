//! The envelope a Raft message travels in between stores.

use serde::{Deserialize, Serialize};
use tinykv_storage::{Peer, RegionEpoch};

/// A Raft message for one region's peer on another store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RaftMessage {
    pub region_id: u64,
    pub from_peer: Peer,
    pub to_peer: Peer,
    pub epoch: RegionEpoch,
    pub message: tinykv_raft::Message,
    /// The region's range, so that a store can create a peer for a region it does not host yet.
    pub start_key: Vec<u8>,
    pub end_key: Vec<u8>,
    /// A member's answer to a peer that is no longer in the region and does not know it (it
    /// was removed while cut off): `epoch` is the member's, and the peer destroys itself
    /// (TiKV's GC message). `message` carries nothing then.
    pub is_tombstone: bool,
}
