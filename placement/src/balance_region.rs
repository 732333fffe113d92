//! Balance-region: moves a replica from the store holding the most data to the one holding
//! the least. The source is the fullest suitable store; the region on it is one with a
//! lagging peer there if any (that peer is doing least good where it is), else one it
//! follows, else one it leads (which costs a leader transfer too); the target is the
//! emptiest suitable store not holding the region. A move is made only when the source holds
//! more than twice the region's size more than the target: a smaller gap would be reversed
//! by the next round, and the region would bounce between the two.

use crate::builder::{self, PeerIdSource};
use crate::cluster::Cluster;
use crate::controller::{Influence, OperatorController};
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
    // Data each store will hold once the running operators are done.
    let influence: std::collections::BTreeMap<u64, i64> = cluster
        .stores()
        .map(|s| (s.id, controller.influence(s.id, cluster).size))
        .collect();
    let size =
        |s: &StoreInfo| Influence::apply(influence.get(&s.id).copied().unwrap_or(0), s.region_size);
    sources.sort_by_key(|s| (std::cmp::Reverse(size(s)), s.id));
    for source in sources {
        for meta in candidate_regions(cluster, controller, settings, source.id) {
            let Some(target) = replica_targets(cluster, controller, settings, meta, now_ms)
                .min_by_key(|s| (size(s), s.region_count, s.id))
            else {
                continue;
            };
            let gap = size(source).saturating_sub(size(target));
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
        .filter(|m| !settings.balance_exempt.contains(&m.id()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreState;
    use crate::testkit::{NOW, cluster_with_stores, ids_from, load_store, meta, move_of, stats};

    fn run(cluster: &Cluster, settings: &Settings) -> Option<Operator> {
        let controller = OperatorController::new();
        schedule(cluster, &controller, settings, NOW, &mut ids_from(500))
    }

    fn add_store(cluster: &mut Cluster, id: u64, regions: u64) {
        cluster.store_heartbeat(stats(id), NOW).unwrap();
        load_store(cluster, id, regions);
    }

    fn replicas(n: usize) -> Settings {
        Settings {
            max_replicas: n,
            ..Settings::default()
        }
    }

    #[test]
    fn one_replica_moves_with_its_leadership() {
        let settings = replicas(1);
        let mut cluster = cluster_with_stores(&[]);
        for (store, regions) in [(1, 6), (2, 8), (3, 8), (4, 16)] {
            add_store(&mut cluster, store, regions);
        }
        cluster
            .region_heartbeat(meta(1, b"a", b"b", &[4], 10), NOW)
            .unwrap();
        let op = run(&cluster, &settings).unwrap();
        assert_eq!((op.region_id, move_of(&op)), (1, (Some(4), Some(1), true)));

        // An offline store is no target: the next emptiest is.
        cluster.set_store_state(1, StoreState::Offline);
        let op = run(&cluster, &settings).unwrap();
        assert_eq!(move_of(&op), (Some(4), Some(2), true));

        // A region not at max_replicas is the replica checker's, not balance's.
        assert!(run(&cluster, &replicas(3)).is_none());
    }

    #[test]
    fn three_replicas_move_to_the_emptiest_running_store() {
        let settings = replicas(3);
        let mut cluster = cluster_with_stores(&[]);
        for (store, regions) in [(1, 16), (2, 15), (3, 14)] {
            add_store(&mut cluster, store, regions);
        }
        cluster
            .region_heartbeat(meta(1, b"a", b"b", &[1, 2, 3], 10), NOW)
            .unwrap();
        // Every store holds the region: nowhere to move it.
        assert!(run(&cluster, &settings).is_none());

        add_store(&mut cluster, 4, 2);
        let expect = |cluster: &Cluster, target| {
            let op = run(cluster, &settings).unwrap();
            assert_eq!(move_of(&op), (Some(1), Some(target), true), "{op:?}");
            assert_eq!(op.kind, OperatorKind::BalanceRegion);
        };
        expect(&cluster, 4);
        add_store(&mut cluster, 5, 1);
        expect(&cluster, 5);
        add_store(&mut cluster, 6, 0);
        expect(&cluster, 6);
        // Down stores are no targets.
        cluster.set_store_state(6, StoreState::Down);
        expect(&cluster, 5);
        for store in [4, 5, 6] {
            cluster.set_store_state(store, StoreState::Down);
        }
        // The only running store without the region holds more than store 1.
        add_store(&mut cluster, 7, 20);
        assert!(run(&cluster, &settings).is_none());
    }

    #[test]
    fn five_replicas_move_from_the_fullest_to_the_emptiest() {
        let settings = replicas(5);
        let mut cluster = cluster_with_stores(&[]);
        for (store, regions) in [(1, 4), (2, 5), (3, 6), (4, 7), (5, 28)] {
            add_store(&mut cluster, store, regions);
        }
        cluster
            .region_heartbeat(meta(1, b"a", b"b", &[1, 2, 3, 4, 5], 10), NOW)
            .unwrap();
        add_store(&mut cluster, 6, 1);
        let op = run(&cluster, &settings).unwrap();
        assert_eq!(move_of(&op), (Some(5), Some(6), false));
        add_store(&mut cluster, 7, 5);
        let op = run(&cluster, &settings).unwrap();
        assert_eq!(move_of(&op), (Some(5), Some(6), false));

        // The region on 2..6 now: store 1 is the emptiest that lacks it.
        let mut moved = meta(1, b"a", b"b", &[2, 3, 4, 5, 6], 10);
        moved.region.epoch.conf_ver = 4;
        cluster.region_heartbeat(moved, NOW).unwrap();
        let op = run(&cluster, &settings).unwrap();
        assert_eq!(move_of(&op), (Some(5), Some(1), false));

        for (store, regions) in [(11, 29), (12, 8), (13, 7)] {
            add_store(&mut cluster, store, regions);
        }
        // The region on 2, 3, 11, 12, 13, led from 2.
        let mut moved = meta(1, b"a", b"b", &[2, 3, 11, 12, 13], 10);
        moved.region.epoch.conf_ver = 8;
        cluster.region_heartbeat(moved.clone(), NOW).unwrap();
        // Store 11 is now the fullest; store 6 the emptiest without the region.
        let op = run(&cluster, &settings).unwrap();
        assert_eq!(move_of(&op), (Some(11), Some(6), false));
    }

    /// Store 1 is fullest and holds three regions; the one where its peer lags goes first,
    /// and only store 4 lacks it.
    #[test]
    fn a_region_with_a_pending_peer_on_the_source_moves_first() {
        let settings = replicas(3);
        let mut cluster = cluster_with_stores(&[]);
        for (store, regions) in [(1, 16), (2, 7), (3, 15), (4, 10)] {
            add_store(&mut cluster, store, regions);
        }
        cluster
            .region_heartbeat(meta(1, b"a", b"b", &[1, 2, 3], 10), NOW)
            .unwrap();
        cluster
            .region_heartbeat(meta(2, b"b", b"c", &[1, 2, 3], 10), NOW)
            .unwrap();
        let mut pending = meta(3, b"c", b"d", &[2, 1, 3], 10);
        pending.pending_peers = vec![pending.region.peer_on_store(1).unwrap()];
        cluster.region_heartbeat(pending, NOW).unwrap();
        let op = run(&cluster, &settings).unwrap();
        assert_eq!(op.region_id, 3);
        assert_eq!(move_of(&op), (Some(1), Some(4), false));
    }

    /// The source must hold more than twice the region's size more than the target.
    #[test]
    fn a_move_needs_a_gap_over_twice_the_region_size() {
        let settings = replicas(3);
        let build = |fillers_on_1| {
            let mut cluster = cluster_with_stores(&[1, 2, 3, 4]);
            load_store(&mut cluster, 1, fillers_on_1);
            cluster
                .region_heartbeat(meta(1, b"a", b"b", &[2, 3, 1], 10), NOW)
                .unwrap();
            cluster
        };
        // Store 1 holds 20, store 4 nothing: a gap of exactly twice the region's 10.
        let cluster = build(1);
        assert_eq!(cluster.store(1).unwrap().region_size, 20);
        assert!(run(&cluster, &settings).is_none());
        // 30 against 0.
        let cluster = build(2);
        let op = run(&cluster, &settings).unwrap();
        assert_eq!(move_of(&op), (Some(1), Some(4), false));
    }

    #[test]
    fn silent_stores_and_busy_stores_are_skipped() {
        let settings = replicas(3);
        let mut cluster = cluster_with_stores(&[]);
        for (store, regions) in [(1, 16), (2, 15), (3, 14), (4, 0), (5, 1)] {
            add_store(&mut cluster, store, regions);
        }
        let m = meta(1, b"a", b"b", &[1, 2, 3], 10);
        cluster.region_heartbeat(m.clone(), NOW).unwrap();

        // Store 4 has been silent for longer than the heartbeat window: not a target.
        let later = NOW + settings.store_heartbeat_window_ms + 1;
        for store in [1, 2, 3, 5] {
            cluster.store_heartbeat(stats(store), later).unwrap();
        }
        let controller = OperatorController::new();
        let op = schedule(&cluster, &controller, &settings, later, &mut ids_from(1)).unwrap();
        assert_eq!(move_of(&op), (Some(1), Some(5), true));

        // Store 5 has used its budget: no target left.
        let mut controller = OperatorController::new();
        let budget = Settings {
            region_moves_per_store: 1,
            ..settings.clone()
        };
        let other = meta(2, b"c", b"d", &[2, 3, 4], 10);
        cluster.region_heartbeat(other.clone(), later).unwrap();
        let mut ids = ids_from(1);
        let busy = crate::builder::move_replica(&other, OperatorKind::Admin, 4, 5, &mut ids);
        controller
            .add(busy.unwrap(), &cluster, &budget, later)
            .unwrap();
        assert!(schedule(&cluster, &controller, &budget, later, &mut ids).is_none());
    }
}
