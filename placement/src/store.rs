//! What the placement driver knows of one store: its state in the store lifecycle, what it
//! reported in its last heartbeat, and the tallies of the regions it holds.

use serde::{Deserialize, Serialize};

pub use tinykv_proto::placement::StoreState;

/// A store's own report, carried by its heartbeat. Region counts are not part of it: the
/// driver counts them from region heartbeats, which a store cannot contradict.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    pub store_id: u64,
    pub addr: String,
    /// Bytes of disk the store may use in all.
    pub capacity: u64,
    /// Bytes of disk still free.
    pub available: u64,
}

/// One store as the driver sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    pub id: u64,
    pub addr: String,
    pub state: StoreState,
    pub capacity: u64,
    pub available: u64,
    /// Regions with a peer (voter or learner) on this store.
    pub region_count: u64,
    /// Regions whose leader is on this store.
    pub leader_count: u64,
    /// Sum of the approximate sizes of the regions counted in `region_count`.
    pub region_size: u64,
    /// Peers on this store that their leader reports as lagging.
    pub pending_peer_count: u64,
    pub last_heartbeat_ms: u64,
}

impl StoreInfo {
    /// Whether the store heartbeated within `window_ms` of `now_ms`. A store can be `Up` and
    /// still silent for a while before it is declared `Down`; schedulers do not send it work
    /// in that while.
    pub fn heard_from_within(&self, now_ms: u64, window_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_heartbeat_ms) <= window_ms
    }

    /// Whether the store may receive a new replica or a leader: up and recently heard from.
    pub fn accepts_new_work(&self, now_ms: u64, window_ms: u64) -> bool {
        self.state == StoreState::Up && self.heard_from_within(now_ms, window_ms)
    }

    /// Whether a replica on this store can take part in its region's Raft group: the store
    /// runs (`Up`, or `Offline` while it is drained). A `Down` or `Tombstone` store does not.
    pub fn hosts_live_replicas(&self) -> bool {
        matches!(self.state, StoreState::Up | StoreState::Offline)
    }
}
