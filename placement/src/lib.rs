//! The placement driver's core: what decides where a tinykv cluster's replicas and leaders
//! live. It keeps a model of the stores and regions from their heartbeats, keeps each region
//! at `max_replicas` voters on running stores, evens out leaders and data across stores, and
//! hands region leaders one step at a time of the operators that do this.
//!
//! It is pure, like the Raft crate: no I/O, no clock (time comes in as milliseconds with each
//! call), no threads, no randomness. The node owns it, feeds it heartbeats and the time, sends
//! the instructions it answers with, and supplies new peer ids. Everything it keeps is
//! serializable, so it can be replicated as records.
//!
//! Files, one idea each; each imports only files above it in this list (the test fixtures
//! aside):
//! - `store.rs`: a store's state (`Up`, `Offline`, `Down`, `Tombstone`), report and tallies.
//! - `region_meta.rs`: a region as its leader reports it (leader, pending and down peers, size).
//! - `settings.rs`: replica count, timeouts, per-store budgets, paused schedulers.
//! - `cluster.rs`: stores and regions by id and by range; heartbeats, stale-report checks,
//!   store lifecycle, which voters are live.
//! - `operator.rs`: operators and their steps, and when a step counts as done.
//! - `builder.rs`: the step sequences of adding, moving and removing a replica, moving a
//!   leader; where new peer ids come from (`PeerIdSource`).
//! - `controller.rs`: running operators (one per region, per-store budgets), advancing and
//!   expiring them, the instruction for a heartbeat, the never-below-`max_replicas` rule,
//!   learners an expired operator left behind.
//! - `targets.rs`: which stores may receive a new replica.
//! - `replica_checker.rs`, `balance_leader.rs`, `balance_region.rs`: the schedulers.
//! - `driver.rs`: `PlacementDriver`, all of the above behind the calls a node makes.
//! - `testkit.rs` (tests only): fixtures.

pub mod balance_leader;
pub mod balance_region;
pub mod builder;
pub mod cluster;
pub mod controller;
pub mod driver;
pub mod operator;
pub mod region_meta;
pub mod replica_checker;
pub mod settings;
pub mod store;
pub mod targets;

#[cfg(test)]
mod testkit;

pub use builder::PeerIdSource;
pub use cluster::{Cluster, HeartbeatError, StoreError, StoreStateChange};
pub use controller::{
    AbandonedLearner, AddOperatorError, Dispatch, ExpiryReason, Instruction, OperatorController,
    OperatorEvent, OperatorOutcome, RunningOperator,
};
pub use driver::{PlacementDriver, TickReport};
pub use operator::{Operator, OperatorKind, Step, StoreLimitKind};
pub use region_meta::RegionMeta;
pub use settings::{SchedulerKind, Settings};
pub use store::{StoreInfo, StoreState, StoreStats};
