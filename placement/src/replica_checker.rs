//! The replica checker: keeps every region at `max_replicas` voters on stores that run.
//! In order of urgency, a region short of voters gets one; a region with too many loses the
//! least useful; a region with a voter on a store that is down (or reported down by the
//! leader) or being retired has that voter replaced.
//!
//! Learners are left alone: a learner that no operator of the driver's made belongs to
//! someone (a store joining, an operator adding a replica by hand), and promoting or removing
//! it here would fight them. A pending voter is not replaced either: it is catching up, and a
//! replacement would have to catch up from further behind. It is only the first to go when
//! the region has a voter too many.

use crate::builder::{self, PeerIdSource};
use crate::cluster::Cluster;
use crate::controller::{OperatorController, new_leader_for, removal_keeps_replicas};
use crate::operator::{Operator, OperatorKind, StoreLimitKind};
use crate::region_meta::RegionMeta;
use crate::settings::Settings;
use crate::store::{StoreInfo, StoreState};
use crate::targets::replica_targets;

/// The operator `meta` needs, if any (and if it can be built now).
pub fn check_region(
    cluster: &Cluster,
    controller: &OperatorController,
    settings: &Settings,
    meta: &RegionMeta,
    now_ms: u64,
    ids: &mut dyn PeerIdSource,
) -> Option<Operator> {
    if controller.has_operator(meta.id()) || meta.leader_store().is_none() {
        return None;
    }
    let voters = meta.voter_count();
    if voters < settings.max_replicas {
        let target = best_target(cluster, controller, settings, meta, now_ms)?;
        return builder::add_replica(meta, OperatorKind::Replica, target, ids);
    }
    if voters > settings.max_replicas {
        return remove_extra(cluster, controller, settings, meta);
    }
    replace_unfit(cluster, controller, settings, meta, now_ms, ids)
}

/// The store a new replica goes to: the one with the fewest regions, then the least data.
fn best_target(
    cluster: &Cluster,
    controller: &OperatorController,
    settings: &Settings,
    meta: &RegionMeta,
    now_ms: u64,
) -> Option<u64> {
    replica_targets(cluster, controller, settings, meta, now_ms)
        .min_by_key(|s| (s.region_count, s.region_size, s.id))
        .map(|s| s.id)
}

/// How much a voter is worth keeping, lowest first: down, then on a store being retired (or
/// gone, or unknown), then lagging, then on the fullest store.
fn keep_rank(cluster: &Cluster, meta: &RegionMeta, store: Option<&StoreInfo>, peer_id: u64) -> u8 {
    let live = meta
        .region
        .peers
        .iter()
        .find(|p| p.id == peer_id)
        .is_some_and(|p| cluster.is_live_voter(meta, p));
    if !live {
        0
    } else if store.is_none_or(|s| s.state != StoreState::Up) {
        1
    } else if meta.is_pending(peer_id) {
        2
    } else {
        3
    }
}

fn remove_extra(
    cluster: &Cluster,
    controller: &OperatorController,
    settings: &Settings,
    meta: &RegionMeta,
) -> Option<Operator> {
    let mut candidates: Vec<_> = meta
        .voters()
        .map(|p| {
            let store = cluster.store(p.store_id);
            let rank = keep_rank(cluster, meta, store, p.id);
            let (size, count) =
                store.map_or((u64::MAX, u64::MAX), |s| (s.region_size, s.region_count));
            // Lowest rank first; among equals, the fullest store first.
            (
                rank,
                std::cmp::Reverse((size, count, p.store_id)),
                p.store_id,
            )
        })
        .collect();
    candidates.sort();
    candidates.into_iter().find_map(|(_, _, store_id)| {
        if !removal_keeps_replicas(cluster, meta, store_id, settings)
            || !controller.has_room(store_id, StoreLimitKind::Region, settings)
        {
            return None;
        }
        let new_leader = if meta.leader_store() == Some(store_id) {
            let to = new_leader_for(cluster, meta, store_id)?;
            if !controller.has_room(to, StoreLimitKind::Leader, settings)
                || !controller.has_room(store_id, StoreLimitKind::Leader, settings)
            {
                return None;
            }
            Some(to)
        } else {
            None
        };
        builder::remove_replica(meta, OperatorKind::Replica, store_id, new_leader)
    })
}

/// Replaces a voter that is down first, then one on a store that is not `Up`.
fn replace_unfit(
    cluster: &Cluster,
    controller: &OperatorController,
    settings: &Settings,
    meta: &RegionMeta,
    now_ms: u64,
    ids: &mut dyn PeerIdSource,
) -> Option<Operator> {
    let mut unfit: Vec<_> = meta
        .voters()
        .map(|p| {
            let rank = keep_rank(cluster, meta, cluster.store(p.store_id), p.id);
            (rank, p.store_id)
        })
        .filter(|&(rank, _)| rank < 2)
        .collect();
    unfit.sort();
    let (_, source) = *unfit.first()?;
    if !controller.has_room(source, StoreLimitKind::Region, settings) {
        return None;
    }
    let target = best_target(cluster, controller, settings, meta, now_ms)?;
    if meta.leader_store() == Some(source)
        && !(controller.has_room(source, StoreLimitKind::Leader, settings)
            && controller.has_room(target, StoreLimitKind::Leader, settings))
    {
        return None;
    }
    builder::move_replica(meta, OperatorKind::Replica, source, target, ids)
}
