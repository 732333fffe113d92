//! The operator controller: the operators running, at most one per region, within per-store
//! budgets. Region heartbeats move them along; the answer to a heartbeat is the one step the
//! region's leader should carry out now. Nothing here acts: the caller sends the step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tinykv_proto::region::{Peer, RegionEpoch};

use crate::cluster::Cluster;
use crate::operator::{Operator, Step, StoreLimitKind};
use crate::region_meta::RegionMeta;
use crate::settings::Settings;
use crate::store::StoreState;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AddOperatorError {
    #[error("region {region_id} already has operator {operator_id} running")]
    RegionBusy { region_id: u64, operator_id: u64 },
    #[error("store {store_id} has no room for another {kind:?} operator")]
    StoreLimit { store_id: u64, kind: StoreLimitKind },
    #[error("region {0} is unknown")]
    UnknownRegion(u64),
    #[error(
        "the operator for region {region_id} was planned at (conf_ver {}, version {}), the region is at (conf_ver {}, version {})",
        planned.conf_ver, planned.version, current.conf_ver, current.version
    )]
    EpochMismatch {
        region_id: u64,
        planned: RegionEpoch,
        current: RegionEpoch,
    },
    #[error("the operator for region {0} has no steps")]
    NoSteps(u64),
}

/// See [`OperatorController::influence`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Influence {
    pub leaders: i64,
    pub size: i64,
}

impl Influence {
    /// `count` with this influence added, never below 0.
    pub fn apply(delta: i64, count: u64) -> u64 {
        (count as i64).saturating_add(delta).max(0) as u64
    }
}

/// Why an operator stopped before its last step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpiryReason {
    /// The region split, merged or changed membership beyond what the operator does.
    EpochChanged,
    TimedOut,
    /// The next step would remove a replica the region cannot spare (see
    /// [`removal_keeps_replicas`]).
    UnsafeRemoval,
    /// The next step sends a replica or leadership to a store that no longer accepts them
    /// (not `Up`, or holding another peer of the region by now).
    TargetUnavailable,
    /// Cancelled by hand.
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorOutcome {
    Finished,
    Expired(ExpiryReason),
}

/// An operator that left the controller, for the caller to log or replicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorEvent {
    pub operator_id: u64,
    pub region_id: u64,
    pub outcome: OperatorOutcome,
}

/// What the leader of a region should do now: carry out `step`, checking that the region is
/// still at `region_epoch` (the epoch the instruction was computed from).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    pub operator_id: u64,
    pub region_id: u64,
    pub region_epoch: RegionEpoch,
    pub step: Step,
}

/// The controller's answer to one region heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    pub instruction: Option<Instruction>,
    /// The region's operator, when this heartbeat finished or expired it.
    pub event: Option<OperatorEvent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningOperator {
    pub operator: Operator,
    /// Index of the first step not yet seen done.
    pub next_step: usize,
    pub started_ms: u64,
}

impl RunningOperator {
    fn timed_out(&self, now_ms: u64, settings: &Settings) -> bool {
        let timeout = if self.operator.is_leader_only() {
            settings.leader_operator_timeout_ms
        } else {
            settings.region_operator_timeout_ms
        };
        now_ms.saturating_sub(self.started_ms) > timeout
    }
}

/// A learner an operator added (or may have: its instruction may still be on its way) and
/// never promoted before it expired. Nobody else will remove it, and while it is there its
/// store cannot receive another replica of the region, so the replica checker removes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbandonedLearner {
    pub region_id: u64,
    pub store_id: u64,
    pub peer_id: u64,
    pub since_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorController {
    /// The last id handed out; ids are never reused, so an instruction names one operator.
    last_operator_id: u64,
    running: BTreeMap<u64, RunningOperator>,
    /// By peer id.
    abandoned: BTreeMap<u64, AbandonedLearner>,
}

