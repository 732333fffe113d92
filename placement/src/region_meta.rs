//! What a region's leader reports in its heartbeat: the region itself, who leads it, which of
//! its peers lag or are unreachable, and how big it is.

use serde::{Deserialize, Serialize};
use tinykv_proto::region::{Peer, Region};

/// One region as its leader last reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionMeta {
    pub region: Region,
    /// Peer id of the leader that sent the heartbeat. `None` only in a report built by hand
    /// (a region whose leader is unknown is treated as having no leader to instruct).
    pub leader: Option<u64>,
    /// Peers whose log lags far behind the leader's (catching up, or by snapshot).
    pub pending_peers: Vec<Peer>,
    /// Peers the leader has not heard from for a while.
    pub down_peers: Vec<Peer>,
    /// Bytes of user data, as last measured.
    pub approximate_size: u64,
    pub approximate_keys: u64,
    /// Bytes written since the previous heartbeat.
    pub written_bytes: u64,
}

impl RegionMeta {
    /// A report with no lagging or unreachable peers.
    pub fn new(region: Region, leader: Option<u64>, approximate_size: u64) -> RegionMeta {
        RegionMeta {
            region,
            leader,
            approximate_size,
            ..RegionMeta::default()
        }
    }

    pub fn id(&self) -> u64 {
        self.region.id
    }

    pub fn leader_peer(&self) -> Option<Peer> {
        let leader = self.leader?;
        self.region.peers.iter().copied().find(|p| p.id == leader)
    }

    pub fn leader_store(&self) -> Option<u64> {
        self.leader_peer().map(|p| p.store_id)
    }

    pub fn voters(&self) -> impl Iterator<Item = Peer> + '_ {
        self.region
            .peers
            .iter()
            .copied()
            .filter(|p| !p.is_learner())
    }

    pub fn learners(&self) -> impl Iterator<Item = Peer> + '_ {
        self.region.peers.iter().copied().filter(|p| p.is_learner())
    }

    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// Voters other than the leader.
    pub fn followers(&self) -> impl Iterator<Item = Peer> + '_ {
        let leader = self.leader;
        self.voters().filter(move |p| Some(p.id) != leader)
    }

    pub fn holds_store(&self, store_id: u64) -> bool {
        self.region.peers.iter().any(|p| p.store_id == store_id)
    }

    pub fn is_pending(&self, peer_id: u64) -> bool {
        self.pending_peers.iter().any(|p| p.id == peer_id)
    }

    pub fn is_reported_down(&self, peer_id: u64) -> bool {
        self.down_peers.iter().any(|p| p.id == peer_id)
    }

    /// Whether every peer keeps up: schedulers that only rebalance leave a region alone
    /// until it is, since moving a lagging region only adds to its lag.
    pub fn is_healthy(&self) -> bool {
        self.pending_peers.is_empty() && self.down_peers.is_empty()
    }
}
