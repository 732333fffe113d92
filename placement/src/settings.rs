//! The placement settings an operator may change at run time. Serializable so they can be
//! replicated with the rest of the driver's state.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The schedulers that can be paused one by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SchedulerKind {
    ReplicaChecker,
    BalanceLeader,
    BalanceRegion,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Voters each region should have.
    pub max_replicas: usize,
    /// A store silent this long is `Down` and its replicas are replaced. Long, because
    /// replacing a replica copies the whole region, which a restart would have made useless.
    pub max_store_down_time_ms: u64,
    /// A store silent this long receives no new work, though it is not `Down` yet.
    pub store_heartbeat_window_ms: u64,
    /// Operators moving a leader to or from one store at a time.
    pub leader_moves_per_store: usize,
    /// Operators adding or removing a replica on one store at a time: each one copies a
    /// region's data by snapshot, which competes with the store's own traffic.
    pub region_moves_per_store: usize,
    /// Balance-leader moves a leader only while the most and least loaded stores' leader
    /// counts differ by more than this; a move narrows the gap by two, so 1 stops it from
    /// moving a leader back and forth between two stores.
    pub leader_balance_tolerance: u64,
    /// An operator that only moves a leader and has not finished within this is dropped.
    pub leader_operator_timeout_ms: u64,
    /// An operator that copies a replica and has not finished within this is dropped.
    pub region_operator_timeout_ms: u64,
    pub paused: BTreeSet<SchedulerKind>,
    /// Regions the balance schedulers leave where they are (the replica checker still repairs
    /// them): the region whose leader runs the driver, since moving its leadership restarts
    /// the driver and drops the operators it runs.
    pub balance_exempt: BTreeSet<u64>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_replicas: 3,
            max_store_down_time_ms: 30 * 60 * 1000,
            store_heartbeat_window_ms: 60 * 1000,
            leader_moves_per_store: 4,
            region_moves_per_store: 4,
            leader_balance_tolerance: 1,
            leader_operator_timeout_ms: 30 * 1000,
            region_operator_timeout_ms: 10 * 60 * 1000,
            paused: BTreeSet::new(),
            balance_exempt: BTreeSet::new(),
        }
    }
}

impl Settings {
    pub fn pause(&mut self, scheduler: SchedulerKind) {
        self.paused.insert(scheduler);
    }

    pub fn resume(&mut self, scheduler: SchedulerKind) {
        self.paused.remove(&scheduler);
    }

    pub fn is_paused(&self, scheduler: SchedulerKind) -> bool {
        self.paused.contains(&scheduler)
    }
}