/// Whether removing the region's peer on `store_id` leaves it enough replicas: at least
/// `max_replicas` voters, and, when the peer is a live voter, at least `max_replicas` live
/// voters. Removing a learner, or a voter that is down, takes no live voter away, so only
/// the first condition applies to them. Schedulers only remove a replica after adding its
/// replacement, and the controller checks this again right before a removal is sent, since
/// stores may have gone down in between.
pub fn removal_keeps_replicas(
    cluster: &Cluster,
    meta: &RegionMeta,
    store_id: u64,
    settings: &Settings,
) -> bool {
    let Some(peer) = meta.region.peer_on_store(store_id) else {
        return true;
    };
    if peer.is_learner() {
        return true;
    }
    if meta.voter_count() <= settings.max_replicas {
        return false;
    }
    !cluster.is_live_voter(meta, &peer) || cluster.live_voter_count(meta) > settings.max_replicas
}

impl OperatorController {
    pub fn new() -> OperatorController {
        OperatorController::default()
    }

    /// Admits `operator`, giving it an id (returned). Refused when the region already has an
    /// operator, when the region is unknown or not at the epoch the operator was planned at,
    /// or when a store it touches has used up its budget.
    pub fn add(
        &mut self,
        mut operator: Operator,
        cluster: &Cluster,
        settings: &Settings,
        now_ms: u64,
    ) -> Result<u64, AddOperatorError> {
        let region_id = operator.region_id;
        if operator.steps.is_empty() {
            return Err(AddOperatorError::NoSteps(region_id));
        }
        if let Some(running) = self.running.get(&region_id) {
            return Err(AddOperatorError::RegionBusy {
                region_id,
                operator_id: running.operator.id,
            });
        }
        let current = cluster
            .region(region_id)
            .ok_or(AddOperatorError::UnknownRegion(region_id))?
            .region
            .epoch;
        if current != operator.region_epoch {
            return Err(AddOperatorError::EpochMismatch {
                region_id,
                planned: operator.region_epoch,
                current,
            });
        }
        for kind in [StoreLimitKind::Leader, StoreLimitKind::Region] {
            for store_id in operator.stores_touched(kind) {
                if !self.store_has_room(cluster, store_id, kind, settings) {
                    return Err(AddOperatorError::StoreLimit { store_id, kind });
                }
            }
        }
        self.last_operator_id += 1;
        operator.id = self.last_operator_id;
        let id = operator.id;
        self.running.insert(
            region_id,
            RunningOperator {
                operator,
                next_step: 0,
                started_ms: now_ms,
            },
        );
        Ok(id)
    }

    /// [`has_room`](Self::has_room), for a store the cluster knows: one that runs no replicas
    /// (`Down`, `Tombstone`) copies and serves nothing, so removing its replicas uses no budget
    /// of its own, and a dead store's replicas are replaced as fast as the stores receiving
    /// them allow.
    pub fn store_has_room(
        &self,
        cluster: &Cluster,
        store_id: u64,
        kind: StoreLimitKind,
        settings: &Settings,
    ) -> bool {
        let runs = cluster
            .store(store_id)
            .is_some_and(crate::store::StoreInfo::hosts_live_replicas);
        !runs || self.has_room(store_id, kind, settings)
    }

    /// Running operators that draw on `store_id`'s `kind` budget.
    pub fn store_load(&self, store_id: u64, kind: StoreLimitKind) -> usize {
        self.running
            .values()
            .filter(|r| r.operator.stores_touched(kind).contains(&store_id))
            .count()
    }

    /// What the running operators will change at `store_id` once their remaining steps are
    /// done: leaders gained (negative: lost) and bytes of data gained or lost. Balance plans
    /// from the counts with this added, so one round does not plan moves that earlier rounds'
    /// operators already make, and overshoot into moving them back (PD's operator influence).
    pub fn influence(&self, store_id: u64, cluster: &Cluster) -> Influence {
        let mut influence = Influence::default();
        for running in self.running.values() {
            let size = cluster
                .region(running.operator.region_id)
                .map_or(0, |m| m.approximate_size as i64);
            for step in
                &running.operator.steps[running.next_step.min(running.operator.steps.len())..]
            {
                match *step {
                    Step::TransferLeader {
                        from_store,
                        to_store,
                    } => {
                        influence.leaders += i64::from(to_store == store_id);
                        influence.leaders -= i64::from(from_store == store_id);
                    }
                    Step::AddLearner { store, .. } if store == store_id => influence.size += size,
                    Step::RemovePeer { store } if store == store_id => influence.size -= size,
                    _ => {}
                }
            }
        }
        influence
    }

