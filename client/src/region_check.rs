//! `region check`: the regions whose replicas need attention. The placement driver answers it
//! from what every region's leader reported to it. Without a driver, regions and their peers
//! come from the stores' region lists, which peers are down or pending from each region's
//! leader (the only one that knows), and a peer on a store that does not answer counts as
//! down.

use std::collections::{BTreeSet, HashMap};

use tinykv_proto::api::{AdminRequest, AdminResponse, PeerStatus, RegionInfo};
use tinykv_proto::placement::{PlacementAnswer, PlacementRequest, StoreState};
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

/// A region with the peers its leader reports lagging and the peers counted down.
struct Observed {
    region: RegionInfo,
    down: BTreeSet<u64>,
    pending: BTreeSet<u64>,
}

impl Client {
    /// The regions `check` finds, in key order. `max_replicas` is the voter count a region
    /// should have. The placement driver answers when it runs (two requests: what every
    /// leader and store reported to it); else every store is asked.
    pub async fn region_check(
        &self,
        check: RegionCheck,
        max_replicas: usize,
    ) -> Result<Vec<RegionProblem>, ClientError> {
        let observed = match self.observed_by_driver().await {
            Some(o) => o,
            None => self.observed_by_stores(check).await?,
        };
        Ok(observed
            .into_iter()
            .filter_map(|o| classify(o, check, max_replicas))
            .collect())
    }

    /// The regions as the placement driver knows them; a peer is down when its leader says so
    /// or its store is Down. `None` when no driver answers.
    async fn observed_by_driver(&self) -> Option<Vec<Observed>> {
        let Some(PlacementAnswer::Regions(regions)) =
            self.ask_driver(PlacementRequest::Regions).await
        else {
            return None;
        };
        let Some(PlacementAnswer::Stores(stores)) = self.ask_driver(PlacementRequest::Stores).await
        else {
            return None;
        };
        let down_stores: BTreeSet<u64> = stores
            .iter()
            .filter(|s| matches!(s.state, StoreState::Down | StoreState::Tombstone))
            .map(|s| s.id)
            .collect();
        Some(
            regions
                .into_iter()
                .map(|d| {
                    let mut down: BTreeSet<u64> = d.down_peers.iter().copied().collect();
                    down.extend(
                        d.region
                            .peers
                            .iter()
                            .filter(|p| down_stores.contains(&p.store_id))
                            .map(|p| p.id),
                    );
                    Observed {
                        down,
                        pending: d.pending_peers.iter().copied().collect(),
                        region: RegionInfo {
                            region: d.region,
                            leader_store: d.leader_store,
                            applied: 0,
                            approximate_size: d.approximate_size,
                            approximate_keys: d.approximate_keys,
                        },
                    }
                })
                .collect(),
        )
    }

    /// The regions as the stores list them, with what their leaders report; a peer on a store
    /// that does not answer counts as down.
    async fn observed_by_stores(&self, check: RegionCheck) -> Result<Vec<Observed>, ClientError> {
        let regions = self.regions().await?;
        let (leaders, silent) = match check {
            RegionCheck::Missing | RegionCheck::Extra => (HashMap::new(), BTreeSet::new()),
            RegionCheck::Down | RegionCheck::Pending => self.leader_statuses().await,
        };
        Ok(regions
            .into_iter()
            .map(|region| {
                let leader = leaders.get(&region.region.id);
                let down = region
                    .region
                    .peers
                    .iter()
                    .filter(|p| {
                        silent.contains(&p.store_id)
                            || leader.is_some_and(|l| l.down_peers.contains(&p.id))
                    })
                    .map(|p| p.id)
                    .collect();
                let pending = leader
                    .map(|l| l.pending_peers.iter().copied().collect())
                    .unwrap_or_default();
                Observed {
                    region,
                    down,
                    pending,
                }
            })
            .collect())
    }

    /// Each region's status as its leader reports it (the newest term's, should two claim
    /// it), and the stores that did not answer.
    async fn leader_statuses(&self) -> (HashMap<u64, PeerStatus>, BTreeSet<u64>) {
        let (ids, addrs): (Vec<u64>, Vec<std::net::SocketAddr>) = self
            .read_route()
            .stores
            .iter()
            .map(|(id, addr)| (*id, *addr))
            .unzip();
        let answers = self.admin_each(&addrs, AdminRequest::StoreStatus).await;
        let mut leaders: HashMap<u64, PeerStatus> = HashMap::new();
        let mut silent = BTreeSet::new();
        for (store, (_, answer)) in ids.into_iter().zip(answers) {
            match answer {
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

/// Whether `o` is a region `check` looks for, with the peers that made it match.
fn classify(o: Observed, check: RegionCheck, max_replicas: usize) -> Option<RegionProblem> {
    let peers = &o.region.region.peers;
    let voters = peers.iter().filter(|p| p.role == PeerRole::Voter).count();
    let matching = |set: &BTreeSet<u64>| -> Vec<Peer> {
        peers
            .iter()
            .filter(|p| set.contains(&p.id))
            .copied()
            .collect()
    };
    let matched = match check {
        RegionCheck::Missing if voters < max_replicas => Vec::new(),
        RegionCheck::Extra if voters > max_replicas => peers
            .iter()
            .filter(|p| p.role == PeerRole::Voter)
            .copied()
            .collect(),
        RegionCheck::Down => match matching(&o.down) {
            m if m.is_empty() => return None,
            m => m,
        },
        RegionCheck::Pending => match matching(&o.pending) {
            m if m.is_empty() => return None,
            m => m,
        },
        RegionCheck::Missing | RegionCheck::Extra => return None,
    };
    Some(RegionProblem {
        region: o.region,
        peers: matched,
    })
}
