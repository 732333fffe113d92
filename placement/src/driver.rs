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
        Ok(self
            .operators
            .on_region_heartbeat(meta, &self.cluster, &self.settings, now_ms))
    }

    /// An operator's `store delete`; see [`Cluster::remove_store`].
    pub fn remove_store(&mut self, store_id: u64) -> Result<StoreState, StoreError> {
        self.cluster.remove_store(store_id)
    }

    pub fn tick(&mut self, now_ms: u64) -> TickReport {
        TickReport {
            store_changes: self.cluster.tick(now_ms, &self.settings),
            operator_events: self.operators.tick(now_ms, &self.settings),
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

    pub fn cancel_operator(&mut self, region_id: u64) -> Option<OperatorEvent> {
        self.operators.cancel(region_id)
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