    pub fn has_room(&self, store_id: u64, kind: StoreLimitKind, settings: &Settings) -> bool {
        let limit = match kind {
            StoreLimitKind::Leader => settings.leader_moves_per_store,
            StoreLimitKind::Region => settings.region_moves_per_store,
        };
        self.store_load(store_id, kind) < limit
    }

    pub fn operator(&self, region_id: u64) -> Option<&RunningOperator> {
        self.running.get(&region_id)
    }

    pub fn has_operator(&self, region_id: u64) -> bool {
        self.running.contains_key(&region_id)
    }

    /// Makes the ids of operators admitted from now on follow `last`: a new driver starts
    /// its ids past any an earlier driver could have given, so an id names one operator.
    pub fn continue_ids_after(&mut self, last: u64) {
        self.last_operator_id = self.last_operator_id.max(last);
    }

    /// Running operators by region id.
    pub fn running(&self) -> impl Iterator<Item = &RunningOperator> {
        self.running.values()
    }

    /// Drops the region's operator. Steps already carried out stay carried out; the replica
    /// checker tidies up what a half-done operator left (an extra voter, a learner).
    pub fn cancel(&mut self, region_id: u64, now_ms: u64) -> Option<OperatorEvent> {
        self.finish(
            region_id,
            OperatorOutcome::Expired(ExpiryReason::Cancelled),
            now_ms,
        )
    }

    /// A learner of `meta` that an expired operator left behind, if there is one.
    pub fn abandoned_learner(&self, meta: &RegionMeta) -> Option<Peer> {
        meta.learners().find(|p| {
            self.abandoned
                .get(&p.id)
                .is_some_and(|a| a.region_id == meta.id())
        })
    }

    pub fn abandoned_learners(&self) -> impl Iterator<Item = &AbandonedLearner> {
        self.abandoned.values()
    }

    /// Moves the region's operator along by what `meta` (just recorded in `cluster`) shows,
    /// and says what the leader should do next.
    pub fn on_region_heartbeat(
        &mut self,
        meta: &RegionMeta,
        cluster: &Cluster,
        settings: &Settings,
        now_ms: u64,
    ) -> Dispatch {
        let region_id = meta.id();
        let Some(running) = self.running.get_mut(&region_id) else {
            return Dispatch::default();
        };
        let planned = running.operator.region_epoch;
        let current = meta.region.epoch;
        let expire = |controller: &mut OperatorController, reason| Dispatch {
            instruction: None,
            event: controller.finish(region_id, OperatorOutcome::Expired(reason), now_ms),
        };
        if current.version != planned.version
            || current.conf_ver > planned.conf_ver + running.operator.membership_step_count()
        {
            return expire(self, ExpiryReason::EpochChanged);
        }
        if running.timed_out(now_ms, settings) {
            return expire(self, ExpiryReason::TimedOut);
        }
        let steps = &running.operator.steps;
        while steps
            .get(running.next_step)
            .is_some_and(|s| s.is_done(meta))
        {
            running.next_step += 1;
        }
        let Some(&step) = steps.get(running.next_step) else {
            return Dispatch {
                instruction: None,
                event: self.finish(region_id, OperatorOutcome::Finished, now_ms),
            };
        };
        let operator_id = running.operator.id;
        let step = match step {
            Step::AddLearner { store, .. }
            | Step::TransferLeader {
                to_store: store, ..
            } if !cluster
                .store(store)
                .is_some_and(|s| s.state == StoreState::Up) =>
            {
                return expire(self, ExpiryReason::TargetUnavailable);
            }
            Step::AddLearner { store, peer_id } if meta.holds_store(store) => {
                if meta
                    .region
                    .peer_on_store(store)
                    .is_some_and(|p| p.id == peer_id)
                {
                    // Added, and catching up: nothing to do but wait for it.
                    return Dispatch::default();
                }
                // Someone else put a peer of the region there meanwhile.
                return expire(self, ExpiryReason::TargetUnavailable);
            }
            Step::RemovePeer { store } => {
                if !removal_keeps_replicas(cluster, meta, store, settings) {
                    return expire(self, ExpiryReason::UnsafeRemoval);
                }
                if meta.leader_store() == Some(store) {
                    // Leadership came back to this store after the operator was planned; a
                    // leader does not remove itself, so it hands over first.
                    match new_leader_for(cluster, meta, store) {
                        Some(to_store) => Step::TransferLeader {
                            from_store: store,
                            to_store,
                        },
                        None => return Dispatch::default(),
                    }
                } else {
                    step
                }
            }
            _ => step,
        };
        let instruction = meta.leader.map(|_| Instruction {
            operator_id,
            region_id,
            region_epoch: current,
            step,
        });
        Dispatch {
            instruction,
            event: None,
        }
    }

