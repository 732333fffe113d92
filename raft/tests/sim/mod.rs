//! The pieces of the deterministic Raft simulation; `simulation.rs` runs it.

pub mod checker;
pub mod cluster;
pub mod network;
pub mod rng;
pub mod run;
pub mod state_machine;
