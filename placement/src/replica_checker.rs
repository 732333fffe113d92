//! The replica checker: keeps every region at `max_replicas` voters on stores that run.
//! In order of urgency, a region short of voters gets one; a region with too many loses the
//! least useful; a region with a voter on a store that is down (or reported down by the
//! leader) or being retired has that voter replaced.
//!
//! Learners are left alone, but for those an expired operator of the driver's left behind
//! (removed first, as they block their store): any other learner belongs to someone (a store
//! joining, an operator adding a replica by hand), and promoting or removing it here would
//! fight them. A pending voter is not replaced either: it is catching up, and a
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
    if let Some(learner) = controller.abandoned_learner(meta) {
        if !controller.has_room(learner.store_id, StoreLimitKind::Region, settings) {
            return None;
        }
        return builder::remove_replica(meta, OperatorKind::Replica, learner.store_id, None);
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
            || !controller.store_has_room(cluster, store_id, StoreLimitKind::Region, settings)
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
    if !controller.store_has_room(cluster, source, StoreLimitKind::Region, settings) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::Step;
    use crate::testkit::{
        NOW, apply_step, caught_up, cluster_with_stores, ids_from, load_store, meta, move_of,
        voter_stores,
    };

    fn check(cluster: &Cluster, settings: &Settings, m: &RegionMeta) -> Option<Operator> {
        let controller = OperatorController::new();
        check_region(cluster, &controller, settings, m, NOW, &mut ids_from(500))
    }

    fn adds_on(op: Option<Operator>) -> Option<u64> {
        let op = op?;
        match op.steps.as_slice() {
            [
                Step::AddLearner { store, peer_id },
                Step::PromoteLearner {
                    store: promoted,
                    peer_id: promoted_id,
                },
            ] if store == promoted && peer_id == promoted_id => Some(*store),
            _ => panic!("not an added replica: {op:?}"),
        }
    }

    /// Stores with 4, 3, 2 and 1 regions; the region on stores 1 and 2 needs a third voter.
    #[test]
    fn a_region_short_of_voters_gets_one_on_the_emptiest_running_store() {
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4]);
        for (store, regions) in [(1, 4), (2, 3), (3, 2), (4, 1)] {
            load_store(&mut cluster, store, regions);
        }
        let settings = Settings::default();
        let m = meta(1, b"a", b"b", &[1, 2], 10);
        cluster.region_heartbeat(m.clone(), NOW).unwrap();
        assert_eq!(adds_on(check(&cluster, &settings, &m)), Some(4));
        cluster.set_store_state(4, StoreState::Down);
        assert_eq!(adds_on(check(&cluster, &settings, &m)), Some(3));
        cluster.set_store_state(4, StoreState::Offline);
        assert_eq!(adds_on(check(&cluster, &settings, &m)), Some(3));
        cluster.set_store_state(4, StoreState::Tombstone);
        assert_eq!(adds_on(check(&cluster, &settings, &m)), Some(3));
        cluster.set_store_state(4, StoreState::Up);
        assert_eq!(adds_on(check(&cluster, &settings, &m)), Some(4));

        // A store silent for longer than the heartbeat window, though not down yet, gets
        // nothing either.
        let later = NOW + settings.store_heartbeat_window_ms + 1;
        for store in [1, 2, 3] {
            cluster
                .store_heartbeat(crate::testkit::stats(store), later)
                .unwrap();
        }
        let controller = OperatorController::new();
        let op = check_region(
            &cluster,
            &controller,
            &settings,
            &m,
            later,
            &mut ids_from(1),
        );
        assert_eq!(adds_on(op), Some(3));

        // Enough voters: nothing to do.
        let mut three = meta(1, b"a", b"b", &[1, 2, 4], 10);
        three.region.epoch.conf_ver = 2;
        assert!(check(&cluster, &settings, &three).is_none());
        // No peer ids at hand: no operator.
        let mut no_ids = || None;
        assert!(check_region(&cluster, &controller, &settings, &m, NOW, &mut no_ids).is_none());
    }

    #[test]
    fn an_extra_voter_goes_from_the_fullest_store_and_the_leader_hands_over_first() {
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4]);
        for (store, regions) in [(1, 4), (2, 3), (3, 2), (4, 1)] {
            load_store(&mut cluster, store, regions);
        }
        let settings = Settings::default();
        let m = meta(1, b"a", b"b", &[1, 2, 4, 3], 10);
        cluster.region_heartbeat(m.clone(), NOW).unwrap();
        let op = check(&cluster, &settings, &m).unwrap();
        // Store 1 is fullest and leads; store 4 leads the fewest regions.
        assert_eq!(
            op.steps,
            vec![
                Step::TransferLeader {
                    from_store: 1,
                    to_store: 4
                },
                Step::RemovePeer { store: 1 }
            ]
        );
    }

    #[test]
    fn removal_prefers_down_then_offline_then_pending_voters() {
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4, 5, 6]);
        load_store(&mut cluster, 6, 9);
        let settings = Settings::default();
        let mut m = meta(1, b"a", b"b", &[1, 2, 3, 4, 5, 6], 10);
        m.pending_peers = vec![m.region.peer_on_store(5).unwrap()];
        m.down_peers = vec![m.region.peer_on_store(3).unwrap()];
        cluster.set_store_state(4, StoreState::Offline);
        cluster.set_store_state(2, StoreState::Down);
        cluster.region_heartbeat(m.clone(), NOW).unwrap();
        let removed = |m: &RegionMeta| {
            let op = check(&cluster, &settings, m).unwrap();
            let (source, target, _) = move_of(&op);
            assert_eq!(target, None, "{op:?}");
            source.unwrap()
        };
        // Down (by store state or by the leader's report), then offline, then pending, then
        // the fullest.
        let mut order = Vec::new();
        let mut current = m;
        while current.voter_count() > settings.max_replicas {
            let store = removed(&current);
            order.push(store);
            current = apply_step(&current, Step::RemovePeer { store });
        }
        order[..2].sort();
        assert_eq!(order, vec![2, 3, 4]);
        current
            .region
            .peers
            .push(tinykv_proto::region::Peer::voter(999, 3));
        assert_eq!(removed(&current), 5);
        current.pending_peers.clear();
        assert_eq!(removed(&current), 6);
    }

    #[test]
    fn a_down_voter_is_replaced_before_it_is_removed() {
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4, 5]);
        load_store(&mut cluster, 5, 3);
        let settings = Settings::default();
        let m = meta(1, b"a", b"b", &[1, 2, 3], 10);
        cluster.region_heartbeat(m.clone(), NOW).unwrap();
        assert!(check(&cluster, &settings, &m).is_none());

        // Store 3 down by the clock.
        cluster.set_store_state(3, StoreState::Down);
        let op = check(&cluster, &settings, &m).unwrap();
        assert_eq!(move_of(&op), (Some(3), Some(4), false));
        assert_eq!(op.steps.len(), 3, "add, promote, remove: {op:?}");
        cluster.set_store_state(3, StoreState::Up);

        // Peer on store 2 reported down by the leader, its store still up.
        let mut reported = m.clone();
        reported.down_peers = vec![m.region.peer_on_store(2).unwrap()];
        let op = check(&cluster, &settings, &reported).unwrap();
        assert_eq!(move_of(&op), (Some(2), Some(4), false));

        // Nowhere to put a replacement: the down voter stays, as removing it would leave
        // too few voters.
        cluster.set_store_state(4, StoreState::Down);
        cluster.set_store_state(5, StoreState::Offline);
        assert!(check(&cluster, &settings, &reported).is_none());
    }

    /// A region whose peers name a store the driver never heard of (as after losing its
    /// records): no target, so nothing, and nothing panics.
    #[test]
    fn a_lost_store_with_no_replacement_is_left_alone() {
        let cluster = cluster_with_stores(&[1, 2]);
        let settings = Settings::default();
        let m = meta(1, b"a", b"b", &[1, 2, 3], 10);
        assert!(check(&cluster, &settings, &m).is_none());
    }

    /// Stores with 1, 2, 3 and 4 regions; a region on store 1 grows to three voters, loses
    /// an extra one, and is drained from a store being retired.
    #[test]
    fn an_offline_store_is_drained() {
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4]);
        for (store, regions) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
            load_store(&mut cluster, store, regions);
        }
        let settings = Settings::default();
        let m = meta(1, b"a", b"b", &[1], 10);
        assert_eq!(adds_on(check(&cluster, &settings, &m)), Some(2));
        let m = meta(1, b"a", b"b", &[1, 2], 10);
        assert_eq!(adds_on(check(&cluster, &settings, &m)), Some(3));
        let m = meta(1, b"a", b"b", &[1, 2, 3, 4], 10);
        cluster.region_heartbeat(m.clone(), NOW).unwrap();
        let (source, _, _) = move_of(&check(&cluster, &settings, &m).unwrap());
        assert_eq!(source, Some(4));

        cluster.remove_store(3).unwrap();
        let (source, _, _) = move_of(&check(&cluster, &settings, &m).unwrap());
        assert_eq!(source, Some(3));
        let m = apply_step(&m, Step::RemovePeer { store: 4 });
        cluster.region_heartbeat(m.clone(), NOW).unwrap();
        let op = check(&cluster, &settings, &m).unwrap();
        assert_eq!(move_of(&op), (Some(3), Some(4), false));

        cluster
            .store_heartbeat(crate::testkit::stats(5), NOW)
            .unwrap();
        load_store(&mut cluster, 5, 3);
        let op = check(&cluster, &settings, &m).unwrap();
        assert_eq!(move_of(&op), (Some(3), Some(5), false));
    }

    /// With 1, 3 and 5 replicas, a region on one store is grown (and one on every store
    /// shrunk) to exactly `max_replicas` voters by the checker's own operators, carried out
    /// step by step.
    #[test]
    fn one_three_and_five_replicas_are_reached() {
        for replicas in [1usize, 3, 5] {
            let stores: Vec<u64> = (1..=6).collect();
            let settings = Settings {
                max_replicas: replicas,
                ..Settings::default()
            };
            for start in [vec![1u64], stores.clone()] {
                let mut cluster = cluster_with_stores(&stores);
                let mut m = meta(1, b"a", b"b", &start, 10);
                let mut ids = ids_from(1000);
                for _ in 0..10 {
                    cluster.region_heartbeat(m.clone(), NOW).unwrap();
                    let controller = OperatorController::new();
                    let Some(op) =
                        check_region(&cluster, &controller, &settings, &m, NOW, &mut ids)
                    else {
                        break;
                    };
                    for step in op.steps {
                        m = apply_step(&m, step);
                        if let Step::AddLearner { store, .. } = step {
                            m = caught_up(&m, store);
                        }
                    }
                }
                assert_eq!(
                    m.voter_count(),
                    replicas,
                    "from {start:?}: {:?}",
                    voter_stores(&m)
                );
                assert!(m.leader_peer().is_some());
            }
        }
    }

    #[test]
    fn a_learner_left_by_an_expired_operator_is_removed_and_others_are_left_alone() {
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4]);
        let settings = Settings::default();
        let mut controller = OperatorController::new();
        let m = meta(1, b"a", b"b", &[1, 2, 3], 10);
        cluster.region_heartbeat(m.clone(), NOW).unwrap();
        let mut ids = ids_from(50);
        let op = builder::move_replica(&m, OperatorKind::Admin, 3, 4, &mut ids).unwrap();
        controller.add(op, &cluster, &settings, NOW).unwrap();
        let with_learner = caught_up(
            &apply_step(
                &m,
                Step::AddLearner {
                    store: 4,
                    peer_id: 50,
                },
            ),
            4,
        );
        cluster.region_heartbeat(with_learner.clone(), NOW).unwrap();
        controller.cancel(1, NOW);
        let op = check_region(
            &cluster,
            &controller,
            &settings,
            &with_learner,
            NOW,
            &mut ids,
        );
        assert_eq!(op.unwrap().steps, vec![Step::RemovePeer { store: 4 }]);

        // A learner someone else added (a store joining) is not the checker's to remove.
        let mut joining = m.clone();
        joining
            .region
            .peers
            .push(tinykv_proto::region::Peer::learner(77, 4));
        joining.region.epoch.conf_ver += 1;
        cluster.region_heartbeat(joining.clone(), NOW).unwrap();
        let fresh = OperatorController::new();
        assert!(check_region(&cluster, &fresh, &settings, &joining, NOW, &mut ids).is_none());
    }
}
