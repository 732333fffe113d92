//! The placement driver as one value: the cluster model, the running operators and the
//! settings, with the calls a node makes on it. It does nothing by itself: the caller feeds
//! it heartbeats and the time, sends the instructions it answers with, and calls `schedule`
//! now and then.

use serde::{Deserialize, Serialize};

use crate::balance_leader;
use crate::balance_region;
use crate::builder::PeerIdSource;
use crate::cluster::{Cluster, HeartbeatError, StoreError, StoreStateChange};
use crate::controller::{AddOperatorError, Dispatch, OperatorController, OperatorEvent};
use crate::operator::Operator;
use crate::region_meta::RegionMeta;
use crate::replica_checker;
use crate::settings::{SchedulerKind, Settings};
use crate::store::{StoreState, StoreStats};

/// What a `tick` changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickReport {
    pub store_changes: Vec<StoreStateChange>,
    pub operator_events: Vec<OperatorEvent>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementDriver {
    pub settings: Settings,
    cluster: Cluster,
    operators: OperatorController,
}

impl PlacementDriver {
    pub fn new(settings: Settings) -> PlacementDriver {
        PlacementDriver {
            settings,
            ..PlacementDriver::default()
        }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn operators(&self) -> &OperatorController {
        &self.operators
    }

    pub fn store_heartbeat(&mut self, stats: StoreStats, now_ms: u64) -> Result<(), StoreError> {
        self.cluster.store_heartbeat(stats, now_ms)
    }

    /// Records the report and answers with what the region's leader should do now. A stale
    /// report is refused and changes nothing; its sender is not the region's leader any more
    /// (or its report was overtaken), so it gets no instruction.
    pub fn region_heartbeat(
        &mut self,
        meta: RegionMeta,
        now_ms: u64,
    ) -> Result<Dispatch, HeartbeatError> {
        let region_id = meta.id();
        self.cluster.region_heartbeat(meta, now_ms)?;
        let Some(meta) = self.cluster.region(region_id) else {
            return Ok(Dispatch::default());
        };
        let dispatch =
            self.operators
                .on_region_heartbeat(meta, &self.cluster, &self.settings, now_ms);
        self.operators.adopt_orphan_learners(meta, now_ms);
        Ok(dispatch)
    }

    /// See [`Cluster::restore_store`].
    pub fn restore_store(&mut self, store_id: u64, addr: &str, state: StoreState, now_ms: u64) {
        self.cluster.restore_store(store_id, addr, state, now_ms)
    }

    /// See [`OperatorController::continue_ids_after`].
    pub fn continue_operator_ids_after(&mut self, last: u64) {
        self.operators.continue_ids_after(last)
    }

    /// An operator's `store delete`; see [`Cluster::remove_store`].
    pub fn remove_store(&mut self, store_id: u64) -> Result<StoreState, StoreError> {
        self.cluster.remove_store(store_id)
    }

    pub fn tick(&mut self, now_ms: u64) -> TickReport {
        TickReport {
            store_changes: self.cluster.tick(now_ms, &self.settings),
            operator_events: self.operators.tick(now_ms, &self.settings, &self.cluster),
        }
    }

    /// Admits an operator built by hand (or by a caller's own policy).
    pub fn add_operator(
        &mut self,
        operator: Operator,
        now_ms: u64,
    ) -> Result<u64, AddOperatorError> {
        self.operators
            .add(operator, &self.cluster, &self.settings, now_ms)
    }

    pub fn cancel_operator(&mut self, region_id: u64, now_ms: u64) -> Option<OperatorEvent> {
        self.operators.cancel(region_id, now_ms)
    }

    /// Runs the schedulers that are not paused once and returns the operators admitted (with
    /// their ids): the replica checker over every region, then one leader move and one region
    /// move at most. Cost is linear in regions times stores; call it every second or so, not
    /// on every heartbeat. The operators reach the leaders with their regions' next
    /// heartbeats.
    pub fn schedule(&mut self, now_ms: u64, ids: &mut dyn PeerIdSource) -> Vec<Operator> {
        let mut admitted = Vec::new();
        if !self.settings.is_paused(SchedulerKind::ReplicaChecker) {
            let region_ids: Vec<u64> = self.cluster.regions().map(RegionMeta::id).collect();
            for region_id in region_ids {
                let Some(meta) = self.cluster.region(region_id) else {
                    continue;
                };
                let planned = replica_checker::check_region(
                    &self.cluster,
                    &self.operators,
                    &self.settings,
                    meta,
                    now_ms,
                    ids,
                );
                if let Some(operator) = planned {
                    self.admit(operator, now_ms, &mut admitted);
                }
            }
        }
        if !self.settings.is_paused(SchedulerKind::BalanceLeader)
            && let Some(operator) =
                balance_leader::schedule(&self.cluster, &self.operators, &self.settings, now_ms)
        {
            self.admit(operator, now_ms, &mut admitted);
        }
        if !self.settings.is_paused(SchedulerKind::BalanceRegion)
            && let Some(operator) = balance_region::schedule(
                &self.cluster,
                &self.operators,
                &self.settings,
                now_ms,
                ids,
            )
        {
            self.admit(operator, now_ms, &mut admitted);
        }
        admitted
    }

    fn admit(&mut self, mut operator: Operator, now_ms: u64, admitted: &mut Vec<Operator>) {
        // Schedulers only plan what the controller has room for, so a refusal here means a
        // scheduler and the controller disagree; the plan is dropped, and the next round
        // plans again from the state as it is then.
        if let Ok(id) = self.add_operator(operator.clone(), now_ms) {
            operator.id = id;
            admitted.push(operator);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::OperatorOutcome;
    use crate::operator::Step;
    use crate::testkit::{apply_step, caught_up, ids_from, meta, stats, voter_stores};

    const T0: u64 = 1_000_000;

    /// Plays the region's leader: heartbeats, carries out each instruction, lets a new
    /// learner catch up on the heartbeat after it was added, until the region's operator is
    /// gone. Checks on the way that no removal leaves fewer than `max_replicas` live voters.
    /// Returns the region as it ends and the operator's outcome.
    fn drive(
        driver: &mut PlacementDriver,
        mut region: RegionMeta,
        now: u64,
    ) -> (RegionMeta, Option<OperatorOutcome>) {
        for _ in 0..20 {
            let dispatch = driver.region_heartbeat(region.clone(), now).unwrap();
            if let Some(event) = dispatch.event {
                return (region, Some(event.outcome));
            }
            match dispatch.instruction {
                Some(instruction) => {
                    assert_eq!(instruction.region_epoch, region.region.epoch);
                    region = apply_step(&region, instruction.step);
                    if let Step::RemovePeer { .. } = instruction.step {
                        let live = driver.cluster().live_voter_count(&region);
                        assert!(live >= driver.settings.max_replicas, "{region:?}");
                    }
                }
                None => {
                    let learners: Vec<u64> = region.learners().map(|p| p.store_id).collect();
                    for store in learners {
                        region = caught_up(&region, store);
                    }
                }
            }
            if !driver.operators().has_operator(region.id()) {
                return (region, None);
            }
        }
        panic!(
            "the operator did not finish: {:?}",
            driver.operators().operator(region.id())
        );
    }

    fn heartbeat_stores(driver: &mut PlacementDriver, stores: &[u64], now: u64) {
        for &store in stores {
            driver.store_heartbeat(stats(store), now).unwrap();
        }
    }

    #[test]
    fn a_down_store_is_replaced_and_an_offline_one_drained_through_heartbeats() {
        let mut driver = PlacementDriver::new(Settings::default());
        let mut ids = ids_from(1000);
        heartbeat_stores(&mut driver, &[1, 2, 3, 4, 5], T0);
        let region = meta(1, b"", b"", &[1, 2], 10);
        driver.region_heartbeat(region.clone(), T0).unwrap();

        // Short of a voter: one is added, on store 3 (fewest regions, lowest id).
        let planned = driver.schedule(T0, &mut ids);
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].kind, crate::operator::OperatorKind::Replica);
        let (region, outcome) = drive(&mut driver, region, T0);
        assert_eq!(outcome, Some(OperatorOutcome::Finished));
        assert_eq!(voter_stores(&region), vec![1, 2, 3]);
        assert!(driver.schedule(T0, &mut ids).is_empty(), "balanced already");

        // Store 3 falls silent past the down time; its peer is reported down too.
        let later = T0 + driver.settings.max_store_down_time_ms + 1;
        heartbeat_stores(&mut driver, &[1, 2, 4, 5], later);
        let report = driver.tick(later);
        assert_eq!(report.store_changes.len(), 1);
        assert_eq!(report.store_changes[0].to, StoreState::Down);
        let mut region = region;
        region.down_peers = vec![region.region.peer_on_store(3).unwrap()];
        driver.region_heartbeat(region.clone(), later).unwrap();
        let planned = driver.schedule(later, &mut ids);
        assert_eq!(planned.len(), 1);
        let (region, outcome) = drive(&mut driver, region, later);
        assert_eq!(outcome, Some(OperatorOutcome::Finished));
        assert_eq!(voter_stores(&region), vec![1, 2, 4]);

        // Store 4 retired by hand, with the replica checker paused: nothing happens.
        assert_eq!(driver.remove_store(4), Ok(StoreState::Offline));
        driver.settings.pause(SchedulerKind::ReplicaChecker);
        assert!(driver.schedule(later, &mut ids).is_empty());
        driver.settings.resume(SchedulerKind::ReplicaChecker);
        let planned = driver.schedule(later, &mut ids);
        assert_eq!(planned.len(), 1);

        // The driver's whole state survives a round trip through its records mid-operator.
        let bytes = postcard::to_allocvec(&driver).unwrap();
        let mut driver: PlacementDriver = postcard::from_bytes(&bytes).unwrap();

        let (region, outcome) = drive(&mut driver, region, later);
        assert_eq!(outcome, Some(OperatorOutcome::Finished));
        assert_eq!(voter_stores(&region), vec![1, 2, 5]);
        let report = driver.tick(later);
        assert_eq!(report.store_changes.len(), 1);
        assert_eq!(report.store_changes[0].store_id, 4);
        assert_eq!(report.store_changes[0].to, StoreState::Tombstone);
        assert!(driver.schedule(later, &mut ids).is_empty());
    }

    #[test]
    fn a_learner_no_operator_adds_is_removed_and_exempt_regions_are_not_balanced() {
        let mut driver = PlacementDriver::new(Settings::default());
        let mut ids = ids_from(1000);
        heartbeat_stores(&mut driver, &[1, 2, 3, 4], T0);
        // A learner on store 4 that this driver never added (an earlier driver's operator).
        let mut region = meta(1, b"", b"", &[1, 2, 3], 10);
        region
            .region
            .peers
            .push(tinykv_proto::region::Peer::learner(99, 4));
        driver.region_heartbeat(region.clone(), T0).unwrap();
        let planned = driver.schedule(T0, &mut ids);
        assert_eq!(planned.len(), 1, "{planned:?}");
        assert_eq!(planned[0].steps, vec![Step::RemovePeer { store: 4 }]);
        let (region, outcome) = drive(&mut driver, region, T0);
        assert_eq!(outcome, Some(OperatorOutcome::Finished));
        assert_eq!(region.region.peers.len(), 3);

        // Region 1 is exempt from balance: with every leader on store 1 and store 4 empty,
        // only the other regions move.
        driver.settings.balance_exempt.insert(1);
        for i in 1..6u8 {
            let m = meta(u64::from(i) + 1, &[i], &[i + 1], &[1, 2, 3], 10);
            driver.region_heartbeat(m, T0).unwrap();
        }
        for _ in 0..10 {
            for op in driver.schedule(T0, &mut ids) {
                assert_ne!(op.region_id, 1, "{op:?}");
            }
        }
    }

    /// A down store's replicas are replaced as fast as the receiving stores' budgets allow:
    /// the removals on the dead store use no budget of its own.
    #[test]
    fn a_down_stores_replicas_are_replaced_within_the_receivers_budgets() {
        let mut driver = PlacementDriver::new(Settings::default());
        let mut ids = ids_from(1000);
        heartbeat_stores(&mut driver, &[1, 2, 3, 4, 5, 6], T0);
        for i in 0..8u8 {
            let m = meta(u64::from(i) + 1, &[i], &[i + 1], &[1, 2, 6], 10);
            driver.region_heartbeat(m, T0).unwrap();
        }
        let later = T0 + driver.settings.max_store_down_time_ms + 1;
        heartbeat_stores(&mut driver, &[1, 2, 3, 4, 5], later);
        driver.tick(later);
        assert_eq!(
            driver.cluster().store(6).map(|s| s.state),
            Some(StoreState::Down)
        );
        // Stores 3, 4 and 5 receive, four each at most: all eight at once.
        let planned = driver.schedule(later, &mut ids);
        assert_eq!(planned.len(), 8, "{planned:?}");
    }

    /// Balance plans from the counts the running operators will leave: several rounds before
    /// any heartbeat shows a move done do not overshoot and plan moves back.
    #[test]
    fn balance_counts_the_moves_under_way() {
        let mut driver = PlacementDriver::new(Settings {
            leader_moves_per_store: 100,
            ..Settings::default()
        });
        let mut ids = ids_from(1000);
        driver.settings.pause(SchedulerKind::BalanceRegion);
        heartbeat_stores(&mut driver, &[1, 2, 3], T0);
        // Store 1 leads all six regions.
        for i in 0..6u8 {
            let m = meta(u64::from(i) + 1, &[i], &[i + 1], &[1, 2, 3], 10);
            driver.region_heartbeat(m, T0).unwrap();
        }
        let mut transfers = 0;
        for _ in 0..10 {
            transfers += driver.schedule(T0, &mut ids).len();
        }
        // 6/0/0 evens out to 2/2/2 in four moves, not more.
        assert_eq!(transfers, 4);
    }

    #[test]
    fn a_stale_report_gets_no_instruction_and_changes_nothing() {
        let mut driver = PlacementDriver::new(Settings::default());
        let mut ids = ids_from(1000);
        heartbeat_stores(&mut driver, &[1, 2, 3, 4], T0);
        let region = meta(1, b"", b"", &[1, 2], 10);
        driver.region_heartbeat(region.clone(), T0).unwrap();
        assert_eq!(driver.schedule(T0, &mut ids).len(), 1);
        let mut newer = region.clone();
        newer.region.epoch.version += 1;
        let dispatch = driver.region_heartbeat(newer.clone(), T0).unwrap();
        assert_eq!(
            dispatch.instruction, None,
            "the region split: the operator expired"
        );
        assert!(driver.region_heartbeat(region, T0).is_err());
        assert_eq!(driver.cluster().region(1), Some(&newer));
    }

    #[test]
    fn balance_schedulers_run_once_per_round_and_can_be_paused() {
        let mut driver = PlacementDriver::new(Settings::default());
        let mut ids = ids_from(1000);
        heartbeat_stores(&mut driver, &[1, 2, 3, 4], T0);
        // Stores 1..3 hold and store 1 leads every region; store 4 holds nothing.
        for i in 0..6u8 {
            let m = meta(u64::from(i) + 1, &[i], &[i + 1], &[1, 2, 3], 10);
            driver.region_heartbeat(m, T0).unwrap();
        }
        driver.settings.pause(SchedulerKind::BalanceRegion);
        let planned = driver.schedule(T0, &mut ids);
        assert_eq!(planned.len(), 1);
        assert_eq!(
            planned[0].kind,
            crate::operator::OperatorKind::BalanceLeader
        );
        driver.settings.pause(SchedulerKind::BalanceLeader);
        assert!(driver.schedule(T0, &mut ids).is_empty());
        driver.settings.resume(SchedulerKind::BalanceRegion);
        let planned = driver.schedule(T0, &mut ids);
        assert_eq!(planned.len(), 1);
        assert_eq!(
            planned[0].kind,
            crate::operator::OperatorKind::BalanceRegion
        );
        assert!(planned[0].steps.contains(&Step::AddLearner {
            store: 4,
            peer_id: 1000
        }));
    }
}
