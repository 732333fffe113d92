//! Balance-region: moves a replica from the store holding the most data to the one holding
//! the least. The source is the fullest suitable store; the region on it is one with a
//! lagging peer there if any (that peer is doing least good where it is), else one it
//! follows, else one it leads (which costs a leader transfer too); the target is the
//! emptiest suitable store not holding the region. A move is made only when the source holds
//! more than twice the region's size more than the target: a smaller gap would be reversed
//! by the next round, and the region would bounce between the two.

use crate::builder::{self, PeerIdSource};
use crate::cluster::Cluster;
use crate::controller::OperatorController;
use crate::operator::{Operator, OperatorKind, StoreLimitKind};
use crate::region_meta::RegionMeta;
use crate::settings::Settings;
use crate::store::StoreInfo;
use crate::targets::replica_targets;

/// One replica move, if the stores' data is out of balance and a move can be made now.
pub fn schedule(
    cluster: &Cluster,
    controller: &OperatorController,
    settings: &Settings,
    now_ms: u64,
    ids: &mut dyn PeerIdSource,
) -> Option<Operator> {
    let window = settings.store_heartbeat_window_ms;
    let mut sources: Vec<&StoreInfo> = cluster
        .stores()
        .filter(|s| s.accepts_new_work(now_ms, window))
        .filter(|s| controller.has_room(s.id, StoreLimitKind::Region, settings))
        .collect();
    sources.sort_by_key(|s| (std::cmp::Reverse(s.region_size), s.id));
    for source in sources {
        for meta in candidate_regions(cluster, controller, settings, source.id) {
            let Some(target) = replica_targets(cluster, controller, settings, meta, now_ms)
                .min_by_key(|s| (s.region_size, s.region_count, s.id))
            else {
                continue;
            };
            let gap = source.region_size.saturating_sub(target.region_size);
            if gap <= meta.approximate_size.saturating_mul(2) {
                continue;
            }
            if meta.leader_store() == Some(source.id)
                && !(controller.has_room(source.id, StoreLimitKind::Leader, settings)
                    && controller.has_room(target.id, StoreLimitKind::Leader, settings))
            {
                continue;
            }
            return builder::move_replica(
                meta,
                OperatorKind::BalanceRegion,
                source.id,
                target.id,
                ids,
            );
        }
    }
    None
}

/// Regions whose voter on `store` may move, most worth moving first: those where it lags,
/// then those where it follows, then those it leads; by id within each. Regions that are not
/// at `max_replicas` voters, have a peer down or an operator running are the replica
/// checker's business, not balance's.
fn candidate_regions<'a>(
    cluster: &'a Cluster,
    controller: &OperatorController,
    settings: &Settings,
    store: u64,
) -> Vec<&'a RegionMeta> {
    let mut ranked: Vec<(u8, &RegionMeta)> = cluster
        .regions_on_store(store)
        .filter(|m| m.voter_count() == settings.max_replicas)
        .filter(|m| m.leader.is_some() && m.down_peers.is_empty())
        .filter(|m| !controller.has_operator(m.id()))
        .filter_map(|m| {
            let peer = m.region.peer_on_store(store).filter(|p| !p.is_learner())?;
            let rank = if m.is_pending(peer.id) {
                0
            } else if m.leader != Some(peer.id) {
                1
            } else {
                2
            };
            Some((rank, m))
        })
        .collect();
    ranked.sort_by_key(|&(rank, m)| (rank, m.id()));
    ranked.into_iter().map(|(_, m)| m).collect()
}
