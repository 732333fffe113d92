//! Balance-leader: moves leadership from the store leading the most regions to the follower
//! store leading the fewest, while the gap between them is over the tolerance. Leaders serve
//! every read and write of their region, so their count is the store's share of the work.
//! Only leadership moves (no data), so it is cheap and quick.

use crate::builder;
use crate::cluster::Cluster;
use crate::controller::OperatorController;
use crate::operator::{Operator, OperatorKind, StoreLimitKind};
use crate::settings::Settings;
use crate::store::{StoreInfo, StoreState};

/// One leader move, if the leaders are out of balance and a move can be made now.
pub fn schedule(
    cluster: &Cluster,
    controller: &OperatorController,
    settings: &Settings,
    now_ms: u64,
) -> Option<Operator> {
    let window = settings.store_heartbeat_window_ms;
    // A store being retired may still shed leaders; a silent one cannot be asked to.
    let mut sources: Vec<&StoreInfo> = cluster
        .stores()
        .filter(|s| matches!(s.state, StoreState::Up | StoreState::Offline))
        .filter(|s| s.heard_from_within(now_ms, window) && s.leader_count > 0)
        .filter(|s| controller.has_room(s.id, StoreLimitKind::Leader, settings))
        .collect();
    sources.sort_by_key(|s| (std::cmp::Reverse(s.leader_count), s.id));
    for source in sources {
        // The best move off this store: to the follower store leading the fewest regions.
        let mut best: Option<(u64, u64, u64)> = None;
        for meta in cluster.regions() {
            if meta.leader_store() != Some(source.id)
                || !meta.is_healthy()
                || controller.has_operator(meta.id())
            {
                continue;
            }
            for follower in meta.followers() {
                let Some(target) = cluster.store(follower.store_id) else {
                    continue;
                };
                if !target.accepts_new_work(now_ms, window)
                    || !controller.has_room(target.id, StoreLimitKind::Leader, settings)
                {
                    continue;
                }
                let candidate = (target.leader_count, target.id, meta.id());
                if best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
            }
        }
        let Some((target_leaders, target, region_id)) = best else {
            continue;
        };
        if source.leader_count.saturating_sub(target_leaders) <= settings.leader_balance_tolerance {
            continue;
        }
        let meta = cluster.region(region_id)?;
        return builder::transfer_leader(meta, OperatorKind::BalanceLeader, target);
    }
    None
}
