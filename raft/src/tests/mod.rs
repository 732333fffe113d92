//! Unit tests of the Raft core, over an in-memory network of nodes (see `harness`).

mod harness;

mod check_quorum;
mod conf_change;
mod election;
mod flow_control;
mod heartbeat_rounds;
mod hibernation;
mod leader_loss;
mod leader_transfer;
mod pre_vote;
mod raw_node;
mod read_index;
mod replication;
mod robustness;
mod snapshot;
