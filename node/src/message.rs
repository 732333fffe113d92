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
    /// What the envelope says: Raft's `message`, or one of the store's own signals between
    /// peers (then `message` carries nothing).
    pub signal: Signal,
}

/// What a peer tells another besides Raft's traffic (TiKV's extra messages). New variants go
/// at the end: the encoding is positional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    /// The envelope carries a Raft message.
    #[default]
    Raft,
    /// A member's answer to a peer that is no longer in the region and does not know it (it
    /// was removed while cut off): `epoch` is the member's, and the peer destroys itself
    /// (TiKV's GC message).
    Tombstone,
    /// The leader asks a follower to hibernate: the group rests at `index` of `term`.
    Hibernate { term: u64, index: u64 },
    /// The follower rests at the same point and has stopped ticking.
    Hibernated { term: u64, index: u64 },
    /// A follower woke (a request came to it, or a store of the region was lost): the leader
    /// wakes too and sends a heartbeat round, so that no follower's election timer runs out
    /// while the leader is alive.
    WakeUp,
}
