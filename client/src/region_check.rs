//! `region check`: the regions whose replicas need attention, as every store describes them.
//! Regions and their peers come from the stores' region lists; which peers are down or
//! pending comes from each region's leader (the only one that knows), and a peer on a store
//! that does not answer counts as down.

use std::collections::{BTreeSet, HashMap};

use tinykv_proto::api::{AdminRequest, AdminResponse, PeerStatus, RegionInfo};
use tinykv_proto::{Peer, PeerRole};

use crate::client::Client;
use crate::error::ClientError;

/// What to look for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionCheck {
    /// Fewer voters than the replica count.
    Missing,
    /// More voters than the replica count.
    Extra,
    /// Peers the leader has not heard from lately, or on a store that does not answer.
    Down,
    /// Peers that cannot catch up from the leader's log (being sent a snapshot, or behind
    /// what it compacted).
    Pending,
}

/// A region that matched, and the peers that made it match (empty for a missing peer).
#[derive(Clone, Debug)]
pub struct RegionProblem {
    pub region: RegionInfo,
    pub peers: Vec<Peer>,
}

impl Client {
    /// The regions `check` finds, in key order. `max_replicas` is the voter count a region
    /// should have.
    pub async fn region_check(
        &self,
        check: RegionCheck,
        max_replicas: usize,
    ) -> Result<Vec<RegionProblem>, ClientError> {
        let regions = self.regions().await?;
        let (leaders, silent) = match check {
            RegionCheck::Missing | RegionCheck::Extra => (HashMap::new(), BTreeSet::new()),
            RegionCheck::Down | RegionCheck::Pending => self.leader_statuses().await,
        };
        let mut out = Vec::new();
        for region in regions {
            let voters = region
                .region
                .peers
                .iter()
                .filter(|p| p.role == PeerRole::Voter)
                .count();
            let leader = leaders.get(&region.region.id);
            let peers: Vec<Peer> = match check {
                RegionCheck::Missing if voters < max_replicas => Vec::new(),
                RegionCheck::Extra if voters > max_replicas => region
                    .region
                    .peers
                    .iter()
                    .filter(|p| p.role == PeerRole::Voter)
                    .copied()
                    .collect(),
                RegionCheck::Down => region
                    .region
                    .peers
                    .iter()
                    .filter(|p| {
                        silent.contains(&p.store_id)
                            || leader.is_some_and(|l| l.down_peers.contains(&p.id))
                    })
                    .copied()
                    .collect(),
                RegionCheck::Pending => region
                    .region
                    .peers
                    .iter()
                    .filter(|p| leader.is_some_and(|l| l.pending_peers.contains(&p.id)))
                    .copied()
                    .collect(),
                RegionCheck::Missing | RegionCheck::Extra => continue,
            };
            let matched = match check {
                RegionCheck::Missing | RegionCheck::Extra => true,
                RegionCheck::Down | RegionCheck::Pending => !peers.is_empty(),
            };
            if matched {
                out.push(RegionProblem { region, peers });
            }
        }
        Ok(out)
    }

    /// Each region's status as its leader reports it (the newest term's, should two claim
    /// it), and the stores that did not answer.
    async fn leader_statuses(&self) -> (HashMap<u64, PeerStatus>, BTreeSet<u64>) {
        let stores: Vec<(u64, std::net::SocketAddr)> = self
            .read_route()
            .stores
            .iter()
            .map(|(id, addr)| (*id, *addr))
            .collect();
        let mut leaders: HashMap<u64, PeerStatus> = HashMap::new();
        let mut silent = BTreeSet::new();
        for (store, addr) in stores {
            match self.admin(addr, AdminRequest::StoreStatus).await {
                Ok(AdminResponse::StoreStatus(status)) => {
                    for peer in status.peers.into_iter().filter(|p| p.role == "leader") {
                        let newer = leaders
                            .get(&peer.state.region)
                            .is_none_or(|known| known.state.term < peer.state.term);
                        if newer {
                            leaders.insert(peer.state.region, peer);
                        }
                    }
                }
                _ => {
                    silent.insert(store);
                }
            }
        }
        (leaders, silent)
    }
}
