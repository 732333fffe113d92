//! The placement driver's messages: what stores and region leaders report to it, the steps it
//! answers them with, and what an operator of the cluster asks it (stores, operators,
//! schedulers). The driver runs at region 1's leader; these travel as admin requests routed
//! to that region like any other.

use serde::{Deserialize, Serialize};

use crate::region::{Region, RegionEpoch, StoreAddr};

/// Where a store is in its life. `Up` and `Down` follow heartbeats; `Offline` and `Tombstone`
/// follow an operator's decision to retire the store (`store delete`), and no heartbeat undoes
/// them. New variants go at the end: the encoding is positional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoreState {
    /// Heartbeating; may receive replicas and leaders.
    #[default]
    Up,
    /// Being retired: its replicas are moved elsewhere, and it receives nothing new.
    Offline,
    /// Silent for longer than `max-store-down-time`: its replicas are replaced.
    Down,
    /// Retired and empty. Final: its heartbeats are refused.
    Tombstone,
}

impl StoreState {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreState::Up => "Up",
            StoreState::Offline => "Offline",
            StoreState::Down => "Down",
            StoreState::Tombstone => "Tombstone",
        }
    }
}

/// A store's report of itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreReport {
    pub store_id: u64,
    pub addr: String,
    /// Bytes of disk the store may use in all, and still free.
    pub capacity: u64,
    pub available: u64,
}

/// A region leader's report of its region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionReport {
    pub region: Region,
    /// The reporting leader's peer id, and its Raft term: a report of an older term than one
    /// the driver has (sent before a leadership change, delivered after) is refused.
    pub leader: u64,
    pub term: u64,
    /// Peers that cannot catch up from the leader's log (being sent a snapshot, or behind it).
    pub pending_peers: Vec<u64>,
    /// Peers the leader has not heard from within two election timeouts.
    pub down_peers: Vec<u64>,
    /// As of the leader's last split check (0 before one ran).
    pub approximate_size: u64,
    pub approximate_keys: u64,
}

/// One store's heartbeat: itself, and the regions it leads whose report changed or is due.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub store: StoreReport,
    pub regions: Vec<RegionReport>,
}

/// Which leader of region 1 runs the driver: a store that sees it change reports every region
/// it leads again, since a new driver starts knowing none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DriverId {
    pub store_id: u64,
    pub term: u64,
}

/// The driver's answer to a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    pub driver: DriverId,
    /// Steps for regions the store leads, each to be carried out only while the region is
    /// still at the epoch the step names.
    pub orders: Vec<StepOrder>,
    /// Reports the driver refused, with why (an older epoch than it knows, a tombstoned
    /// store). A refused report is not sent again until the region changes.
    pub refused: Vec<RefusedReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedReport {
    /// 0: the store's own report.
    pub region_id: u64,
    pub reason: String,
}

/// One change to a region, as the driver orders it and as `operator list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StepDesc {
    /// Add a learner `peer_id` on `store_id`, reachable at `addr`.
    AddLearner {
        store_id: u64,
        peer_id: u64,
        addr: String,
    },
    PromoteLearner {
        store_id: u64,
        peer_id: u64,
    },
    RemovePeer {
        store_id: u64,
    },
    TransferLeader {
        from_store: u64,
        to_store: u64,
    },
}

impl std::fmt::Display for StepDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepDesc::AddLearner {
                store_id, peer_id, ..
            } => write!(f, "add learner {peer_id} on store {store_id}"),
            StepDesc::PromoteLearner { store_id, peer_id } => {
                write!(f, "promote learner {peer_id} on store {store_id}")
            }
            StepDesc::RemovePeer { store_id } => write!(f, "remove peer on store {store_id}"),
            StepDesc::TransferLeader {
                from_store,
                to_store,
            } => write!(f, "transfer leader from store {from_store} to {to_store}"),
        }
    }
}

/// A step for the leader of `region_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOrder {
    pub operator_id: u64,
    pub region_id: u64,
    pub epoch: RegionEpoch,
    pub step: StepDesc,
}

/// A store as the driver sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreDesc {
    pub id: u64,
    pub addr: String,
    pub state: StoreState,
    pub capacity: u64,
    pub available: u64,
    pub region_count: u64,
    pub leader_count: u64,
    pub region_size: u64,
    pub pending_peer_count: u64,
    /// Since its last heartbeat reached this driver.
    pub last_heartbeat_ago_ms: u64,
}

/// A running operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorDesc {
    pub id: u64,
    pub region_id: u64,
    /// "replica", "balance-leader", "balance-region" or "admin".
    pub kind: String,
    pub steps: Vec<StepDesc>,
    /// Index of the first step not yet seen done.
    pub next_step: u64,
    pub age_ms: u64,
}

/// A scheduler and whether it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerDesc {
    /// "replica-checker", "balance-leader" or "balance-region".
    pub name: String,
    pub paused: bool,
}

/// The driver's own state, for `cluster status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverStatus {
    pub driver: DriverId,
    /// How long this leader has run the driver.
    pub uptime_ms: u64,
    /// Whether it schedules yet: a new driver waits a store heartbeat interval, so that it
    /// acts on what every store reported rather than on silence.
    pub scheduling: bool,
    pub stores: u64,
    pub regions: u64,
    pub operators: u64,
    pub max_replicas: u64,
}

/// An operator built by hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorSpec {
    TransferLeader {
        region_id: u64,
        to_store: u64,
    },
    /// Move the region's replica on `from_store` to `to_store` (add a learner there, promote
    /// it, remove the old one; leadership moves off first if it must).
    MovePeer {
        region_id: u64,
        from_store: u64,
        to_store: u64,
    },
}

/// What an operator of the cluster asks the driver. New variants go at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementRequest {
    Status,
    Stores,
    /// Retire a store: Offline now, Tombstone once its replicas moved away.
    DeleteStore {
        store_id: u64,
    },
    Operators,
    AddOperator(OperatorSpec),
    /// Cancel the region's running operator.
    RemoveOperator {
        region_id: u64,
    },
    Schedulers,
    PauseScheduler {
        name: String,
    },
    ResumeScheduler {
        name: String,
    },
    /// The region holding `key`, and where its stores are.
    Locate {
        key: Vec<u8>,
    },
    /// Every region the driver knows, in key order.
    Regions,
}

/// The driver's answers to a [`PlacementRequest`]. New variants go at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementAnswer {
    Status(DriverStatus),
    Stores(Vec<StoreDesc>),
    /// The store's state after the request.
    StoreState(StoreState),
    Operators(Vec<OperatorDesc>),
    OperatorAdded {
        operator_id: u64,
    },
    OperatorRemoved {
        operator_id: u64,
    },
    Schedulers(Vec<SchedulerDesc>),
    /// The driver's replicated record now says what was asked (a store retired, a scheduler
    /// paused or resumed).
    Recorded,
    /// `None`: no region the driver knows holds the key (it has not heard of it yet).
    Located(Option<Route>),
    Regions(Vec<RegionDesc>),
}

/// A region as the driver knows it: what its leader last reported.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionDesc {
    pub region: Region,
    /// The store of the leader that reported it.
    pub leader_store: Option<u64>,
    pub pending_peers: Vec<u64>,
    pub down_peers: Vec<u64>,
    pub approximate_size: u64,
    pub approximate_keys: u64,
    /// Since its leader's last report reached this driver.
    pub last_heartbeat_ago_ms: u64,
}

/// Where a key lives: its region, and the addresses of the stores holding it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub region: RegionDesc,
    pub stores: Vec<StoreAddr>,
}