    /// Marks the learners of `meta` that no running operator adds as abandoned. Every learner
    /// is added by an operator; one without is left by an operator that expired, or by one of
    /// an earlier driver (whose operators a new driver does not know), and would sit there,
    /// never promoted, keeping its store from receiving a real replica of the region.
    pub fn adopt_orphan_learners(&mut self, meta: &RegionMeta, now_ms: u64) {
        if self.running.contains_key(&meta.id()) {
            return;
        }
        for learner in meta.learners() {
            self.abandoned
                .entry(learner.id)
                .or_insert(AbandonedLearner {
                    region_id: meta.id(),
                    store_id: learner.store_id,
                    peer_id: learner.id,
                    since_ms: now_ms,
                });
        }
    }

    /// Expires operators that ran out of time, including those of regions that stopped
    /// heartbeating, and forgets abandoned learners that are gone: their region is gone, or
    /// it has not shown them for as long as an operator may run (an instruction to add one
    /// that was on its way when its operator expired has landed by then, or never will).
    pub fn tick(
        &mut self,
        now_ms: u64,
        settings: &Settings,
        cluster: &Cluster,
    ) -> Vec<OperatorEvent> {
        self.abandoned.retain(|&peer_id, a| {
            cluster.region(a.region_id).is_some_and(|m| {
                m.region.peers.iter().any(|p| p.id == peer_id)
                    || now_ms.saturating_sub(a.since_ms) <= settings.region_operator_timeout_ms
            })
        });
        let timed_out: Vec<u64> = self
            .running
            .iter()
            .filter(|(_, r)| r.timed_out(now_ms, settings))
            .map(|(&region_id, _)| region_id)
            .collect();
        timed_out
            .into_iter()
            .filter_map(|region_id| {
                self.finish(
                    region_id,
                    OperatorOutcome::Expired(ExpiryReason::TimedOut),
                    now_ms,
                )
            })
            .collect()
    }

    fn finish(
        &mut self,
        region_id: u64,
        outcome: OperatorOutcome,
        now_ms: u64,
    ) -> Option<OperatorEvent> {
        let running = self.running.remove(&region_id)?;
        if outcome != OperatorOutcome::Finished {
            // Every learner not seen promoted, whether or not its addition was sent: only one
            // the region shows is ever removed.
            let steps = &running.operator.steps;
            for step in steps {
                let Step::AddLearner { store, peer_id } = *step else {
                    continue;
                };
                let promoted = steps[..running.next_step].iter().any(
                    |done| matches!(done, Step::PromoteLearner { peer_id: p, .. } if *p == peer_id),
                );
                if !promoted {
                    self.abandoned.insert(
                        peer_id,
                        AbandonedLearner {
                            region_id,
                            store_id: store,
                            peer_id,
                            since_ms: now_ms,
                        },
                    );
                }
            }
        }
        Some(OperatorEvent {
            operator_id: running.operator.id,
            region_id,
            outcome,
        })
    }
}

