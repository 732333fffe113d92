//! Test fixtures: stores, regions and clusters in the shapes the scheduler tests need.

use tinykv_proto::region::{Peer, PeerRole, Region, RegionEpoch};

use crate::cluster::Cluster;
use crate::operator::{Operator, Step};
use crate::region_meta::RegionMeta;
use crate::store::StoreStats;

/// The clock of most tests: late enough that "silent for 30 minutes" can be in the past.
pub const NOW: u64 = 10 * 60 * 60 * 1000;

/// A store that never heartbeats: filler regions name it so they have two voters and no
/// scheduler moves them.
pub const GHOST_STORE: u64 = 999;

pub fn stats(store_id: u64) -> StoreStats {
    StoreStats {
        store_id,
        addr: format!("10.0.0.{store_id}:20160"),
        capacity: 1 << 40,
        available: 1 << 39,
    }
}

/// Peer id of region `region_id`'s peer on `store_id` in these fixtures.
pub fn peer_id(region_id: u64, store_id: u64) -> u64 {
    region_id * 100 + store_id
}

/// Region `id` over `[start, end)` with voters on `stores`, led by the first, at epoch
/// (conf_ver 1, version 1).
pub fn meta(id: u64, start: &[u8], end: &[u8], stores: &[u64], size: u64) -> RegionMeta {
    let peers: Vec<Peer> = stores
        .iter()
        .map(|&s| Peer::voter(peer_id(id, s), s))
        .collect();
    let leader = peers.first().map(|p| p.id);
    RegionMeta::new(
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: RegionEpoch {
                conf_ver: 1,
                version: 1,
            },
            peers,
        },
        leader,
        size,
    )
}

/// Peer ids counting up from `first`.
pub fn ids_from(first: u64) -> impl FnMut() -> Option<u64> {
    let mut next = first;
    move || {
        next += 1;
        Some(next - 1)
    }
}

/// A cluster whose stores `store_ids` all heartbeated at `NOW`.
pub fn cluster_with_stores(store_ids: &[u64]) -> Cluster {
    let mut cluster = Cluster::new();
    for &id in store_ids {
        cluster.store_heartbeat(stats(id), NOW).unwrap();
    }
    cluster
}

/// Gives `store_id` `count` more regions of size 10 (filler regions no scheduler moves: their
/// second voter is on the ghost store, so they are never at `max_replicas` of 1, 3 or 5 and
/// the replica checker is not run on them by these tests).
pub fn load_store(cluster: &mut Cluster, store_id: u64, count: u64) {
    for i in 0..count {
        let id = 10_000 + store_id * 1_000 + i;
        let start = format!("x{id:08}").into_bytes();
        let end = format!("x{id:08}~").into_bytes();
        let filler = meta(id, &start, &end, &[store_id, GHOST_STORE], 10);
        cluster.region_heartbeat(filler, NOW).unwrap();
    }
}

/// The region as the node leaves it after carrying out `step`: each membership change moves
/// `conf_ver` by one; a new learner starts pending (it has no data yet).
pub fn apply_step(meta: &RegionMeta, step: Step) -> RegionMeta {
    let mut next = meta.clone();
    match step {
        Step::AddLearner { store, peer_id } => {
            let learner = Peer::learner(peer_id, store);
            next.region.peers.push(learner);
            next.pending_peers.push(learner);
            next.region.epoch.conf_ver += 1;
        }
        Step::PromoteLearner { peer_id, .. } => {
            for p in next.region.peers.iter_mut().filter(|p| p.id == peer_id) {
                p.role = PeerRole::Voter;
            }
            next.region.epoch.conf_ver += 1;
        }
        Step::RemovePeer { store } => {
            next.region.peers.retain(|p| p.store_id != store);
            next.pending_peers.retain(|p| p.store_id != store);
            next.down_peers.retain(|p| p.store_id != store);
            next.region.epoch.conf_ver += 1;
        }
        Step::TransferLeader { to_store, .. } => {
            next.leader = next.region.peer_on_store(to_store).map(|p| p.id);
        }
    }
    next
}

/// The learner on `store` has caught up.
pub fn caught_up(meta: &RegionMeta, store: u64) -> RegionMeta {
    let mut next = meta.clone();
    next.pending_peers.retain(|p| p.store_id != store);
    next
}

/// The stores `meta` has voters on, sorted.
pub fn voter_stores(meta: &RegionMeta) -> Vec<u64> {
    let mut stores: Vec<u64> = meta.voters().map(|p| p.store_id).collect();
    stores.sort();
    stores
}

/// The (source, target) of an operator that moves a replica, and whether it moves the
/// leader on the way.
pub fn move_of(op: &Operator) -> (Option<u64>, Option<u64>, bool) {
    let mut source = None;
    let mut target = None;
    let mut transfers = false;
    for step in &op.steps {
        match *step {
            Step::AddLearner { store, .. } => target = Some(store),
            Step::RemovePeer { store } => source = Some(store),
            Step::TransferLeader { .. } => transfers = true,
            Step::PromoteLearner { .. } => {}
        }
    }
    (source, target, transfers)
}
