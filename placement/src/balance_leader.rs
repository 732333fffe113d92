//! Balance-leader: moves leadership from the store leading the most regions to the follower
//! store leading the fewest, while the gap between them is over the tolerance. Leaders serve
//! every read and write of their region, so their count is the store's share of the work.
//! Only leadership moves (no data), so it is cheap and quick.

use crate::builder;
use crate::cluster::Cluster;
use crate::controller::{Influence, OperatorController};
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
    // Leaders each store will have once the running operators are done.
    let influence: std::collections::BTreeMap<u64, i64> = cluster
        .stores()
        .map(|s| (s.id, controller.influence(s.id, cluster).leaders))
        .collect();
    let leaders = |s: &StoreInfo| {
        Influence::apply(influence.get(&s.id).copied().unwrap_or(0), s.leader_count)
    };
    // A store being retired may still shed leaders; a silent one cannot be asked to.
    let mut sources: Vec<&StoreInfo> = cluster
        .stores()
        .filter(|s| matches!(s.state, StoreState::Up | StoreState::Offline))
        .filter(|s| s.heard_from_within(now_ms, window) && s.leader_count > 0)
        .filter(|s| controller.has_room(s.id, StoreLimitKind::Leader, settings))
        .collect();
    sources.sort_by_key(|s| (std::cmp::Reverse(leaders(s)), s.id));
    for source in sources {
        // The best move off this store: to the follower store leading the fewest regions.
        let mut best: Option<(u64, u64, u64)> = None;
        for meta in cluster.regions() {
            if meta.leader_store() != Some(source.id)
                || !meta.is_healthy()
                || controller.has_operator(meta.id())
                || settings.balance_exempt.contains(&meta.id())
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
                let candidate = (leaders(target), target.id, meta.id());
                if best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
            }
        }
        let Some((target_leaders, target, region_id)) = best else {
            continue;
        };
        if leaders(source).saturating_sub(target_leaders) <= settings.leader_balance_tolerance {
            continue;
        }
        let meta = cluster.region(region_id)?;
        return builder::transfer_leader(meta, OperatorKind::BalanceLeader, target);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::Step;
    use crate::testkit::{NOW, cluster_with_stores, load_store, meta, stats};

    fn run(cluster: &Cluster, settings: &Settings) -> Option<(u64, u64)> {
        let op = schedule(cluster, &OperatorController::new(), settings, NOW)?;
        assert_eq!(op.kind, OperatorKind::BalanceLeader);
        match op.steps.as_slice() {
            [
                Step::TransferLeader {
                    from_store,
                    to_store,
                },
            ] => Some((*from_store, *to_store)),
            _ => panic!("not a leader transfer: {op:?}"),
        }
    }

    /// Stores leading 1, 2, 3 and 16 regions (fillers each store leads); region 1 led from
    /// store 4 with followers on 1, 2 and 3.
    fn leaders_1_2_3_16() -> Cluster {
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4]);
        for (store, leaders) in [(1, 1), (2, 2), (3, 3), (4, 16)] {
            load_store(&mut cluster, store, leaders);
        }
        cluster
            .region_heartbeat(meta(1, b"a", b"b", &[4, 1, 2, 3], 10), NOW)
            .unwrap();
        cluster
    }

    #[test]
    fn leadership_moves_to_the_follower_store_leading_fewest() {
        let settings = Settings::default();
        let mut cluster = leaders_1_2_3_16();
        assert_eq!(run(&cluster, &settings), Some((4, 1)));
        // A store being retired still sheds its leaders.
        cluster.set_store_state(4, StoreState::Offline);
        assert_eq!(run(&cluster, &settings), Some((4, 1)));
        // Down and offline stores receive none.
        cluster.set_store_state(1, StoreState::Down);
        assert_eq!(run(&cluster, &settings), Some((4, 2)));
        cluster.set_store_state(2, StoreState::Offline);
        assert_eq!(run(&cluster, &settings), Some((4, 3)));
        cluster.set_store_state(3, StoreState::Tombstone);
        assert_eq!(run(&cluster, &settings), None);
    }

    #[test]
    fn a_silent_store_receives_no_leader() {
        let settings = Settings::default();
        let mut cluster = leaders_1_2_3_16();
        let later = NOW + settings.store_heartbeat_window_ms + 1;
        for store in [2, 3, 4] {
            cluster.store_heartbeat(stats(store), later).unwrap();
        }
        let op = schedule(&cluster, &OperatorController::new(), &settings, later).unwrap();
        assert_eq!(
            op.steps,
            vec![Step::TransferLeader {
                from_store: 4,
                to_store: 2
            }]
        );
    }

    #[test]
    fn only_stores_holding_a_follower_are_targets() {
        let settings = Settings::default();
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4]);
        for (store, leaders) in [(1, 0), (2, 2), (3, 3), (4, 16)] {
            load_store(&mut cluster, store, leaders);
        }
        cluster
            .region_heartbeat(meta(1, b"a", b"b", &[4, 2, 3], 10), NOW)
            .unwrap();
        assert_eq!(run(&cluster, &settings), Some((4, 2)));
        // A follower that lags is no place for leadership: the region is left alone.
        let mut lagging = meta(1, b"a", b"b", &[4, 2, 3], 10);
        lagging.pending_peers = vec![lagging.region.peer_on_store(2).unwrap()];
        cluster.region_heartbeat(lagging, NOW).unwrap();
        assert_eq!(run(&cluster, &settings), None);
    }

    #[test]
    fn nothing_moves_within_the_tolerance() {
        let mut settings = Settings::default();
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4]);
        for store in [1, 2, 3, 4] {
            load_store(&mut cluster, store, 10);
        }
        // Store 4 leads 11, the others 10: moving one would only swap the imbalance.
        cluster
            .region_heartbeat(meta(1, b"a", b"b", &[4, 1, 2, 3], 10), NOW)
            .unwrap();
        assert_eq!(run(&cluster, &settings), None);
        cluster
            .region_heartbeat(meta(2, b"b", b"c", &[4, 1, 2, 3], 10), NOW)
            .unwrap();
        // 12 against 10: over the tolerance of 1.
        assert_eq!(run(&cluster, &settings), Some((4, 1)));
        settings.leader_balance_tolerance = 2;
        assert_eq!(run(&cluster, &settings), None);
    }

    #[test]
    fn leader_budgets_and_running_operators_are_respected() {
        let mut settings = Settings {
            leader_moves_per_store: 1,
            ..Settings::default()
        };
        let mut cluster = leaders_1_2_3_16();
        cluster
            .region_heartbeat(meta(2, b"b", b"c", &[4, 1, 2, 3], 10), NOW)
            .unwrap();
        let mut controller = OperatorController::new();
        let m = cluster.region(1).unwrap();
        let busy = crate::builder::transfer_leader(m, OperatorKind::Admin, 2).unwrap();
        controller.add(busy, &cluster, &settings, NOW).unwrap();
        // Store 4 has used its budget on region 1.
        assert!(schedule(&cluster, &controller, &settings, NOW).is_none());
        // With room for two, region 2 moves, and region 1 (which has an operator) does not.
        settings.leader_moves_per_store = 2;
        let op = schedule(&cluster, &controller, &settings, NOW).unwrap();
        assert_eq!(op.region_id, 2);
        assert_eq!(
            op.steps,
            vec![Step::TransferLeader {
                from_store: 4,
                to_store: 1
            }]
        );
    }
}