/// A voter to hand leadership to from `from_store`: live, caught up, on an `Up` store; the one
/// on the store leading the fewest regions.
pub fn new_leader_for(cluster: &Cluster, meta: &RegionMeta, from_store: u64) -> Option<u64> {
    meta.voters()
        .filter(|p| p.store_id != from_store)
        .filter(|p| cluster.is_live_voter(meta, p) && !meta.is_pending(p.id))
        .filter_map(|p| cluster.store(p.store_id))
        .filter(|s| s.state == StoreState::Up)
        .min_by_key(|s| (s.leader_count, s.id))
        .map(|s| s.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder;
    use crate::operator::OperatorKind;
    use crate::testkit::{NOW, apply_step, caught_up, cluster_with_stores, ids_from, meta};

    fn setup() -> (Cluster, OperatorController, Settings) {
        let mut cluster = cluster_with_stores(&[1, 2, 3, 4, 5]);
        cluster
            .region_heartbeat(meta(1, b"", b"m", &[1, 2, 3], 10), NOW)
            .unwrap();
        cluster
            .region_heartbeat(meta(2, b"m", b"", &[1, 2, 3], 10), NOW)
            .unwrap();
        (cluster, OperatorController::new(), Settings::default())
    }

    fn move_op(cluster: &Cluster, region_id: u64, from: u64, to: u64, first_id: u64) -> Operator {
        let m = cluster.region(region_id).unwrap();
        builder::move_replica(m, OperatorKind::Admin, from, to, &mut ids_from(first_id)).unwrap()
    }

    #[test]
    fn a_region_runs_one_operator_at_a_time() {
        let (cluster, mut controller, settings) = setup();
        let first = controller
            .add(move_op(&cluster, 1, 2, 4, 50), &cluster, &settings, NOW)
            .unwrap();
        assert_eq!(
            controller.add(move_op(&cluster, 1, 3, 5, 60), &cluster, &settings, NOW),
            Err(AddOperatorError::RegionBusy {
                region_id: 1,
                operator_id: first
            })
        );
        let second = controller
            .add(move_op(&cluster, 2, 3, 5, 70), &cluster, &settings, NOW)
            .unwrap();
        assert!(second > first);
        assert_eq!(controller.running().count(), 2);
        assert!(controller.cancel(1, NOW).is_some());
        controller
            .add(move_op(&cluster, 1, 3, 5, 80), &cluster, &settings, NOW)
            .unwrap();
    }

    #[test]
    fn per_store_budgets_are_respected() {
        let (cluster, mut controller, mut settings) = setup();
        settings.region_moves_per_store = 1;
        settings.leader_moves_per_store = 1;
        controller
            .add(move_op(&cluster, 1, 2, 4, 50), &cluster, &settings, NOW)
            .unwrap();
        // Store 4 is receiving a replica already.
        assert_eq!(
            controller.add(move_op(&cluster, 2, 3, 4, 60), &cluster, &settings, NOW),
            Err(AddOperatorError::StoreLimit {
                store_id: 4,
                kind: StoreLimitKind::Region
            })
        );
        // So is store 2 losing one.
        assert!(matches!(
            controller.add(move_op(&cluster, 2, 2, 5, 60), &cluster, &settings, NOW),
            Err(AddOperatorError::StoreLimit { store_id: 2, .. })
        ));
        // Region 2 led from store 1: its leader may move once, to store 3.
        let m2 = cluster.region(2).unwrap();
        let transfer = builder::transfer_leader(m2, OperatorKind::Admin, 3).unwrap();
        controller.add(transfer, &cluster, &settings, NOW).unwrap();
        assert_eq!(controller.store_load(1, StoreLimitKind::Leader), 1);
        assert_eq!(controller.store_load(4, StoreLimitKind::Region), 1);
        assert!(!controller.has_room(3, StoreLimitKind::Leader, &settings));
        assert!(controller.has_room(5, StoreLimitKind::Region, &settings));
    }

    #[test]
    fn an_operator_must_match_the_region_it_was_planned_for() {
        let (mut cluster, mut controller, settings) = setup();
        let planned = move_op(&cluster, 1, 2, 4, 50);
        let mut split = cluster.region(1).unwrap().clone();
        split.region.epoch.version += 1;
        cluster.region_heartbeat(split, NOW).unwrap();
        assert!(matches!(
            controller.add(planned.clone(), &cluster, &settings, NOW),
            Err(AddOperatorError::EpochMismatch { region_id: 1, .. })
        ));
        let unknown = Operator {
            region_id: 9,
            ..planned.clone()
        };
        assert_eq!(
            controller.add(unknown, &cluster, &settings, NOW),
            Err(AddOperatorError::UnknownRegion(9))
        );
        let empty = Operator {
            steps: Vec::new(),
            ..planned
        };
        assert_eq!(
            controller.add(empty, &cluster, &settings, NOW),
            Err(AddOperatorError::NoSteps(1))
        );
    }

    /// Moves region 1's leader replica from store 1 to store 4, heartbeat by heartbeat, the
    /// leader carrying out each instruction; every step is re-sent until the region shows it.
    #[test]
    fn an_operator_advances_through_heartbeats_and_finishes() {
        let (mut cluster, mut controller, settings) = setup();
        let id = controller
            .add(move_op(&cluster, 1, 1, 4, 50), &cluster, &settings, NOW)
            .unwrap();
        let mut region = cluster.region(1).unwrap().clone();
        let mut now = NOW;
        let mut beat =
            |cluster: &mut Cluster, controller: &mut OperatorController, region: &RegionMeta| {
                now += 1000;
                cluster.region_heartbeat(region.clone(), now).unwrap();
                controller.on_region_heartbeat(region, cluster, &settings, now)
            };
        let expect_step = |d: Dispatch, step: Step, region: &RegionMeta| {
            assert_eq!(
                d,
                Dispatch {
                    instruction: Some(Instruction {
                        operator_id: id,
                        region_id: 1,
                        region_epoch: region.region.epoch,
                        step,
                    }),
                    event: None,
                }
            );
        };
        let add = Step::AddLearner {
            store: 4,
            peer_id: 50,
        };
        expect_step(beat(&mut cluster, &mut controller, &region), add, &region);
        // A lost instruction is sent again.
        expect_step(beat(&mut cluster, &mut controller, &region), add, &region);
        region = apply_step(&region, add);
        // Added but still catching up: nothing to do until it has.
        assert_eq!(
            beat(&mut cluster, &mut controller, &region),
            Dispatch::default()
        );
        assert_eq!(controller.operator(1).unwrap().next_step, 0);
        region = caught_up(&region, 4);
        let promote = Step::PromoteLearner {
            store: 4,
            peer_id: 50,
        };
        expect_step(
            beat(&mut cluster, &mut controller, &region),
            promote,
            &region,
        );
        region = apply_step(&region, promote);
        let transfer = Step::TransferLeader {
            from_store: 1,
            to_store: 4,
        };
        expect_step(
            beat(&mut cluster, &mut controller, &region),
            transfer,
            &region,
        );
        assert_eq!(controller.operator(1).unwrap().next_step, 2);
        region = apply_step(&region, transfer);
        let remove = Step::RemovePeer { store: 1 };
        expect_step(
            beat(&mut cluster, &mut controller, &region),
            remove,
            &region,
        );
        region = apply_step(&region, remove);
        assert_eq!(
            beat(&mut cluster, &mut controller, &region),
            Dispatch {
                instruction: None,
                event: Some(OperatorEvent {
                    operator_id: id,
                    region_id: 1,
                    outcome: OperatorOutcome::Finished
                }),
            }
        );
        assert!(!controller.has_operator(1));
        assert_eq!(region.region.epoch.conf_ver, 4);
    }

    #[test]
    fn an_operator_expires_when_the_region_changes_under_it() {
        let (mut cluster, mut controller, settings) = setup();
        let expired = |reason| OperatorOutcome::Expired(reason);
        // A split.
        controller
            .add(move_op(&cluster, 1, 2, 4, 50), &cluster, &settings, NOW)
            .unwrap();
        let mut split = cluster.region(1).unwrap().clone();
        split.region.epoch.version += 1;
        cluster.region_heartbeat(split.clone(), NOW).unwrap();
        let d = controller.on_region_heartbeat(&split, &cluster, &settings, NOW);
        assert_eq!(d.instruction, None);
        assert_eq!(
            d.event.map(|e| e.outcome),
            Some(expired(ExpiryReason::EpochChanged))
        );
        // Membership changed further than the operator's three changes can explain.
        controller
            .add(move_op(&cluster, 1, 2, 4, 60), &cluster, &settings, NOW)
            .unwrap();
        let mut changed = split.clone();
        changed.region.epoch.conf_ver += 4;
        cluster.region_heartbeat(changed.clone(), NOW).unwrap();
        let d = controller.on_region_heartbeat(&changed, &cluster, &settings, NOW);
        assert_eq!(
            d.event.map(|e| e.outcome),
            Some(expired(ExpiryReason::EpochChanged))
        );
        // Out of time, noticed by a heartbeat or by the tick.
        controller
            .add(move_op(&cluster, 1, 2, 4, 70), &cluster, &settings, NOW)
            .unwrap();
        controller
            .add(move_op(&cluster, 2, 2, 4, 80), &cluster, &settings, NOW)
            .unwrap();
        let late = NOW + settings.region_operator_timeout_ms + 1;
        assert!(controller.tick(late - 1, &settings, &cluster).is_empty());
        let d = controller.on_region_heartbeat(&changed, &cluster, &settings, late);
        assert_eq!(
            d.event.map(|e| e.outcome),
            Some(expired(ExpiryReason::TimedOut))
        );
        let events = controller.tick(late, &settings, &cluster);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].region_id, 2);
        assert_eq!(controller.running().count(), 0);
    }

    #[test]
    fn a_step_toward_a_store_that_cannot_take_it_expires_the_operator() {
        let (mut cluster, mut controller, settings) = setup();
        controller
            .add(move_op(&cluster, 1, 2, 4, 50), &cluster, &settings, NOW)
            .unwrap();
        cluster.set_store_state(4, StoreState::Down);
        let m = cluster.region(1).unwrap().clone();
        let d = controller.on_region_heartbeat(&m, &cluster, &settings, NOW);
        assert_eq!(
            d.event.map(|e| e.outcome),
            Some(OperatorOutcome::Expired(ExpiryReason::TargetUnavailable))
        );
        // A store that got another peer of the region from someone else meanwhile.
        controller
            .add(move_op(&cluster, 1, 2, 5, 60), &cluster, &settings, NOW)
            .unwrap();
        let mut joined = m.clone();
        joined.region.peers.push(Peer::learner(77, 5));
        joined.region.epoch.conf_ver += 1;
        cluster.region_heartbeat(joined.clone(), NOW).unwrap();
        let d = controller.on_region_heartbeat(&joined, &cluster, &settings, NOW);
        assert_eq!(
            d.event.map(|e| e.outcome),
            Some(OperatorOutcome::Expired(ExpiryReason::TargetUnavailable))
        );
    }

    /// The controller itself never sends a removal that leaves fewer than `max_replicas`
    /// voters, or fewer than `max_replicas` live voters when the removed one is live, however
    /// the operator was built.
    #[test]
    fn a_removal_the_region_cannot_spare_is_never_sent() {
        let (mut cluster, mut controller, settings) = setup();
        let m = cluster.region(1).unwrap().clone();
        let remove =
            |store| Operator::new(&m, OperatorKind::Admin, vec![Step::RemovePeer { store }]);
        controller.add(remove(3), &cluster, &settings, NOW).unwrap();
        let d = controller.on_region_heartbeat(&m, &cluster, &settings, NOW);
        assert_eq!(d.instruction, None);
        assert_eq!(
            d.event.map(|e| e.outcome),
            Some(OperatorOutcome::Expired(ExpiryReason::UnsafeRemoval))
        );

        // Four voters, one of them reported down: only the down one may go.
        let mut four = meta(1, b"", b"m", &[1, 2, 3, 4], 10);
        four.region.epoch.conf_ver = 2;
        four.down_peers = vec![four.region.peer_on_store(4).unwrap()];
        cluster.region_heartbeat(four.clone(), NOW).unwrap();
        assert!(!removal_keeps_replicas(&cluster, &four, 3, &settings));
        assert!(removal_keeps_replicas(&cluster, &four, 4, &settings));
        let remove_live = Operator::new(
            &four,
            OperatorKind::Admin,
            vec![Step::RemovePeer { store: 3 }],
        );
        controller
            .add(remove_live, &cluster, &settings, NOW)
            .unwrap();
        let d = controller.on_region_heartbeat(&four, &cluster, &settings, NOW);
        assert_eq!(
            d.event.map(|e| e.outcome),
            Some(OperatorOutcome::Expired(ExpiryReason::UnsafeRemoval))
        );
        let remove_down = Operator::new(
            &four,
            OperatorKind::Admin,
            vec![Step::RemovePeer { store: 4 }],
        );
        controller
            .add(remove_down, &cluster, &settings, NOW)
            .unwrap();
        let d = controller.on_region_heartbeat(&four, &cluster, &settings, NOW);
        assert_eq!(
            d.instruction.map(|i| i.step),
            Some(Step::RemovePeer { store: 4 })
        );
    }

    #[test]
    fn a_leader_on_the_store_to_leave_hands_over_first() {
        let (mut cluster, mut controller, settings) = setup();
        let mut four = meta(1, b"", b"m", &[1, 2, 3, 4], 10);
        four.region.epoch.conf_ver = 2;
        cluster.region_heartbeat(four.clone(), NOW).unwrap();
        let op = Operator::new(
            &four,
            OperatorKind::Admin,
            vec![Step::RemovePeer { store: 1 }],
        );
        controller.add(op, &cluster, &settings, NOW).unwrap();
        let d = controller.on_region_heartbeat(&four, &cluster, &settings, NOW);
        let Some(Step::TransferLeader {
            from_store: 1,
            to_store,
        }) = d.instruction.map(|i| i.step)
        else {
            panic!("expected a transfer off store 1, got {d:?}");
        };
        let moved = apply_step(&four, d.instruction.unwrap().step);
        assert_ne!(to_store, 1);
        let d = controller.on_region_heartbeat(&moved, &cluster, &settings, NOW);
        assert_eq!(
            d.instruction.map(|i| i.step),
            Some(Step::RemovePeer { store: 1 })
        );
    }

    /// An operator that expires between adding a learner and promoting it leaves the learner
    /// behind; the controller remembers it until the region no longer shows it.
    #[test]
    fn a_learner_left_by_an_expired_operator_is_remembered_until_gone() {
        let (mut cluster, mut controller, settings) = setup();
        controller
            .add(move_op(&cluster, 1, 2, 4, 50), &cluster, &settings, NOW)
            .unwrap();
        let region = cluster.region(1).unwrap().clone();
        let added = caught_up(
            &apply_step(
                &region,
                Step::AddLearner {
                    store: 4,
                    peer_id: 50,
                },
            ),
            4,
        );
        cluster.region_heartbeat(added.clone(), NOW).unwrap();
        controller.on_region_heartbeat(&added, &cluster, &settings, NOW);
        assert!(controller.abandoned_learner(&added).is_none());
        controller.cancel(1, NOW);
        assert_eq!(
            controller.abandoned_learner(&added),
            Some(Peer::learner(50, 4))
        );
        // Still there long after: still remembered.
        let late = NOW + settings.region_operator_timeout_ms + 1;
        controller.tick(late, &settings, &cluster);
        assert_eq!(controller.abandoned_learners().count(), 1);
        // Removed: forgotten once the region has not shown it for a while.
        let removed = apply_step(&added, Step::RemovePeer { store: 4 });
        cluster.region_heartbeat(removed, late).unwrap();
        controller.tick(late, &settings, &cluster);
        assert_eq!(controller.abandoned_learners().count(), 0);
    }
}
